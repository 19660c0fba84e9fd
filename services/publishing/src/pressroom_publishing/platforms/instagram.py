"""Instagram (professional accounts): Instagram Login, a 60-day token refreshed in place,
posts through media containers, the daily publishing quota read from the API.

Followed: Meta for Developers, "Instagram API with Instagram Login" (Graph API v21.0):
"Business Login" (``https://www.instagram.com/oauth/authorize``; ``POST
https://api.instagram.com/oauth/access_token`` for a 1-hour token; ``GET
/access_token?grant_type=ig_exchange_token`` for a 60-day one; ``GET
/refresh_access_token?grant_type=ig_refresh_token`` once it is a day old), "Content
Publishing" (``POST /{ig-user-id}/media`` with ``image_url`` (JPEG only), or
``media_type=REELS`` and ``video_url``, or ``is_carousel_item`` children and
``media_type=CAROUSEL`` with 2 to 10 ``children``; Instagram fetches the URLs; poll
``status_code`` until ``FINISHED``; ``POST /{ig-user-id}/media_publish``; ``GET
/{ig-user-id}/content_publishing_limit``; captions of at most 2,200 characters, 30 hashtags
and 20 mentions), ``GET /{ig-user-id}/media``, and "Insights" (``/{ig-media-id}/insights``
reach, likes, comments, shares, saved, views; ``/{ig-user-id}/insights`` reach by day).
The API cannot delete a post. Errors are Graph-style (``platforms.meta``).

Config: ``client_id``, ``client_secret``, ``graph_url`` (``https://graph.instagram.com``),
``oauth_api_url`` (``https://api.instagram.com``), ``auth_url``
(``https://www.instagram.com/oauth/authorize``), ``version`` (``v21.0``), ``scopes``,
``poll_s`` (1.0), ``media_timeout_s`` (300), ``clock``.

Quota: ``publishing_quota(credentials)`` is the account's quota as the API reports it
(sources disagree on the number; the API is the authority), for refusing at schedule time;
``publish`` refuses transiently when it is used up. Reconciliation: ``find_published``
reads the account's 25 newest media and matches the caption and number of media.
"""

from __future__ import annotations

import re
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
    NotSupportedError,
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

DEFAULT_SCOPES = (
    "instagram_business_basic",
    "instagram_business_content_publish",
    "instagram_business_manage_insights",
)
MAX_CAROUSEL = 10
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
POST_METRICS = ("reach", "likes", "comments", "shares", "saved", "views")
_HASHTAG = re.compile(r"(?:^|(?<=\s))#\w+")
_MENTION = re.compile(r"(?:^|(?<=\s))@[\w.]+")


class InstagramPlatform(GraphErrors):
    capabilities = Capabilities(
        platform="instagram",
        display_name="Instagram",
        text_limit=2200,
        text_count=TextCount.CHARACTERS,
        needs_media=True,
        max_images=MAX_CAROUSEL,
        max_videos=MAX_CAROUSEL,
        mixed_media=True,
        image_types=frozenset({"image/jpeg"}),
        video_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=8 * 1024 * 1024,
        max_video_bytes=300 * 1024 * 1024,
        max_video_duration_s=15 * 60,
        pkce=False,
        token_lifetime_s=60 * 24 * 3600,
        refreshable=True,  # the long-lived token itself is refreshed
        lookup_by_reference=True,
        deletable=False,
        metrics=True,
    )

    def __init__(self, http: PlatformHTTP, config: Mapping[str, Any]) -> None:
        super().__init__(http, config)
        self.root = str(config.get("graph_url") or "https://graph.instagram.com").rstrip("/")
        self.graph = f"{self.root}/{config.get('version') or 'v21.0'}"
        self.oauth_api = str(config.get("oauth_api_url") or "https://api.instagram.com")
        self.oauth_api = self.oauth_api.rstrip("/")
        self.auth_url = str(config.get("auth_url") or "https://www.instagram.com/oauth/authorize")
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
                self.id, "Instagram needs client_id and client_secret in its config", code="config"
            )
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    # --- connecting ------------------------------------------------------------------------

    async def authorization_url(self, context: OAuthContext) -> str:
        params = {
            "client_id": self._app()["client_id"],
            "redirect_uri": context.redirect_uri,
            "response_type": "code",
            "scope": ",".join(context.scopes or self.scopes),
            "state": context.state,
        }
        return f"{self.auth_url}?{urlencode(params)}"

    async def exchange_code(self, code: str, context: OAuthContext) -> TokenGrant:
        """The code (Instagram appends ``#_`` to the redirect; it is not part of the code)
        for a 1-hour token, that for a 60-day one."""
        try:
            answer = await self.http.request(
                self,
                "POST",
                f"{self.oauth_api}/oauth/access_token",
                data={
                    **self._app(),
                    "grant_type": "authorization_code",
                    "redirect_uri": context.redirect_uri,
                    "code": code.removesuffix("#_"),
                },
                ok=(200,),
            )
        except AuthExpiredError as exc:
            raise RejectedError(self.id, exc.message, code=exc.code, status=exc.status) from exc
        body = json_object(self, answer)
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            body = data[0]  # the newer answer shape
        short = body.get("access_token")
        if not isinstance(short, str) or not short:
            raise RejectedError(self.id, "the token answer has no access_token")
        body = await exchange_long_lived(
            self, self.root, "ig_exchange_token", self._app()["client_secret"], short
        )
        return long_lived_grant(self, self.clock, body, context.scopes or self.scopes)

    async def refresh(self, credentials: Credentials) -> TokenGrant:
        body = await refresh_long_lived(self, self.root, "ig_refresh_token", credentials)
        return long_lived_grant(self, self.clock, body, ())

    async def verify(self, credentials: Credentials) -> Account:
        body = await graph_get(
            self,
            f"{self.graph}/me",
            credentials.access_token,
            {"fields": "user_id,username,name,followers_count"},
        )
        user_id = body.get("user_id") or body.get("id")
        if not isinstance(user_id, str | int) or not str(user_id):
            raise TransientError(self.id, "the account answer has no user_id")
        return Account(
            account_id=str(user_id),
            name=str(body.get("name") or body.get("username") or user_id),
            extra={
                "username": body.get("username"),
                "followers": as_int(body.get("followers_count")),
            },
        )

    # --- publishing ------------------------------------------------------------------------

    def validate(self, content: PostContent) -> list[Problem]:
        problems = super().validate(content)
        if len(content.media) > MAX_CAROUSEL:
            problems.append(Problem("media", f"at most {MAX_CAROUSEL} media in a carousel"))
        tags = len(_HASHTAG.findall(content.text))
        if tags > MAX_HASHTAGS:
            problems.append(Problem("text", f"{tags} hashtags; Instagram takes {MAX_HASHTAGS}"))
        mentions = len(_MENTION.findall(content.text))
        if mentions > MAX_MENTIONS:
            problems.append(Problem("text", f"{mentions} mentions; Instagram takes {MAX_MENTIONS}"))
        return problems

    async def publishing_quota(self, credentials: Credentials) -> Quota | None:
        """Posts published and allowed in the rolling 24 h, from the API."""
        return await read_quota(
            self,
            f"{self.graph}/{credentials.account_id}/content_publishing_limit",
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
            children = [
                await self._container(user, token, item, None, carousel_item=True)
                for item in content.media
            ]
            container = graph_id(
                self,
                await graph_post(
                    self,
                    f"{self.graph}/{user}/media",
                    token,
                    {
                        "media_type": "CAROUSEL",
                        "children": ",".join(children),
                        "caption": content.text,
                    },
                ),
            )
        else:
            container = await self._container(user, token, content.media[0], content.text)
        await self._finished(token, container)
        published = await graph_post(
            self, f"{self.graph}/{user}/media_publish", token, {"creation_id": container}
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
        caption: str | None,
        *,
        carousel_item: bool = False,
    ) -> str:
        if not item.url:
            raise RejectedError(self.id, f"media {item.media_id} has no URL", code="no_url")
        fields: dict[str, Any]
        if item.kind == "video":
            fields = {"media_type": "VIDEO" if carousel_item else "REELS", "video_url": item.url}
        else:
            fields = {"image_url": item.url}
            if item.alt_text:
                fields["alt_text"] = item.alt_text
        if carousel_item:
            fields["is_carousel_item"] = True
        if caption:
            fields["caption"] = caption
        container = graph_id(
            self, await graph_post(self, f"{self.graph}/{user}/media", token, fields)
        )
        if carousel_item:
            await self._finished(token, container)
        return container

    async def _finished(self, token: str, container: str) -> None:
        await wait_until_finished(
            self,
            f"{self.graph}/{container}",
            token,
            field="status_code",
            poll_s=self.poll_s,
            timeout_s=self.media_timeout_s,
        )

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        body = await graph_get(
            self,
            f"{self.graph}/{credentials.account_id}/media",
            credentials.access_token,
            {"fields": "id,caption,media_type,timestamp,permalink,children", "limit": "25"},
        )
        return match_recent(body, request, text_field="caption", media_count=_media_count)

    async def delete(self, credentials: Credentials, platform_post_id: str) -> None:
        raise NotSupportedError(self.id, "the Instagram API cannot delete a post")

    # --- metrics ---------------------------------------------------------------------------

    async def fetch_metrics(
        self,
        credentials: Credentials,
        since: date,
        until: date,
        platform_post_ids: Sequence[str] = (),
    ) -> MetricsReport:
        """Reach by day for the account (and today's followers); per post, today's
        lifetime reach, views, likes, comments, shares and saves."""
        token = credentials.access_token
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
        body = await graph_get(
            self,
            f"{self.graph}/{credentials.account_id}/insights",
            token,
            {
                "metric": "reach",
                "period": "day",
                "since": str(int(start.timestamp())),
                "until": str(int(end.timestamp())),
            },
        )
        reach: dict[date, int] = {}
        for metric in body.get("data") or []:
            if not isinstance(metric, dict) or metric.get("name") != "reach":
                continue
            for value in metric.get("values") or []:
                ended = graph_time(value.get("end_time")) if isinstance(value, dict) else None
                if ended is not None:
                    day = (ended - timedelta(days=1)).date()
                    if since <= day <= until:
                        reach[day] = as_int(value.get("value"))
        today = today_within(self.clock, since, until)
        followers = 0
        if today is not None:
            reach.setdefault(today, 0)
            followers = as_int((await self.verify(credentials)).extra.get("followers"))
        account = [
            DailyMetrics(day=day, reach=count, followers=followers if day == today else 0)
            for day, count in sorted(reach.items())
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
            likes, comments = totals.get("likes", 0), totals.get("comments", 0)
            shares = totals.get("shares", 0)
            posts.append(
                PostMetrics(
                    platform_post_id=media_id,
                    day=today,
                    reach=totals.get("reach", 0),
                    impressions=totals.get("views", 0),
                    engagement=likes + comments + shares + totals.get("saved", 0),
                    likes=likes,
                    comments=comments,
                    shares=shares,
                )
            )
        return MetricsReport(account=account, posts=posts)


def _media_count(media: Mapping[str, Any]) -> int:
    return carousel_size(media) or 1
