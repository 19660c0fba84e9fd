"""LinkedIn: OAuth 2 (3-legged), posts through the versioned Posts API, images and videos
uploaded through the Images and Videos APIs.

Followed: Microsoft Learn, LinkedIn Marketing / Consumer docs (versioned APIs, 2025):
"Authorization Code Flow" (``https://www.linkedin.com/oauth/v2/authorization``,
``/accessToken``, ``/revoke``; access tokens live 60 days, refresh tokens only for
approved apps), "Sign In with LinkedIn using OpenID Connect" (``GET /v2/userinfo``,
``sub``), "Posts API" (``POST /rest/posts``, the new post's URN in ``x-restli-id``;
``GET /rest/posts?q=author``; ``DELETE``; commentary in "little text" format, so
``\\ | { } @ [ ] ( ) < > # * _ ~`` are escaped), "Images API" (``initializeUpload`` -> PUT
the bytes -> ``urn:li:image``), "Videos API" (``initializeUpload`` with ``fileSizeBytes``
-> PUT each part of ``uploadInstructions`` -> ETags -> ``finalizeUpload`` -> poll
``status`` until ``AVAILABLE``), "Social Actions" (likes and comments summaries) and
"Organization Share Statistics" (daily, for organization authors). Every ``/rest`` call
sends ``LinkedIn-Version: YYYYMM`` and ``X-Restli-Protocol-Version: 2.0.0``. Errors are
``{"status", "serviceErrorCode", "code", "message"}``: 401 ``EXPIRED_ACCESS_TOKEN`` /
``REVOKED_ACCESS_TOKEN`` (65601), 426 ``NONEXISTENT_VERSION`` (a retired version: our
configuration, never retried), 422 ``DUPLICATE_POST``, 429 throttling.

Config: ``client_id``, ``client_secret``, ``version`` (``LinkedIn-Version``, default
``DEFAULT_VERSION``; LinkedIn serves each version for one year, then answers 426, which
the adapter reports as a configuration error: keep the default current), ``api_url``
(``https://api.linkedin.com``), ``oauth_url`` (``https://www.linkedin.com/oauth/v2``),
``web_url`` (``https://www.linkedin.com``), ``scopes``, ``media_timeout_s`` (300),
``clock``. Per connection (``Credentials.extra``): ``author`` (default
``urn:li:person:<account id>``; ``urn:li:organization:<id>`` posts as a page).

Reconciliation: ``find_published`` lists the author's newest posts (this needs
``r_member_social`` for members, ``r_organization_social`` for pages; without it the
platform says 403 and the answer is ``NotSupportedError``) and matches the commentary and
number of media; LinkedIn also refuses an identical repeat with 422 ``DUPLICATE_POST``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

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
    create_once,
    expires_at,
    json_object,
    pause,
    today_within,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout

# The newest Marketing version when this was written (July 2026, served until about July
# 2027). LinkedIn sunsets each version a year after its release and answers 426 after
# that: keep this current (Microsoft Learn, "LinkedIn Marketing API Versioning" and
# "Migrations"), or set ``platforms.linkedin.version`` per deployment.
DEFAULT_VERSION = "202607"
DEFAULT_SCOPES = ("openid", "profile", "w_member_social")
_LITTLE_TEXT = re.compile(r"([\\|{}@\[\]()<>#*_~])")
_REVOKED = {"REVOKED_ACCESS_TOKEN", "65601"}
_EXPIRED = {"EXPIRED_ACCESS_TOKEN", "INVALID_ACCESS_TOKEN", "65600", "65602"}


def little_text(text: str) -> str:
    """Commentary in LinkedIn's "little text" format: reserved characters escaped, so a
    ``#`` or ``@`` in the text is shown as written instead of breaking the post."""
    return _LITTLE_TEXT.sub(r"\\\1", text)


class LinkedInPlatform(Platform):
    capabilities = Capabilities(
        platform="linkedin",
        display_name="LinkedIn",
        text_limit=3000,
        text_count=TextCount.CHARACTERS,
        max_images=20,
        max_videos=1,
        mixed_media=False,
        image_types=frozenset({"image/jpeg", "image/png", "image/gif"}),
        video_types=frozenset({"video/mp4"}),
        max_image_bytes=36_152_320,
        max_video_bytes=500 * 1024 * 1024,
        max_video_duration_s=30 * 60,
        pkce=False,  # LinkedIn's web flow authenticates the client with its secret
        token_lifetime_s=60 * 24 * 3600,
        refreshable=True,  # where LinkedIn granted the app programmatic refresh tokens
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.api_url = str(config.get("api_url") or "https://api.linkedin.com").rstrip("/")
        self.oauth_url = str(config.get("oauth_url") or "https://www.linkedin.com/oauth/v2")
        self.oauth_url = self.oauth_url.rstrip("/")
        self.web_url = str(config.get("web_url") or "https://www.linkedin.com").rstrip("/")
        self.client_id = str(config.get("client_id") or "")
        self.client_secret = str(config.get("client_secret") or "")
        self.version = str(config.get("version") or DEFAULT_VERSION)
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        self.media_timeout_s = float(config.get("media_timeout_s", 300.0))
        self.clock = clock_of(config)

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "LinkedIn-Version": self.version,
            "X-Restli-Protocol-Version": "2.0.0",
            **(extra or {}),
        }

    def _author(self, credentials: Credentials) -> str:
        author = credentials.extra.get("author")
        if isinstance(author, str) and author.startswith("urn:li:"):
            return author
        return f"urn:li:person:{credentials.account_id}"

    def _client(self) -> dict[str, str]:
        if not self.client_id or not self.client_secret:
            raise RejectedError(
                self.id, "LinkedIn needs client_id and client_secret in its config", code="config"
            )
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "response_type": "code",
            "client_id": self._client()["client_id"],
            "redirect_uri": context.redirect_uri,
            "state": context.state,
            "scope": " ".join(context.scopes or self.scopes),
        }
        return f"{self.oauth_url}/authorization?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": context.redirect_uri,
            **self._client(),
        }
        try:
            return await self._token(form)
        except AuthExpiredError as exc:
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(
                self.id, "no refresh token (the app has no programmatic refresh)", code="no_refresh"
            )
        form = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.refresh_token,
            **self._client(),
        }
        try:
            return await self._token(form)
        except RejectedError as exc:  # invalid_request: the refresh token expired (1 year)
            raise AuthExpiredError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        answer = await self.http.request(
            self, "POST", f"{self.oauth_url}/accessToken", data=form, ok=(200,)
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
            scopes=tuple(re.split(r"[ ,]+", scope.strip())) if isinstance(scope, str) else (),
        )

    async def verify(self, credentials: Credentials) -> Account:
        answer = await self.http.request(
            self, "GET", f"{self.api_url}/v2/userinfo", token=credentials.access_token, ok=(200,)
        )
        body = json_object(self, answer)
        sub = body.get("sub")
        if not isinstance(sub, str) or not sub:
            raise RejectedError(self.id, "the userinfo answer has no sub")
        return Account(
            account_id=sub,
            name=str(body.get("name") or sub),
            extra={"author": f"urn:li:person:{sub}"},
        )

    async def revoke(self, credentials: Credentials) -> None:
        await self.http.request(
            self,
            "POST",
            f"{self.oauth_url}/revoke",
            data={"token": credentials.access_token, **self._client()},
            ok=(200,),
        )

    # --- publishing ------------------------------------------------------------------------

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        author = self._author(credentials)
        body: dict[str, Any] = {
            "author": author,
            "commentary": little_text(content.text),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        images = [m for m in content.media if m.kind == "image"]
        videos = [m for m in content.media if m.kind == "video"]
        if videos:
            urn = await self._upload_video(credentials, author, videos[0])
            body["content"] = {"media": {"id": urn, "title": videos[0].filename or "video"}}
        elif len(images) == 1:
            urn = await self._upload_image(credentials, author, images[0])
            body["content"] = {"media": {"id": urn, "altText": images[0].alt_text or ""}}
        elif images:
            entries = [
                {
                    "id": await self._upload_image(credentials, author, item),
                    "altText": item.alt_text or "",
                }
                for item in images
            ]
            body["content"] = {"multiImage": {"images": entries}}
        elif content.link:
            body["content"] = {"article": {"source": content.link, "title": content.link}}

        async def create() -> PublishedPost:
            answer = await self.http.request(
                self,
                "POST",
                f"{self.api_url}/rest/posts",
                token=credentials.access_token,
                json=body,
                headers=self._headers(),
                ok=(201,),
            )
            post_urn = answer.headers.get("x-restli-id")
            if not post_urn:
                raise TransientError(self.id, "the post answer has no x-restli-id")
            return self._published(post_urn, self.clock())

        def duplicate_of(refused: RejectedError) -> PublishedPost | None:
            # LinkedIn names the post this one duplicates (same author, same content).
            urn = refused.details.get("duplicate_of")
            return self._published(urn, None) if isinstance(urn, str) else None

        return await create_once(self, credentials, request, create, duplicate_of=duplicate_of)

    async def _upload_image(self, credentials: Credentials, author: str, item: MediaItem) -> str:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/rest/images?action=initializeUpload",
            token=credentials.access_token,
            json={"initializeUploadRequest": {"owner": author}},
            headers=self._headers(),
            ok=(200,),
        )
        value = json_object(self, answer).get("value")
        if not isinstance(value, dict):
            raise TransientError(self.id, "the image upload answer has no value")
        upload_url, urn = value.get("uploadUrl"), value.get("image")
        if not isinstance(upload_url, str) or not isinstance(urn, str):
            raise TransientError(self.id, "the image upload answer has no uploadUrl or image")
        async with open_media(self, item) as media:
            headers = {"Content-Type": media.content_type}
            if media.size is not None:
                headers["Content-Length"] = str(media.size)
            await self.http.request(
                self,
                "PUT",
                upload_url,
                token=credentials.access_token,
                data=media.payload(),
                headers=headers,
                ok=(200, 201),
                client_timeout=upload_timeout(self),
            )
        return urn

    async def _upload_video(self, credentials: Credentials, author: str, item: MediaItem) -> str:
        token = credentials.access_token
        async with open_media(self, item) as media:
            size = media.size if media.size is not None else item.size_bytes
            answer = await self.http.request(
                self,
                "POST",
                f"{self.api_url}/rest/videos?action=initializeUpload",
                token=token,
                json={
                    "initializeUploadRequest": {
                        "owner": author,
                        "fileSizeBytes": size,
                        "uploadCaptions": False,
                        "uploadThumbnail": False,
                    }
                },
                headers=self._headers(),
                ok=(200,),
            )
            value = json_object(self, answer).get("value")
            value = value if isinstance(value, dict) else {}
            urn = value.get("video")
            parts = value.get("uploadInstructions")
            if not isinstance(urn, str) or not isinstance(parts, list) or not parts:
                raise TransientError(self.id, "the video upload answer has no instructions")
            first = parts[0]
            part_size = as_int(first.get("lastByte")) - as_int(first.get("firstByte")) + 1
            etags: list[str] = []
            chunks = media.chunks(max(part_size, 1))
            for part in parts:
                chunk = await anext(chunks, None)
                expected = as_int(part.get("lastByte")) - as_int(part.get("firstByte")) + 1
                if chunk is None or len(chunk) != expected:
                    raise TransientError(self.id, "the video is not the size LinkedIn expects")
                put = await self.http.request(
                    self,
                    "PUT",
                    str(part.get("uploadUrl")),
                    token=token,
                    data=chunk,
                    headers={"Content-Type": "application/octet-stream"},
                    ok=(200, 201),
                    client_timeout=upload_timeout(self),
                )
                etag = put.headers.get("ETag")
                if not etag:
                    raise TransientError(self.id, "a video part upload answered no ETag")
                etags.append(etag)
        await self.http.request(
            self,
            "POST",
            f"{self.api_url}/rest/videos?action=finalizeUpload",
            token=token,
            json={
                "finalizeUploadRequest": {
                    "video": urn,
                    "uploadToken": value.get("uploadToken") or "",
                    "uploadedPartIds": etags,
                }
            },
            headers=self._headers(),
            ok=(200,),
        )
        deadline = time.monotonic() + self.media_timeout_s
        while True:
            answer = await self.http.request(
                self,
                "GET",
                f"{self.api_url}/rest/videos/{quote(urn, safe='')}",
                token=token,
                headers=self._headers(),
                ok=(200,),
            )
            status = json_object(self, answer).get("status")
            if status == "AVAILABLE":
                return urn
            if status == "PROCESSING_FAILED":
                raise RejectedError(self.id, "LinkedIn could not process the video", code=status)
            if time.monotonic() > deadline:
                raise TransientError(self.id, f"video {item.media_id} is still processing")
            await pause(1.0)

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        author = self._author(credentials)
        try:
            answer = await self.http.request(
                self,
                "GET",
                f"{self.api_url}/rest/posts?author={quote(author, safe='')}"
                "&q=author&count=20&sortBy=CREATED",
                token=credentials.access_token,
                headers=self._headers({"X-RestLi-Method": "FINDER"}),
                ok=(200,),
            )
        except RejectedError as exc:
            if exc.status == 403:
                raise NotSupportedError(
                    self.id, "listing posts needs r_member_social / r_organization_social"
                ) from exc
            raise
        wanted = little_text(request.content.text)
        count = len(request.content.media)
        elements = json_object(self, answer).get("elements")
        for post in elements if isinstance(elements, list) else []:
            if not isinstance(post, dict) or not isinstance(post.get("id"), str):
                continue
            if post.get("commentary") == wanted and _media_count(post.get("content")) == count:
                created = post.get("createdAt")
                at = (
                    datetime.fromtimestamp(created / 1000, UTC)
                    if isinstance(created, int)
                    else None
                )
                return self._published(post["id"], at)
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        await self.http.request(
            self,
            "DELETE",
            f"{self.api_url}/rest/posts/{quote(platform_post_id, safe='')}",
            token=credentials.access_token,
            headers=self._headers({"X-RestLi-Method": "DELETE"}),
            ok=(204, 404),
        )

    def _published(self, urn: str, at: datetime | None) -> PublishedPost:
        return PublishedPost(
            platform_post_id=urn, url=f"{self.web_url}/feed/update/{urn}/", published_at=at
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Pages: daily share statistics (impressions, unique impressions as reach,
        engagement) for the window. Members and pages: today's likes and comments per post
        from social actions."""
        author = self._author(credentials)
        account: list[DailyMetrics] = []
        if author.startswith("urn:li:organization:"):
            account = await self._organization_days(credentials, author, since, until)
        posts: list[PostMetrics] = []
        day = today_within(self.clock, since, until)
        if day is None:
            return MetricsReport(account=account)
        for urn in dict.fromkeys(platform_post_ids):
            answer = await self.http.request(
                self,
                "GET",
                f"{self.api_url}/rest/socialActions/{quote(urn, safe='')}",
                token=credentials.access_token,
                headers=self._headers(),
                ok=(200, 404),
            )
            if answer.status == 404:
                continue
            body = json_object(self, answer)
            likes_summary = body.get("likesSummary")
            comments_summary = body.get("commentsSummary")
            likes = as_int(
                likes_summary.get("totalLikes") if isinstance(likes_summary, dict) else 0
            )
            comments = as_int(
                comments_summary.get("aggregatedTotalComments")
                if isinstance(comments_summary, dict)
                else 0
            )
            posts.append(
                PostMetrics(
                    platform_post_id=urn,
                    day=day,
                    engagement=likes + comments,
                    likes=likes,
                    comments=comments,
                )
            )
        return MetricsReport(account=account, posts=posts)

    async def _organization_days(
        self, credentials: Credentials, organization: str, since: date, until: date
    ) -> list[DailyMetrics]:
        start = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() * 1000)
        end_day = until + timedelta(days=1)
        end = int(datetime(end_day.year, end_day.month, end_day.day, tzinfo=UTC).timestamp() * 1000)
        query = (
            f"q=organizationalEntity&organizationalEntity={quote(organization, safe='')}"
            f"&timeIntervals=(timeRange:(start:{start},end:{end}),timeGranularityType:DAY)"
        )
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/rest/organizationalEntityShareStatistics?{query}",
            token=credentials.access_token,
            headers=self._headers(),
            ok=(200,),
        )
        days = []
        elements = json_object(self, answer).get("elements")
        for element in elements if isinstance(elements, list) else []:
            if not isinstance(element, dict):
                continue
            window = element.get("timeRange")
            stats = element.get("totalShareStatistics")
            if not isinstance(window, dict) or not isinstance(stats, dict):
                continue
            day = datetime.fromtimestamp(as_int(window.get("start")) / 1000, UTC).date()
            engagement = sum(
                as_int(stats.get(key))
                for key in ("likeCount", "commentCount", "shareCount", "clickCount")
            )
            days.append(
                DailyMetrics(
                    day=day,
                    reach=as_int(stats.get("uniqueImpressionsCount")),
                    impressions=as_int(stats.get("impressionCount")),
                    engagement=engagement,
                )
            )
        return days

    # --- errors ----------------------------------------------------------------------------

    def error_details(self, response: Response) -> tuple[str | None, str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), str):  # the OAuth endpoints
                return body["error"], str(body.get("error_description") or body["error"])
            if "message" in body:
                code = body.get("code") or body.get("serviceErrorCode")
                return (str(code) if code is not None else None), str(body["message"])
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        status = response.status
        service = None
        try:
            body = response.json()
            if isinstance(body, dict) and body.get("serviceErrorCode") is not None:
                service = str(body["serviceErrorCode"])
        except ValueError:
            pass
        if code in _REVOKED or service in _REVOKED:
            return RevokedError(self.id, message, code=code, status=status)
        if status == 401 or code in _EXPIRED or service in _EXPIRED:
            return AuthExpiredError(self.id, message, code=code, status=status)
        if status == 426:
            return RejectedError(
                self.id,
                f"LinkedIn no longer serves API version {self.version} ({message}); set "
                "platforms.linkedin.version to a current YYYYMM",
                code="version_retired",
                status=status,
            )
        if status == 422 and (code == "DUPLICATE_POST" or "duplicate" in message.lower()):
            found = re.search(r"urn:li:(?:share|ugcPost):\d+", message)
            return RejectedError(
                self.id,
                message,
                code="duplicate",
                status=status,
                details={"duplicate_of": found.group(0)} if found else None,
            )
        if status == 429:
            return TransientError(
                self.id,
                message,
                code=code,
                status=status,
                retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
            )
        return super().classify(response)


def _media_count(content: Any) -> int:
    if not isinstance(content, dict):
        return 0
    if isinstance(content.get("media"), dict):
        return 1
    multi = content.get("multiImage")
    if isinstance(multi, dict) and isinstance(multi.get("images"), list):
        return len(multi["images"])
    return 0
