"""The problem responses each route can give, in its OpenAPI entry.

Every error is RFC 9457 ``application/problem+json`` (see :func:`pressroom_kit.http.problem`).
:func:`document_problems` adds them to each route of an app, inferred from what the kit
knows about the route, so a service (and every later one) documents them with no work:

- a route that needs a token: 401 (no or bad token) and 403 (no brand, role too low);
- a route with a path parameter: 404;
- a route with a body: 413 (too large);
- a route that writes: 409 (it lost a race with a concurrent write);
- every route but the probes: 400 (malformed input) and 422 (validation, unstorable text),
  with the ``errors`` list;
- a public route gets ``security: [{}]`` (no token needed).

A route declares the rest itself: ``opt=problems(409, 415)``. A ``responses`` entry the
route gives explicitly wins over an inferred one. A page for people (``opt=html_page()``:
an unsubscribe confirmation, a review page) answers its errors as HTML pages too, and is
documented so: every response ``text/html``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.routes import HTTPRoute
from pydantic import BaseModel, ConfigDict, Field

PROBLEM = "application/problem+json"

DESCRIPTIONS = {
    400: "Malformed request (a body that is not valid JSON, a broken multipart form)",
    401: "No bearer token, or one that is invalid or expired",
    403: "The token has no brand, or its role is too low for this route",
    404: "Nothing with this id in the token's brand",
    409: "Conflicts with the current state (a concurrent change, a resource in use)",
    413: "The body is larger than the limit (or over the brand's storage quota)",
    415: "The body's content type is not one this route takes",
    422: "Validation failed: `errors` names each field (unstorable text included)",
    429: "Rate limited: retry after the `Retry-After` seconds",
    502: "The service behind the gateway gave no valid answer",
    503: "A service or dependency is unavailable",
    504: "The service behind the gateway did not answer in time",
}


class Problem(BaseModel):
    """An RFC 9457 problem; routes may add members (``limit_bytes``, ``request_id``, …)."""

    model_config = ConfigDict(extra="allow", title="Problem")
    type: str = Field(description="https://pressroom.dev/problems/<code>")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    request_id: str | None = None


class FieldError(BaseModel):
    model_config = ConfigDict(title="FieldError")
    field: str | None
    message: str | None


class ValidationProblem(Problem):
    """A problem for invalid input, with one entry per refused field."""

    model_config = ConfigDict(extra="allow", title="ValidationProblem")
    errors: list[FieldError] = Field(default_factory=list)


def problems(*statuses: int) -> dict[str, Any]:
    """Route ``opt`` declaring the problem statuses the kit cannot infer (409, 415, 503…)."""
    return {"problems": tuple(statuses)}


HTML = "text/html"


def html_page(*statuses: int) -> dict[str, Any]:
    """Route ``opt`` of a page for people: its answers, errors included, are HTML."""
    return {"problems": tuple(statuses), "html": True}


def html_response(status: int, description: str | None = None) -> ResponseSpec:
    """The OpenAPI response of a page (an HTML document)."""
    return ResponseSpec(
        str,
        description=description or DESCRIPTIONS.get(status, "Request failed") + " (a page)",
        media_type=HTML,
        generate_examples=False,
    )


def problem_response(status: int, description: str | None = None) -> ResponseSpec:
    """The OpenAPI response of one problem status."""
    return ResponseSpec(
        ValidationProblem if status in (400, 422) else Problem,
        description=description or DESCRIPTIONS.get(status, "Request failed"),
        media_type=PROBLEM,
        generate_examples=False,
    )


def route_problems(handler: HTTPRouteHandler, path_parameters: Iterable[str]) -> set[int]:
    """The problem statuses ``handler`` can answer, as the kit sees it."""
    statuses = set(handler.opt.get("problems", ()))
    if handler.opt.get("probe"):
        return statuses
    statuses |= {400, 422}
    if handler.http_methods - {"GET", "HEAD", "OPTIONS"}:
        statuses.add(409)  # a write can lose a race with a concurrent one
    if not handler.opt.get("public"):
        statuses |= {401, 403}
    if any(path_parameters):
        statuses.add(404)
    if "data" in handler.parsed_fn_signature.parameters:
        statuses |= {400, 413}
    return statuses


def document_problems(app: Litestar) -> None:
    """Add the problem responses to every route of ``app`` (before its document is built)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            declared = dict(handler.responses or {})
            page = bool(handler.opt.get("html"))
            for status in sorted(route_problems(handler, route.path_parameters)):
                declared.setdefault(
                    status, html_response(status) if page else problem_response(status)
                )
            handler.responses = declared
            if handler.opt.get("public"):
                handler.security = [{}]


__all__ = [
    "PROBLEM",
    "FieldError",
    "Problem",
    "ValidationProblem",
    "document_problems",
    "html_page",
    "html_response",
    "problem_response",
    "problems",
    "route_problems",
]
