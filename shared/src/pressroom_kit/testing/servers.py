"""Serve an ASGI app on a real loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from pressroom_kit.embedded import free_port
from pressroom_kit.settings import ServiceSettings


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, port: int = 0, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on ``127.0.0.1``; yield its base URL; shut it down after.
    ``options`` go to ``uvicorn.Config`` (say ``proxy_headers=False``, as the gateway runs).
    Idle connections stay open as long as a service's (``http_keep_alive_s``), longer than
    any client in the tests keeps one for reuse."""
    port = port or free_port()
    options.setdefault(
        "timeout_keep_alive", ServiceSettings.model_fields["http_keep_alive_s"].default
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped while starting")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
