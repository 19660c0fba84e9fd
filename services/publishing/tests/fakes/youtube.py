"""A fake Google OAuth + YouTube Data API v3 + YouTube Analytics, from developers.google.com:
the consent screen and token endpoint (PKCE S256, offline refresh tokens at consent and
none on refresh, ``invalid_grant`` for a revoked one), ``channels?mine=true``, resumable
uploads (the session in ``Location``; PUTs of 256 KiB multiples in order, ``308`` with
``Range``; ``bytes */size`` status queries; an interruption that keeps only part of a
chunk), the uploads playlist, video deletion, analytics reports by day; errors as
``{"error": {"code", "message", "errors": [{"domain", "reason"}], "status"}}``."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from fakes import FakeBase, bearer, s256

CLIENT_ID = "1234-abc.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-secret"
CHANNEL_ID = "UC_x5XG1OV2P6uZZ5FSM9Ttw"
UPLOADS = "UU_x5XG1OV2P6uZZ5FSM9Ttw"
UNIT = 256 * 1024


def google_error(
    status: int, reason: str, message: str, domain: str = "youtube.api"
) -> web.Response:
    return web.json_response(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
                "status": "FAILED_PRECONDITION",
            }
        },
        status=status,
    )


@dataclass
class FakeYouTube(FakeBase):
    base_url: str = ""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access: dict[str, bool] = field(default_factory=dict)
    refresh: dict[str, bool] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupt_put: int | None = None  # the n-th PUT keeps half its bytes and answers 503
    puts: int = 0

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/o/oauth2/v2/auth", self.consent)
        r.add_post("/token", self.token)
        r.add_post("/revoke", self.revoke)
        r.add_get("/youtube/v3/channels", self.channels)
        r.add_post("/upload/youtube/v3/videos", self.start_upload)
        r.add_put("/upload/session/{id}", self.put)
        r.add_get("/youtube/v3/playlistItems", self.playlist_items)
        r.add_delete("/youtube/v3/videos", self.delete)
        r.add_get("/v2/reports", self.reports)
        return app

    def authorized(self, request: web.Request) -> web.Response | None:
        if not self.access.get(bearer(request) or ""):
            return google_error(
                401, "authError", "Request had invalid authentication credentials.", "global"
            )
        return None

    async def consent(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("access_type") != "offline":
            return web.Response(status=400, text="Error 400: invalid_request")
        code = f"4/0A{secrets.token_urlsafe(20)}"
        self.codes[code] = {
            "redirect_uri": q["redirect_uri"],
            "challenge": q.get("code_challenge", ""),
        }
        query = urlencode({"state": q.get("state", ""), "code": code, "scope": q.get("scope", "")})
        raise web.HTTPFound(f"{q['redirect_uri']}?{query}")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                status=401,
            )
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(str(form.get("code", "")), None)
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Malformed auth code."},
                    status=400,
                )
            if (
                grant["challenge"]
                and s256(str(form.get("code_verifier", ""))) != grant["challenge"]
            ):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid code verifier."},
                    status=400,
                )
            access, refresh = (
                f"ya29.{secrets.token_urlsafe(24)}",
                f"1//0g{secrets.token_urlsafe(24)}",
            )
            self.access[access] = True
            self.refresh[refresh] = True
            return web.json_response(
                {
                    "access_token": access,
                    "expires_in": 3599,
                    "refresh_token": refresh,
                    "scope": "https://www.googleapis.com/auth/youtube.upload",
                    "token_type": "Bearer",
                }
            )
        if form.get("grant_type") == "refresh_token":
            if not self.refresh.get(str(form.get("refresh_token", ""))):
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                    status=400,
                )
            access = f"ya29.{secrets.token_urlsafe(24)}"
            self.access[access] = True
            return web.json_response(
                {
                    "access_token": access,
                    "expires_in": 3599,
                    "scope": "https://www.googleapis.com/auth/youtube.upload",
                    "token_type": "Bearer",
                }
            )
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        value = str(form.get("token", ""))
        if value not in self.refresh and value not in self.access:
            return web.json_response(
                {"error": "invalid_token", "error_description": "Token expired or revoked"},
                status=400,
            )
        self.refresh[value] = False
        self.access = dict.fromkeys(self.access, False)
        return web.Response(status=200)

    async def channels(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.query.get("mine") != "true":
            return google_error(400, "missingRequiredParameter", "No filter selected.")
        channel: dict[str, Any] = {"kind": "youtube#channel", "id": CHANNEL_ID}
        parts = request.query.get("part", "").split(",")
        if "snippet" in parts:
            channel["snippet"] = {"title": "Acme TV"}
        if "statistics" in parts:
            channel["statistics"] = {
                "viewCount": "1000",
                "subscriberCount": "777",
                "videoCount": str(len(self.videos)),
            }
        if "contentDetails" in parts:
            channel["contentDetails"] = {"relatedPlaylists": {"uploads": UPLOADS}}
        return web.json_response({"kind": "youtube#channelListResponse", "items": [channel]})

    async def start_upload(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.query.get("uploadType") != "resumable":
            return google_error(400, "invalidUploadType", "uploadType must be resumable")
        size = request.headers.get("X-Upload-Content-Length")
        if not size or not size.isdigit():
            return google_error(400, "invalidArgument", "X-Upload-Content-Length is required")
        metadata = await request.json()
        title = metadata.get("snippet", {}).get("title", "")
        if not title or len(title) > 100 or re.search(r"[<>]", title):
            return google_error(
                400,
                "invalidTitle",
                "The request metadata specifies an invalid or empty video title.",
            )
        session = secrets.token_hex(8)
        self.sessions[session] = {
            "size": int(size),
            "data": bytearray(),
            "metadata": metadata,
            "chunks": [],
        }
        return web.Response(
            status=200,
            headers={"Location": f"{self.base_url}/upload/session/{session}?upload_id={session}"},
        )

    async def put(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return google_error(404, "notFound", "The upload session does not exist.")
        data = await request.read()
        content_range = request.headers.get("Content-Range", "")
        held = len(session["data"])
        if "video_id" in session:  # complete: any PUT to the session answers the resource
            return web.json_response(self.resource(session["video_id"]), status=200)
        if content_range == f"bytes */{session['size']}":
            headers = {"Range": f"bytes=0-{held - 1}"} if held else {}
            return web.Response(status=308, headers=headers)
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
        if found is None or int(found.group(3)) != session["size"]:
            return web.Response(status=400, text="Content-Range is invalid")
        first, last = int(found.group(1)), int(found.group(2))
        final = last + 1 == session["size"]
        if first != held or last - first + 1 != len(data) or (not final and len(data) % UNIT):
            return web.Response(
                status=400, text="chunks must follow on and be multiples of 256 KiB"
            )
        self.puts += 1
        if self.interrupt_put == self.puts:
            session["data"].extend(data[: len(data) // 2])
            session["chunks"].append(len(data) // 2)
            return web.Response(status=503, text="backend interrupted")
        session["data"].extend(data)
        session["chunks"].append(len(data))
        if not final:
            return web.Response(
                status=308, headers={"Range": f"bytes=0-{len(session['data']) - 1}"}
            )
        video_id = secrets.token_urlsafe(8)[:11]
        snippet = {
            **session["metadata"]["snippet"],
            "publishedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "channelId": CHANNEL_ID,
        }
        self.videos[video_id] = {
            "snippet": snippet,
            "status": session["metadata"]["status"],
            "bytes": bytes(session["data"]),
        }
        session["video_id"] = video_id
        return web.json_response(self.resource(video_id), status=201)

    def resource(self, video_id: str) -> dict[str, Any]:
        video = self.videos[video_id]
        status = {**video["status"], "uploadStatus": "uploaded"}
        return {
            "kind": "youtube#video",
            "id": video_id,
            "snippet": video["snippet"],
            "status": status,
        }

    async def playlist_items(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.query.get("playlistId") != UPLOADS:
            return google_error(404, "playlistNotFound", "The playlist cannot be found.")
        items = [
            {
                "snippet": {
                    "title": v["snippet"]["title"],
                    "description": v["snippet"]["description"],
                    "publishedAt": v["snippet"]["publishedAt"],
                    "resourceId": {"kind": "youtube#video", "videoId": vid},
                }
            }
            for vid, v in reversed(list(self.videos.items()))
        ]
        return web.json_response(
            {
                "kind": "youtube#playlistItemListResponse",
                "items": items[: int(request.query.get("maxResults", "5"))],
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if self.videos.pop(request.query.get("id", ""), None) is None:
            return google_error(
                404, "videoNotFound", "The video that you are trying to delete cannot be found."
            )
        return web.Response(status=204)

    async def reports(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        q = request.query
        if q.get("ids") != "channel==MINE" or q.get("dimensions") != "day":
            return google_error(400, "badRequest", "ids and dimensions are required")
        metrics = q["metrics"].split(",")
        start, end = date.fromisoformat(q["startDate"]), date.fromisoformat(q["endDate"])
        base = 5 if "filters" in q else 50
        rows = []
        day = start
        while day <= end:
            rows.append([day.isoformat(), *[base * (i + 1) + day.day for i in range(len(metrics))]])
            day += timedelta(days=1)
        headers = [{"name": "day", "columnType": "DIMENSION", "dataType": "STRING"}] + [
            {"name": m, "columnType": "METRIC", "dataType": "INTEGER"} for m in metrics
        ]
        return web.Response(
            text=json.dumps(
                {"kind": "youtubeAnalytics#resultTable", "columnHeaders": headers, "rows": rows}
            ),
            content_type="application/json",
        )
