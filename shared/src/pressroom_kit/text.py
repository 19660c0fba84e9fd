"""Request text the database can store, and free text normalised where it is compared.

PostgreSQL refuses U+0000 in ``text`` and ``jsonb``, and a lone surrogate (U+D800 to U+DFFF)
cannot be encoded as UTF-8 at all, so either would reach the database driver and fail there
as a 500. The app factory runs :func:`refuse_unstorable_text` before every handler: any
path parameter, query parameter, header or JSON body string (object keys included) holding
one is refused up front with a 422 problem that names the field. Bodies a handler reads
itself (a streamed multipart upload) call :func:`check_text` on each field they keep.

Litestar runs only the innermost ``before_request`` hook of a route (handler, controller,
router, app), so a route with its own hook would lose the check; :func:`keep_text_check`
(called by the app factory) puts the check in front of every such hook.

Free text that is compared or searched (tags, categories, search terms, names) goes through
:func:`nfc`, so the composed and decomposed spellings of "é" are the same tag.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from litestar import Litestar, Request
from litestar.exceptions import SerializationException
from litestar.routes import HTTPRoute

from pressroom_kit.errors import Invalid

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
JSON_TYPES = ("application/json", "+json")


def unstorable(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` (``None`` when it can)."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "holds a NUL character (U+0000), which cannot be stored"
    return f"holds a lone surrogate (U+{ord(char):04X}), which is not valid Unicode text"


def check_text(value: str, field: str) -> str:
    """``value`` when it can be stored; otherwise a 422 problem naming ``field``."""
    reason = unstorable(value)
    if reason is not None:
        raise _refusal([{"field": field, "message": reason}])
    return value


def nfc(value: str) -> str:
    """``value`` in Unicode normal form C: the one spelling compared and searched."""
    return unicodedata.normalize("NFC", value)


def json_problems(value: Any, path: str = "") -> Iterator[dict[str, str]]:
    """Every string in a decoded JSON value (keys too) that cannot be stored, by field."""
    if isinstance(value, str):
        reason = unstorable(value)
        if reason is not None:
            yield {"field": path or "body", "message": reason}
    elif isinstance(value, dict):
        for key, item in value.items():
            field = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (reason := unstorable(key)) is not None:
                yield {
                    "field": f"{path}.{key!r}" if path else repr(key),
                    "message": f"key {reason}",
                }
            yield from json_problems(item, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_problems(item, f"{path}.{index}" if path else str(index))


async def refuse_unstorable_text(request: Request[Any, Any, Any]) -> None:
    """The app factory's ``before_request`` hook: a 422 for any unstorable request text.

    Runs after routing and before the handler's arguments are parsed; the JSON body it
    decodes is cached on the request, so the handler does not parse it twice. A body that
    is not JSON is left to the handler (which refuses or streams it)."""
    errors: list[dict[str, str]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and (reason := unstorable(value)) is not None:
            errors.append({"field": name, "message": reason})
    for name, value in request.query_params.multi_items():
        field = name if unstorable(name) is None else repr(name)
        reason = unstorable(name) or unstorable(value)
        if reason is not None:
            errors.append({"field": field, "message": reason})
    for name, value in request.headers.items():
        if "\x00" in value:
            errors.append({"field": name, "message": "holds a NUL character (U+0000)"})
    if not errors and _has_json_body(request):
        try:
            body = await request.json()
        except SerializationException:
            body = None  # the handler's own parsing answers 400 for a malformed body
        errors.extend(json_problems(body))
    if errors:
        raise _refusal(errors)


def checked_first(
    hook: Callable[[Request[Any, Any, Any]], Awaitable[Any]],
) -> Callable[[Request[Any, Any, Any]], Awaitable[Any]]:
    """``hook`` preceded by :func:`refuse_unstorable_text`."""
    if getattr(hook, "checks_text", False):
        return hook

    async def checked(request: Request[Any, Any, Any]) -> Any:
        await refuse_unstorable_text(request)
        return await hook(request)

    checked.checks_text = True  # type: ignore[attr-defined]
    return checked


def keep_text_check(app: Litestar) -> None:
    """Put the unstorable-text check in front of every route's own ``before_request`` hook
    (before the first request: Litestar resolves a route's hook once, when first used)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for layer in handler.ownership_layers:
                hook = layer.before_request
                if layer is not app and hook is not None:
                    layer.before_request = checked_first(hook)


def _has_json_body(request: Request[Any, Any, Any]) -> bool:
    if "data" not in request.route_handler.parsed_fn_signature.parameters:
        return False
    content_type = request.headers.get("content-type", "application/json").split(";")[0]
    return content_type.strip().lower().endswith(JSON_TYPES)


def _refusal(errors: list[dict[str, str]]) -> Invalid:
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return Invalid(
        f"text the server cannot store in: {fields}", code="unstorable_text", errors=errors
    )


__all__ = [
    "check_text",
    "checked_first",
    "json_problems",
    "keep_text_check",
    "nfc",
    "refuse_unstorable_text",
    "unstorable",
]
