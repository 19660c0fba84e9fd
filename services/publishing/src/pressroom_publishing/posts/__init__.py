"""Posts: the aggregate, its commands, validation, the calendar and the HTTP API."""
