"""The sandbox platform: a fake social network over real HTTP, for development and tests.

``create_sandbox_app`` is its ASGI app, ``SandboxState`` its (in-memory) memory,
``sandbox_mount`` the route handler that mounts it in the publishing service under
``/sandbox-platform``; ``python -m pressroom_publishing.sandbox --port N`` runs it alone.
"""

from pressroom_publishing.sandbox.mount import sandbox_mount
from pressroom_publishing.sandbox.server import create_sandbox_app
from pressroom_publishing.sandbox.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SandboxAccount,
    SandboxState,
    Settings,
)

MOUNT_PATH = "/sandbox-platform"

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "MOUNT_PATH",
    "SandboxAccount",
    "SandboxState",
    "Settings",
    "create_sandbox_app",
    "sandbox_mount",
]
