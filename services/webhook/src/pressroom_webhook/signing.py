"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several
space-separated while a rotated secret is still valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from pressroom_webhook.secrets import secret_bytes


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, message_id, timestamp, body) for s in secrets),
    }


class InvalidSignature(Exception):
    pass


def verify(secret: str, received: Mapping[str, str], body: bytes, tolerance_s: int = 300) -> None:
    """For receivers (and our tests): check id, timestamp freshness and one v1 signature."""
    message_id = received.get("webhook-id", "")
    timestamp = received.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit():
        raise InvalidSignature("missing webhook-id or webhook-timestamp")
    if abs(time.time() - int(timestamp)) > tolerance_s:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = sign(secret, message_id, int(timestamp), body).split(",", 1)[1]
    for candidate in received.get("webhook-signature", "").split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise InvalidSignature("no matching v1 signature")
