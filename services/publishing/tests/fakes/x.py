"""A fake X API, from docs.x.com (v2): the OAuth 2 code flow with PKCE (confidential
client with HTTP Basic), rotating refresh tokens, revoke, users/me, the chunked media
upload (initialize, append in order with segments of at most 5 MB, finalize checking the
total, STATUS for videos), tweets with a weighted length check and t.co links, user
timeline, lookup with public_metrics, delete; errors as problem JSON."""

from __future__ import annotations

import base64
import html
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from fakes import FakeBase, bearer, s256, token

USER_ID = "2244994945"
USERNAME = "acme"
CLIENT_ID = "x-client-id"
CLIENT_SECRET = "x-client-secret"
MAX_SEGMENT = 5 * 1024 * 1024


# A link as X finds it: with a scheme, or a bare domain with a TLD (a few common ones here),
# with an optional path; X shows each as a t.co link and weighs it 23.
LINK = re.compile(
    r"(?:https?://|(?<![\w@.\-/])(?:[a-z0-9-]+\.)+(?:com|org|net|dev|io|app)(?![\w@+-]))"
    r"(?:\S*[^\s.,;:!?'\")\]])?",  # trailing punctuation ends the sentence, not the link
    re.IGNORECASE,
)


def _weight(text: str) -> int:
    """twitter-text v3, as documented: URLs 23, most Latin text 1, everything else 2,
    an emoji (joiners, selectors and modifiers included) 2."""
    text = unicodedata.normalize("NFC", LINK.sub("x" * 23, text))
    total, joined = 0, False
    for char in text:
        code = ord(char)
        if joined or code in (0x200D, 0xFE0F) or 0x1F3FB <= code <= 0x1F3FF:
            joined = code == 0x200D
            continue
        light = code <= 4351 or 8192 <= code <= 8205 or 8208 <= code <= 8223 or 8242 <= code <= 8247
        total += 1 if light else 2
    return total


@dataclass
class FakeX(FakeBase):
    base_url: str = ""
    status_polls: int = 2
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    access: dict[str, bool] = field(default_factory=dict)
    refresh: dict[str, bool] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)
    followers: int = 1200

    def app(self) -> web.Application:
        app = self.application()
        r = app.router
        r.add_get("/i/oauth2/authorize", self.authorize)
        r.add_post("/2/oauth2/token", self.token)
        r.add_post("/2/oauth2/revoke", self.revoke)
        r.add_get("/2/users/me", self.me)
        r.add_post("/2/media/upload/initialize", self.initialize)
        r.add_post("/2/media/upload/{id}/append", self.append)
        r.add_post("/2/media/upload/{id}/finalize", self.finalize)
        r.add_get("/2/media/upload", self.status)
        r.add_post("/2/tweets", self.create)
        r.add_get("/2/tweets", self.lookup)
        r.add_delete("/2/tweets/{id}", self.delete)
        r.add_get("/2/users/{id}/tweets", self.timeline)
        return app

    @staticmethod
    def problem(status: int, title: str, detail: str, kind: str = "about:blank") -> web.Response:
        return web.json_response(
            {"title": title, "detail": detail, "type": kind, "status": status}, status=status
        )

    @staticmethod
    def oauth_error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    def user(self, request: web.Request) -> web.Response | None:
        got = bearer(request)
        if got is None or not self.access.get(got):
            return self.problem(401, "Unauthorized", "Unauthorized")
        return None

    def expire_access(self) -> None:
        for key in self.access:
            self.access[key] = False

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or not q.get("redirect_uri"):
            return web.Response(status=400, text="Something went wrong: invalid client")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.Response(status=400, text="Something went wrong: PKCE required")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "redirect_uri": q["redirect_uri"],
            "challenge": q["code_challenge"],
            "scope": q.get("scope", ""),
        }
        raise web.HTTPFound(
            f"{q['redirect_uri']}?{urlencode({'state': q.get('state', ''), 'code': code})}"
        )

    def issue(self, scope: str) -> dict[str, Any]:
        access, refresh = token(), token()
        self.access[access] = True
        result: dict[str, Any] = {
            "token_type": "bearer",
            "expires_in": 7200,
            "access_token": access,
            "scope": scope,
        }
        if "offline.access" in scope.split():
            self.refresh[refresh] = True
            result["refresh_token"] = refresh
        return result

    async def token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return self.oauth_error(
                401, "unauthorized_client", "Missing valid authorization header"
            )
        form = await request.post()
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(str(form.get("code", "")), None)
            if (
                grant is None
                or grant["redirect_uri"] != form.get("redirect_uri")
                or s256(str(form.get("code_verifier", ""))) != grant["challenge"]
            ):
                return self.oauth_error(
                    400, "invalid_request", "Value passed for the token was invalid."
                )
            return web.json_response(self.issue(grant["scope"]))
        if form.get("grant_type") == "refresh_token":
            old = str(form.get("refresh_token", ""))
            if not self.refresh.get(old):
                return self.oauth_error(
                    400, "invalid_request", "Value passed for the token was invalid."
                )
            self.refresh[old] = False
            return web.json_response(self.issue("tweet.read tweet.write users.read offline.access"))
        return self.oauth_error(400, "invalid_request", "Missing required parameter [grant_type].")

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        value = str(form.get("token", ""))
        self.access.pop(value, None)
        self.refresh.pop(value, None)
        return web.json_response({"revoked": True})

    async def me(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        data: dict[str, Any] = {"id": USER_ID, "name": "Acme Corp", "username": USERNAME}
        if "public_metrics" in request.query.get("user.fields", ""):
            data["public_metrics"] = {"followers_count": self.followers, "following_count": 3}
        return web.json_response({"data": data})

    async def initialize(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        body = await request.json()
        if body.get("media_category") not in ("tweet_image", "tweet_gif", "tweet_video"):
            return self.problem(400, "Invalid Request", "media_category is invalid")
        if not isinstance(body.get("total_bytes"), int) or not body.get("media_type"):
            return self.problem(400, "Invalid Request", "total_bytes and media_type are required")
        media_id = str(1880028106020515840 + len(self.uploads))
        self.uploads[media_id] = {
            **body,
            "segments": [],
            "finalized": False,
            "polls_left": self.status_polls if body["media_category"] == "tweet_video" else 0,
        }
        return web.json_response(
            {"data": {"id": media_id, "media_key": f"13_{media_id}", "expires_after_secs": 86400}}
        )

    async def append(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        upload = self.uploads.get(request.match_info["id"])
        if upload is None or upload["finalized"]:
            return self.problem(400, "Invalid Request", "media_id is invalid")
        fields: dict[str, Any] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            fields[part.name] = await part.read()  # type: ignore[union-attr]
        index = int(fields.get("segment_index", b"-1"))
        media = fields.get("media", b"")
        if index != len(upload["segments"]):
            return self.problem(400, "Invalid Request", f"segment_index {index} out of order")
        if not media or len(media) > MAX_SEGMENT:
            return self.problem(400, "Invalid Request", "media must be between 1 byte and 5 MB")
        upload["segments"].append(bytes(media))
        return web.json_response({"data": {"expires_at": 1700000000}})

    def media_data(self, media_id: str) -> dict[str, Any]:
        upload = self.uploads[media_id]
        data: dict[str, Any] = {
            "id": media_id,
            "media_key": f"13_{media_id}",
            "size": upload["total_bytes"],
            "expires_after_secs": 86400,
        }
        if upload["media_category"] == "tweet_video":
            done = upload["polls_left"] <= 0
            data["processing_info"] = (
                {"state": "succeeded", "progress_percent": 100}
                if done
                else {"state": "in_progress", "check_after_secs": 0, "progress_percent": 50}
            )
        return data

    async def finalize(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        media_id = request.match_info["id"]
        upload = self.uploads.get(media_id)
        if upload is None:
            return self.problem(400, "Invalid Request", "media_id is invalid")
        received = sum(len(s) for s in upload["segments"])
        if received != upload["total_bytes"]:
            return self.problem(
                400, "Invalid Request", f"File size mismatch: {received} of {upload['total_bytes']}"
            )
        upload["finalized"] = True
        data = self.media_data(media_id)
        if "processing_info" in data and data["processing_info"]["state"] != "succeeded":
            data["processing_info"] = {"state": "pending", "check_after_secs": 0}
        return web.json_response({"data": data})

    async def status(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        media_id = request.query.get("media_id", "")
        if request.query.get("command") != "STATUS" or media_id not in self.uploads:
            return self.problem(400, "Invalid Request", "command and media_id are required")
        upload = self.uploads[media_id]
        upload["polls_left"] -= 1
        return web.json_response({"data": self.media_data(media_id)})

    async def create(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        body = await request.json()
        text = body.get("text", "")
        media_ids = (body.get("media") or {}).get("media_ids") or []
        if _weight(text) > 280:
            return web.json_response(
                {
                    "errors": [{"message": "Your Tweet text is too long."}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
                status=400,
            )
        for media_id in media_ids:
            upload = self.uploads.get(media_id)
            if upload is None or not upload["finalized"] or upload["polls_left"] > 0:
                return self.problem(400, "Invalid Request", f"Media id {media_id} is not ready")
        if any(t["raw"] == text for t in self.tweets.values()):
            return self.problem(
                403, "Forbidden", "You are not allowed to create a Tweet with duplicate content."
            )
        tweet_id = str(1445880548472328192 + len(self.tweets) + 1)
        shown = LINK.sub(lambda _: f"https://t.co/{secrets.token_hex(5)}", text)
        if media_ids:
            shown += f" https://t.co/{secrets.token_hex(5)}"
        self.tweets[tweet_id] = {
            "id": tweet_id,
            "raw": text,
            "text": html.escape(shown, quote=False),
            "created_at": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "media_keys": [f"13_{m}" for m in media_ids],
        }
        return web.json_response(
            {
                "data": {
                    "id": tweet_id,
                    "text": self.tweets[tweet_id]["text"],
                    "edit_history_tweet_ids": [tweet_id],
                }
            },
            status=201,
        )

    def view(self, tweet: dict[str, Any], fields: str) -> dict[str, Any]:
        view = {"id": tweet["id"], "text": tweet["text"], "edit_history_tweet_ids": [tweet["id"]]}
        if "created_at" in fields:
            view["created_at"] = tweet["created_at"]
        if "attachments" in fields and tweet["media_keys"]:
            view["attachments"] = {"media_keys": tweet["media_keys"]}
        if "public_metrics" in fields:
            view["public_metrics"] = {
                "retweet_count": 4,
                "reply_count": 2,
                "like_count": 10,
                "quote_count": 1,
                "bookmark_count": 3,
                "impression_count": 900,
            }
        return view

    async def lookup(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        ids = request.query.get("ids", "").split(",")
        if len(ids) > 100:
            return self.problem(400, "Invalid Request", "ids: at most 100")
        fields = request.query.get("tweet.fields", "")
        found = [self.view(self.tweets[i], fields) for i in ids if i in self.tweets]
        return web.json_response(
            {"data": found} if found else {"errors": [{"title": "Not Found Error"}]}
        )

    async def timeline(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        if request.match_info["id"] != USER_ID:
            return self.problem(404, "Not Found Error", "Could not find user")
        limit = int(request.query.get("max_results", "10"))
        if not 5 <= limit <= 100:
            return self.problem(400, "Invalid Request", "max_results must be between 5 and 100")
        fields = request.query.get("tweet.fields", "")
        newest = sorted(self.tweets.values(), key=lambda t: int(t["id"]), reverse=True)[:limit]
        return web.json_response(
            {"data": [self.view(t, fields) for t in newest], "meta": {"result_count": len(newest)}}
        )

    async def delete(self, request: web.Request) -> web.Response:
        if (refused := self.user(request)) is not None:
            return refused
        deleted = self.tweets.pop(request.match_info["id"], None) is not None
        return web.json_response({"data": {"deleted": deleted}})
