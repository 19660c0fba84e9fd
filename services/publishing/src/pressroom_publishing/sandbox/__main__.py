"""``python -m pressroom_publishing.sandbox --port 8110``: the sandbox platform on its own.

Served under ``--prefix`` (default ``/sandbox-platform``, as in the publishing service), so
``PRESSROOM_PUBLISHING_SANDBOX_API_URL=http://127.0.0.1:8110/sandbox-platform`` points the
publishing service at it.
"""

from __future__ import annotations

import argparse

import uvicorn
from litestar import Litestar

from pressroom_publishing.sandbox import MOUNT_PATH, sandbox_mount
from pressroom_publishing.sandbox.server import create_sandbox_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The Pressroom sandbox platform")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8110)
    parser.add_argument("--prefix", default=MOUNT_PATH, help="path prefix ('' for none)")
    parser.add_argument("--public-url", default=None, help="base of the post URLs it answers")
    parser.add_argument("--no-control", action="store_true", help="leave /_control out")
    args = parser.parse_args(argv)
    control = not args.no_control
    if args.prefix.strip("/"):
        app = Litestar(
            route_handlers=[
                sandbox_mount(args.prefix, public_url=args.public_url, control=control)
            ],
            openapi_config=None,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    else:
        bare = create_sandbox_app(public_url=args.public_url, control=control)
        uvicorn.run(bare, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
