"""Gateway overhead: an authenticated GET straight to a service vs through the gateway.

    backend process: a kit-built service (JWT check, small JSON answer) on uvicorn
    gateway process: ``python -m pressroom_gateway`` routing /v1/posts to the backend
    load:            wrk (1 thread, 64 connections) on loopback, same run, same machine

    .venv/bin/python -m bench.gateway [--seconds 10] [--connections 64]

Needs ``wrk`` (Debian package ``wrk``); results go to bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pressroom_kit.auth import mint_token
from pressroom_kit.db import ensure_databases, replace_database
from pressroom_kit.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    free_port,
    terminate,
    wait_for_port,
)

SECRET = "bench-gateway-secret-bench-gateway-secret"
RESULTS = Path(__file__).parent / "results" / "gateway.json"


def run_backend(port: int) -> None:
    import uvicorn
    from litestar import get
    from pressroom_kit.auth import JWTSettings, JWTVerifier
    from pressroom_kit.http import create_service_app, requires_role

    @get("/v1/posts", guards=[requires_role("viewer")], sync_to_thread=False)
    def list_posts() -> dict[str, Any]:
        return {"items": [{"id": "p1", "status": "scheduled"}], "next_cursor": None}

    app = create_service_app(
        name="publishing",
        route_handlers=[list_posts],
        verifier=JWTVerifier(JWTSettings(secret=SECRET)),
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wrk(url: str, token: str, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def latency(pct: str) -> float:
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-gw-"))
    postgres = EmbeddedPostgres(folder / "pg")
    kafka = EmbeddedKafka()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        postgres.start()
        kafka.start()
        await ensure_databases(postgres.admin_dsn, ["pressroom_gateway"])
        backend_port, gateway_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.gateway", "backend", str(backend_port)], env=env
            )
        )
        backend = f"http://127.0.0.1:{backend_port}"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "pressroom_gateway"],
                env={
                    **env,
                    "PRESSROOM_GATEWAY_PORT": str(gateway_port),
                    "PRESSROOM_GATEWAY_DATABASE_URL": replace_database(
                        postgres.admin_dsn, "pressroom_gateway"
                    ),
                    "PRESSROOM_GATEWAY_ROUTES": json.dumps({"/v1/posts": backend}),
                    "PRESSROOM_GATEWAY_RATE_LIMIT_USER": "1000000000",
                    "PRESSROOM_GATEWAY_RATE_LIMIT_BRAND": "1000000000",
                    "PRESSROOM_GATEWAY_LOG_LEVEL": "WARNING",
                    "PRESSROOM_JWT_SECRET": SECRET,
                    "PRESSROOM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                },
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_port("127.0.0.1", backend_port, 30)
        wait_for_port("127.0.0.1", gateway_port, 30)
        token = mint_token(SECRET, sub="bench", role="viewer", brand_id=uuid.uuid4())
        targets = {
            "direct": f"{backend}/v1/posts",
            "gateway": f"http://127.0.0.1:{gateway_port}/v1/posts",
        }
        for url in targets.values():  # warm-up
            wrk(url, token, 2, args.connections)
        if args.profile:
            gateway_pid = processes[1].pid
            subprocess.Popen(
                [
                    args.profile,
                    "record",
                    "-o",
                    "/tmp/gw-prof.txt",
                    "-f",
                    "raw",
                    "-d",
                    str(int(args.seconds)),
                    "-p",
                    str(gateway_pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        results: dict[str, Any] = {"connections": args.connections, "seconds": args.seconds}
        for name, url in sorted(targets.items(), reverse=bool(args.profile)):
            results[name] = wrk(url, token, args.seconds, args.connections)
            print(name, results[name], flush=True)
        for name, url in targets.items():
            results[f"{name}_1_connection"] = wrk(url, token, args.seconds / 2, 1)
            print(name, "1 connection", results[f"{name}_1_connection"], flush=True)
        results["added_p50_ms_1_connection"] = round(
            results["gateway_1_connection"]["p50_ms"] - results["direct_1_connection"]["p50_ms"], 3
        )
        direct, gateway = results["direct"], results["gateway"]
        results["gateway_share_of_direct_throughput"] = round(
            gateway["requests_per_s"] / direct["requests_per_s"], 3
        )
        results["added_p50_ms"] = round(gateway["p50_ms"] - direct["p50_ms"], 2)
        return results
    finally:
        for process in processes:
            terminate(process, timeout=15)
        kafka.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway")
    sub = parser.add_subparsers(dest="role")
    backend = sub.add_parser("backend")
    backend.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", help="path to py-spy: profile the gateway during the run")
    args = parser.parse_args()
    if args.role == "backend":
        run_backend(args.port)
        return
    results = asyncio.run(bench(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
