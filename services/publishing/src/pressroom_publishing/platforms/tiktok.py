"""TikTok: Login Kit OAuth 2 with PKCE and rotating refresh tokens, videos through the
Content Posting API's Direct Post.

Followed: developers.tiktok.com (2025): Login Kit ("OAuth user access token management":
``https://www.tiktok.com/v2/auth/authorize/`` with ``client_key``; ``POST
/v2/oauth/token/`` for the code and for ``refresh_token``, which may answer a new refresh
token; ``POST /v2/oauth/revoke/``; PKCE with the challenge the SHA-256 of the verifier in
hex, as TikTok's guide computes it), ``GET /v2/user/info/``, Content Posting API "Direct
Post" (``POST /v2/post/publish/creator_info/query/`` first: the creator's privacy options
and longest video; ``POST /v2/post/publish/video/init/`` with ``post_info`` and
``source_info`` ``FILE_UPLOAD`` or ``PULL_FROM_URL``; ``POST
/v2/post/publish/status/fetch/`` until ``PUBLISH_COMPLETE``), the "Media Transfer Guide"
(chunks of 5 to 64 MB uploaded in order with ``Content-Range``, ``total_chunk_count`` =
size // chunk size, the last chunk carrying the trailing bytes, a video under 5 MB in one
chunk), ``POST /v2/video/list/`` and ``/v2/video/query/``. Answers are ``{"data": ...,
"error": {"code": "ok" | ..., "message", "log_id"}}``; the token endpoint answers OAuth
errors.

Config: ``client_key``, ``client_secret``, ``api_url`` (``https://open.tiktokapis.com``),
``auth_url`` (``https://www.tiktok.com/v2/auth/authorize/``), ``scopes``, ``source``
(``FILE_UPLOAD``, streaming the bytes from the media service, or ``PULL_FROM_URL``, which
needs the media service's domain verified with TikTok), ``chunk_size`` (10 MB),
``privacy_level`` (default: public when the creator may, else the first option),
``poll_s`` (2.0), ``media_timeout_s`` (600), ``clock``. ``PostContent.options``:
``privacy_level``, ``disable_comment``, ``disable_duet``, ``disable_stitch``.

The API cannot delete a post. Once the upload is complete (or TikTok accepted the URL to
pull) TikTok publishes the Direct Post by itself; "Get Post Status" only reports on it. So
from that point ``publish`` never raises a retryable error: a failing or slow status fetch
gives the post by its publish id (``platform_post_id`` ``v_pub_...``, no URL); only a
``FAILED`` status is a ``RejectedError``. Reconciliation: ``find_published`` asks
status/fetch for the publish id this process started for the reference (a video still
processing is not listed yet), then lists the creator's 20 newest videos (scope
``video.list``) and matches the title (after a restart, only this second way is left).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import urlencode

from pressroom_publishing.platforms.base import (
    Account,
    AuthExpiredError,
    Capabilities,
    Credentials,
    DailyMetrics,
    MediaItem,
    MetricsReport,
    NotSupportedError,
    OAuthContext,
    Platform,
    PlatformError,
    PlatformHTTP,
    PostMetrics,
    PublishedPost,
    PublishRequest,
    RejectedError,
    Response,
    RevokedError,
    TextCount,
    TokenGrant,
    TransientError,
    retry_after_seconds,
)
from pressroom_publishing.platforms.common import (
    as_int,
    clock_of,
    expires_at,
    json_object,
    pause,
    today_within,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout

DEFAULT_SCOPES = ("user.info.basic", "user.info.stats", "video.publish", "video.list")
MIN_CHUNK = 5 * 1024 * 1024
MAX_CHUNK = 64 * 1024 * 1024
DEFAULT_CHUNK = 10 * 1024 * 1024
QUERY_MAX = 20
_AUTH = {"access_token_invalid"}
_REVOKED = {"scope_not_authorized", "spam_risk_user_banned_from_posting"}
_TRANSIENT = {"rate_limit_exceeded", "internal_error", "spam_risk_too_many_posts"}


def tiktok_challenge(verifier: str) -> str:
    """TikTok's PKCE challenge: SHA-256 of the verifier, hex encoded."""
    return hashlib.sha256(verifier.encode("ascii")).hexdigest()


# Statuses after the upload completed: TikTok goes on to publish by itself.
_COMMITTED = {"PROCESSING_DOWNLOAD", "SEND_TO_USER_INBOX"}


class _TikTokFailed(Exception):
    """status/fetch said FAILED: TikTok itself gave up on the post (a real refusal)."""

    def __init__(self, rejected: RejectedError) -> None:
        super().__init__(str(rejected))
        self.rejected = rejected


def _publish_id(platform: Platform, data: Mapping[str, Any]) -> str:
    publish_id = data.get("publish_id")
    if not isinstance(publish_id, str) or not publish_id:
        raise TransientError(platform.id, "the init answer has no publish_id")
    return publish_id


def chunk_plan(size: int, chunk_size: int) -> tuple[int, int]:
    """``(chunk_size, total_chunk_count)`` by the media transfer rules."""
    if size < MIN_CHUNK:
        return size, 1
    chunk = min(max(chunk_size, MIN_CHUNK), MAX_CHUNK)
    if size <= chunk:
        return size, 1
    return chunk, size // chunk


class TikTokPlatform(Platform):
    capabilities = Capabilities(
        platform="tiktok",
        display_name="TikTok",
        text_limit=2200,
        text_count=TextCount.UTF16_UNITS,
        needs_media=True,
        media_kinds=frozenset({"video"}),
        max_images=0,
        max_videos=1,
        video_types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
        max_video_bytes=4 * 1024**3,
        max_video_duration_s=600,  # the creator's own limit is checked at publish
        pkce=True,
        token_lifetime_s=24 * 3600,
        refreshable=True,
        lookup_by_reference=True,
        deletable=False,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.api_url = str(config.get("api_url") or "https://open.tiktokapis.com").rstrip("/")
        self.auth_url = str(config.get("auth_url") or "https://www.tiktok.com/v2/auth/authorize/")
        self.client_key = str(config.get("client_key") or config.get("client_id") or "")
        self.client_secret = str(config.get("client_secret") or "")
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        source = str(config.get("source") or "FILE_UPLOAD").upper()
        self.source = source if source in ("FILE_UPLOAD", "PULL_FROM_URL") else "FILE_UPLOAD"
        self.chunk_size = int(config.get("chunk_size") or DEFAULT_CHUNK)
        privacy = config.get("privacy_level")
        self.privacy_level = privacy if isinstance(privacy, str) else None
        self.poll_s = float(config.get("poll_s", 2.0))
        self.media_timeout_s = float(config.get("media_timeout_s", 600.0))
        self.clock = clock_of(config)
        self._pending: dict[str, str] = {}  # our reference -> TikTok's publish id

    def _app(self) -> dict[str, str]:
        if not self.client_key or not self.client_secret:
            raise RejectedError(
                self.id, "TikTok needs client_key and client_secret in its config", code="config"
            )
        return {"client_key": self.client_key, "client_secret": self.client_secret}

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "client_key": self._app()["client_key"],
            "scope": ",".join(context.scopes or self.scopes),
            "response_type": "code",
            "redirect_uri": context.redirect_uri,
            "state": context.state,
        }
        if context.code_verifier:
            params["code_challenge"] = tiktok_challenge(context.code_verifier)
            params["code_challenge_method"] = "S256"
        return f"{self.auth_url}?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        form = {
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": context.redirect_uri,
        }
        if context.code_verifier:
            form["code_verifier"] = context.code_verifier
        try:
            return await self._token(form)
        except AuthExpiredError as exc:
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(self.id, "no refresh token", code="no_refresh_token")
        try:
            return await self._token(
                {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
            )
        except RejectedError as exc:  # invalid_grant: the refresh token is spent or expired
            raise AuthExpiredError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/v2/oauth/token/",
            data={**self._app(), **form},
            ok=(200,),
        )
        body = json_object(self, answer)
        if isinstance(body.get("error"), str) and body["error"]:  # an error with status 200
            raise RejectedError(
                self.id, str(body.get("error_description") or body["error"]), code=body["error"]
            )
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise RejectedError(self.id, "the token answer has no access_token")
        refresh = body.get("refresh_token")
        scope = body.get("scope")
        return TokenGrant(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=expires_at(self.clock, body.get("expires_in")),
            scopes=tuple(scope.replace(",", " ").split()) if isinstance(scope, str) else (),
        )

    async def verify(self, credentials: Credentials) -> Account:
        data = await self._api(
            credentials,
            "GET",
            "/v2/user/info/",
            params={"fields": "open_id,union_id,display_name,username,follower_count"},
        )
        found = data.get("user")
        user: dict[str, Any] = found if isinstance(found, dict) else {}
        open_id = user.get("open_id")
        if not isinstance(open_id, str) or not open_id:
            raise TransientError(self.id, "the user answer has no open_id")
        return Account(
            account_id=open_id,
            name=str(user.get("display_name") or user.get("username") or open_id),
            extra={
                "username": user.get("username"),
                "followers": as_int(user.get("follower_count")),
            },
        )

    async def revoke(self, credentials: Credentials) -> None:
        await self.http.request(
            self,
            "POST",
            f"{self.api_url}/v2/oauth/revoke/",
            data={**self._app(), "token": credentials.access_token},
            ok=(200,),
        )

    async def _api(
        self,
        credentials: Credentials,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One call of the envelope API: its ``data`` when ``error.code`` is ``ok``."""
        answer = await self.http.request(
            self,
            method,
            f"{self.api_url}{path}",
            token=credentials.access_token,
            json=json,
            params=params,
            headers={"Content-Type": "application/json; charset=UTF-8"}
            if json is not None
            else None,
            ok=(200,),
        )
        body = json_object(self, answer)
        error = body.get("error")
        if isinstance(error, dict) and error.get("code") not in (None, "ok"):
            raise self.classify(answer)
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    # --- publishing ------------------------------------------------------------------------

    async def creator_info(self, credentials: Credentials) -> dict[str, Any]:
        """The creator's posting options now (privacy levels, longest video, whether
        comments, duets and stitches are off); TikTok asks for this before every post."""
        return await self._api(credentials, "POST", "/v2/post/publish/creator_info/query/", json={})

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        video = content.media[0]
        creator = await self.creator_info(credentials)
        longest = as_int(creator.get("max_video_post_duration_sec"))
        if longest and video.duration_s is not None and video.duration_s > longest:
            raise RejectedError(
                self.id,
                f"the video lasts {video.duration_s:.0f} s; this creator may post {longest} s",
                code="duration",
            )
        post_info = self._post_info(creator, content.text, content.options)
        if self.source == "PULL_FROM_URL":
            if not video.url:
                raise RejectedError(self.id, f"media {video.media_id} has no URL", code="no_url")
            data = await self._init(
                credentials, post_info, {"source": "PULL_FROM_URL", "video_url": video.url}
            )
            publish_id = _publish_id(self, data)
            self._remember(request.reference, publish_id)
        else:
            async with open_media(self, video) as media:
                size = media.size if media.size is not None else video.size_bytes
                chunk, count = chunk_plan(size, self.chunk_size)
                source = {
                    "source": "FILE_UPLOAD",
                    "video_size": size,
                    "chunk_size": chunk,
                    "total_chunk_count": count,
                }
                data = await self._init(credentials, post_info, source)
                publish_id = _publish_id(self, data)
                self._remember(request.reference, publish_id)
                upload_url = data.get("upload_url")
                if not isinstance(upload_url, str):
                    raise TransientError(self.id, "the init answer has no upload_url")
                await self._transfer(media.chunks(chunk), upload_url, video, size, count)
        # The upload is complete (or TikTok accepted the URL to pull): TikTok publishes the
        # Direct Post by itself from here on, so nothing after this point may read as "not
        # posted" -- a failing or slow status/fetch gives the post by its publish id.
        try:
            post_id = await self._wait(credentials, publish_id)
        except _TikTokFailed as failed:
            self._pending.pop(request.reference, None)
            raise failed.rejected from None
        except PlatformError:
            post_id = None
        return self._published(credentials, post_id, publish_id)

    def _published(
        self, credentials: Credentials, post_id: str | None, publish_id: str
    ) -> PublishedPost:
        """A video id when TikTok reported it, else the publish id (a private post, or one
        still processing: ``find_published`` and metrics know it by that)."""
        username = credentials.extra.get("username")
        url = (
            f"https://www.tiktok.com/@{username}/video/{post_id}"
            if post_id and isinstance(username, str) and username
            else None
        )
        return PublishedPost(
            platform_post_id=post_id or publish_id, url=url, published_at=self.clock()
        )

    def _remember(self, reference: str, publish_id: str) -> None:
        """Keep the publish id of our reference, so an attempt whose end was lost (the last
        chunk's answer, a crash of the wait) is reconciled through status/fetch while the
        video is still processing and not yet listed."""
        self._pending[reference] = publish_id
        while len(self._pending) > 1000:
            self._pending.pop(next(iter(self._pending)))

    async def _init(
        self, credentials: Credentials, post_info: Mapping[str, Any], source: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._api(
            credentials,
            "POST",
            "/v2/post/publish/video/init/",
            json={"post_info": dict(post_info), "source_info": dict(source)},
        )

    def _post_info(
        self, creator: Mapping[str, Any], title: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        allowed = creator.get("privacy_level_options")
        allowed = [p for p in allowed if isinstance(p, str)] if isinstance(allowed, list) else []
        wanted = options.get("privacy_level") or self.privacy_level
        if wanted is None:
            wanted = (
                "PUBLIC_TO_EVERYONE"
                if "PUBLIC_TO_EVERYONE" in allowed
                else (allowed[0] if allowed else "SELF_ONLY")
            )
        if allowed and wanted not in allowed:
            raise RejectedError(
                self.id,
                f"privacy {wanted} is not open to this creator ({', '.join(allowed)})",
                code="privacy_level_option_mismatch",
            )
        return {
            "title": title,
            "privacy_level": wanted,
            "disable_comment": bool(
                options.get("disable_comment") or creator.get("comment_disabled")
            ),
            "disable_duet": bool(options.get("disable_duet") or creator.get("duet_disabled")),
            "disable_stitch": bool(options.get("disable_stitch") or creator.get("stitch_disabled")),
        }

    async def _transfer(
        self,
        chunks: AsyncIterator[bytes],
        upload_url: str,
        video: MediaItem,
        size: int,
        count: int,
    ) -> None:
        """PUT the chunks in order; the last one carries the trailing bytes."""
        first = 0
        index = 0
        pending = bytearray()
        async for piece in chunks:
            pending.extend(piece)
            if index < count - 1:
                await self._put(upload_url, bytes(pending), first, size, video.content_type)
                first += len(pending)
                pending.clear()
                index += 1
        if pending:
            await self._put(upload_url, bytes(pending), first, size, video.content_type)

    async def _put(self, url: str, chunk: bytes, first: int, size: int, content_type: str) -> None:
        await self.http.request(
            self,
            "PUT",
            url,
            data=chunk,
            headers={
                "Content-Type": content_type,
                "Content-Range": f"bytes {first}-{first + len(chunk) - 1}/{size}",
            },
            ok=(200, 201, 206),
            client_timeout=upload_timeout(self),
        )

    async def _wait(self, credentials: Credentials, publish_id: str) -> str | None:
        deadline = time.monotonic() + self.media_timeout_s
        while True:
            data = await self._api(
                credentials,
                "POST",
                "/v2/post/publish/status/fetch/",
                json={"publish_id": publish_id},
            )
            status = data.get("status")
            if status == "PUBLISH_COMPLETE":
                ids = data.get("publicaly_available_post_id")  # sic, as TikTok spells it
                return str(ids[0]) if isinstance(ids, list) and ids else None
            if status == "FAILED":
                raise _TikTokFailed(
                    RejectedError(
                        self.id,
                        f"TikTok refused the video: {data.get('fail_reason') or 'unknown reason'}",
                        code=str(data.get("fail_reason") or "failed"),
                    )
                )
            if time.monotonic() > deadline:
                return None  # still processing: published by its publish id
            await pause(self.poll_s)

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        publish_id = self._pending.get(request.reference)
        if publish_id is not None:
            status = await self._api(
                credentials,
                "POST",
                "/v2/post/publish/status/fetch/",
                json={"publish_id": publish_id},
            )
            state = status.get("status")
            if state == "PUBLISH_COMPLETE":
                ids = status.get("publicaly_available_post_id")
                post_id = str(ids[0]) if isinstance(ids, list) and ids else None
                return self._published(credentials, post_id, publish_id)
            if state in _COMMITTED:
                return self._published(credentials, None, publish_id)
            if state == "FAILED":
                self._pending.pop(request.reference, None)
                return None
        data = await self._api(
            credentials,
            "POST",
            "/v2/video/list/",
            params={"fields": "id,title,video_description,create_time,share_url"},
            json={"max_count": 20},
        )
        wanted = " ".join(request.content.text.split())
        for video in data.get("videos") or []:
            if not isinstance(video, dict) or video.get("id") is None:
                continue
            title = " ".join(
                str(video.get("title") or video.get("video_description") or "").split()
            )
            if title == wanted:
                share = video.get("share_url")
                return PublishedPost(
                    platform_post_id=str(video["id"]),
                    url=share if isinstance(share, str) else None,
                )
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        raise NotSupportedError(self.id, "the TikTok API cannot delete a post")

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Today's counts: followers; views, likes, comments and shares per video."""
        day = today_within(self.clock, since, until)
        if day is None:
            return MetricsReport()
        account = await self.verify(credentials)
        posts = []
        ids = list(dict.fromkeys(platform_post_ids))
        for start in range(0, len(ids), QUERY_MAX):
            data = await self._api(
                credentials,
                "POST",
                "/v2/video/query/",
                params={"fields": "id,view_count,like_count,comment_count,share_count"},
                json={"filters": {"video_ids": ids[start : start + QUERY_MAX]}},
            )
            for video in data.get("videos") or []:
                if not isinstance(video, dict) or video.get("id") is None:
                    continue
                likes = as_int(video.get("like_count"))
                comments = as_int(video.get("comment_count"))
                shares = as_int(video.get("share_count"))
                posts.append(
                    PostMetrics(
                        platform_post_id=str(video["id"]),
                        day=day,
                        impressions=as_int(video.get("view_count")),
                        engagement=likes + comments + shares,
                        likes=likes,
                        comments=comments,
                        shares=shares,
                    )
                )
        followers = as_int(account.extra.get("followers"))
        return MetricsReport(account=[DailyMetrics(day=day, followers=followers)], posts=posts)

    # --- errors ----------------------------------------------------------------------------

    def error_details(self, response: Response) -> tuple[str | None, str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and error.get("code"):
                return str(error["code"]), str(error.get("message") or error["code"])
            if isinstance(error, str) and error:
                return error, str(body.get("error_description") or error)
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        status = response.status
        if code in _AUTH:
            return AuthExpiredError(self.id, message, code=code, status=status)
        if code in _REVOKED:
            return RevokedError(self.id, message, code=code, status=status)
        if code in _TRANSIENT or status == 429 or status >= 500:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if code == "spam_risk_too_many_posts" and wait is None:
                wait = 3600.0  # the creator's daily cap
            return TransientError(self.id, message, code=code, status=status, retry_after_s=wait)
        if status == 401:
            return AuthExpiredError(self.id, message, code=code, status=status)
        return RejectedError(self.id, message, code=code, status=status)
