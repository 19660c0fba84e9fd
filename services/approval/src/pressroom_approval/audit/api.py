"""The audit log over HTTP, for admins: search it, export it (streamed), verify its chain."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, Parameter
from litestar.response import Stream
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Invalid
from pressroom_kit.http import requires_role
from pressroom_kit.pagination import Cursor, newest_first
from pressroom_kit.schemas import TIME_PATTERN
from pydantic import BaseModel

from pressroom_approval.audit import chain, privacy
from pressroom_approval.audit.entries import ENTRY_SELECT, AuditEntry, entry
from pressroom_approval.audit.log import actor_from_request, pseudonym, record

ADMIN = [requires_role("admin")]
EXPORT_FETCH = 1_000  # rows the server-side cursor fetches per round trip
EXPORT_CHUNK = 500  # rows per chunk written to the client

CSV_COLUMNS = (
    "id",
    "seq",
    "at",
    "actor_id",
    "action",
    "post_id",
    "approval_id",
    "metadata",
    "email",
    "ip",
    "user_agent",
    "name",
    "prev_hash",
    "hash",
)


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


class VerifyOut(BaseModel):
    valid: bool
    checked: int
    first_bad_id: uuid.UUID | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    last_seq: int  # the last intact entry: record it elsewhere to anchor the chain
    last_hash: str


def _principal(request: Request[Any, Any, Any]) -> tuple[Principal, uuid.UUID]:
    principal = request.user
    assert isinstance(principal, Principal) and principal.brand_id is not None
    return principal, principal.brand_id


def _moment(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise Invalid(f"{name} needs a UTC offset (RFC 3339)", code="naive_time", field=name)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Invalid(f"{name} is out of range", code="bad_time", field=name) from None


def filters(
    post_id: uuid.UUID | None,
    actor_id: str | None,
    action: str | None,
    from_: str | None,
    to: str | None,
) -> list[tuple[str, Any]]:
    """``(fragment, value)`` pairs for ``newest_first``. An actor is matched by the keyed
    hash of its id, so ``client:<email>`` finds a reviewer without the log storing the
    email; a pseudonymous id as the log shows it (``client:~...``) matches as it is."""
    start = _moment(_time(from_, "from"), "from")
    end = _moment(_time(to, "to"), "to")
    if start is not None and end is not None and start > end:
        raise Invalid("from is after to", code="bad_range")
    by_ref = actor_id is not None and not actor_id.startswith("client:~")
    return [
        ("post_id = {}", post_id),
        ("actor_ref = {}", pseudonym(actor_id) if by_ref and actor_id else None),
        ("actor_id = {}", actor_id if not by_ref else None),
        ("action = {}", action),
        ("created_at >= {}", start),
        ("created_at < {}", end),
    ]


def _where(pairs: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    for fragment, value in pairs:
        if value is not None:
            params.append(value)
            clauses.append(fragment.format(f"${len(params)}"))
    return " AND ".join(clauses), params


def _csv_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: a leading ``= + - @`` (a formula) gets a ``'``."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(e: AuditEntry) -> list[str]:
    p = e.actor
    values: list[Any] = [
        e.id,
        e.seq,
        e.at.isoformat(),
        e.actor_id,
        e.action,
        e.post_id,
        e.approval_id,
        json.dumps(e.metadata, separators=(",", ":"), sort_keys=True),
        p.email if p else None,
        p.ip if p else None,
        p.user_agent if p else None,
        p.name if p else None,
        e.prev_hash,
        e.hash,
    ]
    return [_csv_cell(v) for v in values]


async def export_stream(
    pool: asyncpg.Pool, brand_id: uuid.UUID, pairs: Sequence[tuple[str, Any]], fmt: str
) -> AsyncIterator[bytes]:
    """The entries oldest first through a server-side cursor, in one repeatable-read
    read-only transaction (one snapshot however long the download takes), a chunk of
    ``EXPORT_CHUNK`` rows at a time. A client that goes away closes the generator, which
    rolls the transaction back and frees the connection."""
    where, params = _where(pairs)
    query = f"{ENTRY_SELECT} WHERE {where} ORDER BY seq"
    async with tenant_transaction(pool, brand_id) as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        if fmt == "csv":
            writer.writerow(CSV_COLUMNS)
        elif fmt == "json":
            buffer.write("[")
        count = 0
        async for row in conn.cursor(query, *params, prefetch=EXPORT_FETCH):
            e = entry(row)
            if fmt == "csv":
                writer.writerow(_csv_row(e))
            else:
                if fmt == "json" and count:
                    buffer.write(",")
                buffer.write(e.model_dump_json())
                if fmt == "ndjson":
                    buffer.write("\n")
            count += 1
            if count % EXPORT_CHUNK == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        if fmt == "json":
            buffer.write("]\n")
        yield buffer.getvalue().encode()


MEDIA_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
PostFilter = Annotated[uuid.UUID | None, Parameter(query="post_id")]
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # no control characters (NUL cannot reach the database)
ActorFilter = Annotated[
    str | None, Parameter(query="actor_id", min_length=1, max_length=320, pattern=PRINTABLE)
]
ActionFilter = Annotated[
    str | None, Parameter(query="action", min_length=1, max_length=100, pattern=PRINTABLE)
]
# RFC 3339 with an offset, nothing else (a bare number would be read as a Unix time).
FromFilter = Annotated[
    str | None, Parameter(query="from", description="inclusive", pattern=TIME_PATTERN)
]
ToFilter = Annotated[
    str | None, Parameter(query="to", description="exclusive", pattern=TIME_PATTERN)
]


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(f"{value[:10]}T{value[11:]}".replace("z", "Z"))
    except ValueError:
        raise Invalid(f"{name} is not an RFC 3339 time", code="bad_time", field=name) from None


EXPORT_TYPES = {
    "application/json": "json (a JSON array of entries)",
    "application/x-ndjson": "ndjson (one entry per line)",
    "text/csv": "csv (with a header line)",
}


@dataclass
class ExportOperation(Operation):
    """The export's 200 in each of its formats (Litestar documents one media type)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.description = "the entries, in the `format` asked for"
            ok.content = {
                kind: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.ARRAY,
                        items=Schema(type=OpenAPIType.OBJECT),
                        description=what,
                    )
                    if kind == "application/json"
                    else Schema(type=OpenAPIType.STRING, description=what)
                )
                for kind, what in EXPORT_TYPES.items()
            }


class AuditLogController(Controller):
    path = "/v1/audit-logs"
    tags = ["audit"]
    guards = ADMIN

    @get("/")
    async def list_entries(
        self,
        request: Request[Any, Any, Any],
        state: State,
        post_id: PostFilter = None,
        actor_id: ActorFilter = None,
        action: ActionFilter = None,
        from_: FromFilter = None,
        to: ToFilter = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        cursor: Cursor = None,
    ) -> AuditPage:
        """Newest first (by time, then id), with each entry's personal data while it is
        held. Filters combine with AND; `actor_id` takes a user id or `client:<email>`."""
        _, brand = _principal(request)
        rows, next_cursor = await newest_first(
            state.pool,
            brand,
            ENTRY_SELECT,
            filters(post_id, actor_id, action, from_, to),
            cursor,
            limit,
        )
        return AuditPage(items=[entry(r) for r in rows], next_cursor=next_cursor)

    @get("/export", operation_class=ExportOperation)
    async def export(
        self,
        request: Request[Any, Any, Any],
        state: State,
        fmt: Annotated[
            Literal["json", "ndjson", "csv"],
            Parameter(query="format", description="a JSON array, NDJSON or CSV"),
        ] = "json",
        post_id: PostFilter = None,
        actor_id: ActorFilter = None,
        action: ActionFilter = None,
        from_: FromFilter = None,
        to: ToFilter = None,
    ) -> Stream:
        """Every matching entry, oldest first (by seq), streamed: a JSON array, NDJSON or CSV
        with a header. The export itself is recorded (`audit.exported`) before it starts."""
        principal, brand = _principal(request)
        pairs = filters(post_id, actor_id, action, from_, to)
        async with tenant_transaction(state.pool, brand) as conn:
            await record(
                conn,
                brand_id=brand,
                actor=actor_from_request(request, principal),
                action="audit.exported",
                at=state.clock(),
                metadata={
                    "format": fmt,
                    "filters": {
                        k: str(v)
                        for k, v in {
                            "post_id": post_id,
                            "actor_id": actor_id,
                            "action": action,
                            "from": from_,
                            "to": to,
                        }.items()
                        if v is not None
                    },
                },
            )
        stamp = state.clock().strftime("%Y%m%dT%H%M%SZ")
        return Stream(
            export_stream(state.pool, brand, pairs, fmt),
            media_type=MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="audit-{stamp}.{fmt}"',
                "Cache-Control": "no-store",
            },
        )

    @get("/verify")
    async def verify(self, request: Request[Any, Any, Any], state: State) -> VerifyOut:
        """Recompute the brand's whole chain in seq order: `valid`, how many entries were
        `checked`, and the first entry that does not hold (`first_bad_id`) with why."""
        _, brand = _principal(request)
        async with tenant_transaction(state.pool, brand) as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            result = await chain.verify(conn, brand)
        return VerifyOut(
            valid=result.valid,
            checked=result.checked,
            first_bad_id=result.first_bad_id,
            first_bad_seq=result.first_bad_seq,
            problem=result.problem,
            last_seq=result.last_seq,
            last_hash=result.last_hash.hex(),
        )


SubjectId = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=320,
        pattern=PRINTABLE,
        description="a user id, `client:<email>` or an email",
    ),
]


class ErasureOut(BaseModel):
    subject: str
    erased: dict[str, int]  # rows changed per table


class PrivacyController(Controller):
    """GDPR access and erasure within the caller's brand (``audit.privacy``)."""

    path = "/v1/privacy/subjects"
    tags = ["privacy"]
    guards = ADMIN

    @post("/{subject_id:str}/export", status_code=200)
    async def export_subject(
        self, request: Request[Any, Any, Any], state: State, subject_id: FromPath[SubjectId]
    ) -> dict[str, Any]:
        """Everything the brand holds about the subject: audit entries with their personal
        data, comments, review links, client settings, memberships. Recorded as
        `privacy.exported` (the subject by pseudonym)."""
        principal, brand = _principal(request)
        async with tenant_transaction(state.pool, brand) as conn:
            subject = await privacy.resolve(conn, subject_id)
            found = await privacy.export(conn, subject)
            await record(
                conn,
                brand_id=brand,
                actor=actor_from_request(request, principal),
                action="privacy.exported",
                at=state.clock(),
                metadata={
                    "subject": subject_id,
                    "audit_entries": len(found["audit_entries"]),
                },
            )
        return found

    @post("/{subject_id:str}/erase", status_code=200)
    async def erase_subject(
        self, request: Request[Any, Any, Any], state: State, subject_id: FromPath[SubjectId]
    ) -> ErasureOut:
        """Remove the subject's personal data in one transaction; the audit chain still
        verifies. Recorded as `privacy.erased` (the subject by pseudonym, the counts)."""
        principal, brand = _principal(request)
        async with tenant_transaction(state.pool, brand) as conn:
            subject = await privacy.resolve(conn, subject_id)
            counts = await privacy.erase(conn, subject)
            await record(
                conn,
                brand_id=brand,
                actor=actor_from_request(request, principal),
                action="privacy.erased",
                at=state.clock(),
                metadata={"subject": subject_id, "erased": counts},
            )
        return ErasureOut(subject=subject_id, erased=counts)
