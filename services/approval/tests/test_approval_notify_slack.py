"""Slack notifications: a rule's incoming webhook (sealed at rest, never returned) gets a
Block Kit message with a button to the post; a 503 is retried, a 404 is not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from approval_testkit import as_owner
from mail_testkit import add_members, drain, escalation_service, events_of, history, slack_server
from pressroom_kit.testing.plugin import TestDatabase

pytestmark = pytest.mark.integration
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


async def test_a_slack_rule_posts_blocks_and_retries_a_503(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with (
        slack_server() as slack,
        escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, mail),
    ):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, ("mo", "manager"))
        status, rule = await svc.call(
            "POST",
            "/v1/escalation-rules",
            brand,
            role="admin",
            json={
                "rule_type": "reminder_2h",
                "trigger_hours": 2,
                "escalate_to_role": "manager",
                "notify_via": ["slack"],
                "slack_webhook_url": slack.url,
                "respect_timezone": False,
            },
        )
        assert status == 201, rule
        assert rule["send_slack"] is True and rule["send_email"] is False
        assert slack.url not in str(rule) and "secret-part" not in str(rule)
        sealed = await as_owner(
            svc.db,
            "SELECT slack_webhook_url FROM escalation_rules WHERE id = $1",
            uuid.UUID(rule["id"]),
        )
        assert "secret-part" not in sealed[0]["slack_webhook_url"]

        post_id = await svc.submit(brand, author="ann", text="Launch day")
        row = await svc.row(brand, post_id)
        assert row is not None
        steps = await events_of(svc, row["id"])
        assert [s["rule_type"] for s in steps] == ["reminder_2h"]  # no default rules: it has one

        slack.statuses = [503]
        svc.clock.now = MONDAY + timedelta(hours=2)
        await drain(svc)
        assert slack.posts == []
        step = (await events_of(svc, row["id"]))[0]
        assert (step["status"], step["attempts"]) == ("pending", 1)
        svc.clock.now = step["next_attempt_at"]
        await drain(svc)
        assert len(slack.posts) == 1
        message = slack.posts[0]
        assert [b["type"] for b in message["blocks"]] == ["section", "context", "actions"]
        assert "Launch day" in message["blocks"][0]["text"]["text"]
        assert message["blocks"][2]["elements"][0]["url"].endswith(f"/v1/approvals/{row['id']}")
        assert mail.of(brand) == []
        step = (await events_of(svc, row["id"]))[0]
        assert step["status"] == "sent"
        assert [s for s, c, _ in await history(svc, row["id"]) if c == "slack"] == [
            "failed",
            "sent",
        ]


async def test_a_revoked_webhook_is_not_retried(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with (
        slack_server() as slack,
        escalation_service(fresh_db, kafka_bootstrap, start=MONDAY) as (svc, _),
    ):
        brand = await svc.brand("Acme", "UTC")
        status, rule = await svc.call(
            "POST",
            "/v1/escalation-rules",
            brand,
            role="admin",
            json={
                "rule_type": "escalate_1h",
                "trigger_hours": 1,
                "escalate_to_role": "admin",
                "notify_via": ["slack"],
                "slack_webhook_url": slack.url,
                "respect_timezone": False,
            },
        )
        assert status == 201, rule
        post_id = await svc.submit(brand, author="ann")
        row = await svc.row(brand, post_id)
        assert row is not None
        slack.statuses = [404, 404]
        svc.clock.now = MONDAY + timedelta(hours=1)
        await drain(svc)
        step = (await events_of(svc, row["id"]))[0]
        assert (step["status"], step["attempts"]) == ("failed", 1)
        assert "404" in step["last_error"]
        svc.clock.now += timedelta(hours=5)
        await drain(svc)
        assert slack.statuses == [404] and slack.posts == []
