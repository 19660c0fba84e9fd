"""The platform interface: what every adapter declares and does, and how its errors are told apart.

One module per platform under ``platforms/`` subclasses ``Platform``, declares its
``Capabilities`` and implements the operations over HTTP with ``PlatformHTTP`` (one client
for all adapters: timeouts, JSON, and the error classification below). Errors are classified
here, once:

- ``TransientError``: 5xx, timeouts, connection failures, ``429`` (with ``retry_after_s``
  from ``Retry-After`` when the platform sent one). Retried with backoff.
- ``AuthExpiredError``: the access token is no longer accepted (``401``); refresh once and
  repeat the attempt.
- ``RevokedError``: the user or the platform withdrew the grant; the connection is dead.
- ``RejectedError``: the platform refused the content or the request for good (its own
  ``code`` and ``message`` kept); the platform's part of the post fails at once.
"""

from __future__ import annotations

import email.utils
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol
from uuid import UUID

import aiohttp
import regex

MediaKind = Literal["image", "video"]


class TextCount(StrEnum):
    """How a platform counts a text against its limit."""

    CHARACTERS = "characters"  # Unicode code points
    GRAPHEMES = "graphemes"  # user-perceived characters (an emoji with modifiers is one)
    UTF8_BYTES = "utf8_bytes"
    UTF16_UNITS = "utf16_units"
    WEIGHTED = "weighted"  # X's weighted count: URLs 23, CJK and emoji 2 (``platforms.text``)
    EMOJI_AS_UTF8 = "emoji_as_utf8"  # Threads: code points, an emoji as its UTF-8 bytes


def count_text(text: str, how: TextCount) -> int:
    if how is TextCount.CHARACTERS:
        return len(text)
    if how is TextCount.UTF8_BYTES:
        return len(text.encode("utf-8"))
    if how is TextCount.UTF16_UNITS:
        return len(text.encode("utf-16-le")) // 2
    if how is TextCount.WEIGHTED:
        from pressroom_publishing.platforms.text import weighted_length

        return weighted_length(text)
    if how is TextCount.EMOJI_AS_UTF8:
        from pressroom_publishing.platforms.text import emoji_as_utf8_length

        return emoji_as_utf8_length(text)
    return _graphemes(text)


_CLUSTER = regex.compile(r"\X")


def _graphemes(text: str) -> int:
    """Unicode extended grapheme clusters (UAX #29), by the ``regex`` module's ``\\X``: what
    Bluesky's ``maxGraphemes`` and the sandbox count (a family emoji, a flag, a Devanagari
    syllable with its vowel sign, CR LF, Hangul jamo are one each)."""
    return len(_CLUSTER.findall(text))


@dataclass(frozen=True)
class Capabilities:
    """What a platform accepts and how it connects; validation and the scheduler read it."""

    platform: str
    display_name: str
    text_limit: int | None
    text_count: TextCount = TextCount.CHARACTERS
    needs_text: bool = False
    needs_media: bool = False
    media_kinds: frozenset[MediaKind] = frozenset({"image", "video"})
    max_images: int = 4
    max_videos: int = 1
    mixed_media: bool = False  # images and a video in one post
    image_types: frozenset[str] = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
    video_types: frozenset[str] = frozenset({"video/mp4", "video/quicktime"})
    max_image_bytes: int | None = None
    max_video_bytes: int | None = None
    max_video_duration_s: float | None = None
    connect: Literal["oauth2", "app_password"] = "oauth2"
    pkce: bool = True
    token_lifetime_s: int | None = None  # None: the token does not expire by itself
    refreshable: bool = True
    lookup_by_reference: bool = False  # find_published can tell whether an attempt went out
    deletable: bool = True
    metrics: bool = True


@dataclass(frozen=True)
class OAuthContext:
    """One authorization in flight: what the authorization URL was built with, and what the
    code exchange must send back (the redirect URI and the PKCE verifier)."""

    state: str
    redirect_uri: str
    code_verifier: str | None = None  # PKCE S256; the challenge is derived from it
    scopes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. a Mastodon instance URL


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str | None = None  # None: the platform sent none (keep the one we have)
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Credentials:
    """A connection's usable tokens, decrypted for the duration of one operation; never
    logged, never in a response or an event."""

    connection_id: UUID
    brand_id: UUID
    platform: str
    access_token: str
    account_id: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # tokens stay out of tracebacks and logs
        return (
            f"Credentials(connection_id={self.connection_id}, platform={self.platform!r}, "
            f"account_id={self.account_id!r})"
        )


@dataclass(frozen=True)
class MediaItem:
    """A post's asset as the media projection knows it; ``url`` (a fresh signed URL the
    platform can fetch) is filled in at publish time only."""

    media_id: UUID
    kind: MediaKind
    content_type: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    filename: str | None = None
    url: str | None = None
    alt_text: str | None = None  # the description platforms show to screen readers


@dataclass(frozen=True)
class PostContent:
    """What one platform gets: the post's text and media with that platform's overrides."""

    text: str
    media: Sequence[MediaItem] = ()
    link: str | None = None
    # Platform-specific choices of the post's override for this platform (Pinterest
    # ``board_id``, ``title``; TikTok ``privacy_level``; YouTube ``title``, ``privacy``).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishRequest:
    post_id: UUID
    reference: str  # our client reference (idempotency key) for this post and platform
    content: PostContent


@dataclass(frozen=True)
class PublishedPost:
    platform_post_id: str
    url: str | None = None
    published_at: datetime | None = None


@dataclass(frozen=True)
class Problem:
    """One validation problem; ``field`` is relative to the platform (``text``, ``media``)."""

    field: str
    message: str


@dataclass(frozen=True)
class DailyMetrics:
    day: date
    reach: int = 0
    impressions: int = 0
    engagement: int = 0
    followers: int = 0


@dataclass(frozen=True)
class PostMetrics:
    platform_post_id: str
    day: date
    reach: int = 0
    impressions: int = 0
    engagement: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0


@dataclass(frozen=True)
class MetricsReport:
    account: Sequence[DailyMetrics] = ()
    posts: Sequence[PostMetrics] = ()


# --- errors -----------------------------------------------------------------------------


class PlatformError(Exception):
    """A platform call failed. ``code`` and ``message`` are the platform's own when it gave
    them; ``status`` is the HTTP status (None for a network failure)."""

    kind: ClassVar[str] = "error"

    def __init__(
        self,
        platform: str,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{platform}: {message}")
        self.platform = platform
        self.message = message
        self.code = code
        self.status = status
        self.details = dict(details or {})


class TransientError(PlatformError):
    kind = "transient"

    def __init__(self, *args: Any, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s


class AuthExpiredError(PlatformError):
    kind = "auth_expired"


class RevokedError(PlatformError):
    kind = "revoked"


class RejectedError(PlatformError):
    kind = "rejected"


class NotSupportedError(PlatformError):
    """The platform cannot do this (e.g. look a post up by our reference)."""

    kind = "not_supported"


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None


class PlatformHTTP:
    """The HTTP client every adapter uses: one aiohttp session, a timeout per call, and
    failures turned into the error classes above through the adapter's ``classify``."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout_s: float = 30.0) -> None:
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def request(
        self,
        platform: Platform,
        method: str,
        url: str,
        *,
        token: str | None = None,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Sequence[int] = (200, 201, 202, 204),
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> Response:
        """``client_timeout`` replaces the client's for this call (an upload of a large file is
        bounded per read, not in total: ``media_stream.upload_timeout``)."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        name = platform.capabilities.platform
        try:
            async with self.session.request(
                method,
                url,
                json=json,
                data=data,
                params=params,
                headers=sent,
                timeout=client_timeout or self.timeout,
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                response = Response(answer.status, answer.headers.copy(), body)  # case-insensitive
        except TimeoutError as exc:
            raise TransientError(name, f"{method} {url} timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransientError(name, f"{method} {url} failed: {exc}") from exc
        if response.status in ok:
            return response
        raise platform.classify(response)


class Platform(ABC):
    """One social platform. Adapters are stateless apart from their configuration; every
    operation gets the credentials it needs."""

    capabilities: ClassVar[Capabilities]

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        self.http = http
        self.config = dict(config)

    @property
    def id(self) -> str:
        return self.capabilities.platform

    # Connecting.
    @abstractmethod
    async def authorization_url(self, context: OAuthContext) -> str:
        """Where to send the browser to consent (state, redirect URI, PKCE challenge)."""

    @abstractmethod
    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant: ...

    @abstractmethod
    async def refresh(self, credentials: Credentials) -> TokenGrant:
        """A new access token from the refresh token; ``AuthExpiredError`` or
        ``RevokedError`` when the refresh token itself is dead."""

    @abstractmethod
    async def verify(self, credentials: Credentials) -> Account:
        """The account behind the token; raises when the token is not usable."""

    async def revoke(self, credentials: Credentials) -> None:
        """Withdraw the grant on the platform, where it allows that (default: nothing)."""
        return None

    # Publishing.
    def validate(self, content: PostContent) -> list[Problem]:
        """Problems with ``content`` for this platform, from its capabilities; adapters add
        their own rules by extending this."""
        return validate_against(self.capabilities, content)

    @abstractmethod
    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost: ...

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        """The post an earlier attempt with ``request.reference`` created, or None if it
        never went out. ``NotSupportedError`` where the platform cannot be asked."""
        raise NotSupportedError(self.id, "posts cannot be looked up by reference")

    @abstractmethod
    async def delete(self, credentials: Credentials, platform_post_id: str) -> None: ...

    @abstractmethod
    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport: ...

    # Errors.
    def classify(self, response: Response) -> PlatformError:
        """The error class of a failed answer. Adapters override ``error_details`` to read
        their platform's error body and may refine this (e.g. a revoked-token code)."""
        code, message = self.error_details(response)
        name = self.id
        status = response.status
        details = {"status": status}
        if status == 429 or status >= 500:
            return TransientError(
                name,
                message,
                code=code,
                status=status,
                details=details,
                retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status == 401:
            return AuthExpiredError(name, message, code=code, status=status, details=details)
        return RejectedError(name, message, code=code, status=status, details=details)

    def error_details(self, response: Response) -> tuple[str | None, str]:
        """``(platform error code, message)`` from an error answer's body."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                return _text(error.get("code")), str(error.get("message") or response.status)
            if isinstance(error, str):
                return error, str(body.get("error_description") or body.get("message") or error)
            if "message" in body:
                return _text(body.get("code")), str(body["message"])
        text = response.body[:300].decode("utf-8", "replace").strip()
        return None, text or f"HTTP {response.status}"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def validate_against(capabilities: Capabilities, content: PostContent) -> list[Problem]:
    """The rules every platform declares through its capabilities."""
    problems: list[Problem] = []
    caps = capabilities
    length = count_text(content.text, caps.text_count)
    if caps.text_limit is not None and length > caps.text_limit:
        problems.append(
            Problem(
                "text",
                f"{length} {caps.text_count.value.replace('_', ' ')}, over the limit of "
                f"{caps.text_limit}",
            )
        )
    if caps.needs_text and not content.text.strip():
        problems.append(Problem("text", f"{caps.display_name} needs a text"))
    images = [m for m in content.media if m.kind == "image"]
    videos = [m for m in content.media if m.kind == "video"]
    if caps.needs_media and not content.media:
        problems.append(Problem("media", f"{caps.display_name} needs an image or a video"))
    for kind, items, limit in (
        ("image", images, caps.max_images),
        ("video", videos, caps.max_videos),
    ):
        if items and kind not in caps.media_kinds:
            problems.append(Problem("media", f"{caps.display_name} does not take {kind}s"))
        elif len(items) > limit:
            problems.append(
                Problem("media", f"{len(items)} {kind}s; {caps.display_name} takes at most {limit}")
            )
    if images and videos and not caps.mixed_media:
        problems.append(Problem("media", f"{caps.display_name} does not mix images and videos"))
    for item in content.media:
        allowed = caps.image_types if item.kind == "image" else caps.video_types
        if item.content_type not in allowed:
            problems.append(
                Problem("media", f"{item.media_id}: {item.content_type} is not accepted")
            )
        limit_bytes = caps.max_image_bytes if item.kind == "image" else caps.max_video_bytes
        if limit_bytes is not None and item.size_bytes > limit_bytes:
            problems.append(
                Problem("media", f"{item.media_id}: {item.size_bytes} bytes over {limit_bytes}")
            )
        if (
            item.kind == "video"
            and caps.max_video_duration_s is not None
            and item.duration_s is not None
            and item.duration_s > caps.max_video_duration_s
        ):
            problems.append(
                Problem(
                    "media",
                    f"{item.media_id}: {item.duration_s:.0f} s over "
                    f"{caps.max_video_duration_s:.0f} s",
                )
            )
    return problems


# --- what the scheduler needs from connections --------------------------------------------


class ConnectionUnusable(Exception):
    """No usable token for the brand and platform: not connected, expired or revoked."""

    def __init__(self, platform: str, status: str, message: str) -> None:
        super().__init__(message)
        self.platform = platform
        self.status = status  # missing | expired | revoked | error
        self.message = message


class CredentialSource(Protocol):
    """The connections' side of publishing (``pressroom_publishing.credentials``)."""

    async def credentials(self, brand_id: UUID, platform: str) -> Credentials:
        """The connection's current usable credentials (refreshed first if they are about
        to expire); ``ConnectionUnusable`` when there are none."""
        ...

    async def refresh_after_rejection(self, stale: Credentials) -> Credentials:
        """The platform refused ``stale`` as expired: refresh once (one refresh across
        replicas: if another already replaced the token, return that one) and return the
        new credentials; ``ConnectionUnusable`` (and the connection marked ``expired``) when
        the refresh token is dead too."""
        ...

    async def mark_revoked(self, credentials: Credentials, error: PlatformError) -> None:
        """The platform says the grant is gone: the connection becomes ``revoked`` (with
        its event) and later ``credentials`` calls raise ``ConnectionUnusable``."""
        ...
