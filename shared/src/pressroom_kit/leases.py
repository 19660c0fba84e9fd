"""Leases on work rows: claim with a token, renew, fenced writes, release, and a keeper.

A worker that claims a row (a due webhook delivery, a post due for publishing, an escalation
due to be sent) gets a ``Lease``: the row id, a fresh token and an expiry. Every later write
about that work is *fenced*: it runs only while the row still carries the token
(``WHERE id = $1 AND lease_token = $2``), so a holder that stalled past its lease and lost the
row to another worker finds its late writes refused (``LeaseLost``) and must skip recording.

What is guaranteed: at most one holder's writes count for a claim; a stalled holder's late
writes are refused. What is not: an outside side effect (an HTTP request, a post on a
platform) may still happen twice when a holder stalls past its lease, so such effects carry
an idempotency key or are reconciled.

Claims usually run across brands while row-level security confines the runtime role to one,
so the claim is the service's own SQL, typically a ``SECURITY DEFINER`` function; renewals
and fenced writes run in the row's tenant transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import asyncpg

from pressroom_kit.logs import get_logger

log = get_logger(__name__)
Clock = Callable[[], datetime]
RowId = uuid.UUID | int | str
Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseLost(Exception):
    """The row no longer carries this lease's token: another worker claimed it, or it was
    released. Nothing about the work may be recorded by this holder."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"the lease on {lease.row_id} was lost")
        self.lease = lease


@dataclass(frozen=True)
class Lease:
    row_id: RowId
    token: uuid.UUID
    expires_at: datetime


class LeasedRows:
    """The lease columns of one table and the fenced statements on them.

    The table needs a token column (``uuid``, null when unleased) and an expiry column
    (``timestamptz``). Column and table names are fixed by the service's code, never input.
    """

    def __init__(
        self,
        table: str,
        *,
        duration: timedelta,
        id_column: str = "id",
        token_column: str = "lease_token",
        expires_column: str = "lease_until",
        clock: Clock = utcnow,
    ) -> None:
        if duration <= timedelta(0):
            raise ValueError("a lease needs a positive duration")
        self.duration = duration
        self.clock = clock
        self._columns = (id_column, token_column, expires_column)
        name, key, token, expires = (
            _quoted(table),
            _quoted(id_column),
            _quoted(token_column),
            _quoted(expires_column),
        )
        self._renew_sql = (
            f"UPDATE {name} SET {expires} = $3 WHERE {key} = $1 AND {token} = $2 "
            f"RETURNING {expires}"
        )
        self._release_sql = (
            f"UPDATE {name} SET {token} = NULL, {expires} = NULL WHERE {key} = $1 AND {token} = $2"
        )

    def lease_of(self, row: asyncpg.Record) -> Lease:
        """The lease a claim returned in ``row`` (its id, token and expiry columns)."""
        key, token, expires = self._columns
        return Lease(row[key], row[token], row[expires])

    async def claim(
        self, conn: asyncpg.Connection | asyncpg.Pool, query: str, *args: Any
    ) -> list[tuple[Lease, asyncpg.Record]]:
        """Run the service's claim ``query`` with ``$1`` = now and ``$2`` = the lease duration
        (then ``args``). The query must skip rows under an unexpired lease, lock what it takes
        (``FOR UPDATE SKIP LOCKED``), set a fresh token (``gen_random_uuid()``) and the expiry
        ``$1 + $2``, and return the id, token and expiry columns."""
        rows = await conn.fetch(query, self.clock(), self.duration, *args)
        return [(self.lease_of(row), row) for row in rows]

    async def execute(self, conn: asyncpg.Connection, lease: Lease, query: str, *args: Any) -> str:
        """A fenced statement: ``query`` runs with ``$1`` = the row id, ``$2`` = the token
        (then ``args``) and must condition on both (``WHERE id = $1 AND lease_token = $2``).
        ``LeaseLost`` when it touched no row; roll the transaction back then."""
        status: str = await conn.execute(query, lease.row_id, lease.token, *args)
        count = status.rsplit(" ", 1)[-1]
        if not count.isdigit() or int(count) == 0:
            raise LeaseLost(lease)
        return status

    async def renew(self, conn: asyncpg.Connection, lease: Lease) -> Lease:
        """Extend the lease to now + duration if the row still carries its token (even when
        it has just expired: nobody else has claimed it then). ``LeaseLost`` otherwise."""
        expires = await conn.fetchval(
            self._renew_sql, lease.row_id, lease.token, self.clock() + self.duration
        )
        if expires is None:
            raise LeaseLost(lease)
        return replace(lease, expires_at=expires)

    async def release(self, conn: asyncpg.Connection, lease: Lease) -> None:
        """Give the row up (token and expiry cleared); ``LeaseLost`` if it was no longer ours."""
        await self.execute(conn, lease, self._release_sql)

    def keep(
        self, lease: Lease, connect: Connect, *, every: timedelta | None = None
    ) -> LeaseKeeper:
        """A keeper that renews ``lease`` every ``every`` (a third of the duration by default)
        while a long operation runs; ``connect()`` opens the transaction each renewal runs in
        (``lambda: tenant_transaction(pool, brand_id)``)."""
        return LeaseKeeper(self, lease, connect, every or self.duration / 3)


class LeaseKeeper:
    """Renews a lease in the background for the duration of an ``async with`` block.

    ``lost`` is set as soon as a renewal finds the token gone; the operation may then stop
    early. Failed renewals (the database briefly unreachable) are retried on the next tick.
    The fence is still the write itself: a holder must record through ``LeasedRows.execute``,
    which refuses a lost lease whether or not the keeper noticed.
    """

    def __init__(self, rows: LeasedRows, lease: Lease, connect: Connect, every: timedelta) -> None:
        self.rows = rows
        self.lease = lease
        self.lost = asyncio.Event()
        self._connect = connect
        self._every = every.total_seconds()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LeaseKeeper:
        self._task = asyncio.create_task(self._renew_until_stopped())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Stopped between renewals rather than cancelled: a renewal cut off mid-statement
        # would leave its pooled connection to be reset.
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _renew_until_stopped(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._every)
            if self._stop.is_set():
                return
            try:
                async with self._connect() as conn:
                    self.lease = await self.rows.renew(conn, self.lease)
            except LeaseLost:
                log.warning("lease lost during the operation", row_id=str(self.lease.row_id))
                self.lost.set()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "lease renewal failed; retrying",
                    row_id=str(self.lease.row_id),
                    error=str(exc),
                )


def _quoted(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"not a plain SQL name: {name!r}")
    return ".".join(f'"{part}"' for part in parts)
