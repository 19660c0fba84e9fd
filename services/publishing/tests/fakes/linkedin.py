"""A fake LinkedIn, from Microsoft Learn's LinkedIn API docs: the 3-legged OAuth flow
(client secret, refresh tokens for approved apps), OpenID userinfo, the versioned Posts API
(``LinkedIn-Version`` must be an active version, else 426; ``X-Restli-Protocol-Version``
2.0.0 required; the URN in ``x-restli-id``; duplicates refused with 422), the Images API
(initializeUpload, PUT to the upload URL), the Videos API (initializeUpload with parts,
PUT per part answering ETags, finalizeUpload checking them, status until AVAILABLE),
social actions and organization share statistics; errors as ``{status, serviceErrorCode,
code, message}``."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

from fakes import FakeBase, bearer, token

CLIENT_ID = "86abcdefgh"
CLIENT_SECRET = "li-secret"
SUB = "782bbtaQ"


def active_versions(today: datetime | None = None) -> set[str]:
    """The versions LinkedIn serves on ``today``, by its Versioning page: a monthly release,
    each "supported and stable for a minimum of one year before sunset" (the Migrations
    table sunsets version YYYYMM around the 15th of that month a year later)."""
    now = today or datetime.now(UTC)
    served = set()
    for back in range(13):
        month = now.year * 12 + now.month - 1 - back
        year, index = divmod(month, 12)
        if back < 12 or now.day < 15:
            served.add(f"{year:04d}{index + 1:02d}")
    return served


PART = 4 * 1024 * 1024


@dataclass
class FakeLinkedIn(FakeBase):
    base_url: str = ""
    codes: dict[str, str] = field(default_factory=dict)  # code -> redirect_uri
    access: dict[str, str] = field(default_factory=dict)  # token -> "ok" | "expired" | "revoked"
    refresh: dict[str, bool] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    processing_polls: int = 1

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/oauth/v2/authorization", self.authorize)
        r.add_post("/oauth/v2/accessToken", self.token)
        r.add_post("/oauth/v2/revoke", self.revoke)
        r.add_get("/v2/userinfo", self.userinfo)
        r.add_post("/rest/images", self.images_action)
        r.add_put("/upload/image/{urn}", self.put_image)
        r.add_post("/rest/videos", self.videos_action)
        r.add_put("/upload/video/{urn}/{part}", self.put_video_part)
        r.add_get("/rest/videos/{urn}", self.video_status)
        r.add_post("/rest/posts", self.create_post)
        r.add_get("/rest/posts", self.find_posts)
        r.add_delete("/rest/posts/{urn}", self.delete_post)
        r.add_get("/rest/socialActions/{urn}", self.social_actions)
        r.add_get("/rest/organizationalEntityShareStatistics", self.share_statistics)
        return app

    @staticmethod
    def error(
        status: int, message: str, code: str | None = None, service: int | None = None
    ) -> web.Response:
        body: dict[str, Any] = {"status": status, "message": message}
        if code:
            body["code"] = code
        body["serviceErrorCode"] = service if service is not None else status
        return web.json_response(body, status=status)

    def member(self, request: web.Request, *, versioned: bool = True) -> web.Response | None:
        got = bearer(request)
        state = self.access.get(got or "")
        if state is None:
            return self.error(401, "Invalid access token", "INVALID_ACCESS_TOKEN", 65600)
        if state == "expired":
            return self.error(
                401, "The token used in the request has expired", "EXPIRED_ACCESS_TOKEN", 65602
            )
        if state == "revoked":
            return self.error(
                401,
                "The token used in the request has been revoked by the user",
                "REVOKED_ACCESS_TOKEN",
                65601,
            )
        if versioned:
            version = request.headers.get("LinkedIn-Version")
            if version is None:
                return self.error(
                    400,
                    "A version must be present. Please specify a version by adding the "
                    "LinkedIn-Version header.",
                    "VERSION_MISSING",
                )
            if version not in active_versions():
                return self.error(
                    426, f"Requested version {version} is not active", "NONEXISTENT_VERSION"
                )
            if request.headers.get("X-Restli-Protocol-Version") != "2.0.0":
                return self.error(400, "Restli protocol version 2.0.0 required", "ILLEGAL_ARGUMENT")
        return None

    def set_all(self, state: str) -> None:
        for key in self.access:
            self.access[key] = state

    # OAuth --------------------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.Response(status=400, text="invalid client_id or response_type")
        code = secrets.token_urlsafe(16)
        self.codes[code] = q["redirect_uri"]
        raise web.HTTPFound(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        )

    def issue(self) -> dict[str, Any]:
        access, refresh = token(), token()
        self.access[access] = "ok"
        self.refresh[refresh] = True
        return {
            "access_token": access,
            "expires_in": 5183999,
            "refresh_token": refresh,
            "refresh_token_expires_in": 31535999,
            "scope": "openid,profile,w_member_social",
        }

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401,
            )
        if form.get("grant_type") == "authorization_code":
            redirect = self.codes.pop(str(form.get("code", "")), None)
            if redirect is None or redirect != form.get("redirect_uri"):
                return web.json_response(
                    {
                        "error": "invalid_request",
                        "error_description": "Unable to retrieve access token: appid/redirect "
                        "uri/code verifier does not match authorization code. Or authorization "
                        "code expired.",
                    },
                    status=400,
                )
            return web.json_response(self.issue())
        if form.get("grant_type") == "refresh_token":
            old = str(form.get("refresh_token", ""))
            if not self.refresh.get(old):
                return web.json_response(
                    {
                        "error": "invalid_request",
                        "error_description": "The provided refresh token is invalid",
                    },
                    status=400,
                )
            return web.json_response(self.issue())
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.access.get(str(form.get("token", ""))):
            self.access[str(form["token"])] = "revoked"
        return web.Response(status=200)

    async def userinfo(self, request: web.Request) -> web.Response:
        if (refused := self.member(request, versioned=False)) is not None:
            return refused
        return web.json_response(
            {"sub": SUB, "name": "Ada Lovelace", "given_name": "Ada", "email_verified": True}
        )

    # Images and videos ----------------------------------------------------------------------

    async def images_action(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        if request.query.get("action") != "initializeUpload":
            return self.error(400, "unknown action", "ILLEGAL_ARGUMENT")
        body = await request.json()
        owner = body.get("initializeUploadRequest", {}).get("owner")
        if owner != f"urn:li:person:{SUB}" and not str(owner).startswith("urn:li:organization:"):
            return self.error(
                403, "Not enough permissions to act as this owner", "ACCESS_DENIED", 100
            )
        urn = f"urn:li:image:C4E10AQ{secrets.token_hex(6)}"
        self.images[urn] = {"data": None, "owner": owner}
        return web.json_response(
            {
                "value": {
                    "uploadUrlExpiresAt": 1650567510704,
                    "uploadUrl": f"{self.base_url}/upload/image/{urn}",
                    "image": urn,
                }
            }
        )

    async def put_image(self, request: web.Request) -> web.Response:
        if bearer(request) not in self.access:
            return web.Response(status=401)
        image = self.images.get(request.match_info["urn"])
        if image is None:
            return web.Response(status=404)
        if request.content_length is None:  # the upload URL is a storage PUT: a length, no chunks
            return web.Response(status=411)
        image["data"] = await request.read()
        return web.Response(status=201)

    async def videos_action(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        body = await request.json()
        action = request.query.get("action")
        if action == "initializeUpload":
            size = body["initializeUploadRequest"]["fileSizeBytes"]
            urn = f"urn:li:video:C5F10AQ{secrets.token_hex(6)}"
            parts = []
            for index, first in enumerate(range(0, size, PART)):
                last = min(first + PART, size) - 1
                parts.append(
                    {
                        "uploadUrl": f"{self.base_url}/upload/video/{urn}/{index}",
                        "firstByte": first,
                        "lastByte": last,
                    }
                )
            self.videos[urn] = {
                "size": size,
                "parts": {},
                "etags": {},
                "status": "WAITING_UPLOAD",
                "polls": 0,
            }
            return web.json_response(
                {
                    "value": {
                        "uploadUrlsExpireAt": 1,
                        "video": urn,
                        "uploadInstructions": parts,
                        "uploadToken": "",
                    }
                }
            )
        if action == "finalizeUpload":
            request_body = body["finalizeUploadRequest"]
            video = self.videos.get(request_body["video"])
            if video is None:
                return self.error(404, "no such video", "NOT_FOUND")
            expected = [video["etags"][i] for i in sorted(video["etags"])]
            if request_body["uploadedPartIds"] != expected:
                return self.error(
                    400, "uploadedPartIds do not match the uploaded parts", "ILLEGAL_ARGUMENT"
                )
            if sum(len(p) for p in video["parts"].values()) != video["size"]:
                return self.error(400, "the upload is incomplete", "ILLEGAL_ARGUMENT")
            video["status"] = "PROCESSING"
            video["polls"] = self.processing_polls
            return web.Response(status=200)
        return self.error(400, "unknown action", "ILLEGAL_ARGUMENT")

    async def put_video_part(self, request: web.Request) -> web.Response:
        if bearer(request) not in self.access:
            return web.Response(status=401)
        video = self.videos.get(request.match_info["urn"])
        if video is None:
            return web.Response(status=404)
        index = int(request.match_info["part"])
        data = await request.read()
        first = index * PART
        if len(data) != min(first + PART, video["size"]) - first:
            return web.Response(status=400, text="wrong part size")
        video["parts"][index] = data
        video["etags"][index] = f"/ambry-video/signedId/{secrets.token_hex(8)}"
        return web.Response(status=200, headers={"ETag": video["etags"][index]})

    async def video_status(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        video = self.videos.get(unquote(request.match_info["urn"]))
        if video is None:
            return self.error(404, "no such video", "NOT_FOUND")
        if video["status"] == "PROCESSING":
            if video["polls"] <= 0:
                video["status"] = "AVAILABLE"
            video["polls"] -= 1
        return web.json_response({"id": request.match_info["urn"], "status": video["status"]})

    # Posts --------------------------------------------------------------------------------

    async def create_post(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        body = await request.json()
        for key in ("author", "commentary", "visibility", "distribution", "lifecycleState"):
            if key not in body:
                return self.error(
                    422, f"/{key} :: field is required but not found", "UNPROCESSABLE_ENTITY"
                )
        # Little text: an unescaped reserved character is a format error.
        if re.search(r"(?<!\\)[|{}\[\]<>*_~]", re.sub(r"\\\\", "", body["commentary"])):
            return self.error(
                422, "/commentary :: invalid little text format", "UNPROCESSABLE_ENTITY"
            )
        if len(body["commentary"].replace("\\", "")) > 3000:
            return self.error(422, "/commentary :: length exceeds 3000", "UNPROCESSABLE_ENTITY")
        content = body.get("content") or {}
        ids = []
        if "media" in content:
            ids = [content["media"]["id"]]
        elif "multiImage" in content:
            ids = [i["id"] for i in content["multiImage"]["images"]]
        for urn in ids:
            if urn.startswith("urn:li:image:") and (
                urn not in self.images or self.images[urn]["data"] is None
            ):
                return self.error(422, f"{urn} is not uploaded", "UNPROCESSABLE_ENTITY")
            if (
                urn.startswith("urn:li:video:")
                and self.videos.get(urn, {}).get("status") != "AVAILABLE"
            ):
                return self.error(422, f"{urn} is not available", "UNPROCESSABLE_ENTITY")
        for urn, post in self.posts.items():
            if post["commentary"] == body["commentary"] and post["author"] == body["author"]:
                return self.error(422, f"Content is a duplicate of {urn}", "DUPLICATE_POST")
        urn = f"urn:li:share:{7100000000000000000 + len(self.posts) + 1}"
        self.posts[urn] = {
            **body,
            "id": urn,
            "createdAt": int(datetime.now(UTC).timestamp() * 1000),
            "lastModifiedAt": int(datetime.now(UTC).timestamp() * 1000),
        }
        return web.Response(status=201, headers={"x-restli-id": urn})

    async def find_posts(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        if request.query.get("q") != "author":
            return self.error(400, "q=author is required", "ILLEGAL_ARGUMENT")
        author = request.query.get("author")
        count = int(request.query.get("count", "10"))
        mine = [p for p in self.posts.values() if p["author"] == author]
        mine.sort(key=lambda p: p["createdAt"], reverse=True)
        return web.json_response({"paging": {"start": 0, "count": count}, "elements": mine[:count]})

    async def delete_post(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        if self.posts.pop(unquote(request.match_info["urn"]), None) is None:
            return self.error(404, "Not Found", "NOT_FOUND")
        return web.Response(status=204)

    async def social_actions(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        urn = unquote(request.match_info["urn"])
        if urn not in self.posts:
            return self.error(404, "Not Found", "NOT_FOUND")
        return web.json_response(
            {
                "target": urn,
                "likesSummary": {"totalLikes": 7, "likedByCurrentUser": False},
                "commentsSummary": {"aggregatedTotalComments": 2, "totalFirstLevelComments": 2},
            }
        )

    async def share_statistics(self, request: web.Request) -> web.Response:
        if (refused := self.member(request)) is not None:
            return refused
        raw = request.query_string
        found = re.search(
            r"timeRange:\(start:(\d+),end:(\d+)\),timeGranularityType:DAY", unquote(raw)
        )
        if request.query.get("q") != "organizationalEntity" or found is None:
            return self.error(400, "timeIntervals is invalid", "ILLEGAL_ARGUMENT")
        start, end = int(found.group(1)), int(found.group(2))
        elements = []
        day_ms = 86_400_000
        for index, begin in enumerate(range(start, end, day_ms)):
            elements.append(
                {
                    "organizationalEntity": request.query.get("organizationalEntity"),
                    "timeRange": {"start": begin, "end": begin + day_ms},
                    "totalShareStatistics": {
                        "uniqueImpressionsCount": 100 + index,
                        "impressionCount": 200 + index,
                        "clickCount": 5,
                        "likeCount": 4,
                        "commentCount": 2,
                        "shareCount": 1,
                        "engagement": 0.06,
                    },
                }
            )
        return web.json_response({"paging": {"count": 10, "start": 0}, "elements": elements})
