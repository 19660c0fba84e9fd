"""A fake TikTok API, from developers.tiktok.com: Login Kit (authorize with ``client_key``
and a hex SHA-256 PKCE challenge, the token endpoint for the code and for rotating refresh
tokens, revoke), user info, Direct Post (creator_info, video/init with FILE_UPLOAD chunk
rules checked or PULL_FROM_URL fetched, PUTs with Content-Range in order, status/fetch
moving from PROCESSING_UPLOAD to PUBLISH_COMPLETE), video list and query; answers in the
``{"data", "error": {"code", "message", "log_id"}}`` envelope."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from fakes import FakeBase, bearer

CLIENT_KEY = "awtiktokkey"
CLIENT_SECRET = "tiktok-secret"
OPEN_ID = "-000Aa_open_id"
MB = 1024 * 1024


def envelope(data: Any, code: str = "ok", message: str = "", status: int = 200) -> web.Response:
    return web.json_response(
        {"data": data, "error": {"code": code, "message": message, "log_id": secrets.token_hex(8)}},
        status=status,
    )


@dataclass
class FakeTikTok(FakeBase):
    base_url: str = ""
    privacy_options: list[str] = field(
        default_factory=lambda: ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
    )
    max_duration: int = 600
    processing_polls: int = 1
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access: dict[str, bool] = field(default_factory=dict)
    refresh: dict[str, bool] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # publish_id -> state
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/v2/auth/authorize/", self.authorize)
        r.add_post("/v2/oauth/token/", self.token)
        r.add_post("/v2/oauth/revoke/", self.revoke)
        r.add_get("/v2/user/info/", self.user_info)
        r.add_post("/v2/post/publish/creator_info/query/", self.creator_info)
        r.add_post("/v2/post/publish/video/init/", self.init)
        r.add_put("/upload/{publish_id}", self.put_chunk)
        r.add_post("/v2/post/publish/status/fetch/", self.status)
        r.add_post("/v2/video/list/", self.list_videos)
        r.add_post("/v2/video/query/", self.query_videos)
        return app

    def authorized(self, request: web.Request) -> web.Response | None:
        if not self.access.get(bearer(request) or ""):
            return envelope(
                {},
                "access_token_invalid",
                "The access token is invalid or not found in the request.",
                401,
            )
        return None

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_key") != CLIENT_KEY or "video.publish" not in q.get("scope", "").split(
            ","
        ):
            return web.Response(status=400, text="client_key or scope")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "redirect_uri": q["redirect_uri"],
            "challenge": q.get("code_challenge", ""),
        }
        query = urlencode({"code": code, "scopes": q["scope"], "state": q.get("state", "")})
        raise web.HTTPFound(f"{q['redirect_uri']}?{query}")

    def issue(self) -> dict[str, Any]:
        access, refresh = f"act.{secrets.token_hex(16)}", f"rft.{secrets.token_hex(16)}"
        self.access[access] = True
        self.refresh[refresh] = True
        return {
            "access_token": access,
            "expires_in": 86400,
            "open_id": OPEN_ID,
            "refresh_expires_in": 31536000,
            "refresh_token": refresh,
            "scope": "user.info.basic,video.publish,video.list",
            "token_type": "Bearer",
        }

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_key") != CLIENT_KEY or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "Client key or secret is incorrect.",
                    "log_id": "x",
                },
                status=401,
            )
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(str(form.get("code", "")), None)
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "Authorization code is expired.",
                        "log_id": "x",
                    },
                    status=400,
                )
            verifier = str(form.get("code_verifier", ""))
            if (
                grant["challenge"]
                and hashlib.sha256(verifier.encode()).hexdigest() != grant["challenge"]
            ):
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "Code verifier or code challenge is invalid.",
                        "log_id": "x",
                    },
                    status=400,
                )
            return web.json_response(self.issue())
        if form.get("grant_type") == "refresh_token":
            old = str(form.get("refresh_token", ""))
            if not self.refresh.get(old):
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "Refresh token is invalid or expired.",
                        "log_id": "x",
                    },
                    status=400,
                )
            self.refresh[old] = False
            return web.json_response(self.issue())
        return web.json_response(
            {"error": "unsupported_grant_type", "error_description": "", "log_id": "x"}, status=400
        )

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.access.pop(str(form.get("token", "")), None)
        return web.json_response({})

    async def user_info(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return envelope(
            {
                "user": {
                    "open_id": OPEN_ID,
                    "display_name": "Acme",
                    "username": "acme",
                    "follower_count": 2048,
                }
            }
        )

    async def creator_info(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return envelope(
            {
                "creator_avatar_url": "https://p16.example/avatar.jpeg",
                "creator_username": "acme",
                "creator_nickname": "Acme",
                "privacy_level_options": self.privacy_options,
                "comment_disabled": False,
                "duet_disabled": True,
                "stitch_disabled": False,
                "max_video_post_duration_sec": self.max_duration,
            }
        )

    async def init(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return envelope({}, "invalid_params", "Content-Type must be application/json", 400)
        body = await request.json()
        post = body.get("post_info") or {}
        source = body.get("source_info") or {}
        if post.get("privacy_level") not in self.privacy_options:
            return envelope(
                {},
                "privacy_level_option_mismatch",
                "privacy_level is not among the creator's options",
                400,
            )
        publish_id = f"v_pub_file~v2-1.{secrets.randbelow(10**18)}"
        state: dict[str, Any] = {
            "post": post,
            "source": source,
            "received": bytearray(),
            "chunks": [],
            "polls": self.processing_polls,
        }
        if source.get("source") == "FILE_UPLOAD":
            size, chunk, count = (
                source.get("video_size", 0),
                source.get("chunk_size", 0),
                source.get("total_chunk_count", 0),
            )
            if size < 5 * MB:
                valid = chunk == size and count == 1
            else:
                valid = 5 * MB <= chunk <= 64 * MB and count == size // chunk and 1 <= count <= 1000
                valid = valid and size - (count - 1) * chunk <= 128 * MB
            if not valid:
                return envelope(
                    {}, "invalid_params", "The chunk size or total chunk count is invalid.", 400
                )
            self.uploads[publish_id] = state
            return envelope(
                {"publish_id": publish_id, "upload_url": f"{self.base_url}/upload/{publish_id}"}
            )
        if source.get("source") == "PULL_FROM_URL":
            async with (
                aiohttp.ClientSession() as session,
                session.get(source.get("video_url", "")) as answer,
            ):
                if answer.status != 200:
                    return envelope(
                        {}, "invalid_params", "The video URL could not be fetched.", 400
                    )
                state["received"] = bytearray(await answer.read())
            self.uploads[publish_id] = state
            self.complete(state)
            return envelope({"publish_id": publish_id})
        return envelope({}, "invalid_params", "source is invalid", 400)

    async def put_chunk(self, request: web.Request) -> web.Response:
        state = self.uploads.get(request.match_info["publish_id"])
        if state is None:
            return web.Response(status=404)
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("Content-Range", ""))
        data = await request.read()
        size = state["source"]["video_size"]
        if found is None or int(found.group(3)) != size:
            return web.Response(status=400, text="Content-Range is invalid")
        first, last = int(found.group(1)), int(found.group(2))
        if first != len(state["received"]) or last - first + 1 != len(data):
            return web.Response(status=416, text="chunks out of order")
        state["received"].extend(data)
        state["chunks"].append(len(data))
        if len(state["received"]) == size:
            self.complete(state)
            return web.Response(status=201)
        return web.Response(status=206)

    def complete(self, state: dict[str, Any]) -> None:
        """The upload is complete: TikTok now publishes the Direct Post by itself (status
        fetching only reports on it); the video is listed once processing is over."""
        state["done"] = True
        video_id = str(7300000000000000000 + len(self.videos) + 1)
        state["video_id"] = video_id
        self.videos[video_id] = {
            "title": state["post"].get("title", ""),
            "bytes": bytes(state["received"]),
            "privacy": state["post"]["privacy_level"],
            "listed": state["polls"] <= 0,
        }

    async def status(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        state = self.uploads.get(body.get("publish_id", ""))
        if state is None:
            return envelope({}, "invalid_params", "publish_id is invalid", 400)
        if not state.get("done"):
            return envelope(
                {"status": "PROCESSING_UPLOAD", "uploaded_bytes": len(state["received"])}
            )
        if state["polls"] > 0:
            state["polls"] -= 1
            return envelope({"status": "PROCESSING_DOWNLOAD"})
        self.videos[state["video_id"]]["listed"] = True
        public = (
            [int(state["video_id"])]
            if state["post"]["privacy_level"] == "PUBLIC_TO_EVERYONE"
            else []
        )
        return envelope({"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": public})

    async def list_videos(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        listed = [v for v in self.videos if self.videos[v]["listed"]]
        newest = sorted(listed, reverse=True)[: min(int(body.get("max_count", 10)), 20)]
        return envelope(
            {
                "videos": [
                    {
                        "id": v,
                        "title": self.videos[v]["title"],
                        "create_time": 1700000000,
                        "share_url": f"https://www.tiktok.com/@acme/video/{v}",
                    }
                    for v in newest
                ],
                "cursor": 0,
                "has_more": False,
            }
        )

    async def query_videos(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        ids = (body.get("filters") or {}).get("video_ids") or []
        if len(ids) > 20:
            return envelope({}, "invalid_params", "at most 20 video_ids", 400)
        found = [
            {"id": v, "view_count": 5000, "like_count": 300, "comment_count": 25, "share_count": 12}
            for v in ids
            if v in self.videos
        ]
        return envelope({"videos": found, "cursor": 0, "has_more": False})
