"""The OAuth ``state``: a compact, URL-safe, signed pointer to one ``oauth_states`` row.

``<state id>.<brand id>.<platform>.<expiry, unix s>.<user, base64url>.<HMAC-SHA256>``: the
signature (``settings.state_signing_key``) covers every other part, so the callback can
refuse a forged or expired state before it touches the database, and learns the brand whose
tenant transaction holds the row. The row then makes the state single-use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from pressroom_kit.errors import PressroomError


class BadState(PressroomError):
    status, code, title = 400, "bad_state", "Bad OAuth state"


@dataclass(frozen=True)
class StateClaims:
    state_id: UUID
    brand_id: UUID
    platform: str
    user_id: str
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def sign_state(key: str, claims: StateClaims) -> str:
    payload = ".".join(
        (
            claims.state_id.hex,
            claims.brand_id.hex,
            claims.platform,
            str(int(claims.expires_at.timestamp())),
            _b64(claims.user_id.encode()),
        )
    )
    return f"{payload}.{_mac(key, payload)}"


def read_state(key: str, state: str, *, now: datetime) -> StateClaims:
    """The claims of a state this service signed; ``BadState`` when it is forged, malformed
    or expired."""
    payload, _, mac = state.rpartition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        raise BadState("the OAuth state is not one this service issued", code="bad_state")
    parts = payload.split(".")
    if len(parts) != 5:
        raise BadState("the OAuth state is malformed", code="bad_state")
    state_id, brand_id, platform, expiry, user = parts
    try:
        claims = StateClaims(
            state_id=UUID(hex=state_id),
            brand_id=UUID(hex=brand_id),
            platform=platform,
            user_id=_unb64(user).decode(),
            expires_at=datetime.fromtimestamp(int(expiry), UTC),
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadState("the OAuth state is malformed", code="bad_state") from exc
    if claims.expires_at <= now:
        raise BadState("the OAuth state expired; start the connection again", code="state_expired")
    return claims


def new_verifier() -> str:
    """A PKCE code verifier (RFC 7636: 43 to 128 unreserved characters)."""
    return secrets.token_urlsafe(48)
