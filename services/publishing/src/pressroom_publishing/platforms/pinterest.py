"""Pinterest: OAuth 2 with refresh tokens, pins on a board from image URLs, video pins
through media registration and upload.

Followed: developers.pinterest.com, API v5 (2025): "Authentication" (``/oauth/`` dialog;
``POST /v5/oauth/token`` with HTTP Basic client authentication, ``authorization_code`` and
``refresh_token`` grants; access tokens live 30 days, refresh tokens a year; a refresh
sends ``refresh_on=true``, continuous refresh, and is answered a new refresh token), ``GET
/v5/user_account``, ``GET /v5/boards``, ``POST /v5/pins`` (``media_source`` of
``image_url``, ``multiple_image_urls`` (2-5) or ``video_id``; ``description`` of at most
500 characters, ``title`` 100, ``alt_text`` 500, ``note`` a private note), "Media upload"
(``POST /v5/media`` registers a video and answers an upload URL with the form fields to
post the file with; ``GET /v5/media/{media_id}`` until ``succeeded``), ``GET
/v5/boards/{board_id}/pins``, ``DELETE /v5/pins/{pin_id}``, and analytics (``GET
/v5/user_account/analytics``, ``GET /v5/pins/{pin_id}/analytics``, daily metrics). Errors
are ``{"code": n, "message": "..."}``.

Images go to Pinterest as the media service's signed URLs (Pinterest fetches them); a
video's bytes are streamed from the media service into the upload.

Config: ``client_id``, ``client_secret``, ``api_url`` (``https://api.pinterest.com``),
``auth_url`` (``https://www.pinterest.com/oauth/``), ``web_url``
(``https://www.pinterest.com``), ``scopes``, ``media_poll_s`` (1.0), ``media_timeout_s``
(300), ``clock``. The board: ``PostContent.options["board_id"]``, else the connection's
``Credentials.extra["board_id"]``, else the account's first board.

Reconciliation: every pin carries our reference in its private ``note``;
``find_published`` looks for it among the board's 25 newest pins.
"""

from __future__ import annotations

import base64
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
    PostContent,
    PostMetrics,
    Problem,
    PublishedPost,
    PublishRequest,
    RejectedError,
    Response,
    TextCount,
    TokenGrant,
    TransientError,
)
from pressroom_publishing.platforms.common import (
    as_int,
    clock_of,
    expires_at,
    json_object,
    parse_datetime,
    pause,
)
from pressroom_publishing.platforms.media_stream import open_media, upload_timeout

DEFAULT_SCOPES = ("boards:read", "pins:read", "pins:write", "user_accounts:read")
NOTE_PREFIX = "pressroom:"
TITLE_LIMIT = 100
ACCOUNT_METRICS = ("IMPRESSION", "ENGAGEMENT", "SAVE", "PIN_CLICK", "OUTBOUND_CLICK")
PIN_METRICS = ("IMPRESSION", "SAVE", "PIN_CLICK", "OUTBOUND_CLICK", "TOTAL_COMMENTS")


class PinterestPlatform(Platform):
    capabilities = Capabilities(
        platform="pinterest",
        display_name="Pinterest",
        text_limit=500,
        text_count=TextCount.CHARACTERS,
        needs_media=True,
        max_images=5,
        max_videos=1,
        mixed_media=False,
        image_types=frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
        video_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=20 * 1024 * 1024,
        max_video_bytes=2 * 1024**3,
        max_video_duration_s=15 * 60,
        pkce=False,
        token_lifetime_s=30 * 24 * 3600,
        refreshable=True,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.api_url = str(config.get("api_url") or "https://api.pinterest.com").rstrip("/")
        self.auth_url = str(config.get("auth_url") or "https://www.pinterest.com/oauth/")
        self.web_url = str(config.get("web_url") or "https://www.pinterest.com").rstrip("/")
        self.client_id = str(config.get("client_id") or "")
        self.client_secret = str(config.get("client_secret") or "")
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        self.media_poll_s = float(config.get("media_poll_s", 1.0))
        self.media_timeout_s = float(config.get("media_timeout_s", 300.0))
        self.clock = clock_of(config)

    def _basic(self) -> str:
        """The ``Authorization`` header of HTTP Basic client authentication."""
        if not self.client_id or not self.client_secret:
            raise RejectedError(
                self.id, "Pinterest needs client_id and client_secret in its config", code="config"
            )
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return f"Basic {base64.b64encode(raw).decode()}"

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        self._basic()
        params = {
            "client_id": self.client_id,
            "redirect_uri": context.redirect_uri,
            "response_type": "code",
            "scope": ",".join(context.scopes or self.scopes),
            "state": context.state,
        }
        return f"{self.auth_url}?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        try:
            return await self._token(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": context.redirect_uri,
                }
            )
        except AuthExpiredError as exc:
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        if not credentials.refresh_token:
            raise AuthExpiredError(self.id, "no refresh token", code="no_refresh_token")
        try:
            # ``refresh_on``: continuous refresh ("everlasting_refresh" answers): a new
            # refresh token with every refresh, so a connection in use never reaches the
            # end of its refresh token's year.
            return await self._token(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": credentials.refresh_token,
                    "refresh_on": "true",
                }
            )
        except RejectedError as exc:  # the refresh token expired or was revoked
            raise AuthExpiredError(self.id, exc.message, code=exc.code, status=exc.status) from exc

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/v5/oauth/token",
            data=form,
            headers={"Authorization": self._basic()},
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
            scopes=tuple(scope.replace(",", " ").split()) if isinstance(scope, str) else (),
        )

    async def verify(self, credentials: Credentials) -> Account:
        body = await self._get(credentials, "/v5/user_account")
        account_id = body.get("id") or body.get("username")
        if not isinstance(account_id, str) or not account_id:
            raise TransientError(self.id, "the account answer has no id")
        return Account(
            account_id=account_id,
            name=str(body.get("business_name") or body.get("username") or account_id),
            extra={
                "username": body.get("username"),
                "followers": as_int(body.get("follower_count")),
            },
        )

    async def _get(
        self, credentials: Credentials, path: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        answer = await self.http.request(
            self,
            "GET",
            f"{self.api_url}{path}",
            token=credentials.access_token,
            params=params,
            ok=(200,),
        )
        return json_object(self, answer)

    # --- publishing ------------------------------------------------------------------------

    async def board(self, credentials: Credentials, options: Mapping[str, Any]) -> str:
        chosen = options.get("board_id") or credentials.extra.get("board_id")
        if isinstance(chosen, str) and chosen:
            return chosen
        boards = await self._get(credentials, "/v5/boards", {"page_size": "1"})
        items = boards.get("items")
        first = items[0] if isinstance(items, list) and items else None
        board_id = first.get("id") if isinstance(first, dict) else None
        if not isinstance(board_id, str) or not board_id:
            raise RejectedError(self.id, "the account has no board to pin to", code="no_board")
        return board_id

    def validate(self, content: PostContent) -> list[Problem]:
        problems = super().validate(content)
        title = content.options.get("title")
        if isinstance(title, str) and len(title) > TITLE_LIMIT:
            problems.append(Problem("options.title", f"{len(title)} characters over {TITLE_LIMIT}"))
        return problems

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        board = await self.board(credentials, content.options)
        images = [m for m in content.media if m.kind == "image"]
        if content.media[0].kind == "video":
            media_id = await self._upload_video(credentials, content.media[0])
            source: dict[str, Any] = {
                "source_type": "video_id",
                "media_id": media_id,
                "cover_image_key_frame_time": 0,
            }
        elif len(images) == 1:
            source = {"source_type": "image_url", "url": _url(self, images[0])}
        else:
            source = {
                "source_type": "multiple_image_urls",
                "items": [
                    {"url": _url(self, item), "description": item.alt_text or ""} for item in images
                ],
            }
        body: dict[str, Any] = {
            "board_id": board,
            "description": content.text,
            "media_source": source,
            "note": f"{NOTE_PREFIX}{request.reference}",
        }
        title = content.options.get("title")
        if isinstance(title, str) and title:
            body["title"] = title
        if content.link:
            body["link"] = content.link
        if len(images) == 1 and images[0].alt_text:
            body["alt_text"] = images[0].alt_text[:500]
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/v5/pins",
            token=credentials.access_token,
            json=body,
            ok=(200, 201),
        )
        return self._published(json_object(self, answer))

    async def _upload_video(self, credentials: Credentials, item: MediaItem) -> str:
        """Register, post the file to the upload URL with its form fields, poll."""
        answer = await self.http.request(
            self,
            "POST",
            f"{self.api_url}/v5/media",
            token=credentials.access_token,
            json={"media_type": "video"},
            ok=(200, 201),
        )
        registered = json_object(self, answer)
        media_id, upload_url = registered.get("media_id"), registered.get("upload_url")
        parameters = registered.get("upload_parameters")
        if not isinstance(media_id, str) or not isinstance(upload_url, str):
            raise TransientError(self.id, "the media registration has no media_id or upload_url")
        async with open_media(self, item) as media:
            form = aiohttp.MultipartWriter("form-data")
            for key, value in (parameters if isinstance(parameters, dict) else {}).items():
                form.append(str(value)).set_content_disposition("form-data", name=str(key))
            # S3 POST uploads refuse a chunked body (501 NotImplemented): the file part knows
            # its size, so the form is sent with its exact Content-Length, still streamed.
            part = form.append_payload(media.payload())
            part.set_content_disposition(
                "form-data", name="file", filename=item.filename or "video.mp4"
            )
            await self.http.request(
                self,
                "POST",
                upload_url,
                data=form,
                ok=(200, 201, 204),
                client_timeout=upload_timeout(self),
            )
        deadline = time.monotonic() + self.media_timeout_s
        while True:
            status = (await self._get(credentials, f"/v5/media/{media_id}")).get("status")
            if status == "succeeded":
                return media_id
            if status == "failed":
                raise RejectedError(self.id, "Pinterest could not process the video", code="failed")
            if time.monotonic() > deadline:
                raise TransientError(self.id, f"video {item.media_id} is still processing")
            await pause(self.media_poll_s)

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        board = await self.board(credentials, request.content.options)
        body = await self._get(credentials, f"/v5/boards/{board}/pins", {"page_size": "25"})
        note = f"{NOTE_PREFIX}{request.reference}"
        for pin in body.get("items") or []:
            if isinstance(pin, dict) and pin.get("note") == note:
                return self._published(pin)
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        await self.http.request(
            self,
            "DELETE",
            f"{self.api_url}/v5/pins/{platform_post_id}",
            token=credentials.access_token,
            ok=(200, 204, 404),
        )

    def _published(self, pin: Mapping[str, Any]) -> PublishedPost:
        pin_id = pin.get("id")
        if not isinstance(pin_id, str) or not pin_id:
            raise TransientError(self.id, "the pin answer has no id")
        return PublishedPost(
            platform_post_id=pin_id,
            url=f"{self.web_url}/pin/{pin_id}/",
            published_at=parse_datetime(pin.get("created_at")) or self.clock(),
        )

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Daily analytics for the account and each pin (impressions; engagement = saves,
        clicks and comments; saves as shares); followers only for today."""
        window = {"start_date": since.isoformat(), "end_date": until.isoformat()}
        body = await self._get(
            credentials,
            "/v5/user_account/analytics",
            {**window, "metric_types": ",".join(ACCOUNT_METRICS)},
        )
        today = self.clock().date()
        followers = 0
        if since <= today <= until:
            followers = as_int((await self.verify(credentials)).extra.get("followers"))
        account = []
        for day, metrics in _daily(body):
            account.append(
                DailyMetrics(
                    day=day,
                    impressions=as_int(metrics.get("IMPRESSION")),
                    engagement=as_int(metrics.get("ENGAGEMENT")),
                    followers=followers if day == today else 0,
                )
            )
        posts = []
        for pin_id in dict.fromkeys(platform_post_ids):
            body = await self._get(
                credentials,
                f"/v5/pins/{pin_id}/analytics",
                {**window, "metric_types": ",".join(PIN_METRICS)},
            )
            for day, metrics in _daily(body):
                saves = as_int(metrics.get("SAVE"))
                comments = as_int(metrics.get("TOTAL_COMMENTS"))
                clicks = as_int(metrics.get("PIN_CLICK")) + as_int(metrics.get("OUTBOUND_CLICK"))
                posts.append(
                    PostMetrics(
                        platform_post_id=pin_id,
                        day=day,
                        impressions=as_int(metrics.get("IMPRESSION")),
                        engagement=saves + comments + clicks,
                        comments=comments,
                        shares=saves,
                    )
                )
        return MetricsReport(account=account, posts=posts)

    # --- errors ----------------------------------------------------------------------------

    def error_details(self, response: Response) -> tuple[str | None, str]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "message" in body:
            code = body.get("code")
            return (str(code) if code is not None else None), str(body["message"])
        return super().error_details(response)

    def classify(self, response: Response) -> PlatformError:
        code, message = self.error_details(response)
        if response.status == 401:
            return AuthExpiredError(self.id, message, code=code, status=401)
        return super().classify(response)


def _url(platform: Platform, item: MediaItem) -> str:
    if not item.url:
        raise RejectedError(platform.id, f"media {item.media_id} has no URL", code="no_url")
    return item.url


def _daily(body: Mapping[str, Any]) -> list[tuple[date, Mapping[str, Any]]]:
    """``{"all": {"daily_metrics": [{"date", "data_status", "metrics"}]}}``; days still
    being computed (``data_status`` other than ``READY``) are left out."""
    section = body.get("all")
    rows = section.get("daily_metrics") if isinstance(section, dict) else None
    found: list[tuple[date, Mapping[str, Any]]] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("data_status", "READY") != "READY":
            continue
        metrics = row.get("metrics")
        try:
            day = date.fromisoformat(str(row.get("date")))
        except ValueError:
            continue
        found.append((day, metrics if isinstance(metrics, dict) else {}))
    return found
