"""An audit entry as the API shows it: the chained fields with the personal data while it
is held (shared by the log's routes and the subject export)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

# Every entry with its personal data (NULL once erased). A subquery so that the kit's
# pagination and the filters can name created_at and the chained columns.
ENTRY_SELECT = """
SELECT * FROM (
    SELECT l.id, l.seq, l.at, l.at AS created_at, l.actor_id, l.actor_ref, l.action, l.post_id,
           l.approval_id, l.metadata, l.prev_hash, l.hash,
           p.email, p.ip, p.user_agent, p.name
    FROM audit_logs l LEFT JOIN audit_personal_data p ON p.audit_id = l.id
) entries
"""


class PersonalData(BaseModel):
    email: str | None
    ip: str | None
    user_agent: str | None
    name: str | None


class AuditEntry(BaseModel):
    id: uuid.UUID
    seq: int
    at: datetime
    actor_id: str
    actor_ref: str
    action: str
    post_id: uuid.UUID | None
    approval_id: uuid.UUID | None
    metadata: dict[str, Any]
    actor: PersonalData | None  # null: none was recorded, or it was erased
    prev_hash: str
    hash: str


def entry(row: asyncpg.Record | dict[str, Any]) -> AuditEntry:
    personal = (
        PersonalData(
            email=row["email"], ip=row["ip"], user_agent=row["user_agent"], name=row["name"]
        )
        if any(row[k] is not None for k in ("email", "ip", "user_agent", "name"))
        else None
    )
    metadata = row["metadata"]
    return AuditEntry(
        id=row["id"],
        seq=row["seq"],
        at=row["at"],
        actor_id=row["actor_id"],
        actor_ref=row["actor_ref"],
        action=row["action"],
        post_id=row["post_id"],
        approval_id=row["approval_id"],
        metadata=json.loads(metadata) if isinstance(metadata, str) else metadata,
        actor=personal,
        prev_hash=bytes(row["prev_hash"]).hex(),
        hash=bytes(row["hash"]).hex(),
    )
