"""The main flow of the product, as a brand lives it, through the gateway of a stack of
processes (``process_stack``): upload an image; a post with it for two sandbox-backed
platforms in a brand that requires approval; the approval appears; a second manager
approves it (or a client, through a review link); the post publishes at its time; the
asset's usage shows the post; an analytics sync sees the post's metrics; a webhook endpoint
subscribed to ``*`` receives every lifecycle event of that post, each once, signed.

``run_flow`` drives it and returns what happened, so a test can check the same invariants
with and without faults injected while it runs.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from media_samples import jpeg_bytes
from media_testkit import form
from pressroom_kit.auth import mint_token
from process_stack import SECRET, ProcessStack, dump
from sandbox_testkit import SandboxClient

PLATFORMS = ("sandbox", "sandbox_b")
# The second sandbox-backed platform id: the same built-in sandbox server, another id.
EXTRA_ENV = {"PRESSROOM_PUBLISHING_PLATFORMS": json.dumps({"sandbox_b": {"adapter": "sandbox"}})}

LIFECYCLE = {
    "publishing.post.created.v1",
    "publishing.post.submitted.v1",
    "approval.requested.v1",
    "approval.approved.v1",
    "publishing.post.scheduled.v1",
    "publishing.post.published.v1",
}


@dataclass
class Flow:
    stack: ProcessStack
    http: aiohttp.ClientSession
    brand: uuid.UUID | None = None
    admin: str = field(default_factory=lambda: f"admin-{uuid.uuid4().hex[:6]}")
    author: str = field(default_factory=lambda: f"author-{uuid.uuid4().hex[:6]}")
    approver: str = field(default_factory=lambda: f"approver-{uuid.uuid4().hex[:6]}")
    seen: dict[str, Any] = field(default_factory=dict)

    def token(self, sub: str, role: str) -> str:
        return mint_token(
            SECRET,
            sub=sub,
            role=role,  # type: ignore[arg-type]
            brand_id=self.brand,
            email=f"{sub}@example.test",
        )

    async def call(
        self,
        method: str,
        path: str,
        sub: str | None = None,
        role: str = "manager",
        *,
        expect: int | tuple[int, ...] | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if sub is not None:
            headers["Authorization"] = f"Bearer {self.token(sub, role)}"
        url = path if path.startswith("http") else self.stack.gateway + path
        async with self.http.request(
            method,
            url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=30),
            **kw,
        ) as answer:
            raw = await answer.read()
            kind = answer.headers.get("Content-Type", "")
            body: Any = json.loads(raw) if raw and "json" in kind else raw
            if expect is not None:
                wanted = expect if isinstance(expect, tuple) else (expect,)
                assert answer.status in wanted, (method, path, answer.status, body)
            return answer.status, body

    async def retrying(
        self, method: str, path: str, sub: str | None, role: str = "manager", **kw: Any
    ) -> tuple[int, Any]:
        """A call a user would repeat while a part of the system is down (a 5xx, a
        refused connection); anything else is the answer."""
        deadline = time.monotonic() + 150
        while True:
            try:
                status, body = await self.call(method, path, sub, role, **kw)
            except (aiohttp.ClientError, TimeoutError):
                status, body = 0, None
            if status and status < 500:
                return status, body
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} kept failing: {status} {body!r}"[:2000])
            await asyncio.sleep(0.5)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = await check()
        except (aiohttp.ClientError, TimeoutError) as error:
            result, last = None, error
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what} (last: {last!r})")
        await asyncio.sleep(0.3)


async def onboard(flow: Flow) -> None:
    """A brand that requires approval, its admin, an author and an approver."""
    onboarding = mint_token(SECRET, sub=flow.admin, role="viewer")  # type: ignore[arg-type]
    status, brand = await flow.retrying(
        "POST",
        "/v1/brands",
        None,
        json={
            "name": "Main flow",
            "timezone": "Europe/Berlin",
            "settings": {"approval_required": True},
        },
        headers={"Authorization": f"Bearer {onboarding}"},
    )
    assert status == 201, brand
    flow.brand = uuid.UUID(brand["id"])
    for sub, role in ((flow.author, "manager"), (flow.approver, "manager")):
        status, body = await flow.retrying(
            "POST",
            "/v1/brands/current/members",
            flow.admin,
            "admin",
            json={"user_id": sub, "email": f"{sub}@example.test", "role": role},
        )
        assert status == 201, body


async def connect(flow: Flow, platform: str) -> None:
    """Through the consent page, as a browser would (no Pressroom token)."""
    status, body = await flow.retrying(
        "POST", f"/v1/connections/{platform}/authorize", flow.admin, "admin"
    )
    assert status == 200, body
    browser = SandboxClient(f"{flow.stack.gateway}/sandbox-platform")
    authorized = await browser.authorize(body["authorization_url"], username=f"{platform}-user")
    assert authorized.code, authorized
    status, page = await flow.retrying("GET", authorized.location, None)
    assert status == 200, page


async def subscribe(flow: Flow, url: str) -> str:
    status, endpoint = await flow.retrying(
        "POST",
        "/v1/webhooks/endpoints",
        flow.admin,
        "admin",
        json={"url": url, "event_types": ["*"]},
    )
    assert status == 201, endpoint
    return str(endpoint["secret"])


async def upload(flow: Flow) -> str:
    status, asset = await flow.retrying(
        "POST", "/v1/media", flow.author, data=form(jpeg_bytes(640, 480), "photo.jpg")
    )
    assert status == 201, asset
    return str(asset["id"])


async def create_and_submit(flow: Flow, asset_id: str, publish_in_s: float) -> str:
    when = (datetime.now(UTC) + timedelta(seconds=publish_in_s)).isoformat()

    async def created() -> Any:
        status, body = await flow.retrying(
            "POST",
            "/v1/posts",
            flow.author,
            json={
                "content": {"text": "Launch day, with a picture", "media_ids": [asset_id]},
                "platforms": list(PLATFORMS),
                "scheduled_at": when,
            },
        )
        if status == 201:
            return body
        # Until media's event reaches publishing, the asset is unknown there.
        assert status == 422 and "media_ids" in json.dumps(body), body
        return None

    post = await eventually(created, "publishing knows the uploaded asset")
    status, submitted = await flow.retrying("POST", f"/v1/posts/{post['id']}/submit", flow.author)
    assert status == 200, submitted
    assert submitted["status"] == "awaiting_approval", submitted
    return str(post["id"])


async def pending_approval(flow: Flow, post_id: str) -> dict[str, Any]:
    async def appeared() -> Any:
        status, page = await flow.call("GET", "/v1/approvals?status=pending", flow.approver)
        if status != 200:
            return None
        return next((a for a in page["items"] if a["post_id"] == post_id), None)

    approval: dict[str, Any] = await eventually(appeared, "the approval appears")
    return approval


async def approve_by_api(flow: Flow, approval: dict[str, Any]) -> None:
    # The author may not approve their own post; the second manager may.
    status, body = await flow.retrying(
        "POST", f"/v1/approvals/{approval['id']}/approve", flow.author, json={}
    )
    assert status == 403, body
    status, body = await flow.retrying(
        "POST", f"/v1/approvals/{approval['id']}/approve", flow.approver, json={"comment": "ok"}
    )
    # A retried approve after a lost answer finds it decided: 409 is the same outcome.
    assert status in (200, 409), body


async def approve_by_review_link(flow: Flow, approval: dict[str, Any]) -> None:
    status, link = await flow.retrying(
        "POST",
        f"/v1/approvals/{approval['id']}/review-links",
        flow.approver,
        json={"name": "Client Reviewer", "email": "client@example.test", "expires_in_hours": 2},
    )
    assert status == 201, link
    assert link["url"].startswith(f"{flow.stack.gateway}/review/"), link
    status, page = await flow.retrying("GET", link["url"], None)
    assert status == 200, page
    text = page.decode()
    assert "Launch day, with a picture" in text, text[:2000]
    # The Approve form, as a browser would submit it: its action and hidden fields.
    form_html = re.search(r'<form[^>]*id="approve-form".*?</form>', text, re.S)
    assert form_html, text[:2000]
    action = html.unescape(re.search(r'action="([^"]+)"', form_html.group(0)).group(1))  # type: ignore[union-attr]
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form_html.group(0)
        )
    }
    assert fields.get("decision") == "approve", fields
    fields["comment"] = "Looks good to us"
    if action.startswith("/"):
        action = flow.stack.gateway + action
    status, result = await flow.retrying("POST", action, None, data=fields)
    assert status in (200, 303, 409), result


async def run_flow(
    flow: Flow,
    hooks_url: str,
    *,
    by_review_link: bool = False,
    publish_in_s: float = 25.0,
) -> dict[str, Any]:
    await onboard(flow)
    for platform in PLATFORMS:
        await connect(flow, platform)
    flow.seen["webhook_secret"] = await subscribe(flow, hooks_url)
    asset_id = await upload(flow)
    post_id = await create_and_submit(flow, asset_id, publish_in_s)
    approval = await pending_approval(flow, post_id)
    if by_review_link:
        await approve_by_review_link(flow, approval)
    else:
        await approve_by_api(flow, approval)

    async def published() -> Any:
        status, body = await flow.call("GET", f"/v1/posts/{post_id}", flow.author, "viewer")
        flow.seen["post"] = body
        return body if status == 200 and body["status"] == "published" else None

    post = await eventually(published, "the post is published on both platforms", 240)
    for platform in PLATFORMS:
        assert post["results"][platform]["status"] == "published", dump(post)

    async def used() -> Any:
        status, body = await flow.call("GET", f"/v1/media/{asset_id}", flow.author, "viewer")
        return status == 200 and f"post:{post_id}" in body["used_in"]

    await eventually(used, "the asset's usage shows the post")

    status, sync = await flow.retrying(
        "POST", "/v1/analytics/sync", flow.approver, json={"platforms": list(PLATFORMS)}
    )
    assert status == 202, sync

    async def synced() -> Any:
        status, log = await flow.call(
            "GET", f"/v1/analytics/sync-logs/{sync['sync_log_id']}", flow.author, "viewer"
        )
        return log if status == 200 and log["status"] != "running" else None

    log = await eventually(synced, "the analytics sync completes")
    assert log["status"] == "completed", dump(log)

    async def post_metrics() -> Any:
        status, page = await flow.call("GET", "/v1/analytics/posts", flow.author, "viewer")
        if status != 200:
            return None
        mine = [row for row in page["items"] if row.get("post_id") == post_id]
        return mine if {row["platform"] for row in mine} >= set(PLATFORMS) else None

    await eventually(post_metrics, "analytics sees the post's metrics")
    return {"post_id": post_id, "asset_id": asset_id, "approval_id": approval["id"]}


def lifecycle_deliveries(requests: list[dict[str, Any]], post_id: str) -> Counter[str]:
    """Webhook deliveries of the post's lifecycle events, counted by event id and type."""
    counted: Counter[str] = Counter()
    for request in requests:
        body = json.loads(request["body"])
        data = body.get("data", {})
        if data.get("post_id") == post_id:
            counted[f"{body['type']} {body.get('id') or request['headers'].get('webhook-id')}"] += 1
    return counted
