"""The merged OpenAPI document: the gateway's own routes plus every service's, as the
services publish them at ``/schema/openapi.json``; refreshed while the stack runs.

The gateway adds the problems it answers itself: 429 (rate limit) on every operation but the
probes, and 400 (a path with empty, ``.`` or ``..`` segments, refused at the edge) and
502/503/504 (the service behind broke, is down, is slow) on every proxied one; a service's
own entry for a status wins."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from pressroom_kit.logs import get_logger
from pressroom_kit.problems import DESCRIPTIONS, PROBLEM

log = get_logger(__name__)

UNLIMITED = ("/healthz", "/readyz", "/metrics", "/schema")  # RateLimitMiddleware.exempt
PROXY_FAILURES = (400, 502, 503, 504)  # the edge's bad_path, then the backend's failures
METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class OpenAPIMerger:
    def __init__(
        self,
        own: Callable[[], dict[str, Any]],
        routes: Mapping[str, str],
        *,
        refresh_s: float = 30.0,
        missing_refresh_s: float = 2.0,
    ) -> None:
        self.own = own
        self.prefixes: dict[str, list[str]] = {}
        for prefix, url in routes.items():
            self.prefixes.setdefault(url.rstrip("/"), []).append(prefix.rstrip("/"))
        self.refresh_s = refresh_s
        self.missing_refresh_s = missing_refresh_s
        self.documents: dict[str, dict[str, Any]] = {}
        self._merged: dict[str, Any] | None = None

    async def refresh(self, session: aiohttp.ClientSession) -> None:
        async def fetch(url: str) -> None:
            try:
                async with session.get(
                    f"{url}/schema/openapi.json", timeout=aiohttp.ClientTimeout(total=3)
                ) as response:
                    if response.status == 200:
                        document = await response.json(content_type=None)
                        if isinstance(document, dict) and document != self.documents.get(url):
                            self.documents[url] = document
                            self._merged = None
                            log.info("service OpenAPI document loaded", backend=url)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                pass  # not up yet; the next refresh tries again

        await asyncio.gather(*(fetch(url) for url in self.prefixes))

    async def run(self, stop: asyncio.Event, session_factory: Callable[[], Any]) -> None:
        """A background worker: refresh often while a service is missing, rarely after."""
        while not stop.is_set():
            await self.refresh(session_factory())
            missing = len(self.documents) < len(self.prefixes)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=self.missing_refresh_s if missing else self.refresh_s
                )

    def merged(self) -> dict[str, Any]:
        if self._merged is None:
            self._merged = self._merge()
        return self._merged

    def _merge(self) -> dict[str, Any]:
        merged = copy.deepcopy(self.own())
        paths: dict[str, Any] = merged.setdefault("paths", {})
        schemas: dict[str, Any] = merged.setdefault("components", {}).setdefault("schemas", {})
        tags = {t["name"]: t for t in merged.get("tags", [])}
        for url, document in sorted(self.documents.items()):
            service = _service_name(document, url)
            owned = self.prefixes[url]
            renames = {}
            for name, schema in document.get("components", {}).get("schemas", {}).items():
                if name in schemas and schemas[name] != schema:
                    renames[name] = f"{service}_{name}"
            text = json.dumps(
                {
                    "paths": document.get("paths", {}),
                    "schemas": document.get("components", {}).get("schemas", {}),
                }
            )
            for old, new in renames.items():
                text = text.replace(
                    f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"'
                )
            contribution = json.loads(text)
            for path, item in contribution["paths"].items():
                if any(path == p or path.startswith(p + "/") for p in owned) and path not in paths:
                    paths[path] = item
                    _add_problems(item, PROXY_FAILURES)
            for name, schema in contribution["schemas"].items():
                schemas.setdefault(renames.get(name, name), schema)
            for tag in document.get("tags", []):
                tags.setdefault(tag["name"], tag)
        for path, item in paths.items():
            if not path.startswith(UNLIMITED):
                _add_problems(item, (429,))
        if tags:
            merged["tags"] = list(tags.values())
        loaded = sorted(_service_name(d, u) for u, d in self.documents.items())
        merged.setdefault("info", {})["description"] = (
            "Pressroom's public API: the gateway's routes and every service's routes. "
            f"Services loaded: {', '.join(loaded) or 'none yet'}. "
            "No string input may hold U+0000 or a lone surrogate (PostgreSQL cannot store "
            "them): such a request is a 422 `unstorable_text` problem naming the field."
        )
        return merged


def _add_problems(item: dict[str, Any], statuses: tuple[int, ...]) -> None:
    """Document the gateway's own problem ``statuses`` on each operation of a path item."""
    for method, operation in item.items():
        if method not in METHODS or not isinstance(operation, dict):
            continue
        responses = operation.setdefault("responses", {})
        for status in statuses:
            response: dict[str, Any] = {
                "description": DESCRIPTIONS[status],
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
            if status == 429:
                response["headers"] = {
                    "Retry-After": {
                        "description": "seconds until a retry can succeed",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
            responses.setdefault(str(status), response)


def _service_name(document: dict[str, Any], url: str) -> str:
    title = str(document.get("info", {}).get("title", ""))
    name = title.removeprefix("Pressroom ").strip().lower() or url
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")
