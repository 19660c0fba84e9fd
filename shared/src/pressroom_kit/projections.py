"""Projections: events -> read tables, live and rebuilt.

A service's own events are projected inside the command's transaction (read-your-writes).
``rebuild`` replays the whole event store into fresh copies of the tables in a scratch
schema (handlers use unqualified table names, so ``search_path`` points them there);
``verify`` compares the copies with the live tables; ``swap`` replaces the live rows.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pressroom_kit.db import set_all_brands
from pressroom_kit.eventstore import RecordedEvent, head_position, read_all

ProjectionHandler = Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Projection:
    """Read tables kept by handlers per event type.

    ``ignore_columns`` lists columns that legitimately differ between a live and a rebuilt
    row (none should: handlers take times from the event, not from the clock).
    """

    name: str
    tables: tuple[str, ...]
    handlers: Mapping[str, ProjectionHandler]
    ignore_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent) -> None:
        handler = self.handlers.get(event.type)
        if handler is not None:
            await handler(conn, event)


@dataclass(frozen=True)
class Projector:
    projections: Sequence[Projection]

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            for projection in self.projections:
                await projection.apply(conn, event)

    @property
    def event_types(self) -> set[str]:
        return {t for p in self.projections for t in p.handlers}


def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"bad identifier {name!r}")
    return name


def rebuild_schema(projection: Projection) -> str:
    return _ident(f"rebuild_{projection.name}")


async def rebuild(
    conn: asyncpg.Connection,
    projection: Projection,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> int:
    """Replay every event into fresh copies of the projection's tables; return the count.

    Runs as the tables' owner; row-level security is forced on the owner too, so each
    batch sets ``app.all_brands`` (``set_all_brands``) in case a handler reads a live table.
    """
    schema = rebuild_schema(projection)
    total = await head_position(conn)
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.execute(f"CREATE SCHEMA {schema}")
    for table in projection.tables:
        await conn.execute(
            f"CREATE TABLE {schema}.{_ident(table)} "
            f"(LIKE public.{_ident(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING INDEXES INCLUDING GENERATED)"
        )
    done = 0
    types = list(projection.handlers)
    async for batch in read_all(conn, batch_size=batch_size, types=types):
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {schema}, public")
            await set_all_brands(conn)
            for event in batch:
                await projection.apply(conn, event)
        done = batch[-1].global_position
        if progress is not None:
            progress(done, total)
    if progress is not None:
        progress(total, total)
    return done


@dataclass(frozen=True)
class TableDiff:
    table: str
    only_live: int
    only_rebuilt: int
    samples: list[dict[str, Any]]

    @property
    def equal(self) -> bool:
        return self.only_live == 0 and self.only_rebuilt == 0


async def verify(conn: asyncpg.Connection, projection: Projection) -> list[TableDiff]:
    """Compare live tables with the rebuilt copies row by row (as the owner: every brand)."""
    schema = rebuild_schema(projection)
    diffs = []
    async with conn.transaction():
        await set_all_brands(conn)
        for table in projection.tables:
            ignore = set(projection.ignore_columns.get(table, ()))
            columns = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                    table,
                )
                if r["column_name"] not in ignore
            ]
            cols = ", ".join(f'"{c}"' for c in columns)
            live = f"SELECT {cols} FROM public.{_ident(table)}"
            rebuilt = f"SELECT {cols} FROM {schema}.{_ident(table)}"
            only_live = await conn.fetch(f"{live} EXCEPT ALL {rebuilt} LIMIT 1000")
            only_rebuilt = await conn.fetch(f"{rebuilt} EXCEPT ALL {live} LIMIT 1000")
            samples = [dict(r) | {"_side": "live"} for r in only_live[:3]]
            samples += [dict(r) | {"_side": "rebuilt"} for r in only_rebuilt[:3]]
            diffs.append(TableDiff(table, len(only_live), len(only_rebuilt), samples))
    return diffs


async def swap(conn: asyncpg.Connection, projection: Projection) -> None:
    """Replace the live rows with the rebuilt ones, atomically (every brand's)."""
    schema = rebuild_schema(projection)
    async with conn.transaction():
        await set_all_brands(conn)
        for table in projection.tables:
            await conn.execute(f"TRUNCATE public.{_ident(table)}")
            await conn.execute(
                f"INSERT INTO public.{_ident(table)} SELECT * FROM {schema}.{_ident(table)}"
            )
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def rebuild_with_progress_bar(
    conn: asyncpg.Connection, projections: Sequence[Projection], *, do_swap: bool = False
) -> list[TableDiff]:
    """Rebuild every projection with a rich progress bar, then verify (and swap if asked)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    diffs: list[TableDiff] = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as bar:
        for projection in projections:
            task = bar.add_task(f"rebuild {projection.name}", total=None)

            def report(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            await rebuild(conn, projection, progress=report)
            diffs += await verify(conn, projection)
            if do_swap:
                await swap(conn, projection)
    return diffs
