"""Cursor pagination as API.md describes it: ``?limit&cursor`` ->
``{"items": [...], "next_cursor": "..." | null}``. Cursors are opaque to clients (URL-safe
base64 of the last row's sort key) and a cursor this API did not give out is a 422."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pressroom_kit.errors import Invalid

T = TypeVar("T")


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode()


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    """The sort key in ``cursor`` (``size`` parts), ``None`` without one."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("the cursor is not one this API gave out", code="bad_cursor") from exc
    if not isinstance(key, list) or len(key) != size:
        raise Invalid("the cursor is not one this API gave out", code="bad_cursor")
    return key


def page(
    rows: Sequence[T], limit: int, key: Callable[[T], Sequence[Any]]
) -> tuple[list[T], str | None]:
    """Items for a page fetched with ``LIMIT limit + 1``, and the cursor of the next page."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(*key(items[-1])) if len(rows) > limit and items else None
    return items, next_cursor
