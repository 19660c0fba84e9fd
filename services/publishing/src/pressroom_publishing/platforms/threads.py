"""Threads: Threads OAuth with a long-lived token refreshed in place, posts through media
containers, the account's publishing quota read from the API.

Followed: Meta for Developers, Threads API v1.0 (2025-2026): "Get Access Tokens and
Permissions" (``https://threads.net/oauth/authorize``; ``POST /oauth/access_token`` for a
1-hour token; ``GET /access_token?grant_type=th_exchange_token`` for a 60-day one; ``GET
/refresh_access_token?grant_type=th_refresh_token``, allowed once the token is a day old),
"Threads Posts" (``POST /{threads-user-id}/threads`` with ``media_type`` TEXT, IMAGE, VIDEO
or CAROUSEL and ``image_url`` / ``video_url`` that Threads fetches; ``is_carousel_item``
children, 2 to 20; ``POST /{threads-user-id}/threads_publish``; posts of at most 500
characters, emoji counted as their UTF-8 bytes, at most 5 links), "Media container status"
(``status``: IN_PROGRESS, FINISHED, ERROR, EXPIRED, PUBLISHED), "Rate limiting" (250
published posts per rolling 24 h, ``GET /{threads-user-id}/threads_publishing_limit``),
"Retrieve posts" (``GET /{threads-user-id}/threads``), "Delete posts" (``DELETE
/{threads-media-id}``, permission ``threads_delete``) and "Insights" (``/{media-id}/insights``,
``/{threads-user-id}/threads_insights``). Errors are Graph-style (``platforms.meta``).

Config: ``client_id``, ``client_secret``, ``graph_url`` (``https://graph.threads.net``),
``auth_url`` (``https://threads.net/oauth/authorize``), ``version`` (``v1.0``), ``scopes``,
``poll_s`` (1.0), ``media_timeout_s`` (300), ``clock``.

Reconciliation: ``find_published`` reads the account's 25 newest posts and matches the
text and number of media.
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
    PlatformHTTP,
    PostContent,
    PostMetrics,
    Problem,
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
    json_object,
    today_within,
)
from pressroom_publishing.platforms.meta import (
    GraphErrors,
    Quota,
    carousel_size,
    exchange_long_lived,
    graph_get,
    graph_id,
    graph_post,
    graph_time,
    long_lived_grant,
    match_recent,
    published_after,
    read_quota,
    refresh_long_lived,
    wait_until_finished,
)
from pressroom_publishing.platforms.text import urls

DEFAULT_SCOPES = (
    "threads_basic",
    "threads_content_publish",
    "threads_manage_insights",
    "threads_delete",
)
MAX_LINKS = 5
MAX_CAROUSEL = 20
POST_METRICS = ("views", "likes", "replies", "reposts", "quotes", "shares")


class ThreadsPlatform(GraphErrors):
    capabilities = Capabilities(
        platform="threads",
        display_name="Threads",
        text_limit=500,
        text_count=TextCount.EMOJI_AS_UTF8,
        max_images=MAX_CAROUSEL,
        max_videos=MAX_CAROUSEL,
        mixed_media=True,
        image_types=frozenset({"image/jpeg", "image/png"}),
        video_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=8 * 1024 * 1024,
        max_video_bytes=1024**3,
        max_video_duration_s=300,
        pkce=False,
        token_lifetime_s=60 * 24 * 3600,
        refreshable=True,  # the long-lived token itself is refreshed
        lookup_by_reference=True,
        deletable=True,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.root = str(config.get("graph_url") or "https://graph.threads.net").rstrip("/")
        self.graph = f"{self.root}/{config.get('version') or 'v1.0'}"
        self.auth_url = str(config.get("auth_url") or "https://threads.net/oauth/authorize")
        self.client_id = str(config.get("client_id") or "")
        self.client_secret = str(config.get("client_secret") or "")
        scopes = config.get("scopes")
        self.scopes = tuple(scopes) if isinstance(scopes, list | tuple) else DEFAULT_SCOPES
        self.poll_s = float(config.get("poll_s", 1.0))
        self.media_timeout_s = float(config.get("media_timeout_s", 300.0))
        self.clock = clock_of(config)

    def _app(self) -> dict[str, str]:
        if not self.client_id or not self.client_secret:
            raise RejectedError(
                self.id, "Threads needs client_id and client_secret in its config", code="config"
            )
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "client_id": self._app()["client_id"],
            "redirect_uri": context.redirect_uri,
            "scope": ",".join(context.scopes or self.scopes),
            "response_type": "code",
            "state": context.state,
        }
        return f"{self.auth_url}?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        """The code for a 1-hour token, that for a 60-day one."""
        try:
            answer = await self.http.request(
                self,
                "POST",
                f"{self.root}/oauth/access_token",
                data={
                    **self._app(),
                    "grant_type": "authorization_code",
                    "redirect_uri": context.redirect_uri,
                    "code": code,
                },
                ok=(200,),
            )
        except AuthExpiredError as exc:
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc
        short = json_object(self, answer).get("access_token")
        if not isinstance(short, str) or not short:
            raise RejectedError(self.id, "the token answer has no access_token")
        body = await exchange_long_lived(
            self, self.root, "th_exchange_token", self._app()["client_secret"], short
        )
        return long_lived_grant(self, self.clock, body, context.scopes or self.scopes)

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        body = await refresh_long_lived(self, self.root, "th_refresh_token", credentials)
        return long_lived_grant(self, self.clock, body, ())

    async def verify(self, credentials: Credentials) -> Account:
        body = await graph_get(
            self, f"{self.graph}/me", credentials.access_token, {"fields": "id,username,name"}
        )
        user_id = graph_id(self, body)
        return Account(
            account_id=user_id,
            name=str(body.get("name") or body.get("username") or user_id),
            extra={"username": body.get("username")},
        )

    # --- publishing ------------------------------------------------------------------------

    def validate(self, content: PostContent) -> list[Problem]:
        problems = super().validate(content)
        if len(content.media) > MAX_CAROUSEL:
            problems.append(Problem("media", f"at most {MAX_CAROUSEL} media in a carousel"))
        links = {content.text[a:b] for a, b in urls(content.text)}
        if content.link:
            links.add(content.link)
        if len(links) > MAX_LINKS:
            problems.append(Problem("text", f"{len(links)} links; Threads takes at most 5"))
        return problems

    async def publishing_quota(self, credentials: Credentials) -> Quota | None:
        """Posts published and allowed in the rolling 24 h, from the API."""
        return await read_quota(
            self,
            f"{self.graph}/{credentials.account_id}/threads_publishing_limit",
            credentials.access_token,
        )

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        content = request.content
        problems = self.validate(content)
        if problems:
            raise RejectedError(self.id, "; ".join(p.message for p in problems), code="validation")
        quota = await self.publishing_quota(credentials)
        if quota is not None and quota.remaining == 0:
            raise TransientError(
                self.id,
                f"the account published its {quota.total} posts of the last 24 h",
                code="quota",
                retry_after_s=3600.0,
            )
        user, token = credentials.account_id, credentials.access_token
        if len(content.media) > 1:
            children = []
            for item in content.media:
                child = await self._container(user, token, item, None, carousel_item=True)
                children.append(child)
            container = graph_id(
                self,
                await graph_post(
                    self,
                    f"{self.graph}/{user}/threads",
                    token,
                    {
                        "media_type": "CAROUSEL",
                        "children": ",".join(children),
                        "text": content.text,
                    },
                ),
            )
        elif content.media:
            container = await self._container(user, token, content.media[0], content.text)
        else:
            fields: dict[str, Any] = {"media_type": "TEXT", "text": content.text}
            if content.link:
                fields["link_attachment"] = content.link
            container = graph_id(
                self, await graph_post(self, f"{self.graph}/{user}/threads", token, fields)
            )
        await self._finished(token, container)
        published = await graph_post(
            self, f"{self.graph}/{user}/threads_publish", token, {"creation_id": container}
        )
        media_id = graph_id(self, published)
        return await published_after(
            self, f"{self.graph}/{media_id}", token, media_id, self.clock()
        )

    async def _container(
        self,
        user: str,
        token: str,
        item: MediaItem,
        text: str | None,
        *,
        carousel_item: bool = False,
    ) -> str:
        if not item.url:
            raise RejectedError(self.id, f"media {item.media_id} has no URL", code="no_url")
        fields: dict[str, Any] = (
            {"media_type": "VIDEO", "video_url": item.url}
            if item.kind == "video"
            else {"media_type": "IMAGE", "image_url": item.url}
        )
        if carousel_item:
            fields["is_carousel_item"] = True
        if text:
            fields["text"] = text
        if item.alt_text:
            fields["alt_text"] = item.alt_text
        container = graph_id(
            self, await graph_post(self, f"{self.graph}/{user}/threads", token, fields)
        )
        if carousel_item:
            await self._finished(token, container)
        return container

    async def _finished(self, token: str, container: str) -> None:
        await wait_until_finished(
            self,
            f"{self.graph}/{container}",
            token,
            field="status",
            poll_s=self.poll_s,
            timeout_s=self.media_timeout_s,
        )

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        body = await graph_get(
            self,
            f"{self.graph}/{credentials.account_id}/threads",
            credentials.access_token,
            {"fields": "id,text,timestamp,permalink,media_type,children", "limit": "25"},
        )
        return match_recent(body, request, text_field="text", media_count=_media_count)

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
                return  # does not exist: deleted already
            raise

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Views by day for the account (and today's followers); per post, today's
        lifetime views, likes, replies, reposts + quotes + shares."""
        token = credentials.access_token
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
        body = await graph_get(
            self,
            f"{self.graph}/{credentials.account_id}/threads_insights",
            token,
            {
                "metric": "views,followers_count",
                "since": str(int(start.timestamp())),
                "until": str(int(end.timestamp())),
            },
        )
        views: dict[date, int] = {}
        followers = 0
        for metric in body.get("data") or []:
            if not isinstance(metric, dict):
                continue
            if metric.get("name") == "followers_count":
                total = metric.get("total_value")
                followers = as_int(total.get("value")) if isinstance(total, dict) else 0
                continue
            for value in metric.get("values") or []:
                ended = graph_time(value.get("end_time")) if isinstance(value, dict) else None
                if ended is not None:
                    day = (ended - timedelta(days=1)).date()
                    if since <= day <= until:
                        views[day] = as_int(value.get("value"))
        today = today_within(self.clock, since, until)
        if today is not None:
            views.setdefault(today, 0)
        account = [
            DailyMetrics(day=day, impressions=count, followers=followers if day == today else 0)
            for day, count in sorted(views.items())
        ]
        if today is None:
            return MetricsReport(account=account)
        posts = []
        for media_id in dict.fromkeys(platform_post_ids):
            insights = await graph_get(
                self, f"{self.graph}/{media_id}/insights", token, {"metric": ",".join(POST_METRICS)}
            )
            totals = {
                str(m.get("name")): as_int((m.get("values") or [{}])[-1].get("value"))
                for m in insights.get("data") or []
                if isinstance(m, dict)
            }
            shares = totals.get("reposts", 0) + totals.get("quotes", 0) + totals.get("shares", 0)
            likes, comments = totals.get("likes", 0), totals.get("replies", 0)
            posts.append(
                PostMetrics(
                    platform_post_id=media_id,
                    day=today,
                    impressions=totals.get("views", 0),
                    engagement=likes + comments + shares,
                    likes=likes,
                    comments=comments,
                    shares=shares,
                )
            )
        return MetricsReport(account=account, posts=posts)


def _media_count(post: Mapping[str, Any]) -> int:
    size = carousel_size(post)
    if size is not None:
        return size
    return 0 if post.get("media_type") in (None, "TEXT_POST") else 1
