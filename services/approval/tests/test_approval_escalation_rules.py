"""The rules and client-settings API: admin only, clear 422s for bad input, 409 for a second
rule of a type, audit rows for every change, the Slack URL never returned, and brands kept
apart (another brand's rule is a 404)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from approval_testkit import Service, as_owner

pytestmark = pytest.mark.integration
RULE = {"rule_type": "reminder_4h", "trigger_hours": 4, "escalate_to_role": "manager"}


def code(problem: dict[str, Any]) -> str:
    return str(problem["type"]).rsplit("/", 1)[-1]


async def audit_actions(svc: Service, brand: uuid.UUID) -> list[str]:
    rows = await as_owner(
        svc.db, "SELECT action FROM audit_logs WHERE brand_id = $1 ORDER BY seq", brand
    )
    return [r["action"] for r in rows]


async def test_rules_crud_with_audit_rows(svc: Service) -> None:
    brand = uuid.uuid4()
    status, created = await svc.call("POST", "/v1/escalation-rules", brand, role="admin", json=RULE)
    assert status == 201, created
    assert created["notify_via"] == ["email"] and created["enabled"] is True
    assert created["respect_timezone"] is True and created["slack_webhook"] is None
    rule = f"/v1/escalation-rules/{created['id']}"

    status, body = await svc.call("POST", "/v1/escalation-rules", brand, role="admin", json=RULE)
    assert status == 409 and code(body) == "rule_exists"

    status, changed = await svc.call(
        "PATCH",
        rule,
        brand,
        role="admin",
        json={
            "trigger_hours": 6,
            "notify_via": ["email", "slack"],
            "slack_webhook_url": "https://hooks.slack.com/services/T1/B1/zzz",
        },
    )
    assert status == 200, changed
    assert changed["trigger_hours"] == 6 and changed["send_slack"] is True
    assert changed["slack_webhook"] == "configured" and "zzz" not in str(changed)
    status, body = await svc.call(
        "PATCH", rule, brand, role="admin", json={"slack_webhook_url": None}
    )
    assert status == 422 and code(body) == "slack_needs_url"

    status, listed = await svc.call("GET", "/v1/escalation-rules", brand, role="admin")
    assert status == 200 and [r["id"] for r in listed["items"]] == [created["id"]]

    # Brands are apart: another brand's admin sees nothing and cannot touch it.
    other = uuid.uuid4()
    status, _ = await svc.call("GET", rule, other, role="admin")
    assert status == 404
    status, _ = await svc.call("PATCH", rule, other, role="admin", json={"enabled": False})
    assert status == 404
    status, _ = await svc.call("DELETE", rule, other, role="admin")
    assert status == 404
    status, listed = await svc.call("GET", "/v1/escalation-rules", other, role="admin")
    assert listed["items"] == []

    status, _ = await svc.call("DELETE", rule, brand, role="admin")
    assert status == 204
    status, _ = await svc.call("GET", rule, brand, role="admin")
    assert status == 404
    assert await audit_actions(svc, brand) == [
        "escalation_rule.created",
        "escalation_rule.updated",
        "escalation_rule.deleted",
    ]


async def test_a_brand_with_its_own_rules_gets_no_defaults(svc: Service) -> None:
    brand = uuid.uuid4()
    status, _ = await svc.call("POST", "/v1/escalation-rules", brand, role="admin", json=RULE)
    assert status == 201
    post_id = await svc.submit(brand, author="ann")
    view = await svc.approval_of(brand, post_id)
    assert [e["rule_type"] for e in view["escalations"]] == ["reminder_4h"]
    status, listed = await svc.call("GET", "/v1/escalation-rules", brand, role="admin")
    assert [r["rule_type"] for r in listed["items"]] == ["reminder_4h"]


async def test_the_first_approval_makes_the_default_rules_once(svc: Service) -> None:
    brand = uuid.uuid4()
    post_id = await svc.submit(brand, author="ann")
    status, listed = await svc.call("GET", "/v1/escalation-rules", brand, role="admin")
    assert [(r["rule_type"], r["escalate_to_role"]) for r in listed["items"]] == [
        ("reminder_24h", "manager"),
        ("escalate_48h", "admin"),
    ]
    view = await svc.approval_of(brand, post_id)
    assert [e["status"] for e in view["escalations"]] == ["pending", "pending"]
    for item in listed["items"]:
        status, _ = await svc.call(
            "DELETE", f"/v1/escalation-rules/{item['id']}", brand, role="admin"
        )
        assert status == 204
    view = await svc.approval_of(brand, post_id)
    assert [e["status"] for e in view["escalations"]] == ["cancelled", "cancelled"]
    second = await svc.submit(brand, author="ann")
    status, listed = await svc.call("GET", "/v1/escalation-rules", brand, role="admin")
    assert listed["items"] == []  # deleted on purpose: not made again
    assert (await svc.approval_of(brand, second))["escalations"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RULE, "rule_type": "nag_4h"}, "rule_type"),
        ({**RULE, "rule_type": "reminder_0h"}, "rule_type"),
        ({**RULE, "trigger_hours": 0}, "trigger_hours"),
        ({**RULE, "trigger_hours": -5}, "trigger_hours"),
        ({**RULE, "trigger_hours": "4"}, "trigger_hours"),
        ({**RULE, "trigger_hours": 10_000}, "trigger_hours"),
        ({**RULE, "escalate_to_role": "owner"}, "escalate_to_role"),
        ({**RULE, "notify_via": []}, "notify_via"),
        ({**RULE, "notify_via": ["pigeon"]}, "notify_via"),
        ({**RULE, "notify_via": ["email", "email"]}, "notify_via"),
        ({**RULE, "notify_via": ["slack"]}, ""),
        ({**RULE, "target_type": "team"}, "target_type"),
        ({**RULE, "slack_webhook_url": "ftp://x.example"}, "slack_webhook_url"),
        ({**RULE, "enabled": 1}, "enabled"),
        ({**RULE, "surprise": True}, "surprise"),
        ({"rule_type": "reminder_4h"}, "trigger_hours"),
    ],
)
async def test_bad_rules_are_422(svc: Service, body: dict[str, Any], field: str) -> None:
    brand = uuid.uuid4()
    status, problem = await svc.call("POST", "/v1/escalation-rules", brand, role="admin", json=body)
    assert status == 422, problem
    assert field in str(problem)


async def test_rules_and_settings_need_an_admin(svc: Service) -> None:
    brand = uuid.uuid4()
    for method, path, body in (
        ("GET", "/v1/escalation-rules", None),
        ("POST", "/v1/escalation-rules", RULE),
        ("GET", "/v1/client-settings/mo", None),
        ("PUT", "/v1/client-settings/mo", {"language": "fr"}),
    ):
        status, problem = await svc.call(method, path, brand, role="manager", json=body)
        assert status == 403 and code(problem) == "role", (method, path)


async def test_client_settings_put_get_and_validation(svc: Service) -> None:
    brand = uuid.uuid4()
    path = "/v1/client-settings/user-42"
    status, _ = await svc.call("GET", path, brand, role="admin")
    assert status == 404
    body = {
        "email": "client@example.com",
        "name": "Cli Ent",
        "timezone": "Europe/Berlin",
        "language": "de",
        "email_preferences": {"reminder": False},
        "unsubscribed_types": ["escalate_48h", "escalate_48h"],
    }
    status, saved = await svc.call("PUT", path, brand, role="admin", json=body)
    assert status == 200, saved
    assert saved["unsubscribed_types"] == ["escalate_48h"]
    status, read = await svc.call("GET", path, brand, role="admin")
    assert status == 200 and read == saved
    status, _ = await svc.call("GET", path, uuid.uuid4(), role="admin")
    assert status == 404  # another brand's recipient
    for bad in (
        {"timezone": "Mars/Olympus"},
        {"language": "it"},
        {"email": "not-an-email"},
        {"email_preferences": {"reminder": "no"}},
        {"unsubscribed_types": ["Bad Type"]},
        {"unsubscribed_from_all": "yes"},
    ):
        status, problem = await svc.call("PUT", path, brand, role="admin", json=bad)
        assert status == 422, (bad, problem)
    status, _ = await svc.call("PUT", "/v1/client-settings/bad%20id", brand, role="admin", json={})
    assert status in (400, 404, 422)
    actions = await audit_actions(svc, brand)
    assert actions == ["client_settings.updated"]
    assert "client@example.com" not in str(
        await as_owner(svc.db, "SELECT metadata FROM audit_logs WHERE brand_id = $1", brand)
    )
