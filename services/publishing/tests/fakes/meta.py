"""What the fake Instagram and Threads share, as Meta documents both: containers that
fetch their media URL, a status that moves IN_PROGRESS -> FINISHED (ERROR when the URL
cannot be fetched), publishing a finished container once, a rolling publishing quota, and
Graph-style errors."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from fakes import FakeBase, bearer


def graph_error(
    message: str, code: int, subcode: int | None = None, status: int = 400
) -> web.Response:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "Ab",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return web.json_response({"error": error}, status=status)


@dataclass
class ContainerFake(FakeBase):
    base_url: str = ""
    user_id: str = ""
    processing_polls: int = 1
    quota_total: int = 250
    quota_used: int = 0
    tokens: dict[str, str] = field(default_factory=dict)  # token -> "short" | "long" | "expired"
    codes: dict[str, str] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # published

    def token_of(self, request: web.Request) -> str | None:
        return bearer(request) or request.query.get("access_token")

    def authorized(self, request: web.Request) -> web.Response | None:
        state = self.tokens.get(self.token_of(request) or "")
        if state is None:
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        if state == "expired":
            return graph_error("Error validating access token: Session has expired", 190, 463)
        return None

    def expire_all(self) -> None:
        for key in self.tokens:
            self.tokens[key] = "expired"

    async def fetchable(self, url: str | None) -> bytes | None:
        if not url:
            return None
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as answer:
                return await answer.read() if answer.status == 200 else None
        except aiohttp.ClientError:
            return None

    async def create(self, fields: dict[str, Any], *, text_key: str) -> web.Response:
        kind = fields.get("media_type") or "IMAGE"
        container_id = str(17900000000000000 + len(self.containers) + 1)
        entry: dict[str, Any] = {
            "kind": kind,
            "text": fields.get(text_key, ""),
            "carousel_item": fields.get("is_carousel_item") in (True, "true"),
            "polls_left": self.processing_polls,
            "status": "IN_PROGRESS",
            "published": False,
            "fields": fields,
            "created": datetime.now(UTC),
        }
        if kind == "CAROUSEL":
            children = str(fields.get("children", "")).split(",")
            if not 2 <= len(children) <= self.carousel_max:
                return graph_error(
                    f"(#100) A carousel takes 2 to {self.carousel_max} children", 100
                )
            for child in children:
                item = self.containers.get(child)
                if item is None or not item["carousel_item"] or item["status"] != "FINISHED":
                    return graph_error(f"(#100) Invalid child {child}", 100)
            entry["children"] = children
        elif kind in ("IMAGE", "VIDEO", "REELS"):
            url = fields.get("image_url") if kind == "IMAGE" else fields.get("video_url")
            data = await self.fetchable(url)
            if data is None:
                entry["status"] = "ERROR"
                entry["error_message"] = (
                    "Media download has failed. The media URI doesn't meet our requirements."
                )
            entry["bytes"] = data
        self.containers[container_id] = entry
        return web.json_response({"id": container_id})

    carousel_max: int = 20

    def status_of(self, container_id: str, field_name: str) -> web.Response:
        entry = self.containers.get(container_id)
        if entry is None:
            return graph_error("(#100) Unsupported get request. Object does not exist", 100, 33)
        if entry["status"] == "IN_PROGRESS":
            if entry["polls_left"] <= 0:
                entry["status"] = "FINISHED"
            entry["polls_left"] -= 1
        body: dict[str, Any] = {"id": container_id, field_name: entry["status"]}
        if entry["status"] == "ERROR":
            body["error_message"] = entry["error_message"]
        return web.json_response(body)

    def publish(self, creation_id: str) -> web.Response:
        entry = self.containers.get(creation_id)
        if self.quota_used >= self.quota_total:
            return graph_error(
                "(#9) Application request limit reached: publishing limit", 9, 2207042
            )
        if entry is None or entry["carousel_item"]:
            return graph_error("(#100) Invalid parameter creation_id", 100)
        if entry["status"] != "FINISHED":
            return graph_error(
                "(#9007) Media ID is not available: the media is not ready", 9007, 2207027
            )
        entry["status"] = "PUBLISHED"
        self.quota_used += 1
        media_id = str(18000000000000000 + len(self.media) + 1)
        children = entry.get("children") or []
        self.media[media_id] = {
            "container": creation_id,
            "kind": entry["kind"],
            "text": entry["text"],
            "children": children,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "shortcode": secrets.token_urlsafe(8),
        }
        return web.json_response({"id": media_id})

    def quota(self) -> web.Response:
        return web.json_response(
            {
                "data": [
                    {
                        "quota_usage": self.quota_used,
                        "config": {"quota_total": self.quota_total, "quota_duration": 86400},
                    }
                ]
            }
        )
