"""The escalation scheduler: sends each due escalation step once, with any number of replicas.

1. **Claim.** ``escalation_claim_due`` (SECURITY DEFINER, ``FOR UPDATE SKIP LOCKED``) leases
   due steps across brands with a fresh token (``pressroom_kit.leases.LeasedRows``). Two
   replicas never hold one step; a replica that dies leaves its lease to expire and another
   takes the step over.
2. **Prepare** (a read in the step's brand): the approval, the brand, the recipients (members
   whose role is at least the rule's role, with an email, never the post's author), their
   settings, and what earlier attempts already delivered (``escalation_history``).
3. **Send** with no transaction open: each outstanding email and the Slack message.
   Preferences are honoured first (an unsubscribed recipient is a ``skipped`` row, not a
   failure); a recipient outside working hours (``respect_timezone``) waits for their next
   opening (``deferred``).
4. **Mark** in one fenced transaction (``WHERE id = $1 AND lease_token = $2``): the history
   rows, the step's new state and, once every recipient is done, ``approval.escalated.v1``
   through the outbox. A holder whose lease was lost (taken over, or the approval decided
   meanwhile: ``on_closed`` clears the token) records nothing.

Delivery is at least once: a crash after the SMTP ``250`` and before the mark sends that
email again on the next attempt; the Message-ID is the same every time
(``delivery.message_id``), so a receiver can drop the duplicate. Failures that may pass
(SMTP 4xx, connection errors, Slack 429/5xx) are retried after
``escalation_retry_base_s * 2^(n-1)`` (capped at 6 h), up to ``escalation_max_attempts``
attempts; only what has not gone out is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from pressroom_contracts.envelope import CloudEvent
from pressroom_contracts.events.approval import ApprovalEscalated
from pressroom_contracts.topics import Topic
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.leases import Lease, LeasedRows, LeaseLost
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import OutboxMessage, write_outbox
from pressroom_kit.secrets import SecretBox

from pressroom_approval.escalations.delivery import (
    DeliveryError,
    Mailer,
    Notice,
    Recipient,
    Slack,
    render_email,
    slack_message,
)
from pressroom_approval.escalations.hours import is_open, next_opening, zone
from pressroom_approval.escalations.tokens import Unsubscribe, UnsubscribeTokens
from pressroom_approval.settings import ApprovalSettings

log = get_logger(__name__)
Clock = Callable[[], datetime]
ROLE_RANK = {"viewer": 0, "manager": 1, "admin": 2}
MAX_BACKOFF = timedelta(hours=6)
SOURCE = "/pressroom/approval"
EVENT_NAMESPACE = uuid.UUID("6f1d3c52-4a0e-4d7e-9c55-1b8f3f0a9e21")
SLACK = ("slack", "webhook")


@dataclass
class Delivery:
    """One outcome to record: ``step`` is sent, failed, skipped or deferred."""

    channel: str
    recipient: str
    step: str
    detail: dict[str, Any] = field(default_factory=dict)
    transient: bool = False
    until: datetime | None = None  # deferred: the recipient's next opening


@dataclass
class Prepared:
    notice: Notice
    emails: list[Recipient]
    skipped: list[Delivery]
    slack_url: str | None
    slack_tz: Any
    failures: int  # earlier failed attempts (the backoff exponent)
    sent_before: set[str]  # the channels earlier attempts delivered on


class EscalationScheduler:
    beat_name = "escalations"

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: ApprovalSettings,
        *,
        mailer: Mailer,
        slack: Slack,
        box: SecretBox,
        tokens: UnsubscribeTokens,
        clock: Clock,
        heartbeats: Heartbeats | None = None,
        concurrency: int = 50,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.mailer = mailer
        self.slack = slack
        self.box = box
        self.tokens = tokens
        self.clock = clock
        self.heartbeats = heartbeats or Heartbeats()
        self.heartbeats.register(self.beat_name, max_age=max(30.0, settings.escalation_poll_s * 20))
        self._limit = asyncio.Semaphore(concurrency)
        self.leases = LeasedRows(
            "escalation_events",
            duration=timedelta(seconds=settings.escalation_lease_s),
            clock=lambda: self.clock(),
        )

    # --- driving ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is due until ``stop``; sleeps until the next step is due, at most
        ``escalation_poll_s`` (which also catches steps other replicas created)."""
        while not stop.is_set():
            try:
                claimed = await self.step()
                self.heartbeats.beat(self.beat_name, detail=f"{claimed} sent or tried")
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("escalation round failed; retrying", error=str(exc))
                claimed = 0
            if claimed >= self.settings.escalation_batch:
                continue  # a backlog: claim the next batch at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=await self._idle_s())

    async def _idle_s(self) -> float:
        poll = self.settings.escalation_poll_s
        try:
            next_due: datetime | None = await self.pool.fetchval("SELECT escalation_next_due()")
        except (asyncpg.PostgresError, OSError):
            return poll
        if next_due is None:
            return poll
        return min(poll, max(0.01, (next_due - self.clock()).total_seconds()))

    async def step(self) -> int:
        """Claim what is due now (on the injected clock) and handle all of it; tests and
        the benchmark drive time this way. Returns how many steps were claimed."""
        claimed = await self.leases.claim(
            self.pool,
            "SELECT * FROM escalation_claim_due($1, $2, $3)",
            self.settings.escalation_batch,
        )
        await asyncio.gather(*(self._guarded(lease, row) for lease, row in claimed))
        return len(claimed)

    async def _guarded(self, lease: Lease, row: asyncpg.Record) -> None:
        async with self._limit:
            try:
                await self.handle(lease, row)
            except LeaseLost:
                log.info("escalation lease lost; outcome not recorded", id=str(lease.row_id))
            except Exception:
                # The lease expires and another round takes the step again.
                log.exception("escalation step failed", id=str(lease.row_id))

    # --- one step --------------------------------------------------------------------------

    async def handle(self, lease: Lease, row: asyncpg.Record) -> None:
        now = self.clock()
        brand_id: UUID = row["brand_id"]
        async with tenant_transaction(self.pool, brand_id) as conn:
            # A full lease for the sends: a batch is claimed at once and worked through
            # ``concurrency`` steps at a time, so a step queued behind slow sends would start
            # with its lease nearly gone and another replica would take it mid-send.
            lease = await self.leases.renew(conn, lease)
            prepared = await self._prepare(conn, lease, row)
        if prepared is None:
            return
        results = list(prepared.skipped)
        results += await asyncio.gather(
            *(self._email(prepared, row, r, now) for r in prepared.emails)
        )
        if prepared.slack_url is not None:
            results.append(await self._slack(prepared, row, now))
        async with tenant_transaction(self.pool, brand_id) as conn:
            await self._mark(conn, lease, row, prepared, results, now)

    async def _prepare(
        self, conn: asyncpg.Connection, lease: Lease, row: asyncpg.Record
    ) -> Prepared | None:
        current = await conn.fetchrow(
            "SELECT status FROM escalation_events WHERE id = $1 AND lease_token = $2",
            lease.row_id,
            lease.token,
        )
        if current is None or current["status"] != "pending":
            raise LeaseLost(lease)
        approval = await conn.fetchrow(
            "SELECT * FROM post_approvals WHERE id = $1", row["approval_id"]
        )
        if approval is None or approval.get("status", "pending") != "pending":
            # Decided without on_closed having run yet (or gone): close it here.
            await self.leases.execute(
                conn,
                lease,
                "UPDATE escalation_events SET status = 'cancelled', closed_at = $3, "
                "lease_token = NULL, lease_until = NULL WHERE id = $1 AND lease_token = $2",
                self.clock(),
            )
            await self._history(
                conn, row, [Delivery("", "", "cancelled", {"outcome": "not_pending"})], self.clock()
            )
            return None
        brand = await conn.fetchrow(
            "SELECT name, timezone FROM approval_brands WHERE brand_id = $1", row["brand_id"]
        )
        brand_tz = zone(brand["timezone"] if brand else None)
        notice = self._notice(
            row, approval, brand["name"] if brand and brand["name"] else "Pressroom"
        )
        history = await conn.fetch(
            "SELECT step, channel, recipient, detail FROM escalation_history "
            "WHERE escalation_id = $1",
            row["id"],
        )
        done = {
            (h["channel"], h["recipient"])
            for h in history
            if h["step"] in ("sent", "skipped")
            or (h["step"] == "failed" and not (h["detail"] or {}).get("transient", False))
        }
        failures = sum(1 for h in history if h["step"] == "retried")
        emails: list[Recipient] = []
        skipped: list[Delivery] = []
        if "email" in row["channels"]:
            emails, skipped = await self._recipients(conn, row, approval, brand_tz, done)
        slack_url = None
        if "slack" in row["channels"] and SLACK not in done:
            slack_url = await self._slack_url(conn, row)
            if slack_url is None:
                skipped.append(Delivery(*SLACK, "skipped", {"reason": "no_webhook"}))
        sent_before = {h["channel"] for h in history if h["step"] == "sent"}
        return Prepared(notice, emails, skipped, slack_url, brand_tz, failures, sent_before)

    def _notice(self, row: asyncpg.Record, approval: asyncpg.Record, brand_name: str) -> Notice:
        texts = approval.get("texts") or {}
        text = next((t for t in texts.values() if t), "") if isinstance(texts, dict) else ""
        first_line = text.strip().splitlines()[0] if text.strip() else ""
        title = first_line[:60] + ("…" if len(first_line) > 60 else "") or str(row["post_id"])[:8]
        platforms = approval.get("platforms") or (list(texts) if isinstance(texts, dict) else [])
        hours = round((row["due_at"] - row["requested_at"]).total_seconds() / 3600)
        return Notice(
            escalation_id=row["id"],
            approval_id=row["approval_id"],
            post_id=row["post_id"],
            brand_name=brand_name,
            rule_type=row["rule_type"],
            hours=hours,
            title=title,
            excerpt=text[:280],
            platforms=tuple(platforms),
            scheduled_at=approval.get("scheduled_at"),
            post_url=f"{self.settings.public_url}/v1/approvals/{row['approval_id']}",
        )

    async def _recipients(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        approval: asyncpg.Record,
        brand_tz: Any,
        done: set[tuple[str, str]],
    ) -> tuple[list[Recipient], list[Delivery]]:
        members = await conn.fetch(
            "SELECT user_id::text AS user_id, email, role FROM approval_members "
            "WHERE brand_id = $1 AND email IS NOT NULL ORDER BY user_id",
            row["brand_id"],
        )
        wanted = ROLE_RANK.get(row["target_role"], 2)
        author = approval.get("author")
        members = [
            m
            for m in members
            if ROLE_RANK.get(m["role"], -1) >= wanted
            and m["user_id"] != author
            and ("email", m["user_id"]) not in done
        ]
        if not members:
            return [], []
        settings = await conn.fetch(
            "SELECT * FROM client_settings WHERE client_id = ANY($1::text[]) "
            "OR lower(email) = ANY($2::text[])",
            [m["user_id"] for m in members],
            [m["email"].lower() for m in members],
        )
        by_id = {s["client_id"]: s for s in settings}
        by_email = {s["email"].lower(): s for s in settings if s["email"]}
        recipients: list[Recipient] = []
        skipped: list[Delivery] = []
        for m in members:
            s = by_id.get(m["user_id"]) or by_email.get(m["email"].lower())
            if s is not None and unsubscribed(s, row["rule_type"]):
                skipped.append(
                    Delivery("email", m["user_id"], "skipped", {"reason": "unsubscribed"})
                )
                continue
            recipients.append(
                Recipient(
                    client_id=m["user_id"],
                    email=m["email"],
                    name=(s["name"] if s is not None else None),
                    language=(s["language"] if s is not None else "en"),
                    timezone=zone(s["timezone"]) if s is not None and s["timezone"] else brand_tz,
                )
            )
        return recipients, skipped

    async def _slack_url(self, conn: asyncpg.Connection, row: asyncpg.Record) -> str | None:
        if row["rule_id"] is None:
            return None
        sealed = await conn.fetchval(
            "SELECT slack_webhook_url FROM escalation_rules WHERE id = $1", row["rule_id"]
        )
        if not sealed:
            return None
        try:
            return self.box.decrypt(sealed, context=str(row["rule_id"]))
        except ValueError:
            log.error("a rule's Slack webhook does not open", rule_id=str(row["rule_id"]))
            return None

    def _outside_hours(self, row: asyncpg.Record, tz: Any, now: datetime) -> datetime | None:
        s = self.settings
        if not row["respect_timezone"] or is_open(
            now, tz, s.working_hours_start, s.working_hours_end
        ):
            return None
        return next_opening(now, tz, s.working_hours_start, s.working_hours_end)

    async def _email(
        self, prepared: Prepared, row: asyncpg.Record, recipient: Recipient, now: datetime
    ) -> Delivery:
        later = self._outside_hours(row, recipient.timezone, now)
        if later is not None:
            return Delivery(
                "email",
                recipient.client_id,
                "deferred",
                {"until": later.isoformat(), "timezone": recipient.timezone.key},
                until=later,
            )
        base = f"{self.settings.public_url}/v1/unsubscribe/"
        brand_id = row["brand_id"]
        message = render_email(
            prepared.notice,
            recipient,
            mail_from=self.settings.mail_from,
            unsubscribe_url=base
            + self.tokens.sign(Unsubscribe(brand_id, recipient.client_id, row["rule_type"])),
            unsubscribe_all_url=base + self.tokens.sign(Unsubscribe(brand_id, recipient.client_id)),
            now=now,
        )
        try:
            await self.mailer.send(message)
        except DeliveryError as exc:
            return Delivery(
                "email",
                recipient.client_id,
                "failed",
                {"error": str(exc), "code": exc.code, "transient": exc.transient},
                transient=exc.transient,
            )
        return Delivery(
            "email",
            recipient.client_id,
            "sent",
            {"language": recipient.language, "message_id": message["Message-ID"]},
        )

    async def _slack(self, prepared: Prepared, row: asyncpg.Record, now: datetime) -> Delivery:
        later = self._outside_hours(row, prepared.slack_tz, now)
        if later is not None:
            return Delivery(*SLACK, "deferred", {"until": later.isoformat()}, until=later)
        assert prepared.slack_url is not None
        try:
            await self.slack.post(
                prepared.slack_url, slack_message(prepared.notice, row["target_role"])
            )
        except DeliveryError as exc:
            return Delivery(
                *SLACK,
                "failed",
                {"error": str(exc), "code": exc.code, "transient": exc.transient},
                transient=exc.transient,
            )
        return Delivery(*SLACK, "sent")

    async def _mark(
        self,
        conn: asyncpg.Connection,
        lease: Lease,
        row: asyncpg.Record,
        prepared: Prepared,
        results: list[Delivery],
        now: datetime,
    ) -> None:
        tried = any(r.step in ("sent", "failed") for r in results)
        attempts = row["attempts"] + (1 if tried else 0)
        retry = [r for r in results if r.transient]
        waits = [r.until for r in results if r.until is not None]
        steps = list(results)
        if retry and attempts >= self.settings.escalation_max_attempts:
            status, next_at = "failed", None
            error = retry[0].detail.get("error")
            steps.append(Delivery("", "", "failed", {"final": True, "attempts": attempts}))
        elif retry or waits:
            status = "pending"
            candidates = list(waits)
            if retry:
                backoff = timedelta(
                    seconds=self.settings.escalation_retry_base_s * 2**prepared.failures
                )
                candidates.append(now + min(backoff, MAX_BACKOFF))
                steps.append(
                    Delivery(
                        "",
                        "",
                        "retried",
                        {"attempt": attempts, "next_attempt_at": min(candidates).isoformat()},
                    )
                )
            next_at = min(candidates)
            error = retry[0].detail.get("error") if retry else None
        else:
            failed = [r for r in results if r.step == "failed"]
            status, next_at = "sent", None
            error = failed[0].detail.get("error") if failed else None
        sent_now = sum(1 for r in results if r.step == "sent" and r.channel == "email")
        sent_channels = prepared.sent_before | {r.channel for r in results if r.step == "sent"}
        if status == "sent" and not sent_channels and any(r.step == "failed" for r in results):
            status = "failed"  # every delivery was refused for good
        await self.leases.execute(
            conn,
            lease,
            "UPDATE escalation_events SET status = $3, attempts = $4, "
            "next_attempt_at = COALESCE($5, next_attempt_at), recipients = recipients + $6, "
            "last_error = $7, sent_at = CASE WHEN $3 = 'sent' THEN $8 ELSE sent_at END, "
            "lease_token = NULL, lease_until = NULL WHERE id = $1 AND lease_token = $2",
            status,
            attempts,
            next_at,
            sent_now,
            error,
            now,
        )
        await self._history(conn, row, steps, now)
        if status == "sent" and sent_channels:
            recipients = row["recipients"] + sent_now
            await write_outbox(conn, [self._escalated(row, sorted(sent_channels), recipients, now)])

    async def _history(
        self, conn: asyncpg.Connection, row: asyncpg.Record, steps: Iterable[Delivery], at: datetime
    ) -> None:
        await conn.executemany(
            "INSERT INTO escalation_history (brand_id, escalation_id, approval_id, step, "
            "channel, recipient, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (
                    row["brand_id"],
                    row["id"],
                    row["approval_id"],
                    d.step,
                    d.channel or None,
                    d.recipient or None,
                    d.detail,
                    at,
                )
                for d in steps
            ],
        )

    def _escalated(
        self, row: asyncpg.Record, channels: list[str], recipients: int, at: datetime
    ) -> OutboxMessage:
        payload = ApprovalEscalated(
            approval_id=row["approval_id"],
            post_id=row["post_id"],
            brand_id=row["brand_id"],
            escalation_id=row["id"],
            rule_id=row["rule_id"],
            rule_type=row["rule_type"],
            target_role=row["target_role"],
            channels=channels,
            recipients=recipients,
            escalated_at=at,
        )
        event = CloudEvent(
            id=uuid.uuid5(EVENT_NAMESPACE, f"{row['id']}:escalated"),
            source=SOURCE,
            type=ApprovalEscalated.event_type,
            subject=str(row["approval_id"]),
            brandid=row["brand_id"],
            time=at,
            data=payload.model_dump(mode="json"),
        )
        return OutboxMessage(Topic.APPROVAL.value, str(row["approval_id"]), event)


def unsubscribed(settings: asyncpg.Record | dict[str, Any], rule_type: str) -> bool:
    """Whether a recipient's settings refuse emails of ``rule_type``: unsubscribed from all,
    from the type (``reminder_24h``) or its kind (``reminder``), or the preference is off."""
    if settings["unsubscribed_from_all"]:
        return True
    kind = rule_type.split("_", 1)[0]
    types = set(settings["unsubscribed_types"] or ())
    prefs = settings["email_preferences"] or {}
    return bool(
        rule_type in types
        or kind in types
        or prefs.get(rule_type) is False
        or prefs.get(kind) is False
    )
