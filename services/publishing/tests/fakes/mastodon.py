"""A fake Mastodon instance, from docs.joinmastodon.org (4.3): app registration, the OAuth
code flow with PKCE (the consenting user is ``alice``), verify_credentials, the v2 instance
configuration, async media (202, then 206 until processed), statuses with Idempotency-Key,
account statuses, deletion; errors as ``{"error": ...}``."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from fakes import FakeBase, bearer, graphemes, s256, token

ACCOUNT_ID = "109876543210"
USERNAME = "alice"


@dataclass
class FakeMastodon(FakeBase):
    base_url: str = ""
    max_characters: int = 500
    max_media: int = 4
    processing_polls: int = 2  # GETs answering 206 before a video is processed
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> client_id
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    instance_reads: int = 0
    followers: int = 12

    def app(self) -> web.Application:
        app = self.application()
        app.router.add_post("/api/v1/apps", self.register)
        app.router.add_get("/oauth/authorize", self.authorize)
        app.router.add_post("/oauth/token", self.token)
        app.router.add_post("/oauth/revoke", self.revoke)
        app.router.add_get("/api/v1/accounts/verify_credentials", self.me)
        app.router.add_get("/api/v2/instance", self.instance)
        app.router.add_post("/api/v2/media", self.upload)
        app.router.add_get("/api/v1/media/{id}", self.media_status)
        app.router.add_post("/api/v1/statuses", self.create_status)
        app.router.add_get("/api/v1/statuses/{id}", self.get_status)
        app.router.add_delete("/api/v1/statuses/{id}", self.delete_status)
        app.router.add_get("/api/v1/accounts/{id}/statuses", self.account_statuses)
        return app

    @staticmethod
    def error(status: int, message: str, description: str | None = None) -> web.Response:
        body: dict[str, str] = {"error": message}
        if description:
            body["error_description"] = description
        return web.json_response(body, status=status)

    def user(self, request: web.Request) -> str | web.Response:
        got = bearer(request)
        if got is None or got not in self.tokens:
            return self.error(401, "The access token is invalid")
        return got

    # OAuth --------------------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not form.get("client_name") or not form.get("redirect_uris"):
            return self.error(422, "Validation failed: Application name can't be blank")
        client_id = secrets.token_urlsafe(16)
        self.apps[client_id] = {
            "secret": secrets.token_urlsafe(24),
            "redirect_uris": str(form["redirect_uris"]).split(),
            "scopes": str(form.get("scopes") or "read").split(),
        }
        return web.json_response(
            {
                "id": str(len(self.apps)),
                "name": form["client_name"],
                "website": form.get("website"),
                "redirect_uri": form["redirect_uris"],
                "client_id": client_id,
                "client_secret": self.apps[client_id]["secret"],
                "vapid_key": "BCk-QqERU0q-CfYZjcuB6lnyyOYfJ2AifKqfeGIm7Z-HiTU5T9eTG5GxVA0_OH5mM=",
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        """The user is signed in and clicks Authorize: 302 to the redirect URI."""
        query = request.query
        app = self.apps.get(query.get("client_id", ""))
        if app is None or query.get("redirect_uri") not in app["redirect_uris"]:
            return web.Response(status=400, text="The redirect uri included is not valid.")
        if query.get("response_type") != "code":
            return web.Response(status=400, text="unsupported_response_type")
        scopes = query.get("scope", "read").split()
        if not set(scopes) <= set(app["scopes"]):
            return web.Response(status=400, text="invalid_scope")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "client_id": query["client_id"],
            "redirect_uri": query["redirect_uri"],
            "challenge": query.get("code_challenge"),
            "scopes": scopes,
        }
        target = (
            f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        )
        raise web.HTTPFound(target)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        app = self.apps.get(str(form.get("client_id", "")))
        if app is None or app["secret"] != form.get("client_secret"):
            return self.error(401, "invalid_client", "Client authentication failed.")
        if form.get("grant_type") != "authorization_code":
            return self.error(400, "unsupported_grant_type", "The grant type is not supported.")
        grant = self.codes.pop(str(form.get("code", "")), None)
        invalid = (
            "The provided authorization grant is invalid, expired, revoked, does not match "
            "the redirection URI used in the authorization request, or was issued to another "
            "client."
        )
        if grant is None or grant["client_id"] != form.get("client_id"):
            return self.error(400, "invalid_grant", invalid)
        if grant["redirect_uri"] != form.get("redirect_uri"):
            return self.error(400, "invalid_grant", invalid)
        if grant["challenge"] and s256(str(form.get("code_verifier", ""))) != grant["challenge"]:
            return self.error(400, "invalid_grant", invalid)
        access = token()
        self.tokens[access] = str(form["client_id"])
        return web.json_response(
            {
                "access_token": access,
                "token_type": "Bearer",
                "scope": " ".join(grant["scopes"]),
                "created_at": int(datetime.now(UTC).timestamp()),
            }
        )

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        app = self.apps.get(str(form.get("client_id", "")))
        if app is None or app["secret"] != form.get("client_secret"):
            return self.error(
                403, "unauthorized_client", "You are not authorized to revoke this token"
            )
        self.tokens.pop(str(form.get("token", "")), None)
        return web.json_response({})

    # API ----------------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        who = self.user(request)
        if isinstance(who, web.Response):
            return who
        return web.json_response(
            {
                "id": ACCOUNT_ID,
                "username": USERNAME,
                "acct": USERNAME,
                "display_name": "Alice Example",
                "url": f"{self.base_url}/@{USERNAME}",
                "followers_count": self.followers,
                "statuses_count": len(self.statuses),
            }
        )

    async def instance(self, request: web.Request) -> web.Response:
        self.instance_reads += 1
        return web.json_response(
            {
                "domain": "fake.social",
                "version": "4.3.2",
                "configuration": {
                    "urls": {"streaming": "wss://fake.social"},
                    "accounts": {"max_featured_tags": 10},
                    "statuses": {
                        "max_characters": self.max_characters,
                        "max_media_attachments": self.max_media,
                        "characters_reserved_per_url": 23,
                    },
                    "media_attachments": {
                        "supported_mime_types": [
                            "image/jpeg",
                            "image/png",
                            "image/gif",
                            "video/mp4",
                        ],
                        "image_size_limit": 16777216,
                        "image_matrix_limit": 33177600,
                        "video_size_limit": 103809024,
                        "video_frame_rate_limit": 120,
                        "video_matrix_limit": 8294400,
                    },
                },
            }
        )

    async def upload(self, request: web.Request) -> web.Response:
        who = self.user(request)
        if isinstance(who, web.Response):
            return who
        if not request.content_type.startswith("multipart/form-data"):
            return self.error(422, "Validation failed: File can't be blank")
        reader = await request.multipart()
        data = b""
        content_type = None
        description = None
        while (part := await reader.next()) is not None:
            if part.name == "file":  # type: ignore[union-attr]
                content_type = part.headers.get("Content-Type")  # type: ignore[union-attr]
                data = bytes(await part.read())  # type: ignore[union-attr]
            elif part.name == "description":  # type: ignore[union-attr]
                description = await part.text()  # type: ignore[union-attr]
        if not data:
            return self.error(422, "Validation failed: File can't be blank")
        if content_type not in ("image/jpeg", "image/png", "image/gif", "video/mp4"):
            return self.error(
                422, f"Validation failed: File content type {content_type} is invalid"
            )
        media_id = str(100000 + len(self.media))
        video = content_type.startswith("video/")
        self.media[media_id] = {
            "id": media_id,
            "type": "video" if video else "image",
            "polls_left": self.processing_polls if video else 0,
            "description": description,
            "size": len(data),
            "owner": who,
        }
        self.uploads.append({"id": media_id, "bytes": data, "content_type": content_type})
        return web.json_response(self.attachment(media_id), status=202 if video else 200)

    def attachment(self, media_id: str) -> dict[str, Any]:
        item = self.media[media_id]
        ready = item["polls_left"] <= 0
        return {
            "id": media_id,
            "type": item["type"],
            "url": f"{self.base_url}/system/media/{media_id}" if ready else None,
            "preview_url": f"{self.base_url}/system/media/{media_id}/small",
            "description": item["description"],
        }

    async def media_status(self, request: web.Request) -> web.Response:
        who = self.user(request)
        if isinstance(who, web.Response):
            return who
        item = self.media.get(request.match_info["id"])
        if item is None:
            return self.error(404, "Record not found")
        if item["polls_left"] > 0:
            item["polls_left"] -= 1
            return web.json_response(self.attachment(item["id"]), status=206)
        return web.json_response(self.attachment(item["id"]))

    async def create_status(self, request: web.Request) -> web.Response:
        who = self.user(request)
        if isinstance(who, web.Response):
            return who
        key = request.headers.get("Idempotency-Key")
        if key and f"{who}|{key}" in self.idempotency:
            return web.json_response(self.statuses[self.idempotency[f"{who}|{key}"]])
        body = await request.json()
        text = body.get("status") or ""
        media_ids = body.get("media_ids") or []
        if not text and not media_ids:
            return self.error(422, "Validation failed: Text can't be blank")
        # StatusLengthValidator: grapheme clusters, URLs count 23, remote mentions count
        # their local part.
        countable = re.sub(r"https?://\S+", "x" * 23, text)
        countable = re.sub(r"@(\w+)@[\w.-]+\w", r"@\1", countable)
        if graphemes(countable) > self.max_characters:
            return self.error(
                422, f"Validation failed: Text character limit of {self.max_characters} exceeded"
            )
        if len(media_ids) > self.max_media:
            return self.error(422, "Validation failed: Media attachments is too long")
        for media_id in media_ids:
            item = self.media.get(media_id)
            if item is None or item["owner"] != who:
                return self.error(422, "Validation failed: Media attachments is invalid")
            if item["polls_left"] > 0:
                return self.error(
                    422,
                    "Cannot attach files that have not finished processing. Try again in a moment!",
                )
        status_id = str(110000000000000000 + len(self.statuses) + 1)
        paragraphs = "".join(
            f"<p>{html.escape(part).replace(chr(10), '<br />')}</p>" for part in text.split("\n\n")
        )
        status = {
            "id": status_id,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "uri": f"{self.base_url}/users/{USERNAME}/statuses/{status_id}",
            "url": f"{self.base_url}/@{USERNAME}/{status_id}",
            "visibility": body.get("visibility", "public"),
            "content": paragraphs,
            "media_attachments": [self.attachment(m) for m in media_ids],
            "favourites_count": 3,
            "reblogs_count": 2,
            "replies_count": 1,
        }
        self.statuses[status_id] = status
        if key:
            self.idempotency[f"{who}|{key}"] = status_id
        return web.json_response(status)

    async def get_status(self, request: web.Request) -> web.Response:
        status = self.statuses.get(request.match_info["id"])
        if status is None:
            return self.error(404, "Record not found")
        return web.json_response(status)

    async def delete_status(self, request: web.Request) -> web.Response:
        who = self.user(request)
        if isinstance(who, web.Response):
            return who
        status = self.statuses.pop(request.match_info["id"], None)
        if status is None:
            return self.error(404, "Record not found")
        return web.json_response({**status, "text": "source"})

    async def account_statuses(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != ACCOUNT_ID:
            return self.error(404, "Record not found")
        limit = min(int(request.query.get("limit", "20")), 40)
        newest = sorted(self.statuses.values(), key=lambda s: int(s["id"]), reverse=True)
        return web.json_response(newest[:limit])
