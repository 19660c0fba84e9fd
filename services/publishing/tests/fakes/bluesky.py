"""A fake Bluesky PDS, from docs.bsky.app's XRPC reference: sessions from an app password
(JWTs with ``exp``, 2 h access, rotating refresh, deleteSession revokes), handle
resolution, uploadBlob (raw bytes, Content-Type, 1,000,000-byte limit), createRecord of
``app.bsky.feed.post`` with its checks (300 graphemes approximated by code points without
joiners and marks, facets within the text's UTF-8 bytes, at most 4 images each a blob this
PDS stored), listRecords (newest first), deleteRecord, getProfile, getPosts; errors as
``{"error", "message"}``."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes import FakeBase, bearer, graphemes

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
HANDLE = "alice.test"
PASSWORD = "abcd-efgh-ijkl-mnop"
KNOWN_HANDLES = {HANDLE: DID, "bob.test": "did:plc:bobbobbobbobbobbobbobbob"}


def jwt(scope: str, lifetime_s: int, now: float) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"scope": scope, "sub": DID, "iat": int(now), "exp": int(now + lifetime_s)}
    claims["jti"] = secrets.token_hex(8)
    return f"{part({'typ': 'at+jwt', 'alg': 'HS256'})}.{part(claims)}.{secrets.token_urlsafe(16)}"


@dataclass
class FakeBluesky(FakeBase):
    base_url: str = ""
    now: float = field(default_factory=time.time)
    access: dict[str, float] = field(default_factory=dict)  # access JWT -> expiry
    refresh: dict[str, bool] = field(default_factory=dict)  # refresh JWT -> usable
    blobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # rkey -> record
    followers: int = 40
    tid: int = 0

    def app(self) -> web.Application:
        app = self.application()
        route = app.router
        route.add_post("/xrpc/com.atproto.server.createSession", self.create_session)
        route.add_post("/xrpc/com.atproto.server.refreshSession", self.refresh_session)
        route.add_post("/xrpc/com.atproto.server.deleteSession", self.delete_session)
        route.add_get("/xrpc/com.atproto.server.getSession", self.get_session)
        route.add_get("/xrpc/com.atproto.identity.resolveHandle", self.resolve)
        route.add_post("/xrpc/com.atproto.repo.uploadBlob", self.upload_blob)
        route.add_post("/xrpc/com.atproto.repo.createRecord", self.create_record)
        route.add_post("/xrpc/com.atproto.repo.deleteRecord", self.delete_record)
        route.add_get("/xrpc/com.atproto.repo.listRecords", self.list_records)
        route.add_get("/xrpc/app.bsky.actor.getProfile", self.get_profile)
        route.add_get("/xrpc/app.bsky.feed.getPosts", self.get_posts)
        return app

    @staticmethod
    def error(status: int, error: str, message: str) -> web.Response:
        return web.json_response({"error": error, "message": message}, status=status)

    def session(self) -> dict[str, Any]:
        access = jwt("com.atproto.appPass", 7200, self.now)
        refresh = jwt("com.atproto.refresh", 90 * 86400, self.now)
        self.access[access] = self.now + 7200
        self.refresh[refresh] = True
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": HANDLE,
            "did": DID,
            "didDoc": {
                "id": DID,
                "service": [
                    {
                        "id": "#atproto_pds",
                        "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": self.base_url,
                    }
                ],
            },
            "active": True,
        }

    def authorized(self, request: web.Request) -> web.Response | None:
        got = bearer(request)
        if got is None:
            return self.error(401, "AuthMissing", "Authentication Required")
        expiry = self.access.get(got)
        if expiry is None:
            return self.error(400, "InvalidToken", "Token could not be verified")
        if expiry <= self.now:
            return self.error(400, "ExpiredToken", "Token has expired")
        return None

    def expire_all(self) -> None:
        self.now += 7201

    async def create_session(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("identifier") not in (HANDLE, DID) or body.get("password") != PASSWORD:
            return self.error(401, "AuthenticationRequired", "Invalid identifier or password")
        return web.json_response(self.session())

    async def refresh_session(self, request: web.Request) -> web.Response:
        got = bearer(request)
        if got is None or got not in self.refresh:
            return self.error(400, "InvalidToken", "Token could not be verified")
        if not self.refresh[got]:
            return self.error(400, "ExpiredToken", "Token has been revoked")
        self.refresh[got] = False  # rotated
        return web.json_response(self.session())

    async def delete_session(self, request: web.Request) -> web.Response:
        got = bearer(request)
        if got is None or got not in self.refresh:
            return self.error(400, "InvalidToken", "Invalid token type")
        self.refresh[got] = False
        return web.Response(status=200)

    async def get_session(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return web.json_response({"handle": HANDLE, "did": DID, "active": True})

    async def resolve(self, request: web.Request) -> web.Response:
        did = KNOWN_HANDLES.get(request.query.get("handle", ""))
        if did is None:
            return self.error(400, "InvalidRequest", "Unable to resolve handle")
        return web.json_response({"did": did})

    async def upload_blob(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        if request.content_length is None:
            return self.error(400, "InvalidRequest", "missing content-length")
        data = await request.read()
        if len(data) > 1_000_000:
            return self.error(400, "BlobTooLarge", "This file is too large.")
        digest = hashlib.sha256(data).hexdigest()
        cid = f"bafkrei{digest[:52]}"
        self.blobs[cid] = {"mimeType": request.content_type, "size": len(data), "data": data}
        return web.json_response(
            {
                "blob": {
                    "$type": "blob",
                    "ref": {"$link": cid},
                    "mimeType": request.content_type,
                    "size": len(data),
                }
            }
        )

    def check_post(self, record: dict[str, Any]) -> str | None:
        text = record.get("text", "")
        if record.get("$type") != "app.bsky.feed.post" or "createdAt" not in record:
            return "Invalid app.bsky.feed.post record"
        if graphemes(text) > 300 or len(text.encode()) > 3000:
            return "Record/text must not be longer than 300 graphemes"
        size = len(text.encode())
        for facet in record.get("facets", []):
            index = facet["index"]
            if not 0 <= index["byteStart"] < index["byteEnd"] <= size:
                return "facet index out of range"
        embed = record.get("embed")
        if embed and embed["$type"] == "app.bsky.embed.images":
            images = embed["images"]
            if len(images) > 4:
                return "Record/embed/images must not have more than 4 elements"
            for image in images:
                if "alt" not in image:
                    return 'Record/embed/images/0 must have the property "alt"'
                if image["image"]["ref"]["$link"] not in self.blobs:
                    return "Could not find blob"
        return None

    async def create_record(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        if body.get("repo") not in (DID, HANDLE):
            return self.error(400, "InvalidRequest", "Repo not found")
        problem = self.check_post(body.get("record") or {})
        if problem:
            return self.error(400, "InvalidRequest", problem)
        self.tid += 1
        rkey = f"3l{self.tid:011d}"
        self.records[rkey] = body["record"]
        return web.json_response(
            {
                "uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
                "cid": f"bafyrei{secrets.token_hex(20)}",
                "commit": {"cid": f"bafyrei{secrets.token_hex(20)}", "rev": rkey},
                "validationStatus": "valid",
            }
        )

    async def delete_record(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        body = await request.json()
        self.records.pop(body.get("rkey", ""), None)
        return web.json_response({"commit": {"cid": "bafyrei", "rev": "x"}})

    async def list_records(self, request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", "50")), 100)
        newest = sorted(self.records, reverse=True)[:limit]
        return web.json_response(
            {
                "records": [
                    {
                        "uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
                        "cid": "bafyrei",
                        "value": self.records[rkey],
                    }
                    for rkey in newest
                ]
            }
        )

    async def get_profile(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        return web.json_response(
            {"did": DID, "handle": HANDLE, "followersCount": self.followers, "postsCount": 3}
        )

    async def get_posts(self, request: web.Request) -> web.Response:
        if (refused := self.authorized(request)) is not None:
            return refused
        uris = request.query.getall("uris", [])
        if len(uris) > 25:
            return self.error(400, "InvalidRequest", "uris must not have more than 25 elements")
        posts = []
        for uri in uris:
            rkey = uri.rsplit("/", 1)[-1]
            if rkey in self.records:
                posts.append(
                    {
                        "uri": uri,
                        "likeCount": 5,
                        "repostCount": 2,
                        "quoteCount": 1,
                        "replyCount": 3,
                        "record": self.records[rkey],
                    }
                )
        return web.json_response({"posts": posts})
