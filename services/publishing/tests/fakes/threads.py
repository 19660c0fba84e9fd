"""A fake Threads API (v1.0), from Meta's Threads documentation: the authorize dialog, the
code for a short token, the long-lived exchange and refresh, ``/me``, containers (TEXT,
IMAGE, VIDEO, CAROUSEL of 2-20, media fetched from their URLs; 500 characters with emoji
as UTF-8 bytes; at most 5 links), ``threads_publish``, the publishing limit, the user's
threads, delete, insights."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from fakes.meta import ContainerFake, graph_error

APP_ID = "threads-app"
APP_SECRET = "threads-secret"
USER_ID = "25000000000000001"
V = "/v1.0"


def threads_length(text: str) -> int:
    """As documented: characters, but emoji count as their UTF-8 bytes."""
    total = 0
    for char in text:
        code = ord(char)
        if code >= 0x1F000 or 0x2600 <= code <= 0x27BF or code in (0x200D, 0xFE0F):
            total += len(char.encode())
        else:
            total += 1
    return total


@dataclass
class FakeThreads(ContainerFake):
    user_id: str = USER_ID

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/oauth/authorize", self.authorize)
        r.add_post("/oauth/access_token", self.code_token)
        r.add_get("/access_token", self.exchange)
        r.add_get("/refresh_access_token", self.refresh)
        r.add_get(f"{V}/me", self.me)
        r.add_post(f"{V}/{{user}}/threads", self.create_container)
        r.add_get(f"{V}/{{user}}/threads", self.list_threads)
        r.add_post(f"{V}/{{user}}/threads_publish", self.publish_container)
        r.add_get(f"{V}/{{user}}/threads_publishing_limit", self.limit)
        r.add_get(f"{V}/{{user}}/threads_insights", self.user_insights)
        r.add_get(f"{V}/{{node}}/insights", self.media_insights)
        r.add_get(f"{V}/{{node}}", self.node)
        r.add_delete(f"{V}/{{node}}", self.delete)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != APP_ID or "threads_basic" not in q.get("scope", "").split(","):
            return web.Response(status=400, text="Invalid request")
        code = secrets.token_urlsafe(16)
        self.codes[code] = q["redirect_uri"]
        raise web.HTTPFound(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}#_"
        )

    async def code_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != APP_ID or form.get("client_secret") != APP_SECRET:
            return graph_error("Error validating client secret.", 1)
        redirect = self.codes.pop(str(form.get("code", "")), None)
        if redirect is None or redirect != form.get("redirect_uri"):
            return graph_error("Error validating verification code.", 100, 36008)
        token = f"THQ{secrets.token_hex(12)}"
        self.tokens[token] = "short"
        return web.json_response({"access_token": token, "user_id": int(USER_ID)})

    async def exchange(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "th_exchange_token" or q.get("client_secret") != APP_SECRET:
            return graph_error("(#100) grant_type and client_secret are required", 100)
        if self.tokens.get(q.get("access_token", "")) != "short":
            return graph_error("Invalid OAuth access token", 190)
        token = f"THL{secrets.token_hex(16)}"
        self.tokens[token] = "long"
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 5183944}
        )

    async def refresh(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "th_refresh_token":
            return graph_error("(#100) grant_type is required", 100)
        if self.tokens.get(q.get("access_token", "")) != "long":
            return graph_error("Error validating access token: Session has expired", 190, 463)
        token = f"THL{secrets.token_hex(16)}"
        self.tokens[token] = "long"
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 5183944}
        )

    async def me(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return web.json_response({"id": USER_ID, "username": "acme", "name": "Acme"})

    def own(self, request: web.Request) -> web.Response | None:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.match_info["user"] not in (USER_ID, "me"):
            return graph_error("(#10) Application does not have permission for this action", 10)
        return None

    async def create_container(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        fields = await request.json()
        text = fields.get("text", "")
        if threads_length(text) > 500:
            return graph_error("(#100) The post text is too long", 100, 2207006)
        links = set(re.findall(r"https?://\S+", text))
        if fields.get("link_attachment"):
            links.add(fields["link_attachment"])
        if len(links) > 5:
            return graph_error("THREADS_API__LINK_LIMIT_EXCEEDED", 100)
        if fields.get("media_type") not in ("TEXT", "IMAGE", "VIDEO", "CAROUSEL"):
            return graph_error("(#100) media_type is invalid", 100)
        return await self.create(fields, text_key="text")

    async def publish_container(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        fields = await request.json()
        return self.publish(str(fields.get("creation_id", "")))

    async def limit(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        return self.quota()

    async def list_threads(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        limit = int(request.query.get("limit", "25"))
        data = []
        for media_id in sorted(self.media, reverse=True)[:limit]:
            item = self.media[media_id]
            kind = {"TEXT": "TEXT_POST", "CAROUSEL": "CAROUSEL_ALBUM"}.get(
                item["kind"], item["kind"]
            )
            view = {
                "id": media_id,
                "text": item["text"],
                "timestamp": item["timestamp"],
                "media_type": kind,
                "permalink": f"https://www.threads.net/@acme/post/{item['shortcode']}",
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
            return self.status_of(node, "status")
        item = self.media.get(node)
        if item is None:
            return graph_error("(#100) Unsupported get request. Object does not exist", 100, 33)
        return web.json_response(
            {
                "id": node,
                "permalink": f"https://www.threads.net/@acme/post/{item['shortcode']}",
                "timestamp": item["timestamp"],
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if self.media.pop(request.match_info["node"], None) is None:
            return graph_error("(#100) Unsupported delete request. Object does not exist", 100, 33)
        return web.json_response({"success": True})

    async def media_insights(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.match_info["node"] not in self.media:
            return graph_error("(#100) Object does not exist", 100, 33)
        values = {"views": 1500, "likes": 40, "replies": 6, "reposts": 3, "quotes": 1, "shares": 2}
        metrics = request.query.get("metric", "").split(",")
        return web.json_response(
            {
                "data": [
                    {
                        "name": m,
                        "period": "lifetime",
                        "values": [{"value": values[m]}],
                        "id": f"x/{m}",
                    }
                    for m in metrics
                ]
            }
        )

    async def user_insights(self, request: web.Request) -> web.Response:
        if (refused := self.own(request)) is not None:
            return refused
        from datetime import UTC, datetime, timedelta

        since = datetime.fromtimestamp(int(request.query["since"]), UTC)
        until = datetime.fromtimestamp(int(request.query["until"]), UTC)
        data = []
        for metric in request.query.get("metric", "").split(","):
            if metric == "followers_count":
                data.append({"name": metric, "period": "day", "total_value": {"value": 812}})
                continue
            values = []
            day = since
            while day < until:
                values.append(
                    {
                        "value": 100 + day.day,
                        "end_time": (day + timedelta(days=1, hours=8)).strftime(
                            "%Y-%m-%dT%H:%M:%S+0000"
                        ),
                    }
                )
                day += timedelta(days=1)
            data.append({"name": metric, "period": "day", "values": values})
        return web.json_response({"data": data})
