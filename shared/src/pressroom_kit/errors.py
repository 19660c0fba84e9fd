"""Errors with a stable ``code`` that the HTTP layer maps to problem+json once."""

from __future__ import annotations

from typing import Any


class PressroomError(Exception):
    """Base of errors meant for a client. ``status`` is the HTTP status it maps to."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class NotFound(PressroomError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(PressroomError):
    status, code, title = 409, "conflict", "Conflict"


class Forbidden(PressroomError):
    status, code, title = 403, "forbidden", "Forbidden"


class Unauthorized(PressroomError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Invalid(PressroomError):
    status, code, title = 422, "invalid", "Unprocessable content"


class ConcurrencyError(Conflict):
    """A stream was appended to by someone else since it was loaded."""

    code, title = "concurrency_conflict", "Concurrent modification"
