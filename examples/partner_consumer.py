"""A partner's consumer of Pressroom's post lifecycle, written the way a partner would: with
FastStream, the official CloudEvents SDK and the published JSON Schemas, and nothing of
Pressroom's own code.

It joins a consumer group on ``pressroom.publishing.v1`` and acknowledges each message by
hand once it has been handled, so a crash re-reads what was not finished (Kafka delivers at
least once; Pressroom's relay may also resend after a failure). Each message is read as a
CloudEvent in Kafka *binary* content mode (attributes in ``ce_*`` headers, the JSON payload
as the value), its payload validated against ``contracts/schemas/<type>.json``, and the
post's lifecycle printed, one line per event::

    post 5f0c…: created (draft) for mastodon, bluesky
    post 5f0c…: scheduled for 2026-12-03T09:00:00+00:00
    post 5f0c…: published on mastodon: https://…

Run it (``uv sync`` installs the ``examples`` group)::

    PARTNER_BOOTSTRAP=localhost:19092 python examples/partner_consumer.py

Settings (environment): ``PARTNER_BOOTSTRAP`` (the brokers), ``PARTNER_TOPIC``
(``pressroom.publishing.v1``), ``PARTNER_GROUP`` (``partner-post-lifecycle``),
``PARTNER_SCHEMAS`` (the folder of published schemas), ``PARTNER_SESSION_TIMEOUT_MS``
(10000: how long the group waits for a consumer that vanished). docs/integrate.md walks through it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage as CloudEventMessage
from cloudevents.core.bindings.kafka import from_binary_event
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.specification import AsyncAPI
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

BOOTSTRAP = os.environ.get("PARTNER_BOOTSTRAP", "localhost:19092")
TOPIC = os.environ.get("PARTNER_TOPIC", "pressroom.publishing.v1")
GROUP = os.environ.get("PARTNER_GROUP", "partner-post-lifecycle")
# How long the group waits for a consumer that vanished before its partitions move on.
SESSION_TIMEOUT_MS = int(os.environ.get("PARTNER_SESSION_TIMEOUT_MS", "10000"))
SCHEMAS = Path(
    os.environ.get("PARTNER_SCHEMAS", Path(__file__).resolve().parents[1] / "contracts/schemas")
)


class Schemas:
    """The published JSON Schemas by event type, loaded on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._validators: dict[str, Draft202012Validator | None] = {}

    def validator(self, event_type: str) -> Draft202012Validator | None:
        if event_type not in self._validators:
            path = self.folder / f"{event_type}.json"
            self._validators[event_type] = (
                Draft202012Validator(json.loads(path.read_text()), format_checker=FormatChecker())
                if path.is_file()
                else None
            )
        return self._validators[event_type]


def read_cloudevent(record: Any) -> BaseCloudEvent:
    """The aiokafka record as a CloudEvent, through the SDK's Kafka binary binding."""
    headers = {name: value for name, value in (record.headers or ()) if value is not None}
    return from_binary_event(CloudEventMessage(headers=headers, key=record.key, value=record.value))


def _platforms(data: dict[str, Any]) -> str:
    return ", ".join(data.get("platforms") or []) or "no platform yet"


def describe(event_type: str, data: dict[str, Any]) -> str | None:
    """One line of the post's lifecycle, or None for an event that is not about a post."""
    post = data.get("post_id")
    if not event_type.startswith("publishing.post.") or post is None:
        return None
    what = event_type.removeprefix("publishing.post.").rsplit(".", 1)[0]
    line = {
        "created": lambda: f"created (draft) for {_platforms(data)}",
        "updated": lambda: (
            f"updated ({', '.join(data.get('changed') or []) or 'no change'}), "
            f"now {data.get('status')}"
        ),
        "submitted": lambda: "submitted for approval",
        "scheduled": lambda: f"scheduled for {data['scheduled_at']}",
        "published": lambda: (
            f"published on {data['platform']}: {data.get('url') or data['platform_post_id']}"
        ),
        "failed": lambda: (
            f"failed on {data['platform']} after {data['attempts']} attempt(s): "
            f"{data['error_code']}"
        ),
        "cancelled": lambda: "cancelled",
        "unconfirmed": lambda: f"unconfirmed on {data['platform']} (a person must check)",
    }.get(what, lambda: what)()
    return f"post {post}: {line}"


class Lifecycle:
    """What the consumer does with one event; kept apart from Kafka so it reads plainly."""

    def __init__(self, schemas: Schemas, remember: int = 100_000) -> None:
        self.schemas = schemas
        # Event ids already handled: a resent event (same id) is printed once.
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def handle(self, event: BaseCloudEvent) -> str:
        event_id, event_type = event.get_id(), event.get_type()
        if event_id in self._seen:
            return f"duplicate {event_id} ({event_type}): already handled"
        validator = self.schemas.validator(event_type)
        if validator is None:
            # A type published after this consumer was written (say a v2): not ours to read.
            line = f"ignored {event_type} {event_id}: no published schema"
        else:
            data = event.get_data()
            if not isinstance(data, dict):
                return f"rejected {event_type} {event_id}: the payload is not a JSON object"
            try:
                validator.validate(data)
            except ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "payload"
                return f"rejected {event_type} {event_id}: {where}: {exc.message}"
            line = describe(event_type, data) or f"skipped {event_type} {event_id}"
        self._seen[event_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return line


# FastStream's own log (connections, "Received"/"Processed") goes to stderr, so stdout is
# the lifecycle alone and can be piped.
log = logging.getLogger("partner")
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
log.addHandler(_handler)
log.setLevel(logging.INFO)

broker = KafkaBroker(BOOTSTRAP, logger=log)
app = FastStream(
    broker,
    logger=log,
    specification=AsyncAPI(
        title="Partner post lifecycle",
        version="1.0.0",
        description="Reads Pressroom's publishing events (CloudEvents, Kafka binary mode).",
    ),
)
lifecycle = Lifecycle(Schemas(SCHEMAS))


@broker.subscriber(
    TOPIC,
    group_id=GROUP,
    session_timeout_ms=SESSION_TIMEOUT_MS,
    auto_offset_reset="earliest",
    ack_policy=AckPolicy.MANUAL,
    title="pressroom.publishing.v1:receive",
    description="Post lifecycle events; payload per ce_type, see contracts/schemas.",
)
async def on_event(message: KafkaMessage) -> None:
    """Handle one record, then acknowledge it: an exception before ``ack`` leaves the offset
    uncommitted, so the group reads it again after a restart."""
    try:
        event = read_cloudevent(message.raw_message)
    except Exception as exc:  # not a CloudEvent: nothing will make it one; skip it
        print(f"rejected a message that is not a CloudEvent: {exc}", flush=True)
    else:
        print(lifecycle.handle(event), flush=True)
    await message.ack()


if __name__ == "__main__":
    asyncio.run(app.run())
