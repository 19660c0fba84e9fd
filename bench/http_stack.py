"""Choosing the gateway's HTTP pieces by measurement, on this machine.

1. Upstream client for a proxy hop: ``httpx.AsyncClient`` vs ``aiohttp.ClientSession``
   (a minimal Litestar proxy route forwarding GET to a minimal backend).
2. ASGI server for a plain Litestar app: uvicorn vs granian.

    .venv/bin/python -m bench.http_stack [--seconds 8]

Needs ``wrk``; results go to bench/results/http_stack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from litestar import Litestar, Response, get
from pressroom_kit.embedded import free_port, terminate, wait_for_port

from bench.gateway import wrk

RESULTS = Path(__file__).parent / "results" / "http_stack.json"


def plain_app() -> Any:
    @get("/hello", sync_to_thread=False)
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return Litestar([hello])


def proxy_app(client: str, upstream: str) -> Any:
    state: dict[str, Any] = {}

    async def startup() -> None:
        if client == "httpx":
            import logging

            import httpx

            logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO

            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            state["client"] = httpx.AsyncClient(limits=limits)
        else:
            import aiohttp

            state["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    @get("/hello")
    async def forward() -> Response[bytes]:
        if client == "httpx":
            answer = await state["client"].get(f"{upstream}/hello")
            return Response(
                answer.content, status_code=answer.status_code, media_type="application/json"
            )
        async with state["client"].get(f"{upstream}/hello") as answer:
            return Response(
                await answer.read(), status_code=answer.status, media_type="application/json"
            )

    return Litestar([forward], on_startup=[startup])


def serve(server: str, app_spec: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    if server == "granian":
        command = [
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--factory",
            "--no-ws",
            "--log-level",
            "warning",
            app_spec,
        ]
        command[0] = str(Path(sys.executable).parent / "granian")
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            app_spec,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 30)
    time.sleep(0.5)
    return process


def httpx_proxy() -> Any:
    return proxy_app("httpx", os.environ["UPSTREAM"])


def aiohttp_proxy() -> Any:
    return proxy_app("aiohttp", os.environ["UPSTREAM"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_stack")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    results: dict[str, Any] = {"connections": args.connections}
    for server in ("uvicorn", "granian"):
        port = free_port()
        process = serve(server, "bench.http_stack:plain_app", port)
        try:
            results[f"plain litestar on {server}"] = wrk(
                f"http://127.0.0.1:{port}/hello", "-", args.seconds, args.connections
            )
        finally:
            terminate(process)
    upstream_port = free_port()
    upstream = serve("uvicorn", "bench.http_stack:plain_app", upstream_port)
    os.environ["UPSTREAM"] = f"http://127.0.0.1:{upstream_port}"
    try:
        for client in ("httpx", "aiohttp"):
            port = free_port()
            process = serve("uvicorn", f"bench.http_stack:{client}_proxy", port)
            try:
                results[f"proxy hop with {client}"] = wrk(
                    f"http://127.0.0.1:{port}/hello", "-", args.seconds, args.connections
                )
            finally:
                terminate(process)
    finally:
        terminate(upstream)
    for name, figures in results.items():
        print(f"{name}: {figures}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
