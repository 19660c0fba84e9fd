"""OAuth connections: the connection aggregate, the sealed token vault, the credential source
the scheduler uses, the HTTP routes and the worker that refreshes and verifies tokens."""
