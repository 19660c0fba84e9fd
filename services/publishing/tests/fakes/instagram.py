"""A fake Instagram API with Instagram Login (v21.0), from Meta's documentation: the
authorize dialog (its redirect ends in ``#_``), the code exchange on api.instagram.com (the
newer ``{"data": [...]}`` answer), the long-lived exchange and refresh, ``/me``, media
containers (JPEG images, REELS, carousels of 2-10 children, URLs fetched; captions of at
most 2,200 characters and 30 hashtags), ``status_code``, ``media_publish``, the publishing
limit (100 per day here), the account's media, insights."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web

from fakes.meta import ContainerFake, graph_error

APP_ID = "ig-app"
APP_SECRET = "ig-secret"
USER_ID = "17841400000000001"
V = "/v21.0"


@dataclass
class FakeInstagram(ContainerFake):
    user_id: str = USER_ID
    quota_total: int = 100
    carousel_max: int = 10

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/oauth/authorize", self.authorize)
        r.add_post("/oauth/access_token", self.code_token)
        r.add_get("/access_token", self.exchange)
        r.add_get("/refresh_access_token", self.refresh)
        r.add_get(f"{V}/me", self.me)
        r.add_post(f"{V}/{{user}}/media", self.create_container)
        r.add_get(f"{V}/{{user}}/media", self.list_media)
        r.add_post(f"{V}/{{user}}/media_publish", self.publish_container)
        r.add_get(f"{V}/{{user}}/content_publishing_limit", self.limit)
        r.add_get(f"{V}/{{node}}/insights", self.insights)
        r.add_get(f"{V}/{{node}}", self.node)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != APP_ID or "instagram_business_content_publish" not in q.get(
            "scope", ""
        ):
            return web.Response(status=400, text="Invalid request")
        code = secrets.token_urlsafe(16)
        self.codes[code] = q["redirect_uri"]
        raise web.HTTPFound(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}#_"
        )

    async def code_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != APP_ID or form.get("client_secret") != APP_SECRET:
            return web.json_response(
                {
                    "error_type": "OAuthException",
                    "code": 400,
                    "error_message": "Invalid client_secret",
                },
                status=400,
            )
        redirect = self.codes.pop(str(form.get("code", "")), None)
        if redirect is None or redirect != form.get("redirect_uri"):
            return graph_error("Error validating verification code.", 100, 36008)
        token = f"IGQS{secrets.token_hex(12)}"
        self.tokens[token] = "short"
        return web.json_response(
            {
                "data": [
                    {
                        "access_token": token,
                        "user_id": USER_ID,
                        "permissions": "instagram_business_basic",
                    }
                ]
            }
        )

    async def exchange(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "ig_exchange_token" or q.get("client_secret") != APP_SECRET:
            return graph_error("(#100) grant_type and client_secret are required", 100)
        if self.tokens.get(q.get("access_token", "")) != "short":
            return graph_error("Invalid OAuth access token", 190)
        token = f"IGQL{secrets.token_hex(16)}"
        self.tokens[token] = "long"
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 5183944}
        )

    async def refresh(self, request: web.Request) -> web.Response:
        q = request.query
        if (
            q.get("grant_type") != "ig_refresh_token"
            or self.tokens.get(q.get("access_token", "")) != "long"
        ):
            return graph_error("Error validating access token: Session has expired", 190, 463)
        token = f"IGQL{secrets.token_hex(16)}"
        self.tokens[token] = "long"
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 5183944}
        )

    async def me(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return web.json_response(
            {
                "id": "app-scoped-1",
                "user_id": USER_ID,
                "username": "acme",
                "name": "Acme",
                "followers_count": 4321,
            }
        )

    def own(self, request: web.Request) -> web.Response | None:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.match_info["user"] != USER_ID:
            return graph_error("(#10) Application does not have permission for this action", 10)
        return None

    async def create_container(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        fields = await request.json()
        caption = fields.get("caption", "")
        if len(caption) > 2200:
            return graph_error("(#100) The caption is too long", 100, 2207006)
        if len(re.findall(r"#\w+", caption)) > 30:
            return graph_error("(#100) Too many hashtags", 100, 2207009)
        if "image_url" in fields:
            fields.setdefault("media_type", "IMAGE")
            if not fields["image_url"]:
                return graph_error("(#100) image_url is required", 100)
        elif fields.get("media_type") not in ("REELS", "VIDEO", "CAROUSEL"):
            return graph_error("(#100) The media type is invalid", 100)
        response = await self.create(fields, text_key="caption")
        return response

    async def publish_container(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        fields = await request.json()
        return self.publish(str(fields.get("creation_id", "")))

    async def limit(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        return self.quota()

    async def list_media(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        data = []
        for media_id in sorted(self.media, reverse=True)[: int(request.query.get("limit", "25"))]:
            item = self.media[media_id]
            kind = {"CAROUSEL": "CAROUSEL_ALBUM", "REELS": "VIDEO"}.get(item["kind"], item["kind"])
            view = {
                "id": media_id,
                "caption": item["text"],
                "media_type": kind,
                "timestamp": item["timestamp"],
                "permalink": f"https://www.instagram.com/p/{item['shortcode']}/",
            }
            if item["children"]:
                view["children"] = {"data": [{"id": c} for c in item["children"]]}
            data.append(view)
        return web.json_response({"data": data, "paging": {}})

    async def node(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        node = request.match_info["node"]
        if node in self.containers:
            return self.status_of(node, "status_code")
        item = self.media.get(node)
        if item is None:
            return graph_error("(#100) Object does not exist", 100, 33)
        return web.json_response(
            {
                "id": node,
                "permalink": f"https://www.instagram.com/p/{item['shortcode']}/",
                "timestamp": item["timestamp"],
            }
        )

    async def insights(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        node = request.match_info["node"]
        metrics = request.query.get("metric", "").split(",")
        if node == USER_ID:
            if request.query.get("period") != "day":
                return graph_error("(#100) period must be day", 100)
            since = datetime.fromtimestamp(int(request.query["since"]), UTC)
            until = datetime.fromtimestamp(int(request.query["until"]), UTC)
            values = []
            day = since
            while day < until:
                values.append(
                    {
                        "value": 50 + day.day,
                        "end_time": (day + timedelta(days=1, hours=7)).strftime(
                            "%Y-%m-%dT%H:%M:%S+0000"
                        ),
                    }
                )
                day += timedelta(days=1)
            return web.json_response(
                {"data": [{"name": "reach", "period": "day", "values": values}]}
            )
        if node not in self.media:
            return graph_error("(#100) Object does not exist", 100, 33)
        totals = {"reach": 700, "likes": 55, "comments": 8, "shares": 4, "saved": 9, "views": 1100}
        return web.json_response(
            {
                "data": [
                    {"name": m, "period": "lifetime", "values": [{"value": totals[m]}]}
                    for m in metrics
                ]
            }
        )
