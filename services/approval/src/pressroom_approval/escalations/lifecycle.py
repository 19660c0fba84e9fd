"""The approvals feature's hooks: schedule a round's escalations, close them, list them.

A1 calls these in the transaction that changes the approval (the brand's tenant transaction
or the consumer's with the brand set), so an approval and its escalations never disagree: a
decision that commits has closed every pending step, and a step that was sent before the
decision stays ``sent``.

Default rules: a brand's first approval creates them (a reminder to managers after 24 h, an
escalation to admins after 48 h), once: ``escalation_defaults`` remembers it, so a brand
whose admin deleted every rule gets none back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

CLOSED_AS = {
    "approved": "resolved",
    "rejected": "resolved",
    "expired": "cancelled",
    "voided": "cancelled",
    "cancelled": "cancelled",
    "superseded": "cancelled",
}


@dataclass(frozen=True)
class DefaultRule:
    rule_type: str
    trigger_hours: int
    role: str


DEFAULT_RULES = (
    DefaultRule("reminder_24h", 24, "manager"),
    DefaultRule("escalate_48h", 48, "admin"),
)


async def ensure_default_rules(conn: asyncpg.Connection, brand_id: UUID, at: datetime) -> None:
    """The brand's default rules, the first time it needs rules (racing callers make them
    once: the second waits on the ``escalation_defaults`` key and then finds it)."""
    made = await conn.fetchval(
        "INSERT INTO escalation_defaults (brand_id, created_at) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING brand_id",
        brand_id,
        at,
    )
    if made is None:
        return
    await conn.executemany(
        "INSERT INTO escalation_rules (id, brand_id, rule_type, trigger_hours, target_type, "
        "escalate_to_role, notify_via, enabled, respect_timezone, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, 'role', $5, ARRAY['email'], true, true, $6, $6) "
        "ON CONFLICT (brand_id, rule_type) DO NOTHING",
        [(uuid.uuid4(), brand_id, r.rule_type, r.trigger_hours, r.role, at) for r in DEFAULT_RULES],
    )


async def on_requested(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    approval_id: UUID,
    post_id: UUID,
    requested_at: datetime,
) -> None:
    """Schedule one escalation step per enabled rule of the brand for this approval round.

    A round is identified by ``requested_at``: the same request again (a redelivered event)
    schedules nothing new; a new round (a re-submission) first cancels what the previous
    round left pending."""
    await ensure_default_rules(conn, brand_id, requested_at)
    await _close(conn, approval_id, requested_at, "superseded", keep_round=requested_at)
    rows = await conn.fetch(
        """
        INSERT INTO escalation_events (id, brand_id, approval_id, post_id, rule_id, rule_type,
            target_role, channels, respect_timezone, requested_at, due_at, status,
            next_attempt_at, created_at)
        SELECT gen_random_uuid(), r.brand_id, $2, $3, r.id, r.rule_type, r.escalate_to_role,
            r.notify_via, r.respect_timezone, $4::timestamptz,
            $4::timestamptz + make_interval(hours => r.trigger_hours),
            'pending', $4::timestamptz + make_interval(hours => r.trigger_hours), $4::timestamptz
        FROM escalation_rules r
        WHERE r.brand_id = $1 AND r.enabled
        ON CONFLICT (approval_id, rule_id, requested_at) DO NOTHING
        RETURNING id, rule_type, due_at
        """,
        brand_id,
        approval_id,
        post_id,
        requested_at,
    )
    await conn.executemany(
        "INSERT INTO escalation_history (brand_id, escalation_id, approval_id, step, detail, at) "
        "VALUES ($1, $2, $3, 'created', $4::jsonb, $5)",
        [
            (
                brand_id,
                row["id"],
                approval_id,
                {"rule_type": row["rule_type"], "due_at": row["due_at"].isoformat()},
                requested_at,
            )
            for row in rows
        ],
    )


async def on_closed(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    approval_id: UUID,
    at: datetime,
    outcome: str,
) -> None:
    """Close every pending step of the approval at once: ``resolved`` for a decision,
    ``cancelled`` otherwise, each with a history row. A step a scheduler holds loses its
    lease here, so its late outcome is not recorded (its send may already have happened)."""
    if outcome not in CLOSED_AS:
        raise ValueError(f"unknown outcome {outcome!r}; one of {sorted(CLOSED_AS)}")
    del brand_id  # the rows carry it; RLS confines the statement to the caller's brand
    await _close(conn, approval_id, at, outcome)


async def _close(
    conn: asyncpg.Connection,
    approval_id: UUID,
    at: datetime,
    outcome: str,
    *,
    keep_round: datetime | None = None,
) -> None:
    status = CLOSED_AS[outcome]
    await conn.execute(
        """
        WITH closed AS (
            UPDATE escalation_events
            SET status = $2, closed_at = $3, lease_token = NULL, lease_until = NULL
            WHERE approval_id = $1 AND status = 'pending'
              AND ($5::timestamptz IS NULL OR requested_at <> $5)
            RETURNING id, brand_id, approval_id
        )
        INSERT INTO escalation_history (brand_id, escalation_id, approval_id, step, detail, at)
        SELECT brand_id, id, approval_id, $2, jsonb_build_object('outcome', $4::text), $3
        FROM closed
        """,
        approval_id,
        status,
        at,
        outcome,
        keep_round,
    )


async def escalations_of(conn: asyncpg.Connection, approval_id: UUID) -> list[dict[str, Any]]:
    """Every escalation step of the approval (all rounds, oldest first) with its history."""
    events = await conn.fetch(
        "SELECT id, rule_id, rule_type, target_role, channels, status, due_at, "
        "next_attempt_at, attempts, recipients, last_error, sent_at, closed_at, requested_at "
        "FROM escalation_events WHERE approval_id = $1 ORDER BY requested_at, due_at, id",
        approval_id,
    )
    history = await conn.fetch(
        "SELECT escalation_id, step, channel, recipient, detail, at FROM escalation_history "
        "WHERE approval_id = $1 ORDER BY id",
        approval_id,
    )
    steps: dict[UUID, list[dict[str, Any]]] = {}
    for row in history:
        detail = row["detail"]
        steps.setdefault(row["escalation_id"], []).append(
            {
                "step": row["step"],
                "channel": row["channel"],
                "recipient": row["recipient"],
                "detail": json.loads(detail) if isinstance(detail, str) else detail,
                "at": row["at"],
            }
        )
    return [
        {
            "id": row["id"],
            "rule_id": row["rule_id"],
            "rule_type": row["rule_type"],
            "target_role": row["target_role"],
            "channels": list(row["channels"]),
            "status": row["status"],
            "requested_at": row["requested_at"],
            "due_at": row["due_at"],
            "next_attempt_at": row["next_attempt_at"] if row["status"] == "pending" else None,
            "attempts": row["attempts"],
            "recipients": row["recipients"],
            "last_error": row["last_error"],
            "sent_at": row["sent_at"],
            "closed_at": row["closed_at"],
            "history": steps.get(row["id"], []),
        }
        for row in events
    ]
