"""Review-link tokens: an opaque, URL-safe, HMAC-signed pointer to one ``review_links`` row.

The token carries the link's id, its brand and its expiry, signed with
``PRESSROOM_APPROVAL_LINK_SIGNING_KEY`` (HMAC-SHA256, full 32-byte tag, a purpose label in the
message so that an unsubscribe token signed with the same key is never a review token). Why
signed rather than random: a forged or altered token is refused before any database work,
and the brand comes from the signed token itself, so the public page opens a
``tenant_transaction`` for that brand and never needs a cross-brand lookup. The database
stores no secret (the token is not kept); revocation and single use live in the row
(``revoked_at``, ``used_at``), which every use checks.

The per-page form nonce binds a decision form to the link and to the submission the page
showed, so a form posted after the post was re-submitted is refused instead of deciding on a
version the reviewer never saw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

VERSION = 1
PURPOSE = b"pressroom.review-link.v1\x00"
NONCE_PURPOSE = b"pressroom.review-form.v1\x00"
_BODY = struct.Struct(">B16s16sq")  # version, link id, brand id, expiry (unix seconds)
_TAG = 32
TOKEN_LENGTH = len(base64.urlsafe_b64encode(b"\x00" * (_BODY.size + _TAG)).rstrip(b"="))


class BadToken(Exception):
    """Not a token this service signed (malformed, altered, another key or purpose)."""


@dataclass(frozen=True)
class LinkClaims:
    link_id: UUID
    brand_id: UUID
    expires_at: datetime


def _mac(key: str, purpose: bytes, message: bytes) -> bytes:
    return hmac.new(key.encode(), purpose + message, hashlib.sha256).digest()


def sign_link(key: str, claims: LinkClaims) -> str:
    body = _BODY.pack(
        VERSION, claims.link_id.bytes, claims.brand_id.bytes, int(claims.expires_at.timestamp())
    )
    raw = body + _mac(key, PURPOSE, body)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def read_link(key: str, token: str) -> LinkClaims:
    """The claims of a token this key signed; ``BadToken`` otherwise. Expiry is not checked
    here: an expired link gets its own answer (410), a forged one a 404."""
    if len(token) != TOKEN_LENGTH or not token.isascii():
        raise BadToken("not a review token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("not a review token") from None
    # One spelling per token: base64 ignores the last character's spare bits, which would
    # otherwise give every token several spellings (and two ways to refer to one link).
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise BadToken("not a review token")
    body, tag = raw[: _BODY.size], raw[_BODY.size :]
    if not hmac.compare_digest(tag, _mac(key, PURPOSE, body)):
        raise BadToken("bad signature")
    version, link_id, brand_id, expires = _BODY.unpack(body)
    if version != VERSION:
        raise BadToken("unknown token version")
    try:
        expires_at = datetime.fromtimestamp(expires, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadToken("bad expiry") from None
    return LinkClaims(UUID(bytes=link_id), UUID(bytes=brand_id), expires_at)


def form_nonce(key: str, link_id: UUID, submission: str) -> str:
    """The hidden field of the page's forms: this link, this submission."""
    message = link_id.bytes + submission.encode()
    return base64.urlsafe_b64encode(_mac(key, NONCE_PURPOSE, message)).rstrip(b"=").decode()


def nonce_matches(key: str, link_id: UUID, submission: str, nonce: str) -> bool:
    if not nonce.isascii():
        return False
    return hmac.compare_digest(form_nonce(key, link_id, submission).encode(), nonce.encode())
