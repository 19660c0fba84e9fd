"""Cursor pagination: ``?limit&cursor`` -> ``{"items": [...], "next_cursor": "..." | null}``.

A cursor is a keyset position, opaque to clients. :func:`newest_first` pages on
``(created_at, id)`` with cursors of the form ``<microseconds since 1970>-<id as 32 hex>``
(:data:`CURSOR_PATTERN`, documented on the route by :data:`Cursor`): every string of that
form is a position, so a well-formed cursor the API did not give out is answered with the
rows after that position, never refused, and anything else is a 422 from the parameter's
pattern. ``encode_cursor``/``decode_cursor`` are the generic form (URL-safe base64 of a JSON
sort key) for keys that have no strict form."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from uuid import UUID

import asyncpg
from litestar.params import Parameter

from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid

T = TypeVar("T")

CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9a-f]{32}$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

Cursor = Annotated[
    str | None,
    Parameter(
        pattern=CURSOR_PATTERN,
        max_length=49,
        description="`next_cursor` of the previous page (a position: `<µs since 1970>-<id>`)",
    ),
]


def position_cursor(created_at: datetime, row_id: UUID) -> str:
    """The cursor of the position just after ``(created_at, row_id)`` in newest-first order."""
    return f"{(created_at - EPOCH) // ONE_MICROSECOND}-{row_id.hex}"


def read_position_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The ``(created_at, id)`` of a cursor matching :data:`CURSOR_PATTERN`."""
    micros, _, row_id = cursor.partition("-")
    try:
        return EPOCH + int(micros) * ONE_MICROSECOND, UUID(hex=row_id)
    except (ValueError, OverflowError) as exc:
        raise Invalid("the cursor is not a position", code="bad_cursor") from exc


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
    rows: Sequence[T],
    limit: int,
    key: Callable[[T], Sequence[Any]],
    encode: Callable[..., str] = encode_cursor,
) -> tuple[list[T], str | None]:
    """Items for a page fetched with ``LIMIT limit + 1``, and the cursor of the next page
    (``encode`` of the last item's ``key``)."""
    items = list(rows[:limit])
    next_cursor = encode(*key(items[-1])) if len(rows) > limit and items else None
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
    parameters. ``cursor`` must match :data:`CURSOR_PATTERN` (declare it as :data:`Cursor`)."""
    params: list[Any] = []
    clauses = [always]
    for fragment, value in filters:
        if value is not None:
            params.append(value)
            clauses.append(fragment.format(f"${len(params)}"))
    if cursor:
        params += read_position_cursor(cursor)
        clauses.append(f"(created_at, id) < (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    query = (
        f"{select} WHERE {' AND '.join(clauses)} "
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(params)}"
    )
    async with tenant_transaction(pool, brand_id) as conn:
        rows = await conn.fetch(query, *params)
    return page(rows, limit, lambda r: (r["created_at"], r["id"]), position_cursor)
