"""The sandbox inside another Litestar app (the publishing service) under one path.

The mount is public: a browser opens the consent page without a Pressroom token, and the
adapter calls the token and API endpoints server to server with the sandbox's own tokens.
So it is left out of the JWT guard (``exclude_from_auth``), the brand guard (``public``)
and the OpenAPI document. The publishing app adds it only while ``sandbox_enabled`` is
true: that is what guards ``/_control`` too (a development and test tool).
"""

from __future__ import annotations

from typing import Any

from litestar import asgi
from litestar.handlers.asgi_handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from pressroom_publishing.sandbox.server import create_sandbox_app
from pressroom_publishing.sandbox.state import Clock, SandboxState


def sandbox_mount(
    path: str = "/sandbox-platform",
    state: SandboxState | None = None,
    *,
    clock: Clock | None = None,
    public_url: str | None = None,
    control: bool = True,
) -> ASGIRouteHandler:
    """A mount of the sandbox app at ``path`` for ``route_handlers``."""
    path = "/" + path.strip("/")
    app = create_sandbox_app(state, clock=clock, public_url=public_url, control=control)

    @asgi(
        path,
        is_mount=True,
        copy_scope=True,
        include_in_schema=False,
        opt={"exclude_from_auth": True, "public": True},
    )
    async def sandbox_platform(scope: Scope, receive: Receive, send: Send) -> None:
        # The inner app gets its own connection state and knows its prefix, so that the
        # post URLs it answers with point back under ``path``.
        root = str(scope.get("root_path", "")).rstrip("/") + path
        inner: dict[str, Any] = {**scope, "root_path": root, "app_root_path": root, "state": {}}
        await app(inner, receive, send)  # type: ignore[arg-type]

    return sandbox_platform
