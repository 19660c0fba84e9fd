"""X (Twitter): OAuth 2 with PKCE and ``offline.access``, posts through ``POST /2/tweets``,
media through the v2 chunked upload.

Followed: docs.x.com (X API v2, 2025): OAuth 2.0 Authorization Code with PKCE
(``https://x.com/i/oauth2/authorize``; ``POST /2/oauth2/token``, confidential clients
authenticate with HTTP Basic; access tokens live 2 hours, refresh tokens rotate;
``POST /2/oauth2/revoke``), ``GET /2/users/me``, the media upload endpoints
``POST /2/media/upload/initialize`` (JSON: ``media_type``, ``total_bytes``,
``media_category``), ``POST /2/media/upload/{id}/append`` (multipart ``segment_index`` +
``media``, each segment at most 5 MB), ``POST /2/media/upload/{id}/finalize``, ``GET
/2/media/upload?command=STATUS&media_id=`` (``processing_info.state`` pending ->
in_progress -> succeeded | failed, ``check_after_secs``), ``POST /2/tweets``, ``DELETE
/2/tweets/{id}``, ``GET /2/users/{id}/tweets``, ``GET /2/tweets?ids=`` with
``public_metrics``. Errors are problem JSON (``title``, ``detail``, ``type``, ``status``;
``errors[]`` for invalid requests); 429 carries ``x-rate-limit-reset`` (epoch seconds) and,
for the daily posting cap, ``x-user-limit-24hour-reset``. Counting is twitter-text v3
(``TextCount.WEIGHTED``).

Config: ``client_id`` (required), ``client_secret`` (for a confidential client),
``api_url`` (default ``https://api.x.com``), ``auth_url`` (default
``https://x.com/i/oauth2/authorize``), ``web_url`` (``https://x.com``), ``scopes``,
``chunk_size`` (default 4 MiB, at most 5 MB), ``media_timeout_s`` (300), ``clock``.

Reconciliation: X has no idempotency key and no client reference; ``find_published``
reads the account's 20 newest posts and takes the newest whose text (entities and the
t.co links X puts in place of URLs and media set aside) and number of media match.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import urlencode

import aiohttp

from pressroom_publishing.platforms.base import (
    Account,
    AuthExpiredError,
    Capabilities,
    Credentials,
    DailyMetrics,
    MediaItem,
    MetricsReport,
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
    create_once,
    expires_at,
    json_object,
    parse_datetime,
    pause,
    pkce_challenge,
    today_within,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout
from pressroom_publishing.platforms.text import urls

DEFAULT_SCOPES = ("tweet.read", "tweet.write", "users.read", "media.write", "offline.access")
MAX_SEGMENT = 5 * 1024 * 1024
DEFAULT_CHUNK = 4 * 1024 * 1024
IDS_PER_LOOKUP = 100


class XPlatform(Platform):
    capabilities = Capabilities(
        platform="x",
        display_name="X",
        text_limit=280,
        text_count=TextCount.WEIGHTED,
        max_images=4,
        max_videos=1,
        mixed_media=False,
        image_types=frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
        video_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=5 * 1024 * 1024,
        max_video_bytes=512 * 1024 * 1024,
        max_video_duration_s=140,
        pkce=True,
        token_lifetime_s=7200,
        refreshable=True,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.api_url = str(config.get("api_url") or "https://api.x.com").rstrip("/")
        self.auth_url = str(config.get("auth_url") or "https://x.com/i/oauth2/authorize")
        self.web_url = str(config.get("web_url") or "https://x.com").rstrip("/")
        self.client_id = str(config.get("client_id") or "")
        secret = config.get("client_secret")
        self.client_secret = secret if isinstance(secret, str) and secret else None
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        self.chunk_size = min(int(config.get("chunk_size") or DEFAULT_CHUNK), MAX_SEGMENT)
        self.media_timeout_s = float(config.get("media_timeout_s", 300.0))
        self.clock = clock_of(config)

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        if not context.code_verifier:
            raise RejectedError(self.id, "X requires PKCE", code="pkce_required")
        params = {
            "response_type": "code",
            "client_id": self._client_id(),
            "redirect_uri": context.redirect_uri,
            "scope": " ".join(context.scopes or self.scopes),
            "state": context.state,
            "code_challenge": pkce_challenge(context.code_verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.auth_url}?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": context.redirect_uri,
            "code_verifier": context.code_verifier or "",
        }
        try:
            return await self._token(form)
        except AuthExpiredError as exc:  # a bad code or verifier
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(self.id, "no refresh token", code="no_refresh_token")
        try:
            return await self._token(
                {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
            )
        except RejectedError as exc:  # invalid_request: the refresh token is spent or revoked
            raise AuthExpiredError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    def _client_id(self) -> str:
        if not self.client_id:
            raise RejectedError(self.id, "X needs a client_id in its config", code="config")
        return self.client_id

    def _client_auth(self, form: dict[str, str]) -> dict[str, str]:
        """HTTP Basic for a confidential client; a public client sends its id in the form."""
        form["client_id"] = self._client_id()
        if self.client_secret is None:
            return {}
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        headers = self._client_auth(form)
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/2/oauth2/token",
            data=form,
            headers=headers,
            ok=(200,),
        )
        body = json_object(self, answer)
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise RejectedError(self.id, "the token answer has no access_token")
        refresh = body.get("refresh_token")
        scope = body.get("scope")
        return TokenGrant(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=expires_at(self.clock, body.get("expires_in")),
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        )

    async def verify(self, credentials: Credentials) -> Account:
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/2/users/me",
            token=credentials.access_token,
            params={"user.fields": "public_metrics"},
            ok=(200,),
        )
        data = json_object(self, answer).get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise RejectedError(self.id, "the user answer has no id")
        metrics = data.get("public_metrics")
        return Account(
            account_id=data["id"],
            name=str(data.get("name") or data.get("username") or data["id"]),
            extra={
                "username": data.get("username"),
                "followers": as_int(metrics.get("followers_count"))
                if isinstance(metrics, dict)
                else 0,
            },
        )

    async def revoke(self, credentials: Credentials) -> None:
        for token, hint in (
            (credentials.refresh_token, "refresh_token"),
            (credentials.access_token, "access_token"),
        ):
            if not token:
                continue
            form = {"token": token, "token_type_hint": hint}
            headers = self._client_auth(form)
            await self.http.request(
                self,
                "POST",
                f"{self.api_url}/2/oauth2/revoke",
                data=form,
                headers=headers,
                ok=(200,),
            )

    # --- publishing ------------------------------------------------------------------------

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        media_ids = [await self._upload(credentials, item) for item in content.media]
        text = content.text
        if content.link and content.link not in text:
            text = f"{text} {content.link}".strip()
        body: dict[str, Any] = {"text": text}
        if media_ids:
            body["media"] = {"media_ids": media_ids}

        async def create() -> PublishedPost:
            answer = await self.http.request(
                self,
                "POST",
                f"{self.api_url}/2/tweets",
                token=credentials.access_token,
                json=body,
                ok=(200, 201),
            )
            data = json_object(self, answer).get("data")
            if not isinstance(data, dict):
                raise TransientError(self.id, "the post answer has no data")
            return self._published(credentials, data)

        return await create_once(self, credentials, request, create)

    async def _upload(self, credentials: Credentials, item: MediaItem) -> str:
        """initialize -> append every segment in order -> finalize -> status until done."""
        token = credentials.access_token
        category = (
            "tweet_video"
            if item.kind == "video"
            else "tweet_gif"
            if item.content_type == "image/gif"
            else "tweet_image"
        )
        async with open_media(self, item) as media:
            answer = await self.http.request(
                self,
                "POST",
                f"{self.api_url}/2/media/upload/initialize",
                token=token,
                json={
                    "media_type": media.content_type,
                    "total_bytes": media.size if media.size is not None else item.size_bytes,
                    "media_category": category,
                },
                ok=(200, 201, 202),
            )
            media_id = _data_id(self, answer)
            index = 0
            async for chunk in media.chunks(self.chunk_size):
                form = aiohttp.FormData()
                form.add_field("segment_index", str(index))
                form.add_field(
                    "media", chunk, filename="blob", content_type="application/octet-stream"
                )
                await self.http.request(
                    self,
                    "POST",
                    f"{self.api_url}/2/media/upload/{media_id}/append",
                    token=token,
                    data=form,
                    ok=(200, 201, 202, 204),
                    client_timeout=upload_timeout(self),
                )
                index += 1
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/2/media/upload/{media_id}/finalize",
            token=token,
            ok=(200, 201, 202),
        )
        info = _processing(json_object(self, answer))
        deadline = time.monotonic() + self.media_timeout_s
        while info is not None and info.get("state") in ("pending", "in_progress"):
            if time.monotonic() > deadline:
                raise TransientError(self.id, f"media {item.media_id} is still processing")
            wait = as_int(info["check_after_secs"]) if "check_after_secs" in info else 1
            await pause(min(max(wait, 0), 30))
            answer = await self.http.request(
                self,
                "GET",
                f"{self.api_url}/2/media/upload",
                token=token,
                params={"command": "STATUS", "media_id": media_id},
                ok=(200,),
            )
            info = _processing(json_object(self, answer))
        if info is not None and info.get("state") == "failed":
            found = info.get("error")
            error: dict[str, Any] = found if isinstance(found, dict) else {}
            raise RejectedError(
                self.id,
                str(error.get("message") or "the media could not be processed"),
                code=str(error.get("name") or "media_failed"),
            )
        return media_id

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/2/users/{credentials.account_id}/tweets",
            token=credentials.access_token,
            params={
                "max_results": "20",
                "exclude": "replies,retweets",
                "tweet.fields": "created_at,attachments",
            },
            ok=(200,),
        )
        wanted = _comparable(request.content.text)
        count = len(request.content.media)
        data = json_object(self, answer).get("data")
        for tweet in data if isinstance(data, list) else []:
            if not isinstance(tweet, dict) or not isinstance(tweet.get("id"), str):
                continue
            attachments = tweet.get("attachments")
            keys = attachments.get("media_keys") if isinstance(attachments, dict) else None
            if _comparable(str(tweet.get("text") or "")) == wanted and len(keys or []) == count:
                return self._published(credentials, tweet)
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        await self.http.request(
            self,
            "DELETE",
            f"{self.api_url}/2/tweets/{platform_post_id}",
            token=credentials.access_token,
            ok=(200, 404),
        )

    def _published(self, credentials: Credentials, data: Mapping[str, Any]) -> PublishedPost:
        post_id = data.get("id")
        if not isinstance(post_id, str) or not post_id:
            raise TransientError(self.id, "the post answer has no id")
        username = credentials.extra.get("username")
        path = f"{username}/status" if isinstance(username, str) and username else "i/web/status"
        return PublishedPost(
            platform_post_id=post_id,
            url=f"{self.web_url}/{path}/{post_id}",
            published_at=parse_datetime(data.get("created_at")) or self.clock(),
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Today's ``public_metrics`` (impressions, likes, replies, reposts + quotes,
        bookmarks) and followers, as one snapshot row each when the window holds today."""
        day = today_within(self.clock, since, until)
        if day is None:
            return MetricsReport()
        account = await self.verify(credentials)
        posts: list[PostMetrics] = []
        ids = list(dict.fromkeys(platform_post_ids))
        for start in range(0, len(ids), IDS_PER_LOOKUP):
            answer = await self.http.request(
                self,
                "GET",
                f"{self.api_url}/2/tweets",
                token=credentials.access_token,
                params={
                    "ids": ",".join(ids[start : start + IDS_PER_LOOKUP]),
                    "tweet.fields": "public_metrics",
                },
                ok=(200,),
            )
            data = json_object(self, answer).get("data")
            for tweet in data if isinstance(data, list) else []:
                if not isinstance(tweet, dict) or not isinstance(tweet.get("id"), str):
                    continue
                metrics = tweet.get("public_metrics")
                metrics = metrics if isinstance(metrics, dict) else {}
                likes = as_int(metrics.get("like_count"))
                comments = as_int(metrics.get("reply_count"))
                shares = as_int(metrics.get("retweet_count")) + as_int(metrics.get("quote_count"))
                posts.append(
                    PostMetrics(
                        platform_post_id=tweet["id"],
                        day=day,
                        impressions=as_int(metrics.get("impression_count")),
                        engagement=likes
                        + comments
                        + shares
                        + as_int(metrics.get("bookmark_count")),
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
            if isinstance(body.get("error"), str):  # the OAuth endpoints
                return body["error"], str(body.get("error_description") or body["error"])
            errors = body.get("errors")
            first = errors[0] if isinstance(errors, list) and errors else None
            detail = body.get("detail") or (
                first.get("message") if isinstance(first, dict) else None
            )
            kind = body.get("type")
            code = kind.rstrip("/").rsplit("/", 1)[-1] if isinstance(kind, str) else None
            if code in (None, "about:blank"):
                code = str(body["title"]) if isinstance(body.get("title"), str) else None
            if detail:
                return code, str(detail)
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        status = response.status
        if status == 429:
            headers = response.headers
            wait = retry_after_seconds(headers.get("Retry-After"))
            reset = headers.get("x-rate-limit-reset")
            if headers.get("x-user-limit-24hour-remaining") == "0":
                reset = headers.get("x-user-limit-24hour-reset") or reset
            if wait is None and reset and reset.isdigit():
                wait = max(0.0, int(reset) - self.clock().timestamp())
            return TransientError(self.id, message, code=code, status=status, retry_after_s=wait)
        if status == 401:
            return AuthExpiredError(self.id, message, code=code, status=status)
        if status == 403 and "duplicate" in message.lower():
            return RejectedError(self.id, message, code="duplicate", status=status)
        if status == 403 and "suspended" in message.lower():
            return RevokedError(self.id, message, code="suspended", status=status)
        return super().classify(response)


def _data_id(platform: Platform, answer: Response) -> str:
    data = json_object(platform, answer).get("data")
    media_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(media_id, str) or not media_id:
        raise TransientError(platform.id, "the upload answer has no media id")
    return media_id


def _processing(body: Mapping[str, Any]) -> dict[str, Any] | None:
    data = body.get("data")
    info = data.get("processing_info") if isinstance(data, dict) else None
    return info if isinstance(info, dict) else None


def _comparable(text: str) -> str:
    """A post's text without its URLs (X shows them as t.co links, those without a scheme
    too, and adds one for media), unescaped (X escapes ``& < >``), white space collapsed."""
    text = html.unescape(text)
    pieces, position = [], 0
    for start, end in urls(text, without_scheme=True):
        pieces.append(text[position:start])
        position = end
    pieces.append(text[position:])
    return " ".join(" ".join(pieces).split())
