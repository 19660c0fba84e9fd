"""Writing audit entries: who did it (``Actor``) and ``record``.

An entry has two parts. The chained part (``audit_logs``) holds no personal data: the actor's
id (an account id, ``system``, or a pseudonym for a reviewer whose id holds an email) and
``actor_ref``, a keyed hash (HMAC-SHA256 with ``audit_pseudonym_key``) of the actor's id,
which lets the log be searched and a subject's entries be found without storing who they
are. The email, IP, user agent and name go to ``audit_personal_data``, which erasure
deletes; the chain never covered them, so it still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from litestar import Request
from pressroom_kit.auth import Principal

from pressroom_approval.settings import DEV_AUDIT_KEY

MAX_TEXT = 512
# Looks like an email address: such a value must not reach the chained part.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


@dataclass(frozen=True)
class Actor:
    """Who did something. ``id`` is a user id (JWT ``sub``), ``client:<email or link id>`` for
    a review-link reviewer, or ``system``; the other fields are personal data."""

    id: str
    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    name: str | None = None


SYSTEM = Actor("system")


class _Key:
    """The pseudonym key. ``install`` sets it from the settings; the development key is the
    default so that code recording outside the app (tests, scripts) works the same way."""

    value: bytes = DEV_AUDIT_KEY.encode()


def set_pseudonym_key(key: str) -> None:
    _Key.value = key.encode()


def normalize_subject(subject: str) -> str:
    """The form a subject's id is hashed in: an email (bare or after ``client:``) is
    compared without case, so ``client:Ann@X.org`` and ``client:ann@x.org`` are one person."""
    subject = subject.strip()
    if subject.startswith("client:") and "@" in subject:
        return "client:" + subject[len("client:") :].lower()
    if "@" in subject:
        return subject.lower()
    return subject


def pseudonym(subject: str) -> str:
    """``actor_ref``: the keyed hash of a subject's id (hex)."""
    return hmac.new(_Key.value, normalize_subject(subject).encode(), hashlib.sha256).hexdigest()


def chained_actor_id(actor_id: str) -> str:
    """The actor id as the chain stores it: an id holding an email becomes
    ``client:~<first 20 hex of its pseudonym>``, anything else is kept."""
    if "@" in actor_id:
        return "client:~" + pseudonym(actor_id)[:20]
    return actor_id


def _client_ip(request: Request[Any, Any, Any]) -> str | None:
    """The gateway appends the client it saw as the last hop of ``X-Forwarded-For``; without
    the header the peer is the client. Anything that is no IP address is dropped."""
    forwarded = request.headers.get("x-forwarded-for")
    candidate = forwarded.split(",")[-1].strip() if forwarded else None
    if not candidate and request.client is not None:
        candidate = request.client.host
    if not candidate:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def actor_from_request(request: Request[Any, Any, Any], principal: Principal | None) -> Actor:
    """The actor of an HTTP request: the principal's id and email, the client's IP and user
    agent (cut to 512 characters). Without a principal the id is ``anonymous``; callers
    that know better (review links) build their ``Actor`` themselves."""
    agent = request.headers.get("user-agent")
    return Actor(
        id=principal.sub if principal is not None else "anonymous",
        email=principal.email if principal is not None else None,
        ip=_client_ip(request),
        user_agent=agent[:MAX_TEXT] if agent else None,
    )


# Metadata keys whose values are personal data whatever they look like.
PERSONAL_KEYS = frozenset(
    {
        "email",
        "name",
        "ip",
        "user_agent",
        "author_email",
        "author_name",
        "reviewer_email",
        "reviewer_name",
        "recipient",
        "recipients",
        "to",
    }
)


def clean_text(text: str) -> str:
    """Text PostgreSQL can store: NUL dropped, a lone surrogate (no character) as ``?``."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _pseudonymous(text: str) -> str:
    return "~" + pseudonym(text)[:20]


def scrub_metadata(value: Any, key: str | None = None) -> Any:
    """Metadata as it may be chained: the values of ``PERSONAL_KEYS`` and every email
    address inside a string become pseudonyms (``~<20 hex>``, the start of the value's keyed
    hash: the same value gives the same pseudonym, the pseudonym names no one once the
    key is gone); what jsonb cannot store (NUL, a lone surrogate, NaN) is made storable.
    Chained data is never erased, so this is the last line of defence: callers put ids,
    statuses and counts in metadata and personal data in the ``Actor``."""
    if isinstance(value, str):
        value = clean_text(value)
        if key in PERSONAL_KEYS:
            return _pseudonymous(value)
        return _EMAIL.sub(lambda m: _pseudonymous(m.group(0)), value)
    if isinstance(value, Mapping):
        return {scrub_metadata(str(k)): scrub_metadata(v, str(k).lower()) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_metadata(item, key) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # jsonb has no NaN or infinity
    return value


def _cut(value: str | None) -> str | None:
    if value is None:
        return None
    return clean_text(value)[:MAX_TEXT] or None


_RECORD_SQL = """
WITH personal AS (
    INSERT INTO audit_personal_data (audit_id, brand_id, actor_ref, subject, email, ip,
                                     user_agent, name)
    SELECT $1, $2, $5, $10, $11, $12, $13, $14
    WHERE $15::boolean
)
INSERT INTO audit_pending (id, brand_id, at, actor_id, actor_ref, action, post_id,
                           approval_id, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)
"""


async def record(
    conn: asyncpg.Connection,
    *,
    brand_id: UUID,
    actor: Actor,
    action: str,
    at: datetime,
    post_id: UUID | None = None,
    approval_id: UUID | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> UUID:
    """Append one audit entry in the caller's transaction; returns its id.

    ``conn`` must be in a transaction whose brand is ``brand_id`` (``tenant_transaction``, or
    the consumer's with the brand set). The entry is chained when the transaction commits:
    a deferred trigger gives it the brand's next ``seq`` and its hash, taking the brand's
    head row then (brands in id order), so calling this takes no lock and the position in
    the transaction does not matter; the entry exists exactly when the transaction commits.
    Lock order, for callers: every row lock a transaction takes comes before the audit
    heads, which are only ever taken at commit. ``at`` must be timezone-aware.

    ``metadata`` is chained and never erased: ids, statuses and counts only, never an email,
    a name or free text a person typed; ``scrub_metadata`` pseudonymises what slips through
    (emails anywhere, the values of keys such as ``email`` and ``name``). Personal data goes
    in the ``Actor``.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    meta = scrub_metadata(dict(metadata or {}))
    entry_id = uuid4()
    subject = clean_text(actor.id)
    personal = any((actor.email, actor.ip, actor.user_agent, actor.name)) or "@" in subject
    await conn.execute(
        _RECORD_SQL,
        entry_id,
        brand_id,
        at,
        chained_actor_id(subject),
        pseudonym(subject),
        clean_text(action),
        post_id,
        approval_id,
        json.dumps(meta, separators=(",", ":"), default=str),
        subject,
        _cut(actor.email),
        _cut(actor.ip),
        _cut(actor.user_agent),
        _cut(actor.name),
        personal,
    )
    return entry_id
