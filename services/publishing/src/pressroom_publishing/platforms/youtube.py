"""YouTube: Google OAuth 2 with PKCE and offline refresh, videos through the resumable
upload protocol, channel and video analytics.

Followed: developers.google.com: "Using OAuth 2.0 for Web Server Applications"
(``https://accounts.google.com/o/oauth2/v2/auth`` with ``access_type=offline``, PKCE S256;
``https://oauth2.googleapis.com/token``: 1-hour access tokens, a refresh token at first
consent and none on refresh; ``/revoke``), YouTube Data API v3 "Resumable Uploads" (``POST
/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`` with the metadata and
``X-Upload-Content-Length`` / ``-Type`` answers the session URI in ``Location``; ``PUT``
chunks, multiples of 256 KiB, with ``Content-Range``; ``308 Resume Incomplete`` with
``Range`` for what arrived; after an interruption ``PUT`` ``Content-Range: bytes */size``
asks where to resume), ``videos`` (title at most 100 characters, description 5,000 bytes,
neither with ``<`` or ``>``; ``DELETE``), ``channels?mine=true`` and the uploads playlist
(``playlistItems``), "Errors" (``{"error": {"code", "message", "errors": [{"domain",
"reason"}]}}``: ``quotaExceeded`` and ``uploadLimitExceeded`` until the daily reset at
midnight Pacific, ``rateLimitExceeded``, ``authError``), and the YouTube Analytics API v2
``reports`` (``dimensions=day``).

Config: ``client_id``, ``client_secret``, ``auth_url``, ``token_url``
(``https://oauth2.googleapis.com/token``), ``revoke_url``, ``api_url`` and ``upload_url``
(``https://www.googleapis.com``), ``analytics_url``
(``https://youtubeanalytics.googleapis.com``), ``scopes``, ``chunk_size`` (8 MiB; rounded
to 256 KiB), ``privacy`` (``public``; uploads of an unaudited API project stay private),
``category_id`` (``22``), ``resumes`` (3), ``clock``. ``PostContent.options``: ``title``
(default: the text's first line), ``privacy``, ``tags``.

Reconciliation: ``find_published`` reads the channel's uploads playlist (25 newest) and
matches title and description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

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
    PostContent,
    PostMetrics,
    Problem,
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
    parse_datetime,
    pkce_challenge,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout

DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/youtube.upload",
    "https://www.googleapis.com/auth/youtube.readonly",
    "https://www.googleapis.com/auth/yt-analytics.readonly",
)
UNIT = 256 * 1024
TITLE_LIMIT = 100
_DAILY = {"quotaExceeded", "uploadLimitExceeded", "dailyLimitExceeded"}
_RATE = {"rateLimitExceeded", "userRateLimitExceeded", "backendError"}
_PACIFIC = ZoneInfo("America/Los_Angeles")


def title_of(content: PostContent) -> str:
    """The video's title: ``options["title"]``, else the text's first line."""
    chosen = content.options.get("title")
    if isinstance(chosen, str) and chosen.strip():
        return chosen.strip()
    first = next((line.strip() for line in content.text.splitlines() if line.strip()), "")
    return first[:TITLE_LIMIT] or "Video"


class YouTubePlatform(Platform):
    capabilities = Capabilities(
        platform="youtube",
        display_name="YouTube",
        text_limit=5000,
        text_count=TextCount.UTF8_BYTES,
        needs_media=True,
        media_kinds=frozenset({"video"}),
        max_images=0,
        max_videos=1,
        video_types=frozenset(
            {"video/mp4", "video/quicktime", "video/webm", "video/x-msvideo", "video/mpeg"}
        ),
        max_video_bytes=256 * 1024**3,
        max_video_duration_s=12 * 3600,
        pkce=True,
        token_lifetime_s=3600,
        refreshable=True,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.client_id = str(config.get("client_id") or "")
        self.client_secret = str(config.get("client_secret") or "")
        self.auth_url = str(
            config.get("auth_url") or "https://accounts.google.com/o/oauth2/v2/auth"
        )
        self.token_url = str(config.get("token_url") or "https://oauth2.googleapis.com/token")
        self.revoke_url = str(config.get("revoke_url") or "https://oauth2.googleapis.com/revoke")
        self.api_url = str(config.get("api_url") or "https://www.googleapis.com").rstrip("/")
        self.upload_url = str(config.get("upload_url") or self.api_url).rstrip("/")
        self.analytics_url = str(
            config.get("analytics_url") or "https://youtubeanalytics.googleapis.com"
        ).rstrip("/")
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        chunk = int(config.get("chunk_size") or 8 * 1024 * 1024)
        self.chunk_size = max(UNIT, chunk // UNIT * UNIT)
        self.privacy = str(config.get("privacy") or "public")
        self.category_id = str(config.get("category_id") or "22")
        self.resumes = int(config.get("resumes", 3))
        self.clock = clock_of(config)

    def _app(self) -> dict[str, str]:
        if not self.client_id or not self.client_secret:
            raise RejectedError(
                self.id, "YouTube needs client_id and client_secret in its config", code="config"
            )
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "client_id": self._app()["client_id"],
            "redirect_uri": context.redirect_uri,
            "response_type": "code",
            "scope": " ".join(context.scopes or self.scopes),
            "access_type": "offline",
            "prompt": "consent",  # a refresh token every time the user connects
            "include_granted_scopes": "true",
            "state": context.state,
        }
        if context.code_verifier:
            params["code_challenge"] = pkce_challenge(context.code_verifier)
            params["code_challenge_method"] = "S256"
        return f"{self.auth_url}?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": context.redirect_uri,
        }
        if context.code_verifier:
            form["code_verifier"] = context.code_verifier
        try:
            return await self._token(form)
        except (AuthExpiredError, RevokedError) as exc:  # a bad or used code
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(self.id, "no refresh token", code="no_refresh_token")
        grant = await self._token(
            {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
        )
        return grant  # Google sends no new refresh token: the connection keeps its own

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        answer = await self.http.request(
            self, "POST", self.token_url, data={**self._app(), **form}, ok=(200,)
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
        channel = await self._channel(credentials, "id,snippet,statistics")
        statistics = channel.get("statistics")
        snippet = channel.get("snippet")
        return Account(
            account_id=str(channel["id"]),
            name=str(snippet.get("title") if isinstance(snippet, dict) else channel["id"]),
            extra={
                "followers": as_int(statistics.get("subscriberCount"))
                if isinstance(statistics, dict)
                else 0
            },
        )

    async def _channel(self, credentials: Credentials, parts: str) -> dict[str, Any]:
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/youtube/v3/channels",
            token=credentials.access_token,
            params={"part": parts, "mine": "true"},
            ok=(200,),
        )
        items = json_object(self, answer).get("items")
        channel = items[0] if isinstance(items, list) and items else None
        if not isinstance(channel, dict) or not channel.get("id"):
            raise RejectedError(self.id, "the account has no YouTube channel", code="no_channel")
        return channel

    async def revoke(self, credentials: Credentials) -> None:
        await self.http.request(
            self,
            "POST",
            self.revoke_url,
            data={"token": credentials.refresh_token or credentials.access_token},
            ok=(200,),
        )

    # --- publishing ------------------------------------------------------------------------

    def validate(self, content: PostContent) -> list[Problem]:
        problems = super().validate(content)
        title = title_of(content)
        if len(title) > TITLE_LIMIT:
            problems.append(Problem("text", f"the title has {len(title)} characters; at most 100"))
        if re.search(r"[<>]", title) or re.search(r"[<>]", content.text):
            problems.append(Problem("text", "YouTube takes no < or > in a title or description"))
        return problems

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        video = content.media[0]
        tags = content.options.get("tags")
        snippet: dict[str, Any] = {
            "title": title_of(content),
            "description": content.text,
            "categoryId": self.category_id,
        }
        if isinstance(tags, list):
            snippet["tags"] = [str(tag) for tag in tags]
        metadata = {
            "snippet": snippet,
            "status": {
                "privacyStatus": str(content.options.get("privacy") or self.privacy),
                "selfDeclaredMadeForKids": False,
            },
        }
        async with open_media(self, video) as media:
            size = media.size if media.size is not None else video.size_bytes
            answer = await self.http.request(
                self,
                "POST",
                f"{self.upload_url}/upload/youtube/v3/videos",
                token=credentials.access_token,
                params={"uploadType": "resumable", "part": "snippet,status"},
                json=metadata,
                headers={
                    "X-Upload-Content-Length": str(size),
                    "X-Upload-Content-Type": media.content_type,
                },
                ok=(200,),
            )
            session = answer.headers.get("Location")
            if not session:
                raise TransientError(self.id, "the upload answer has no session Location")
            body = await self._send(
                credentials, session, media.chunks(self.chunk_size), video, size
            )
        return self._published(body)

    async def _send(
        self,
        credentials: Credentials,
        session: str,
        chunks: Any,
        video: MediaItem,
        size: int,
    ) -> dict[str, Any]:
        """PUT the chunks in order. Each ``308`` says how much arrived; a failed PUT asks
        the session where to resume (``bytes */size``) and sends the rest of the chunk in
        hand from there, up to ``resumes`` times."""
        offset = 0
        resumes = self.resumes
        async for chunk in chunks:
            start = offset
            end = offset + len(chunk)
            while start < end:
                try:
                    answer = await self._put(
                        credentials, session, chunk[start - offset :], start, size
                    )
                except TransientError:
                    if resumes <= 0:
                        raise
                    resumes -= 1
                    answer = await self._put(credentials, session, b"", None, size)
                if answer.status in (200, 201):
                    return json_object(self, answer)
                received = _received(answer)
                if received < offset:
                    raise TransientError(
                        self.id, "the upload session lost bytes already sent; start again"
                    )
                start = received
            offset = end
        raise TransientError(self.id, "the upload ended without the video resource")

    async def _put(
        self, credentials: Credentials, session: str, data: bytes, first: int | None, size: int
    ) -> Response:
        content_range = (
            f"bytes {first}-{first + len(data) - 1}/{size}"
            if first is not None and data
            else f"bytes */{size}"
        )
        return await self.http.request(
            self,
            "PUT",
            session,
            token=credentials.access_token,
            data=data,
            headers={"Content-Range": content_range},
            ok=(200, 201, 308),
            client_timeout=upload_timeout(self),
        )

    def _published(self, body: Mapping[str, Any]) -> PublishedPost:
        video_id = body.get("id")
        if not isinstance(video_id, str) or not video_id:
            raise TransientError(self.id, "the video answer has no id")
        snippet = body.get("snippet")
        published = snippet.get("publishedAt") if isinstance(snippet, dict) else None
        return PublishedPost(
            platform_post_id=video_id,
            url=f"https://www.youtube.com/watch?v={video_id}",
            published_at=parse_datetime(published) or self.clock(),
        )

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        channel = await self._channel(credentials, "contentDetails")
        details = channel.get("contentDetails")
        playlists = details.get("relatedPlaylists") if isinstance(details, dict) else None
        uploads = playlists.get("uploads") if isinstance(playlists, dict) else None
        if not isinstance(uploads, str):
            return None
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}/youtube/v3/playlistItems",
            token=credentials.access_token,
            params={"part": "snippet", "playlistId": uploads, "maxResults": "25"},
            ok=(200,),
        )
        title = title_of(request.content)
        for item in json_object(self, answer).get("items") or []:
            snippet = item.get("snippet") if isinstance(item, dict) else None
            if not isinstance(snippet, dict):
                continue
            resource = snippet.get("resourceId")
            video_id = resource.get("videoId") if isinstance(resource, dict) else None
            if (
                isinstance(video_id, str)
                and snippet.get("title") == title
                and snippet.get("description") == request.content.text
            ):
                return PublishedPost(
                    platform_post_id=video_id,
                    url=f"https://www.youtube.com/watch?v={video_id}",
                    published_at=parse_datetime(snippet.get("publishedAt")),
                )
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        await self.http.request(
            self,
            "DELETE",
            f"{self.api_url}/youtube/v3/videos",
            token=credentials.access_token,
            params={"id": platform_post_id},
            ok=(200, 204, 404),
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """YouTube Analytics by day: views as impressions, likes, comments, shares; the
        subscriber count on today's row."""
        account = []
        today = self.clock().date()
        followers = 0
        if since <= today <= until:
            followers = as_int((await self.verify(credentials)).extra.get("followers"))
        for day, row in await self._report(credentials, since, until, None):
            engagement = row.get("likes", 0) + row.get("comments", 0) + row.get("shares", 0)
            account.append(
                DailyMetrics(
                    day=day,
                    impressions=row.get("views", 0),
                    engagement=engagement,
                    followers=followers if day == today else 0,
                )
            )
        posts = []
        for video_id in dict.fromkeys(platform_post_ids):
            for day, row in await self._report(credentials, since, until, video_id):
                likes, comments = row.get("likes", 0), row.get("comments", 0)
                shares = row.get("shares", 0)
                posts.append(
                    PostMetrics(
                        platform_post_id=video_id,
                        day=day,
                        impressions=row.get("views", 0),
                        engagement=likes + comments + shares,
                        likes=likes,
                        comments=comments,
                        shares=shares,
                    )
                )
        return MetricsReport(account=account, posts=posts)

    async def _report(
        self, credentials: Credentials, since: date, until: date, video_id: str | None
    ) -> list[tuple[date, dict[str, int]]]:
        params = {
            "ids": "channel==MINE",
            "startDate": since.isoformat(),
            "endDate": until.isoformat(),
            "metrics": "views,likes,comments,shares",
            "dimensions": "day",
            "sort": "day",
        }
        if video_id is not None:
            params["filters"] = f"video=={video_id}"
        answer = await self.http.request(
            self,
            "GET",
            f"{self.analytics_url}/v2/reports",
            token=credentials.access_token,
            params=params,
            ok=(200,),
        )
        body = json_object(self, answer)
        headers = [
            str(h.get("name")) for h in body.get("columnHeaders") or [] if isinstance(h, dict)
        ]
        found = []
        for row in body.get("rows") or []:
            if not isinstance(row, list) or len(row) != len(headers):
                continue
            values = dict(zip(headers, row, strict=True))
            try:
                day = date.fromisoformat(str(values.pop("day")))
            except (KeyError, ValueError):
                continue
            found.append((day, {k: as_int(v) for k, v in values.items()}))
        return found

    # --- errors ----------------------------------------------------------------------------

    def _reason(self, response: Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        errors = error.get("errors") if isinstance(error, dict) else None
        first = errors[0] if isinstance(errors, list) and errors else None
        reason = first.get("reason") if isinstance(first, dict) else None
        return str(reason) if reason else None

    def error_details(self, response: Response) -> tuple[str | None, str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return self._reason(response) or _text(error.get("status")), str(
                error.get("message") or response.status
            )
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        status = response.status
        if code in _DAILY:
            return TransientError(
                self.id, message, code=code, status=status, retry_after_s=self._until_reset()
            )
        if code in _RATE or status == 429 or status >= 500:
            return TransientError(
                self.id,
                message,
                code=code,
                status=status,
                retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if code == "invalid_grant" and "revoked" in message.lower():
            return RevokedError(self.id, message, code=code, status=status)
        if code == "invalid_grant" or status == 401:
            return AuthExpiredError(self.id, message, code=code, status=status)
        return RejectedError(self.id, message, code=code, status=status)

    def _until_reset(self) -> float:
        """Seconds until YouTube's daily quotas reset, at midnight Pacific time."""
        now = self.clock().astimezone(_PACIFIC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=_PACIFIC) + timedelta(days=1)
        return max(60.0, (midnight.astimezone(UTC) - now.astimezone(UTC)).total_seconds())


def _received(answer: Response) -> int:
    """From a 308's ``Range: bytes=0-N``, the count of bytes the session holds."""
    found = re.fullmatch(r"bytes=0-(\d+)", answer.headers.get("Range", "").strip())
    return int(found.group(1)) + 1 if found else 0


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
