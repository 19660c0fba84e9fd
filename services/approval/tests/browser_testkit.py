"""A headless Chromium driven over the Chrome DevTools Protocol, with aiohttp only.

No Playwright or Selenium download: Debian's ``chromium`` package (installed on demand with
``apt-get install -y chromium`` when the tests run as root and it is missing), started with
``--remote-debugging-port=0``; the DevTools websocket URL is read from its stderr. ``Page``
speaks just the CDP calls a test needs: navigate and wait for the load, evaluate
JavaScript, click an element, read the text.

    async with chromium() as browser, browser.page() as page:
        await page.goto(url)
        assert "Approve" in await page.text()
        await page.click_and_wait("#approve")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


class BrowserUnavailable(Exception):
    """No Chromium here and no way to install it (the reason says why)."""


def find_chromium() -> str | None:
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def ensure_chromium(timeout_s: float = 600.0) -> str:
    """The browser's path; installs Debian's ``chromium`` when missing and we are root."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BrowserUnavailable(
            "chromium is not installed and cannot be installed here (needs root and apt-get)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:  # the package lists may be missing: update once, try again
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=timeout_s)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    found = find_chromium()
    if not found:
        raise BrowserUnavailable(f"apt-get install chromium failed: {result.stderr[-2000:]}")
    return found


class CDPError(Exception):
    pass


@dataclass
class Session:
    """One websocket to the browser; commands matched to answers by id, events queued."""

    ws: aiohttp.ClientWebSocketResponse
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    listeners: list[tuple[str, str | None, asyncio.Queue[dict[str, Any]]]] = field(
        default_factory=list
    )
    reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self.waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            for method, session_id, queue in self.listeners:
                if data.get("method") == method and session_id in (None, data.get("sessionId")):
                    queue.put_nowait(data.get("params", {}))
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(CDPError("the browser closed the connection"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        command_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[command_id] = future
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        await self.ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        return answer.get("result", {})  # type: ignore[no-any-return]

    def listen(self, method: str, session_id: str | None) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.listeners.append((method, session_id, queue))
        return queue


@dataclass
class Page:
    session: Session
    session_id: str
    loads: asyncio.Queue[dict[str, Any]]

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.session.send(method, params, self.session_id)

    async def _next_load(self, timeout: float) -> None:
        await asyncio.wait_for(self.loads.get(), timeout)

    async def goto(self, url: str, timeout: float = 20.0) -> int:
        """Navigate and wait for the load; the main document's HTTP status."""
        statuses = self.session.listen("Network.responseReceived", self.session_id)
        self._drain()
        result = await self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        await self._next_load(timeout)
        return self._document_status(statuses)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def text(self) -> str:
        return str(await self.evaluate("document.body.innerText"))

    async def screenshot(self) -> bytes:
        """The viewport as PNG (to look at a page while writing a test)."""
        import base64

        shot = await self.call("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(shot["data"])

    async def fill(self, selector: str, value: str) -> None:
        await self.evaluate(
            f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}"
        )

    async def click_and_wait(self, selector: str, timeout: float = 20.0) -> int:
        """Click an element that navigates (a submit button) and wait for the new page; its
        HTTP status."""
        statuses = self.session.listen("Network.responseReceived", self.session_id)
        self._drain()
        clicked = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "if (!e) return false; e.click(); return true; })()"
        )
        if not clicked:
            raise CDPError(f"no element {selector} on the page")
        await self._next_load(timeout)
        return self._document_status(statuses)

    def _drain(self) -> None:
        while not self.loads.empty():
            self.loads.get_nowait()

    def _document_status(self, statuses: asyncio.Queue[dict[str, Any]]) -> int:
        status = 0
        while not statuses.empty():
            event = statuses.get_nowait()
            if event.get("type") == "Document":
                status = int(event["response"]["status"])
        with contextlib.suppress(ValueError):
            self.session.listeners = [x for x in self.session.listeners if x[2] is not statuses]
        return status


@dataclass
class Browser:
    session: Session

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        target = await self.session.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.session.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        session_id = attached["sessionId"]
        page = Page(
            self.session, session_id, self.session.listen("Page.loadEventFired", session_id)
        )
        await page.call("Page.enable")
        await page.call("Network.enable")
        await page.call("Runtime.enable")
        try:
            yield page
        finally:
            with contextlib.suppress(CDPError, ConnectionError):
                await self.session.send("Target.closeTarget", {"targetId": target["targetId"]})


async def _devtools_url(process: asyncio.subprocess.Process, timeout: float) -> str:
    assert process.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await process.stderr.readline()).decode(errors="replace")
            if not line:
                raise BrowserUnavailable(f"chromium exited: {''.join(seen)[-2000:]}")
            seen.append(line)
            if "DevTools listening on " in line:
                return line.split("DevTools listening on ", 1)[1].strip()


@contextlib.asynccontextmanager
async def chromium(timeout: float = 30.0) -> AsyncIterator[Browser]:
    """A headless Chromium on a throwaway profile, killed on exit."""
    binary = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="pressroom-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            "--headless",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--no-sandbox",  # tests run as root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        drain: asyncio.Task[None] | None = None
        try:
            url = await _devtools_url(process, timeout)
            drain = asyncio.create_task(_discard(process))
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(url, max_msg_size=0) as ws,
            ):
                session = Session(ws)
                session.start()
                yield Browser(session)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            if drain is not None:
                drain.cancel()


async def _discard(process: asyncio.subprocess.Process) -> None:
    """Keep reading stderr so a chatty browser never blocks on a full pipe."""
    assert process.stderr is not None
    while await process.stderr.read(65536):
        pass


if __name__ == "__main__":
    print(ensure_chromium())
