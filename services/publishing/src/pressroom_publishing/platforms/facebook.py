"""Facebook Pages: Facebook Login for a user token, a page token from it, posts to the
page's feed, photos and videos, page and post insights.

Followed: Meta for Developers, Graph API v21.0: "Manually Build a Login Flow"
(``/dialog/oauth``, ``GET /oauth/access_token`` for the code, then
``grant_type=fb_exchange_token`` for a long-lived user token), "Page Access Tokens"
(``GET /me/accounts`` with ``access_token`` and ``tasks``; a page token obtained from a
long-lived user token does not expire), Pages API "Posts" (``POST /{page-id}/feed`` with
``message``, ``link``, ``attached_media``), "Photos" (``POST /{page-id}/photos`` with
``url``; ``published=false`` for the photos of a multi-photo post), "Videos" (``POST
/{page-id}/videos`` with ``file_url``), ``GET /{page-id}/published_posts``, ``DELETE
/{post-id}``, Page Insights (``/{page-id}/insights`` ``period=day``) and post insights, and
"Handling Errors" (``{"error": {"message", "type", "code", "error_subcode",
"is_transient"}}``; 190 an invalid or expired token, subcode 458 the app removed; 4, 17,
32, 613 and 80001 rate limits, with ``X-Business-Use-Case-Usage`` telling when access
returns; 1 and 2 temporary; 506 a duplicate post; 10 and 200-299 missing permissions).

Facebook pulls media from their URLs itself: the media service's signed URLs go to the
Graph API as ``url`` / ``file_url``, nothing is uploaded through us.

Config: ``client_id`` (app id), ``client_secret``, ``version`` (``v21.0``), ``graph_url``
(``https://graph.facebook.com``), ``dialog_url`` (``https://www.facebook.com``),
``web_url`` (``https://www.facebook.com``), ``scopes``, ``clock``. The page: the
authorization's ``OAuthContext.extra["page_id"]``, else the first page the user may
create content on.

Reconciliation: ``find_published`` reads the page's 25 newest posts and matches the
message; Facebook refuses the same message twice on a page (506), so a match is the post an
earlier attempt created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
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
    OAuthContext,
    Platform,
    PlatformHTTP,
    PostMetrics,
    PublishedPost,
    PublishRequest,
    RejectedError,
    TextCount,
    TokenGrant,
    TransientError,
)
from pressroom_publishing.platforms.common import (
    as_int,
    clock_of,
    create_once,
    json_object,
    today_within,
)
from pressroom_publishing.platforms.meta import GraphErrors, graph_time

DEFAULT_SCOPES = (
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_posts",
    "read_insights",
)
PAGE_METRICS = (
    "page_impressions",
    "page_impressions_unique",
    "page_post_engagements",
    "page_follows",
)
POST_METRICS = ("post_impressions", "post_impressions_unique", "post_clicks")
COUNT_FIELDS = "shares,comments.limit(0).summary(true),reactions.limit(0).summary(true)"


class FacebookPlatform(GraphErrors):
    capabilities = Capabilities(
        platform="facebook",
        display_name="Facebook",
        text_limit=63_206,
        text_count=TextCount.CHARACTERS,
        max_images=10,
        max_videos=1,
        mixed_media=False,
        image_types=frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
        video_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=10 * 1024 * 1024,
        max_video_bytes=10 * 1024**3,
        pkce=False,
        token_lifetime_s=None,  # a page token from a long-lived user token does not expire
        refreshable=False,
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.version = str(config.get("version") or "v21.0")
        graph = str(config.get("graph_url") or "https://graph.facebook.com").rstrip("/")
        self.graph = f"{graph}/{self.version}"
        self.dialog_url = str(config.get("dialog_url") or "https://www.facebook.com").rstrip("/")
        self.web_url = str(config.get("web_url") or "https://www.facebook.com").rstrip("/")
        self.client_id = str(config.get("client_id") or "")
        self.client_secret = str(config.get("client_secret") or "")
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        self.clock = clock_of(config)

    def _app(self) -> dict[str, str]:
        if not self.client_id or not self.client_secret:
            raise RejectedError(
                self.id, "Facebook needs client_id and client_secret in its config", code="config"
            )
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "client_id": self._app()["client_id"],
            "redirect_uri": context.redirect_uri,
            "state": context.state,
            "response_type": "code",
            "scope": ",".join(context.scopes or self.scopes),
        }
        return f"{self.dialog_url}/{self.version}/dialog/oauth?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        """Code -> short-lived user token -> long-lived user token -> the page's token."""
        app = self._app()
        try:
            short = await self._get(
                "oauth/access_token",
                None,
                {**app, "redirect_uri": context.redirect_uri, "code": code},
            )
        except AuthExpiredError as exc:  # 100/190 for a used or wrong code
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc
        user_token = _string(self, short, "access_token")
        long_lived = await self._get(
            "oauth/access_token",
            None,
            {**app, "grant_type": "fb_exchange_token", "fb_exchange_token": user_token},
        )
        user_token = _string(self, long_lived, "access_token")
        pages = await self._get("me/accounts", user_token, {"fields": "id,name,access_token,tasks"})
        page = _choose_page(pages.get("data"), context.extra.get("page_id"))
        if page is None:
            raise RejectedError(
                self.id, "no Facebook page this user may publish to", code="no_page"
            )
        return TokenGrant(
            access_token=str(page["access_token"]),
            refresh_token=None,
            expires_at=None,
            scopes=tuple(context.scopes or self.scopes),
        )

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        raise AuthExpiredError(
            self.id, "a page token cannot be refreshed; connect the page again", code="no_refresh"
        )

    async def verify(self, credentials: Credentials) -> Account:
        """With a page token, ``/me`` is the page."""
        body = await self._get(
            "me", credentials.access_token, {"fields": "id,name,link,followers_count"}
        )
        page_id = _string(self, body, "id")
        return Account(
            account_id=page_id,
            name=str(body.get("name") or page_id),
            extra={"link": body.get("link"), "followers": as_int(body.get("followers_count"))},
        )

    # --- publishing ------------------------------------------------------------------------

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        return await create_once(
            self, credentials, request, lambda: self._create(credentials, request)
        )

    async def _create(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        page, token = credentials.account_id, credentials.access_token
        images = [m for m in content.media if m.kind == "image"]
        videos = [m for m in content.media if m.kind == "video"]
        if videos:
            body = await self._post(
                f"{page}/videos",
                token,
                {"file_url": _url(self, videos[0]), "description": content.text},
            )
            video_id = _string(self, body, "id")
            return PublishedPost(
                platform_post_id=video_id,
                url=f"{self.web_url}/{page}/videos/{video_id}",
                published_at=self.clock(),
            )
        if len(images) == 1:
            body = await self._post(f"{page}/photos", token, _photo(self, images[0], content.text))
            post_id = str(body.get("post_id") or _string(self, body, "id"))
            return self._published(post_id)
        fields: dict[str, Any] = {"message": content.text}
        if images:
            attached = []
            for item in images:
                photo = await self._post(
                    f"{page}/photos", token, {**_photo(self, item, None), "published": False}
                )
                attached.append({"media_fbid": _string(self, photo, "id")})
            fields["attached_media"] = attached
        elif content.link:
            fields["link"] = content.link
        body = await self._post(f"{page}/feed", token, fields)
        return self._published(_string(self, body, "id"))

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        body = await self._get(
            f"{credentials.account_id}/published_posts",
            credentials.access_token,
            {"fields": "id,message,created_time,permalink_url", "limit": "25"},
        )
        wanted = " ".join(request.content.text.split())
        for post in body.get("data") or []:
            if not isinstance(post, dict) or not isinstance(post.get("id"), str):
                continue
            if " ".join(str(post.get("message") or "").split()) == wanted:
                link = post.get("permalink_url")
                return PublishedPost(
                    platform_post_id=post["id"],
                    url=link if isinstance(link, str) else f"{self.web_url}/{post['id']}",
                    published_at=graph_time(post.get("created_time")),
                )
        return None

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        try:
            await self.http.request(
                self,
                "DELETE",
                f"{self.graph}/{platform_post_id}",
                token=credentials.access_token,
                ok=(200,),
            )
        except RejectedError as exc:
            if exc.code == "100" and exc.details.get("subcode") == 33:
                return  # "does not exist": deleted already
            raise

    def _published(self, post_id: str) -> PublishedPost:
        return PublishedPost(
            platform_post_id=post_id, url=f"{self.web_url}/{post_id}", published_at=self.clock()
        )

    async def _get(self, path: str, token: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        answer = await self.http.request(
            self, "GET", f"{self.graph}/{path}", token=token, params=params, ok=(200,)
        )
        return json_object(self, answer)

    async def _post(self, path: str, token: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self.http.request(
            self, "POST", f"{self.graph}/{path}", token=token, json=fields, ok=(200,)
        )
        return json_object(self, answer)

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Page insights by day for the window; per post, today's lifetime insights and
        reactions, comments and shares."""
        token = credentials.access_token
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
        body = await self._get(
            f"{credentials.account_id}/insights",
            token,
            {
                "metric": ",".join(PAGE_METRICS),
                "period": "day",
                "since": str(int(start.timestamp())),
                "until": str(int(end.timestamp())),
            },
        )
        days: dict[date, dict[str, int]] = {}
        for metric in body.get("data") or []:
            if not isinstance(metric, dict) or metric.get("period") != "day":
                continue
            for value in metric.get("values") or []:
                ended = graph_time(value.get("end_time")) if isinstance(value, dict) else None
                if ended is None:
                    continue
                day = (ended - timedelta(days=1)).date()  # end_time closes the day
                if since <= day <= until:
                    days.setdefault(day, {})[str(metric.get("name"))] = as_int(value.get("value"))
        account = [
            DailyMetrics(
                day=day,
                impressions=values.get("page_impressions", 0),
                reach=values.get("page_impressions_unique", 0),
                engagement=values.get("page_post_engagements", 0),
                followers=values.get("page_follows", 0),
            )
            for day, values in sorted(days.items())
        ]
        posts: list[PostMetrics] = []
        today = today_within(self.clock, since, until)
        if today is None:
            return MetricsReport(account=account)
        for post_id in dict.fromkeys(platform_post_ids):
            insights = await self._get(
                f"{post_id}/insights", token, {"metric": ",".join(POST_METRICS)}
            )
            totals = {
                str(m.get("name")): as_int((m.get("values") or [{}])[-1].get("value"))
                for m in insights.get("data") or []
                if isinstance(m, dict)
            }
            counts = await self._get(
                post_id,
                token,
                {"fields": COUNT_FIELDS},
            )
            likes = _summary(counts.get("reactions"))
            comments = _summary(counts.get("comments"))
            shares_field = counts.get("shares")
            shares = as_int(shares_field.get("count")) if isinstance(shares_field, dict) else 0
            posts.append(
                PostMetrics(
                    platform_post_id=post_id,
                    day=today,
                    impressions=totals.get("post_impressions", 0),
                    reach=totals.get("post_impressions_unique", 0),
                    engagement=likes + comments + shares + totals.get("post_clicks", 0),
                    likes=likes,
                    comments=comments,
                    shares=shares,
                )
            )
        return MetricsReport(account=account, posts=posts)


def _choose_page(pages: Any, wanted: Any) -> dict[str, Any] | None:
    candidates = [
        p
        for p in (pages if isinstance(pages, list) else [])
        if isinstance(p, dict) and isinstance(p.get("id"), str) and p.get("access_token")
    ]
    if wanted is not None:
        return next((p for p in candidates if p["id"] == str(wanted)), None)
    for page in candidates:
        if "CREATE_CONTENT" in (page.get("tasks") or ["CREATE_CONTENT"]):
            return page
    return None


def _photo(platform: Platform, item: MediaItem, caption: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"url": _url(platform, item)}
    if caption:
        fields["caption"] = caption
    if item.alt_text:
        fields["alt_text_custom"] = item.alt_text
    return fields


def _url(platform: Platform, item: MediaItem) -> str:
    if not item.url:
        raise RejectedError(platform.id, f"media {item.media_id} has no URL", code="no_url")
    return item.url


def _string(platform: Platform, body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise TransientError(platform.id, f"the Graph API answer has no {key}")
    return value


def _summary(edge: Any) -> int:
    summary = edge.get("summary") if isinstance(edge, dict) else None
    return as_int(summary.get("total_count")) if isinstance(summary, dict) else 0
