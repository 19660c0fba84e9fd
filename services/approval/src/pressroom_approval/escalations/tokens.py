"""Signed unsubscribe tokens: who (brand and recipient) and optionally what (a type).

``<base64url(json)>.<base64url(HMAC-SHA256)>``, keyed by a key derived from
``link_signing_key`` for this purpose only, so an unsubscribe token can never pass as a
review link (or the reverse) although both come from one configured secret. They carry no
email address: the URL sits in mailboxes and logs. They do not expire: a one-click
unsubscribe must work from an old email (RFC 8058).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from uuid import UUID

PURPOSE = b"pressroom-approval-unsubscribe-v1"
MAX_TOKEN = 600
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class BadToken(ValueError):
    """Not a token we signed (malformed, tampered, or signed with another key)."""


@dataclass(frozen=True)
class Unsubscribe:
    brand_id: UUID
    client_id: str
    type: str | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise BadToken("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeTokens:
    def __init__(self, signing_key: str) -> None:
        self._key = hmac.new(signing_key.encode(), PURPOSE, hashlib.sha256).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def sign(self, claim: Unsubscribe) -> str:
        payload: dict[str, str] = {"b": str(claim.brand_id), "c": claim.client_id}
        if claim.type is not None:
            payload["t"] = claim.type
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str) -> Unsubscribe:
        if len(token) > MAX_TOKEN or token.count(".") != 1:
            raise BadToken("malformed token")
        body, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise BadToken("bad signature")
        try:
            payload = json.loads(_unb64(body))
            brand = UUID(payload["b"])
            client = payload["c"]
            kind = payload.get("t")
        except (ValueError, KeyError, TypeError) as exc:
            raise BadToken("malformed token") from exc
        if (
            not isinstance(client, str)
            or not client
            or (kind is not None and not (isinstance(kind, str) and TYPE_PATTERN.match(kind)))
        ):
            raise BadToken("malformed token")
        return Unsubscribe(brand, client, kind)
