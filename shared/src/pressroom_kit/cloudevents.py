"""CloudEvents 1.0 in Kafka binary content mode.

Attributes travel as ``ce_*`` headers, the value is the JSON ``data``, the key is the
aggregate id (so one aggregate's events stay in order on one partition).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pressroom_contracts import CloudEvent
from pydantic import ValidationError

_ATTRIBUTES = ("id", "source", "type", "subject", "time", "specversion", "brandid", "sequence")


class DecodeError(ValueError):
    """A Kafka message that is not a valid CloudEvent."""


def to_headers(event: CloudEvent) -> dict[str, str]:
    """The Kafka headers of ``event`` as text."""
    headers: dict[str, str] = {
        "ce_specversion": event.specversion,
        "ce_id": str(event.id),
        "ce_source": event.source,
        "ce_type": event.type,
        "ce_time": event.time.isoformat(),
        "content-type": event.datacontenttype,
    }
    if event.subject is not None:
        headers["ce_subject"] = event.subject
    if event.brandid is not None:
        headers["ce_brandid"] = str(event.brandid)
    if event.sequence is not None:
        headers["ce_sequence"] = str(event.sequence)
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    return headers


def to_structured(event: CloudEvent) -> dict[str, Any]:
    """The event in JSON structured content mode (attributes and ``data`` in one object), as
    HTTP receivers such as webhook endpoints get it. ``traceparent`` stays a transport
    header and is left out."""
    body: dict[str, Any] = {
        "specversion": event.specversion,
        "id": str(event.id),
        "source": event.source,
        "type": event.type,
        "time": event.time.isoformat(),
        "datacontenttype": event.datacontenttype,
        "data": event.data,
    }
    if event.subject is not None:
        body["subject"] = event.subject
    if event.brandid is not None:
        body["brandid"] = str(event.brandid)
    if event.sequence is not None:
        body["sequence"] = event.sequence
    return body


def encode_value(event: CloudEvent) -> bytes:
    return encode_value_raw(event.data)


def encode_value_raw(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def kafka_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def decode(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> CloudEvent:
    """The CloudEvent in a binary-mode Kafka message; ``DecodeError`` when it is not one."""
    found: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            found[name] = raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {name} is not UTF-8") from exc
    attrs: dict[str, Any] = {}
    for attr in _ATTRIBUTES:
        if f"ce_{attr}" in found:
            attrs[attr] = found[f"ce_{attr}"]
    missing = [a for a in ("id", "source", "type", "specversion") if a not in attrs]
    if missing:
        raise DecodeError(f"missing CloudEvents headers: {', '.join('ce_' + m for m in missing)}")
    if attrs["specversion"] != "1.0":
        raise DecodeError(f"unsupported CloudEvents specversion {attrs['specversion']!r}")
    content_type = found.get("content-type", "application/json")
    if not content_type.startswith("application/json"):
        raise DecodeError(f"unsupported content-type {content_type!r}")
    try:
        data = json.loads(value or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DecodeError("value is not a JSON object")
    try:
        return CloudEvent(
            **attrs,
            datacontenttype=content_type,
            traceparent=found.get("traceparent"),
            data=data,
        )
    except ValidationError as exc:
        raise DecodeError(f"bad CloudEvents attributes: {exc.errors()[0]['msg']}") from exc


def new_event(
    *,
    source: str,
    type: str,
    data: dict[str, Any],
    event_id: UUID,
    subject: str | None,
    brand_id: UUID | None,
    sequence: int | None,
    time: datetime,
    traceparent: str | None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id,
        source=source,
        type=type,
        subject=subject,
        brandid=brand_id,
        sequence=sequence,
        time=time,
        traceparent=traceparent,
        data=data,
    )
