"""A fake Pinterest API v5, from developers.pinterest.com: the OAuth dialog, the token
endpoint with HTTP Basic client authentication (30-day access tokens, refresh), the user
account, boards, pins from image URLs (fetched), several image URLs (2-5) and registered
videos, the media registration with an S3-style form upload (every form field required,
the file last), media status, a board's pins, deletion, daily analytics; errors as
``{"code", "message"}``."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from fakes import FakeBase, bearer

CLIENT_ID = "1480000"
CLIENT_SECRET = "pin-secret"
BOARD_ID = "549755885175"
OTHER_BOARD = "549755885176"
UPLOAD_FIELDS = {
    "key": "uploads/x",
    "policy": "eyJ4Ijoi",
    "x-amz-signature": "abc",
    "x-amz-date": "20261201T000000Z",
}


@dataclass
class FakePinterest(FakeBase):
    base_url: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    access: dict[str, bool] = field(default_factory=dict)
    refresh: set[str] = field(default_factory=set)
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    processing_polls: int = 1

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/oauth/", self.dialog)
        r.add_post("/v5/oauth/token", self.token)
        r.add_get("/v5/user_account", self.user_account)
        r.add_get("/v5/user_account/analytics", self.account_analytics)
        r.add_get("/v5/boards", self.boards)
        r.add_get("/v5/boards/{board}/pins", self.board_pins)
        r.add_post("/v5/pins", self.create_pin)
        r.add_delete("/v5/pins/{pin}", self.delete_pin)
        r.add_get("/v5/pins/{pin}/analytics", self.pin_analytics)
        r.add_post("/v5/media", self.register_media)
        r.add_get("/v5/media/{media}", self.media_status)
        r.add_post("/s3-upload", self.s3_upload)
        return app

    @staticmethod
    def error(status: int, code: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    def authorized(self, request: web.Request) -> web.Response | None:
        if not self.access.get(bearer(request) or ""):
            return self.error(401, 2, "Authentication failed.")
        return None

    async def dialog(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or "pins:write" not in q.get("scope", "").split(","):
            return web.Response(status=400, text="invalid client or scope")
        code = secrets.token_urlsafe(16)
        self.codes[code] = q["redirect_uri"]
        raise web.HTTPFound(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        )

    def issue(self) -> dict[str, Any]:
        access, refresh = f"pina_{secrets.token_hex(16)}", f"pinr_{secrets.token_hex(16)}"
        self.access[access] = True
        self.refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "response_type": "authorization_code",
            "token_type": "bearer",
            "expires_in": 2592000,
            "refresh_token_expires_in": 31536000,
            "scope": "boards:read,pins:read,pins:write,user_accounts:read",
        }

    async def token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self.error(401, 2, "Authentication failed.")
        form = await request.post()
        if form.get("grant_type") == "authorization_code":
            redirect = self.codes.pop(str(form.get("code", "")), None)
            if redirect is None or redirect != form.get("redirect_uri"):
                return self.error(400, 1, "Invalid authorization code")
            return web.json_response(self.issue())
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh:
                return self.error(400, 1, "Invalid refresh token")
            answer = self.issue()
            if form.get("refresh_on") == "true":  # continuous refresh: a new refresh token
                self.refresh.discard(str(form["refresh_token"]))
                answer["response_type"] = "everlasting_refresh"
                answer["refresh_token_expires_at"] = int(time.time()) + 31536000
            else:  # the legacy answer: no refresh token, the first one lasts its year
                self.refresh.discard(answer.pop("refresh_token"))
                answer["response_type"] = "refresh_token"
            return web.json_response(answer)
        return self.error(400, 1, "grant_type is invalid")

    async def user_account(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return web.json_response(
            {
                "id": "1031432027543045000",
                "username": "acme",
                "account_type": "BUSINESS",
                "business_name": "Acme",
                "follower_count": 960,
            }
        )

    async def boards(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        items = [{"id": BOARD_ID, "name": "Products"}, {"id": OTHER_BOARD, "name": "Ideas"}]
        size = int(request.query.get("page_size", "25"))
        return web.json_response({"items": items[:size], "bookmark": None})

    async def fetch(self, url: str) -> bytes | None:
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            return await answer.read() if answer.status == 200 else None

    async def create_pin(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        if body.get("board_id") not in (BOARD_ID, OTHER_BOARD):
            return self.error(404, 2, "Board not found.")
        if len(body.get("description", "")) > 500 or len(body.get("title", "")) > 100:
            return self.error(400, 1, "Invalid request body: description or title too long")
        source = body.get("media_source") or {}
        kind = source.get("source_type")
        images: list[bytes] = []
        if kind == "image_url":
            data = await self.fetch(source.get("url", ""))
            if data is None:
                return self.error(400, 1, "Sorry! We could not fetch the image.")
            images = [data]
        elif kind == "multiple_image_urls":
            items = source.get("items") or []
            if not 2 <= len(items) <= 5:
                return self.error(400, 1, "multiple_image_urls takes 2 to 5 items")
            for item in items:
                data = await self.fetch(item.get("url", ""))
                if data is None:
                    return self.error(400, 1, "Sorry! We could not fetch the image.")
                images.append(data)
        elif kind == "video_id":
            video = self.media.get(source.get("media_id", ""))
            if video is None or video["status"] != "succeeded":
                return self.error(400, 1, "The video is not ready")
            if "cover_image_url" not in source and "cover_image_key_frame_time" not in source:
                return self.error(400, 1, "A video pin needs a cover image")
        else:
            return self.error(400, 1, "media_source is invalid")
        pin_id = str(813744226320000000 + len(self.pins) + 1)
        pin = {
            "id": pin_id,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "board_id": body["board_id"],
            "description": body.get("description"),
            "title": body.get("title"),
            "link": body.get("link"),
            "note": body.get("note"),
            "alt_text": body.get("alt_text"),
            "media": {"media_type": "video" if kind == "video_id" else "image"},
        }
        self.pins[pin_id] = {**pin, "_images": images, "_source": source}
        return web.json_response(pin, status=201)

    async def board_pins(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        board = request.match_info["board"]
        mine = [
            {k: v for k, v in p.items() if not k.startswith("_")}
            for p in self.pins.values()
            if p["board_id"] == board
        ]
        mine.sort(key=lambda p: p["id"], reverse=True)
        return web.json_response(
            {"items": mine[: int(request.query.get("page_size", "25"))], "bookmark": None}
        )

    async def delete_pin(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if self.pins.pop(request.match_info["pin"], None) is None:
            return self.error(404, 50, "Pin not found.")
        return web.Response(status=204)

    async def register_media(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        if body.get("media_type") != "video":
            return self.error(400, 1, "media_type must be video")
        media_id = str(5010000000 + len(self.media) + 1)
        self.media[media_id] = {
            "status": "registered",
            "bytes": None,
            "polls": self.processing_polls,
        }
        return web.json_response(
            {
                "media_id": media_id,
                "media_type": "video",
                "upload_url": f"{self.base_url}/s3-upload",
                "upload_parameters": {**UPLOAD_FIELDS, "x-amz-meta-media-id": media_id},
            },
            status=201,
        )

    async def s3_upload(self, request: web.Request) -> web.Response:
        # Amazon S3's POST Object: a chunked body is 501 NotImplemented (the header "implies
        # functionality that is not implemented"), one without a length 411.
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return web.Response(
                status=501,
                text="<Error><Code>NotImplemented</Code><Header>Transfer-Encoding</Header></Error>",
            )
        if request.headers.get("Content-Length") is None:
            return web.Response(status=411, text="<Error><Code>MissingContentLength</Code></Error>")
        if "Authorization" in request.headers:
            return web.Response(status=400, text="<Error><Code>InvalidArgument</Code></Error>")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        data = None
        while (part := await reader.next()) is not None:
            if part.name == "file":  # type: ignore[union-attr]
                if set(UPLOAD_FIELDS) - set(fields):
                    return web.Response(
                        status=400, text="<Error><Code>InvalidPolicyDocument</Code></Error>"
                    )
                data = bytes(await part.read())  # type: ignore[union-attr]
            else:
                fields[str(part.name)] = await part.text()  # type: ignore[union-attr]
        video = self.media.get(fields.get("x-amz-meta-media-id", ""))
        if video is None or not data:
            return web.Response(status=400, text="<Error><Code>MalformedPOSTRequest</Code></Error>")
        video["bytes"] = data
        video["status"] = "processing"
        return web.Response(status=204)

    async def media_status(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        video = self.media.get(request.match_info["media"])
        if video is None:
            return self.error(404, 1, "Media not found")
        if video["status"] == "processing":
            if video["polls"] <= 0:
                video["status"] = "succeeded"
            video["polls"] -= 1
        return web.json_response(
            {
                "media_id": request.match_info["media"],
                "media_type": "video",
                "status": video["status"],
            }
        )

    def daily(self, request: web.Request, base: int) -> list[dict[str, Any]]:
        start = date.fromisoformat(request.query["start_date"])
        end = date.fromisoformat(request.query["end_date"])
        metrics = request.query.get("metric_types", "").split(",")
        rows = []
        day = start
        while day <= end:
            status = "READY" if day < datetime.now(UTC).date() else "PROCESSING"
            rows.append(
                {
                    "date": day.isoformat(),
                    "data_status": status,
                    "metrics": {m: base + i + day.day for i, m in enumerate(metrics)},
                }
            )
            day += timedelta(days=1)
        return rows

    async def account_analytics(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        rows = self.daily(request, 1000)
        return web.json_response({"all": {"daily_metrics": rows, "summary_metrics": {}}})

    async def pin_analytics(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.match_info["pin"] not in self.pins:
            return self.error(404, 50, "Pin not found.")
        return web.json_response({"all": {"daily_metrics": self.daily(request, 10)}})
