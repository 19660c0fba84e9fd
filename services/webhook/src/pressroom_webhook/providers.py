"""What each kind of receiver gets in the body.

- ``generic``: the CloudEvent in JSON structured mode (``specversion``, ``id``, ``type``, ...,
  ``data``).
- ``zapier`` and ``make``: one flat JSON object their mappers can pick fields from:
  ``event_id``, ``event_type``, ``occurred_at``, ``brand_id``, ``subject``, and every field
  of ``data`` with nested keys joined by ``__`` (``{"a": {"b": 1}}`` -> ``"data__a__b": 1``;
  lists are kept as lists).
- ``slack``: a Slack message (``text`` plus Block Kit ``blocks``) summarising the event.
"""

from __future__ import annotations

import json
from typing import Any

Provider = str
PROVIDERS = ("generic", "zapier", "make", "slack")


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}__{key}" if prefix else key
        if isinstance(item, dict):
            flat.update(flatten(item, name))
        else:
            flat[name] = item
    return flat


def summary(event: dict[str, Any]) -> str:
    """A one-line human summary of an event for chat."""
    data: dict[str, Any] = event.get("data") or {}
    kind = str(event.get("type", ""))
    platform = str(data.get("platform", "")).replace("_", " ").title()
    if kind.startswith("publishing.post.published"):
        url = data.get("url") or data.get("platform_post_url") or ""
        return f"Post published to {platform or 'a platform'}: {url}".rstrip(": ")
    if kind.startswith("publishing.post.failed"):
        return f"Post failed on {platform or 'a platform'}: {data.get('error', 'unknown error')}"
    if kind.startswith("approval.requested"):
        return f"Approval requested for post {data.get('post_id', event.get('subject'))}"
    if kind.startswith("approval.approved"):
        return f"Post {data.get('post_id', event.get('subject'))} approved"
    if kind.startswith("approval.rejected"):
        return (
            f"Post {data.get('post_id', event.get('subject'))} rejected: {data.get('reason', '')}"
        )
    if kind.startswith("media.quota.warning"):
        return f"Media storage at {data.get('percent', '?')}% of the quota"
    if kind == "webhook.test":
        return "Test event from Pressroom: this endpoint is wired up"
    return f"{kind} for {event.get('subject') or 'your brand'}"


def render(provider: Provider, event: dict[str, Any]) -> tuple[bytes, str]:
    """The body and content type for ``provider`` from a structured-mode CloudEvent."""
    if provider == "slack":
        text = summary(event)
        message = {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": " · ".join(
                                (
                                    f"`{event.get('type')}`",
                                    str(event.get("time")),
                                    f"id {event.get('id')}",
                                )
                            ),
                        },
                    ],
                },
            ],
        }
        return json.dumps(message).encode(), "application/json"
    if provider in ("zapier", "make"):
        flat = {
            "event_id": event.get("id"),
            "event_type": event.get("type"),
            "occurred_at": event.get("time"),
            "brand_id": event.get("brandid"),
            "subject": event.get("subject"),
            **flatten(event.get("data") or {}, "data"),
        }
        return json.dumps(flat, default=str).encode(), "application/json"
    return json.dumps(event, default=str).encode(), "application/cloudevents+json"
