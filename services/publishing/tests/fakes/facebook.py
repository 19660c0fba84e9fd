"""A fake Graph API (v21.0), from Meta's documentation: the login dialog and the code
exchange, the long-lived token exchange, ``/me/accounts`` with page tokens, ``/me`` as the
page, feed posts (message, link, attached_media of unpublished photos of this page),
photos by URL (the fake fetches the URL, as Facebook does), videos by ``file_url``,
published_posts, deletion, page insights by day (``end_time`` closing each day) and post
insights; errors as ``{"error": {message, type, code, error_subcode, fbtrace_id}}``."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from fakes import FakeBase, bearer

APP_ID = "1234567890"
APP_SECRET = "fb-app-secret"
USER_ID = "10160000000000001"
PAGE_ID = "104000000000001"
OTHER_PAGE_ID = "104000000000002"
V = "/v21.0"


@dataclass
class FakeFacebook(FakeBase):
    base_url: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    short_tokens: set[str] = field(default_factory=set)
    long_tokens: set[str] = field(default_factory=set)
    page_tokens: dict[str, str] = field(default_factory=dict)  # token -> page id
    photos: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get(f"{V}/dialog/oauth", self.dialog)
        r.add_get(f"{V}/oauth/access_token", self.access_token)
        r.add_get(f"{V}/me/accounts", self.accounts)
        r.add_get(f"{V}/me", self.me)
        r.add_post(f"{V}/{{page}}/feed", self.feed)
        r.add_post(f"{V}/{{page}}/photos", self.photo)
        r.add_post(f"{V}/{{page}}/videos", self.video)
        r.add_get(f"{V}/{{page}}/published_posts", self.published_posts)
        r.add_get(f"{V}/{{node}}/insights", self.insights)
        r.add_get(f"{V}/{{node}}", self.node)
        r.add_delete(f"{V}/{{node}}", self.delete)
        return app

    @staticmethod
    def error(
        message: str,
        code: int,
        subcode: int | None = None,
        kind: str = "OAuthException",
        status: int = 400,
    ) -> web.Response:
        error: dict[str, Any] = {
            "message": message,
            "type": kind,
            "code": code,
            "fbtrace_id": "AbCdEf",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        return web.json_response({"error": error}, status=status)

    def token(self, request: web.Request) -> str | None:
        return bearer(request) or request.query.get("access_token")

    def page_of(self, request: web.Request) -> str | web.Response:
        page = self.page_tokens.get(self.token(request) or "")
        if page is None:
            return self.error("Error validating access token: Session has expired.", 190, 463)
        wanted = request.match_info.get("page")
        if wanted is not None and wanted != page:
            return self.error(
                "(#200) The user hasn't authorized the application to perform this action",
                200,
                kind="OAuthException",
                status=403,
            )
        return page

    async def dialog(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != APP_ID:
            return web.Response(status=400, text="Invalid App ID")
        if "pages_manage_posts" not in q.get("scope", "").split(","):
            return web.Response(status=400, text="scope must include pages_manage_posts")
        code = secrets.token_urlsafe(24)
        self.codes[code] = q["redirect_uri"]
        raise web.HTTPFound(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        )

    async def access_token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != APP_ID or q.get("client_secret") != APP_SECRET:
            return self.error("Error validating client secret.", 1, kind="OAuthException")
        if q.get("grant_type") == "fb_exchange_token":
            if q.get("fb_exchange_token") not in self.short_tokens:
                return self.error("Invalid OAuth access token.", 190)
            long_lived = f"EAAL{secrets.token_hex(16)}"
            self.long_tokens.add(long_lived)
            return web.json_response(
                {"access_token": long_lived, "token_type": "bearer", "expires_in": 5183944}
            )
        redirect = self.codes.pop(q.get("code", ""), None)
        if redirect is None:
            return self.error("This authorization code has been used.", 100, 36009)
        if redirect != q.get("redirect_uri"):
            return self.error(
                "Error validating verification code. Please make sure your redirect_uri is "
                "identical to the one you used in the OAuth dialog request",
                100,
                36008,
            )
        short = f"EAAS{secrets.token_hex(16)}"
        self.short_tokens.add(short)
        return web.json_response(
            {"access_token": short, "token_type": "bearer", "expires_in": 5400}
        )

    async def accounts(self, request: web.Request) -> web.Response:
        if self.token(request) not in self.long_tokens | self.short_tokens:
            return self.error("Invalid OAuth access token.", 190)
        pages = []
        for page_id, name, tasks in (
            (OTHER_PAGE_ID, "Acme Fans", ["ANALYZE"]),
            (PAGE_ID, "Acme", ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"]),
        ):
            page_token = f"EAAP{secrets.token_hex(16)}"
            self.page_tokens[page_token] = page_id
            pages.append(
                {
                    "id": page_id,
                    "name": name,
                    "access_token": page_token,
                    "category": "Brand",
                    "tasks": tasks,
                }
            )
        return web.json_response(
            {"data": pages, "paging": {"cursors": {"before": "a", "after": "b"}}}
        )

    async def me(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        return web.json_response(
            {
                "id": page,
                "name": "Acme",
                "link": f"https://www.facebook.com/{page}",
                "followers_count": 321,
            }
        )

    async def fetch(self, url: str) -> bytes | None:
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            return await answer.read() if answer.status == 200 else None

    async def photo(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        body = await request.json()
        data = await self.fetch(body.get("url", ""))
        if data is None:
            return self.error("(#324) Missing or invalid image file", 324, kind="OAuthException")
        photo_id = str(500000000000000 + len(self.photos) + 1)
        published = body.get("published", True) not in (False, "false")
        self.photos[photo_id] = {
            "page": page,
            "bytes": data,
            "published": published,
            "alt": body.get("alt_text_custom"),
        }
        if not published:
            return web.json_response({"id": photo_id})
        post_id = self.store(page, body.get("caption", ""), [photo_id])
        return web.json_response({"id": photo_id, "post_id": post_id})

    def store(self, page: str, message: str, media: list[str], link: str | None = None) -> str:
        if message and any(
            p["message"] == message and p["page"] == page for p in self.posts.values()
        ):
            duplicate = {"message": "(#506) Duplicate status message", "code": 506}
            raise web.HTTPBadRequest(
                text=json.dumps({"error": {**duplicate, "type": "OAuthException"}}),
                content_type="application/json",
            )
        post_id = f"{page}_{700000000000000 + len(self.posts) + 1}"
        self.posts[post_id] = {
            "page": page,
            "message": message,
            "media": media,
            "link": link,
            "created_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        }
        return post_id

    async def feed(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        body = await request.json()
        media = []
        for entry in body.get("attached_media", []):
            photo = self.photos.get(entry.get("media_fbid", ""))
            if photo is None or photo["page"] != page or photo["published"]:
                return self.error("(#100) Invalid media_fbid", 100)
            media.append(entry["media_fbid"])
        if not body.get("message") and not media and not body.get("link"):
            return self.error("(#100) Missing message or attachment", 100)
        return web.json_response(
            {"id": self.store(page, body.get("message", ""), media, body.get("link"))}
        )

    async def video(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        body = await request.json()
        data = await self.fetch(body.get("file_url", ""))
        if data is None:
            return self.error("(#100) file_url could not be fetched", 100)
        video_id = str(900000000000000 + len(self.videos) + 1)
        self.videos[video_id] = {
            "page": page,
            "bytes": data,
            "description": body.get("description"),
        }
        return web.json_response({"id": video_id})

    async def published_posts(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        limit = int(request.query.get("limit", "25"))
        newest = sorted(
            ((k, v) for k, v in self.posts.items() if v["page"] == page),
            key=lambda kv: kv[0],
            reverse=True,
        )
        return web.json_response(
            {
                "data": [
                    {
                        "id": k,
                        "message": v["message"],
                        "created_time": v["created_time"],
                        "permalink_url": f"https://www.facebook.com/{k}",
                    }
                    for k, v in newest[:limit]
                ]
            }
        )

    async def insights(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        node = request.match_info["node"]
        metrics = request.query.get("metric", "").split(",")
        if node == page:
            if request.query.get("period") != "day":
                return self.error("(#100) period must be day", 100)
            since = datetime.fromtimestamp(int(request.query["since"]), UTC)
            until = datetime.fromtimestamp(int(request.query["until"]), UTC)
            data = []
            for index, name in enumerate(metrics):
                values = []
                day = since
                while day < until:
                    # Facebook closes a day at 08:00 UTC (midnight Pacific) of the next.
                    values.append(
                        {
                            "value": 10 * (index + 1) + day.day,
                            "end_time": (day + timedelta(days=1, hours=8)).strftime(
                                "%Y-%m-%dT%H:%M:%S+0000"
                            ),
                        }
                    )
                    day += timedelta(days=1)
                data.append(
                    {
                        "name": name,
                        "period": "day",
                        "values": values,
                        "id": f"{page}/insights/{name}/day",
                    }
                )
            return web.json_response({"data": data})
        if node not in self.posts:
            return self.error("(#100) Unsupported get request. Object does not exist", 100, 33)
        totals = {"post_impressions": 500, "post_impressions_unique": 300, "post_clicks": 12}
        return web.json_response(
            {
                "data": [
                    {"name": m, "period": "lifetime", "values": [{"value": totals.get(m, 0)}]}
                    for m in metrics
                ]
            }
        )

    async def node(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        post = self.posts.get(request.match_info["node"])
        if post is None:
            return self.error("(#100) Unsupported get request. Object does not exist", 100, 33)
        return web.json_response(
            {
                "id": request.match_info["node"],
                "shares": {"count": 4},
                "comments": {"data": [], "summary": {"total_count": 6}},
                "reactions": {"data": [], "summary": {"total_count": 25}},
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        page = self.page_of(request)
        if isinstance(page, web.Response):
            return page
        if self.posts.pop(request.match_info["node"], None) is None:
            return self.error("(#100) Unsupported delete request. Object does not exist", 100, 33)
        return web.json_response({"success": True})
