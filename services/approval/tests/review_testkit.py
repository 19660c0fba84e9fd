"""Review links in tests: open an approval, create a link, fetch its page and post its forms
as a browser would (form-encoded, no token), read the HTML, and a fake media service.

The service hands out ``{PRESSROOM_PUBLIC_URL}/review/<token>``; tests reach the same path
on the service's own port (the gateway forwards ``/review/*`` unchanged).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web
from approval_testkit import Service


@dataclass
class Page:
    status: int
    html: str
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return visible_text(self.html)

    def forms(self) -> dict[str, dict[str, str]]:
        """Each form's hidden fields by the form's id."""
        parser = _Forms()
        parser.feed(self.html)
        return parser.forms


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "title"):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self.current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.current = self.forms.setdefault(values.get("id", ""), {})
            self.current["__action"] = values.get("action", "")
        elif tag == "input" and self.current is not None and "name" in values:
            self.current[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


async def open_approval(svc: Service, brand: uuid.UUID, **options: Any) -> tuple[str, uuid.UUID]:
    """(approval id, post id) of a new pending approval."""
    options.setdefault("author", "ann")
    post_id = await svc.submit(brand, **options)
    row = await svc.row(brand, post_id)
    assert row is not None
    return str(row["id"]), post_id


async def create_link(
    svc: Service,
    brand: uuid.UUID,
    approval_id: str,
    *,
    name: str = "Clara Client",
    email: str | None = "clara@client.example",
    hours: int = 48,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "expires_in_hours": hours}
    if email is not None:
        body["email"] = email
    status, answer = await svc.call(
        "POST", f"/v1/approvals/{approval_id}/review-links", brand, json=body
    )
    assert status == 201, answer
    return answer  # type: ignore[no-any-return]


async def linked_approval(
    svc: Service, *, hours: int = 48
) -> tuple[uuid.UUID, str, uuid.UUID, dict[str, Any]]:
    """(brand, approval id, post id, link): a new brand's pending approval with one review
    link, where most review tests start."""
    brand = await svc.brand()
    approval_id, post_id = await open_approval(svc, brand)
    return brand, approval_id, post_id, await create_link(svc, brand, approval_id, hours=hours)


def local_path(svc: Service, url: str) -> str:
    public = svc.app.state.settings.public_url
    assert url.startswith(public + "/review/"), url
    return url.removeprefix(public)


async def get_page(svc: Service, url_or_path: str) -> Page:
    path = url_or_path if url_or_path.startswith("/") else local_path(svc, url_or_path)
    async with svc.http.get(svc.base + path, headers={"Accept": "text/html"}) as answer:
        return Page(answer.status, await answer.text(), dict(answer.headers))


async def post_form(svc: Service, path: str, fields: dict[str, str], **kwargs: Any) -> Page:
    async with svc.http.post(svc.base + path, data=fields, **kwargs) as answer:
        return Page(answer.status, await answer.text(), dict(answer.headers))


def form_of(page: Page, form: str = "approve-form") -> tuple[str, dict[str, str]]:
    """A form's action and its hidden fields (a copy, to change before posting it back)."""
    fields = dict(page.forms()[form])
    return fields.pop("__action"), fields


async def approve_form(svc: Service, url: str) -> tuple[str, dict[str, str]]:
    """The approve form of the link's page as it is now, kept to post later (stale)."""
    return form_of(await get_page(svc, url))


async def decide_through_page(
    svc: Service, url: str, form: str = "approve-form", comment: str = "", **kwargs: Any
) -> Page:
    """Open the page, fill the form's comment and submit it, like a reviewer."""
    page = await get_page(svc, url)
    assert page.status == 200, page.text
    action, fields = form_of(page, form)
    fields["comment"] = comment
    return await post_form(svc, action, fields, **kwargs)


@dataclass
class FakeMedia:
    """The media service's ``GET /v1/media/{id}``: known assets answer their URLs, others
    404; ``delay`` makes every answer slow; ``tokens`` keeps the bearer tokens seen."""

    url: str = ""
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    delay: float = 0.0

    def add(self, filename: str = "photo.jpg") -> uuid.UUID:
        asset_id = uuid.uuid4()
        self.assets[str(asset_id)] = {
            "id": str(asset_id),
            "filename": filename,
            "url": f"{self.url}/media-files/{asset_id}?sig=abc",
            "thumbnail_url": f"{self.url}/media-files/{asset_id}/thumb?sig=abc",
        }
        return asset_id


@asynccontextmanager
async def fake_media() -> AsyncIterator[FakeMedia]:
    state = FakeMedia()

    async def asset(request: web.Request) -> web.StreamResponse:
        state.tokens.append(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if state.delay:
            await asyncio.sleep(state.delay)
        found = state.assets.get(request.match_info["id"])
        if found is None:
            return web.json_response({"title": "Not found"}, status=404)
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/v1/media/{id}", asset)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()
