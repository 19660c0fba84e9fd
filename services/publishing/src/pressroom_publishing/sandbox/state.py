"""The sandbox platform's memory: clients, grants and tokens, posts, insights, and the
failures a test has asked for.

One ``SandboxState`` per process (the server keeps no other state). Every change happens
under one ``threading.Lock`` and no lock is held across an ``await``, so handlers on one
event loop, or on several threads, see consistent counts: the same idempotency key from two
concurrent requests makes one post. Time comes from ``clock`` so that a test can expire
tokens and move days forward without sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

Clock = Callable[[], datetime]

DEFAULT_CLIENT_ID = "pressroom"
DEFAULT_CLIENT_SECRET = "pressroom-sandbox-secret"
DEFAULT_SCOPES = ("read", "write")
CODE_TTL_S = 60.0
MAX_HOLD_S = 120.0

Operation = Literal[
    "authorize", "token", "revoke", "me", "publish", "lookup", "delete", "insights", "any"
]
FailureMode = Literal[
    "error_500", "rate_limited", "timeout", "token_expired", "token_revoked", "rejected"
]
OPERATIONS: tuple[str, ...] = (
    "authorize",
    "token",
    "revoke",
    "me",
    "publish",
    "lookup",
    "delete",
    "insights",
    "any",
)
FAILURE_MODES: tuple[str, ...] = (
    "error_500",
    "rate_limited",
    "timeout",
    "token_expired",
    "token_revoked",
    "rejected",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SandboxError(Exception):
    """A refusal the server answers as JSON: ``kind`` "api" gives the platform's
    ``{"error": {"code", "message"}}``, "oauth" the RFC 6749 ``{"error", "error_description"}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        kind: Literal["api", "oauth"] = "api",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        if self.kind == "oauth":
            return {"error": self.code, "error_description": self.message}
        return {"error": {"code": self.code, "message": self.message}}


def oauth_error(status: int, code: str, message: str) -> SandboxError:
    """An RFC 6749 error answer (``/oauth/*``)."""
    return SandboxError(status, code, message, kind="oauth")


@dataclass(frozen=True)
class SandboxAccount:
    id: str
    username: str
    display_name: str

    @staticmethod
    def for_username(username: str) -> SandboxAccount:
        """The same username is the same account in every process: ids derive from it."""
        digest = hashlib.sha256(username.encode()).hexdigest()
        return SandboxAccount(
            id=str(int(digest[:12], 16)),
            username=username,
            display_name=username.replace("-", " ").replace("_", " ").title(),
        )


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    account: SandboxAccount
    scopes: tuple[str, ...]
    challenge: str | None
    expires_at: datetime
    used: bool = False


@dataclass
class Grant:
    """One user's consent to one client: its refresh token and access tokens."""

    id: str
    client_id: str
    account: SandboxAccount
    scopes: tuple[str, ...]
    refresh_token: str
    revoked: bool = False
    refresh_expired: bool = False


@dataclass
class AccessToken:
    token: str
    grant_id: str
    expires_at: datetime


@dataclass
class SandboxPost:
    id: str
    account_id: str
    username: str
    text: str
    media: list[dict[str, Any]]
    link: str | None
    client_reference: str | None
    created_at: datetime
    deleted_at: datetime | None = None

    def public(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base_url}/@{self.username}/{self.id}",
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "account_id": self.account_id,
            "text": self.text,
            "media": self.media,
            "link": self.link,
            "client_reference": self.client_reference,
            "deleted": self.deleted_at is not None,
        }


@dataclass
class Failure:
    """The next ``count`` calls of ``operation`` fail as ``mode``; with ``effect`` the work
    is done first (a post is created) and only the answer fails - a platform that crashed
    between its commit and its reply."""

    operation: str
    mode: str
    count: int = 1
    retry_after_s: float | None = 30.0
    delay_s: float = 30.0
    effect: bool = False
    code: str | None = None
    message: str | None = None


@dataclass
class Settings:
    """Platform quirks a test can switch (``POST /_control/settings``)."""

    token_lifetime_s: int = 3600
    rotate_refresh_tokens: bool = True
    fetch_media: bool = False
    text_limit: int = 500
    max_images: int = 4
    max_videos: int = 1


@dataclass
class SandboxState:
    """Everything the sandbox remembers. ``clients`` maps client ids to secrets."""

    clients: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
    )
    clock: Clock = utcnow
    public_url: str | None = None  # base of post URLs; default: the request's own base
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._clear()

    def _clear(self) -> None:
        self.codes: dict[str, AuthorizationCode] = {}
        self.grants: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> grant id
        self.access_tokens: dict[str, AccessToken] = {}
        self.posts: dict[str, SandboxPost] = {}
        self.by_key: dict[tuple[str, str], str] = {}  # (account id, key) -> post id
        self.failures: list[Failure] = []
        self.calls: Counter[str] = Counter()
        self._next_post = 0

    def now(self) -> datetime:
        return self.clock()

    # --- control ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (clients, clock and public URL stay); release held requests."""
        with self._lock:
            self._clear()
            self.settings = Settings()
        self.release_held()

    def add_failure(self, failure: Failure) -> None:
        with self._lock:
            self.failures.append(failure)

    def clear_failures(self) -> None:
        with self._lock:
            self.failures.clear()

    def take_failure(self, operation: str) -> Failure | None:
        """Counts the call and returns the failure it must suffer, if one is pending."""
        with self._lock:
            self.calls[operation] += 1
            for index, failure in enumerate(self.failures):
                if failure.operation in (operation, "any"):
                    if failure.count <= 1:
                        del self.failures[index]
                    else:
                        self.failures[index] = replace(failure, count=failure.count - 1)
                    return failure
        return None

    async def hold(
        self, seconds: float, *, gone: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Keep a request waiting (a platform that does not answer), at most
        ``MAX_HOLD_S``. It ends early when ``gone`` returns (the client hung up) or at
        ``release_held`` (reset, shutdown), so held requests never outlive their callers."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._held.append(entry)
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(event.wait())]
        if gone is not None:
            waits.append(asyncio.ensure_future(gone()))
        try:
            await asyncio.wait(
                waits,
                timeout=min(max(seconds, 0.0), MAX_HOLD_S),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for wait in waits:
                wait.cancel()
            with self._lock:
                if entry in self._held:
                    self._held.remove(entry)

    def held(self) -> int:
        """How many requests are being held now."""
        with self._lock:
            return len(self._held)

    def release_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for loop, event in held:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def expire_tokens(self, account_id: str | None = None, *, refresh: bool = False) -> int:
        """Every access token (of one account) expires now; with ``refresh`` the refresh
        tokens die too. Returns how many grants were touched."""
        now = self.now()
        with self._lock:
            grants = self._grants_of(account_id)
            for token in self.access_tokens.values():
                if token.grant_id in grants:
                    token.expires_at = min(token.expires_at, now)
            if refresh:
                for grant_id in grants:
                    self.grants[grant_id].refresh_expired = True
            return len(grants)

    def revoke_tokens(self, account_id: str | None = None) -> int:
        with self._lock:
            grants = self._grants_of(account_id)
            for grant_id in grants:
                self.grants[grant_id].revoked = True
            return len(grants)

    def _grants_of(self, account_id: str | None) -> set[str]:
        return {
            grant.id
            for grant in self.grants.values()
            if account_id is None or grant.account.id == account_id
        }

    def all_posts(self, base_url: str) -> list[dict[str, Any]]:
        with self._lock:
            posts = list(self.posts.values())
        return [post.public(base_url) for post in posts]

    def call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    # --- OAuth ----------------------------------------------------------------------------

    def check_client(self, client_id: str, client_secret: str | None) -> None:
        expected = self.clients.get(client_id)
        if expected is None or client_secret is None:
            raise oauth_error(401, "invalid_client", "unknown client or no secret")
        if not secrets.compare_digest(expected.encode(), client_secret.encode()):
            raise oauth_error(401, "invalid_client", "client authentication failed")

    def known_client(self, client_id: str) -> bool:
        return client_id in self.clients

    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        username: str,
        scopes: tuple[str, ...],
        challenge: str | None,
    ) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = AuthorizationCode(
                code=code,
                client_id=client_id,
                redirect_uri=redirect_uri,
                account=SandboxAccount.for_username(username),
                scopes=scopes or DEFAULT_SCOPES,
                challenge=challenge,
                expires_at=self.now() + timedelta(seconds=CODE_TTL_S),
            )
        return code

    def redeem_code(
        self, *, code: str, client_id: str, redirect_uri: str | None, verifier: str | None
    ) -> dict[str, Any]:
        """The token answer for an authorization code: single use, short-lived, for the
        client and redirect URI it was issued to, with the PKCE verifier of its challenge."""
        now = self.now()
        with self._lock:
            entry = self.codes.get(code)
            if entry is None or entry.used:
                # A replayed code: the grant it gave dies too (RFC 6749 4.1.2).
                if entry is not None and (given := self.grants.get(entry.code)) is not None:
                    given.revoked = True
                raise oauth_error(400, "invalid_grant", "unknown or used code")
            if entry.expires_at <= now:
                raise oauth_error(400, "invalid_grant", "the code expired")
            if entry.client_id != client_id:
                raise oauth_error(400, "invalid_grant", "code of another client")
            if redirect_uri != entry.redirect_uri:
                raise oauth_error(400, "invalid_grant", "redirect_uri does not match")
            if entry.challenge is not None:
                if not verifier:
                    raise oauth_error(400, "invalid_grant", "code_verifier missing")
                if not secrets.compare_digest(pkce_challenge(verifier), entry.challenge):
                    raise oauth_error(400, "invalid_grant", "code_verifier does not match")
            entry.used = True
            grant = Grant(
                id=entry.code,
                client_id=client_id,
                account=entry.account,
                scopes=entry.scopes,
                refresh_token=_token("sbx_rt"),
            )
            self.grants[grant.id] = grant
            self.refresh_tokens[grant.refresh_token] = grant.id
            return self._token_answer(grant, now, include_refresh=True)

    def refresh(self, *, refresh_token: str, client_id: str) -> dict[str, Any]:
        now = self.now()
        with self._lock:
            grant_id = self.refresh_tokens.get(refresh_token)
            grant = self.grants.get(grant_id) if grant_id else None
            if grant is None or grant.refresh_token != refresh_token:
                raise oauth_error(400, "invalid_grant", "unknown refresh token")
            if grant.client_id != client_id:
                raise oauth_error(400, "invalid_grant", "token of another client")
            if grant.revoked:
                raise oauth_error(400, "invalid_grant", "the grant was revoked")
            if grant.refresh_expired:
                raise oauth_error(400, "invalid_grant", "the refresh token expired")
            rotate = self.settings.rotate_refresh_tokens
            if rotate:
                del self.refresh_tokens[refresh_token]
                grant.refresh_token = _token("sbx_rt")
                self.refresh_tokens[grant.refresh_token] = grant.id
            return self._token_answer(grant, now, include_refresh=rotate)

    def _token_answer(
        self, grant: Grant, now: datetime, *, include_refresh: bool
    ) -> dict[str, Any]:
        lifetime = self.settings.token_lifetime_s
        access = AccessToken(_token("sbx_at"), grant.id, now + timedelta(seconds=lifetime))
        self.access_tokens[access.token] = access
        answer: dict[str, Any] = {
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(grant.scopes),
        }
        if include_refresh:
            answer["refresh_token"] = grant.refresh_token
        return answer

    def revoke(self, token: str, client_id: str) -> None:
        """RFC 7009: revoking either token ends the whole grant; unknown tokens are fine."""
        with self._lock:
            grant_id = self.refresh_tokens.get(token)
            if grant_id is None and (access := self.access_tokens.get(token)) is not None:
                grant_id = access.grant_id
            grant = self.grants.get(grant_id) if grant_id else None
            if grant is not None and grant.client_id == client_id:
                grant.revoked = True

    def account_for(self, token: str | None) -> SandboxAccount:
        """The account behind a bearer token, or the platform's 401."""
        if not token:
            raise SandboxError(401, "unauthorized", "a bearer token is required")
        with self._lock:
            access = self.access_tokens.get(token)
            grant = self.grants.get(access.grant_id) if access else None
            if access is None or grant is None:
                raise SandboxError(401, "invalid_token", "the access token is not known")
            if grant.revoked:
                raise SandboxError(401, "token_revoked", "the user revoked this application")
            if access.expires_at <= self.now():
                raise SandboxError(401, "token_expired", "the access token expired")
            return grant.account

    # --- posts ----------------------------------------------------------------------------

    def create_post(
        self,
        account: SandboxAccount,
        *,
        text: str,
        media: list[dict[str, Any]],
        link: str | None,
        key: str | None,
    ) -> tuple[SandboxPost, bool]:
        """The post, and whether it is new: an idempotency key already used by this account
        gives back its post (the platform's exactly-once guarantee)."""
        with self._lock:
            if key is not None and (existing := self.by_key.get((account.id, key))) is not None:
                return self.posts[existing], False
            self._next_post += 1
            post = SandboxPost(
                id=str(7_000_000_000 + self._next_post),
                account_id=account.id,
                username=account.username,
                text=text,
                media=media,
                link=link,
                client_reference=key,
                created_at=self.now(),
            )
            self.posts[post.id] = post
            if key is not None:
                self.by_key[(account.id, key)] = post.id
            return post, True

    def find_by_reference(self, account: SandboxAccount, key: str) -> SandboxPost | None:
        with self._lock:
            post_id = self.by_key.get((account.id, key))
            post = self.posts.get(post_id) if post_id else None
            return post if post is not None and post.deleted_at is None else None

    def get_post(self, account: SandboxAccount, post_id: str) -> SandboxPost:
        with self._lock:
            post = self.posts.get(post_id)
        if post is None or post.deleted_at is not None or post.account_id != account.id:
            raise SandboxError(404, "not_found", f"no post {post_id}")
        return post

    def visible_post(self, post_id: str) -> SandboxPost | None:
        """A post for its public page: anyone may see it until it is deleted."""
        with self._lock:
            post = self.posts.get(post_id)
        return post if post is not None and post.deleted_at is None else None

    def delete_post(self, account: SandboxAccount, post_id: str) -> None:
        post = self.get_post(account, post_id)
        with self._lock:
            post.deleted_at = self.now()

    def account_posts(self, account_id: str) -> list[SandboxPost]:
        with self._lock:
            return [p for p in self.posts.values() if p.account_id == account_id]


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    import base64

    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
