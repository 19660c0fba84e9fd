"""Cursor pagination as API.md describes it: ``?limit&cursor`` ->
``{"items": [...], "next_cursor": "..." | null}``. Cursors are opaque to clients (URL-safe
base64 of the last row's sort key) and a cursor this API did not give out is a 422."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from pressroom_kit.db import tenant_transaction
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


async def newest_first(
    pool: asyncpg.Pool,
    brand_id: UUID,
    select: str,
    filters: Sequence[tuple[str, Any]],
    cursor: str | None,
    limit: int,
    *,
    always: str = "TRUE",
) -> tuple[list[asyncpg.Record], str | None]:
    """A page of ``select`` (``SELECT ... FROM table``, which must yield ``created_at`` and
    ``id``) newest first, keyset-paginated on ``(created_at, id)``, in the brand's tenant
    transaction. ``always`` is a fixed condition; ``filters`` are ``(fragment with {} for the
    parameter, value)`` pairs, applied when the value is not ``None``. Values always travel as
    parameters."""
    params: list[Any] = []
    clauses = [always]
    for fragment, value in filters:
        if value is not None:
            params.append(value)
            clauses.append(fragment.format(f"${len(params)}"))
    key = decode_cursor(cursor, 2)
    if key is not None:
        try:
            params += [datetime.fromisoformat(key[0]), UUID(key[1])]
        except (TypeError, ValueError) as exc:
            raise Invalid("the cursor is not one this API gave out", code="bad_cursor") from exc
        clauses.append(f"(created_at, id) < (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    query = (
        f"{select} WHERE {' AND '.join(clauses)} "
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(params)}"
    )
    async with tenant_transaction(pool, brand_id) as conn:
        rows = await conn.fetch(query, *params)
    return page(rows, limit, lambda r: (r["created_at"].isoformat(), r["id"]))
