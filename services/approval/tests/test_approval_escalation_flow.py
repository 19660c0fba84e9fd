"""Escalations end to end on a fake clock: the reminder at 24 h to managers and the
escalation at 48 h to admins over real SMTP, in each recipient's language; a decision
closing what is pending; two scheduler replicas sending each step once; SMTP failures
retried with backoff; working hours across a DST change.

The session's broker replays earlier tests' events into each fresh database, so the
assertions look at this test's brand only (its members' addresses carry the brand)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from approval_testkit import Service, as_owner, outbox, submitted_event
from mail_testkit import (
    add_members,
    address,
    drain,
    escalation_service,
    events_of,
    history,
    html_part,
    scheduler,
    text_part,
)
from pressroom_approval.escalations.scheduler import EscalationScheduler
from pressroom_contracts.topics import Topic
from pressroom_kit.testing.plugin import TestDatabase

pytestmark = pytest.mark.integration
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday, inside working hours in UTC
MEMBERS = (
    ("ann", "manager"),  # the author: never notified
    ("mo", "manager"),
    ("ada", "admin"),
    ("val", "viewer"),
)


async def approval_id_of(svc: Service, brand: uuid.UUID, post_id: uuid.UUID) -> uuid.UUID:
    row = await svc.row(brand, post_id)
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def escalated(svc: Service, brand: uuid.UUID) -> list[dict[str, object]]:
    return [
        d
        for t, d in await outbox(svc.db)
        if t == "approval.escalated.v1" and d["brand_id"] == str(brand)
    ]


async def test_reminder_at_24h_and_escalation_at_48h_in_each_language(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, *MEMBERS)
        status, body = await svc.call(
            "PUT",
            "/v1/client-settings/mo",
            brand,
            role="admin",
            json={"language": "es", "name": "Mo"},
        )
        assert status == 200, body
        post_id = await svc.submit(brand, author="ann", text="Winter sale <b>now</b>")
        approval_id = await approval_id_of(svc, brand, post_id)
        steps = await events_of(svc, approval_id)
        assert [(s["rule_type"], s["due_at"]) for s in steps] == [
            ("reminder_24h", MONDAY + timedelta(hours=24)),
            ("escalate_48h", MONDAY + timedelta(hours=48)),
        ]

        svc.clock.now = MONDAY + timedelta(hours=23, minutes=59)
        await drain(svc)
        assert mail.of(brand) == []
        svc.clock.now = MONDAY + timedelta(hours=24)
        await drain(svc)
        mo, ada = address("mo", brand), address("ada", brand)
        assert {str(m["To"]) for m in mail.of(brand)} == {ada, f"Mo <{mo}>"}
        spanish = mail.to(mo)[0]
        assert spanish["Subject"].startswith("Recordatorio:")
        assert "Winter sale <b>now</b>" in spanish["Subject"]
        assert "Hola, Mo:" in text_part(spanish)
        assert "Winter sale &lt;b&gt;now&lt;/b&gt;" in html_part(spanish)  # autoescaped
        assert f"/v1/approvals/{approval_id}" in text_part(spanish)
        assert spanish["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(spanish["List-Unsubscribe"]).startswith("<http://gateway.test/v1/unsubscribe/")
        english = mail.to(ada)[0]
        assert english["Subject"].startswith("Reminder:")
        assert english["Message-ID"] != spanish["Message-ID"]

        svc.clock.now = MONDAY + timedelta(hours=48)
        await drain(svc)
        assert len(mail.of(brand)) == 3
        last = mail.of(brand)[-1]
        assert str(last["To"]) == ada
        assert last["Subject"].startswith("Escalation:") and "48" in last["Subject"]

        assert [
            (e["rule_type"], e["target_role"], e["recipients"]) for e in await escalated(svc, brand)
        ] == [
            ("reminder_24h", "manager", 2),
            ("escalate_48h", "admin", 1),
        ]
        view = await svc.approval_of(brand, post_id)
        assert [(e["rule_type"], e["status"]) for e in view["escalations"]] == [
            ("reminder_24h", "sent"),
            ("escalate_48h", "sent"),
        ]
        sent = [h for h in view["escalations"][0]["history"] if h["step"] == "sent"]
        assert sorted(h["recipient"] for h in sent) == ["ada", "mo"]
        svc.clock.now = MONDAY + timedelta(hours=96)
        await drain(svc)
        assert len(mail.of(brand)) == 3  # nothing twice


async def test_a_decision_closes_the_pending_escalations(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, *MEMBERS)
        post_id = await svc.submit(brand, author="ann")
        approval_id = await approval_id_of(svc, brand, post_id)
        svc.clock.now = MONDAY + timedelta(hours=25)
        await drain(svc)
        assert len(mail.of(brand)) == 2

        status, body = await svc.call(
            "POST", f"/v1/approvals/{approval_id}/approve", brand, sub="mo", json={}
        )
        assert status == 200, body
        assert [(e["rule_type"], e["status"]) for e in body["escalations"]] == [
            ("reminder_24h", "sent"),
            ("escalate_48h", "resolved"),
        ]
        svc.clock.now = MONDAY + timedelta(hours=72)
        await drain(svc)
        assert len(mail.of(brand)) == 2
        assert ("resolved", None, None) in await history(svc, approval_id)


async def test_a_resubmission_cancels_the_previous_round(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, *MEMBERS)
        post_id = await svc.submit(brand, author="ann")
        approval_id = await approval_id_of(svc, brand, post_id)
        svc.clock.now = MONDAY + timedelta(hours=1)
        await svc.publish(
            Topic.PUBLISHING.value,
            submitted_event(brand, post_id, submission=2, version=3, author="ann"),
        )
        await svc.wait_row(brand, post_id, lambda r: r["submission"] == 2)
        steps = await events_of(svc, approval_id)
        assert sorted((s["status"], s["requested_at"] == MONDAY) for s in steps) == [
            ("cancelled", True),
            ("cancelled", True),
            ("pending", False),
            ("pending", False),
        ]
        svc.clock.now = MONDAY + timedelta(hours=24, minutes=30)
        await drain(svc)
        assert mail.of(brand) == []  # the old round is not sent
        svc.clock.now = MONDAY + timedelta(hours=25)
        await drain(svc)
        assert len(mail.of(brand)) == 2


async def test_two_scheduler_replicas_send_each_escalation_once(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(fresh_db, kafka_bootstrap, start=MONDAY, escalation_batch=7) as (
        svc,
        mail,
    ):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, *MEMBERS)
        posts = [uuid.uuid4() for _ in range(30)]
        await svc.publish(
            Topic.PUBLISHING.value, *(submitted_event(brand, p, author="ann") for p in posts)
        )
        for post_id in posts:
            await svc.wait_row(brand, post_id)
        first = scheduler(svc)
        second = EscalationScheduler(
            svc.pool,
            first.settings,
            mailer=first.mailer,
            slack=first.slack,
            box=first.box,
            tokens=first.tokens,
            clock=svc.clock,
        )
        svc.clock.now = MONDAY + timedelta(hours=24)
        while any(await asyncio.gather(first.step(), second.step(), first.step(), second.step())):
            pass
        ids = [str(m["Message-ID"]) for m in mail.of(brand)]
        assert len(ids) == 60 and len(set(ids)) == 60  # 30 reminders to mo and ada, once each
        sent = await as_owner(
            svc.db,
            "SELECT count(*) AS n FROM escalation_events WHERE status = 'sent' "
            "AND rule_type = 'reminder_24h' AND recipients = 2 AND brand_id = $1",
            brand,
        )
        assert sent[0]["n"] == 30
        assert len(await escalated(svc, brand)) == 30


async def test_smtp_failures_are_retried_with_backoff_then_sent(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(
        fresh_db, kafka_bootstrap, start=MONDAY, escalation_retry_base_s=30.0
    ) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, ("ann", "manager"), ("mo", "manager"))
        post_id = await svc.submit(brand, author="ann")
        approval_id = await approval_id_of(svc, brand, post_id)
        due = MONDAY + timedelta(hours=24)
        mail.refuse_to[address("mo", brand)] = 2
        svc.clock.now = due
        await drain(svc)
        reminder = (await events_of(svc, approval_id))[0]
        assert (reminder["status"], reminder["attempts"]) == ("pending", 1)
        assert reminder["next_attempt_at"] == due + timedelta(seconds=30)
        assert "451" in reminder["last_error"]

        svc.clock.now = due + timedelta(seconds=29)
        await drain(svc)
        assert (await events_of(svc, approval_id))[0]["attempts"] == 1
        svc.clock.now = due + timedelta(seconds=30)
        await drain(svc)
        reminder = (await events_of(svc, approval_id))[0]
        assert reminder["attempts"] == 2
        assert reminder["next_attempt_at"] == due + timedelta(seconds=90)  # 30 s, then 60 s

        svc.clock.now = due + timedelta(seconds=90)
        await drain(svc)
        reminder = (await events_of(svc, approval_id))[0]
        assert (reminder["status"], reminder["attempts"], reminder["recipients"]) == ("sent", 3, 1)
        assert mail.refuse_to[address("mo", brand)] == 0 and len(mail.of(brand)) == 1
        steps = [s for s, _, _ in await history(svc, approval_id) if s != "created"]
        assert steps[:5] == ["failed", "retried", "failed", "retried", "sent"]


async def test_smtp_down_until_max_attempts_fails_the_step(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(
        fresh_db,
        kafka_bootstrap,
        start=MONDAY,
        escalation_max_attempts=2,
        escalation_retry_base_s=1.0,
    ) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, ("mo", "manager"))
        post_id = await svc.submit(brand, author="ann")
        approval_id = await approval_id_of(svc, brand, post_id)
        mail.refuse_to[address("mo", brand)] = 10_000
        svc.clock.now = MONDAY + timedelta(hours=24)
        await drain(svc)
        svc.clock.now += timedelta(seconds=1)
        await drain(svc)
        reminder = (await events_of(svc, approval_id))[0]
        assert (reminder["status"], reminder["attempts"]) == ("failed", 2)
        svc.clock.now += timedelta(hours=1)
        await drain(svc)
        assert (await events_of(svc, approval_id))[0]["attempts"] == 2
        assert await escalated(svc, brand) == []


async def test_working_hours_hold_a_weekend_send_until_monday_across_dst(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    # Friday 2026-10-23 15:00 in Berlin (CEST, UTC+2); Berlin leaves DST on Sunday the 25th.
    friday = datetime(2026, 10, 23, 13, 0, tzinfo=UTC)
    async with escalation_service(fresh_db, kafka_bootstrap, start=friday) as (svc, mail):
        brand = await svc.brand("Acme", "Europe/Berlin")
        await add_members(svc, brand, ("ann", "manager"), ("mo", "manager"), ("nia", "manager"))
        status, _ = await svc.call(
            "PUT",
            "/v1/client-settings/nia",
            brand,
            role="admin",
            json={"timezone": "America/New_York", "language": "fr"},
        )
        assert status == 200
        post_id = await svc.submit(brand, author="ann")
        approval_id = await approval_id_of(svc, brand, post_id)

        svc.clock.now = friday + timedelta(hours=24)  # Saturday
        await drain(svc)
        assert mail.of(brand) == []
        reminder = (await events_of(svc, approval_id))[0]
        berlin_monday = datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # 09:00 CET (UTC+1)
        assert reminder["next_attempt_at"] == berlin_monday

        svc.clock.now = berlin_monday - timedelta(minutes=1)
        await drain(svc)
        assert mail.of(brand) == []
        svc.clock.now = berlin_monday
        await drain(svc)
        assert [str(m["To"]) for m in mail.of(brand)] == [address("mo", brand)]
        reminder = (await events_of(svc, approval_id))[0]
        new_york_monday = datetime(2026, 10, 26, 13, 0, tzinfo=UTC)  # 09:00 EDT (UTC-4)
        assert (reminder["status"], reminder["next_attempt_at"]) == ("pending", new_york_monday)

        svc.clock.now = new_york_monday
        await drain(svc)
        assert [str(m["To"]) for m in mail.of(brand)] == [
            address("mo", brand),
            address("nia", brand),
        ]
        assert mail.of(brand)[1]["Subject"].startswith("Rappel")
        reminder = (await events_of(svc, approval_id))[0]
        assert (reminder["status"], reminder["recipients"]) == ("sent", 2)
        assert [s for s, c, r in await history(svc, approval_id) if r == "nia"] == [
            "deferred",
            "deferred",
            "sent",
        ]
