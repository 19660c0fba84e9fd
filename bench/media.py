"""Media uploads through the gateway: 1 MB JPEGs with full processing, and one large file.

    media process:   ``python -m pressroom_media`` (local storage in a temp folder)
    gateway process: ``python -m pressroom_gateway`` routing /v1/media and /media-files
    client:          aiohttp in this process, N concurrent uploads of distinct ~1 MB JPEGs,
                     then one large padded MP4 (streamed from disk) through the gateway
                     and straight to the service, sampling both servers' RSS

    .venv/bin/python -m bench.media [--jpegs 200] [--concurrency 8] [--large-mb 1024]

Results go to bench/results/media.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pressroom_kit.auth import mint_token
from pressroom_kit.db import ensure_databases, replace_database
from pressroom_kit.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    free_port,
    terminate,
    wait_for_port,
)

SECRET = "bench-media-secret-bench-media-secret"
RESULTS = Path(__file__).parent / "results" / "media.json"


def photo(seed: int, width: int = 1800, height: int = 1350) -> bytes:
    """A photo-like JPEG of about 1 MB: gradients plus noise, distinct per seed."""
    from PIL import Image, ImageFilter

    noise = Image.frombytes("RGB", (width // 2, height // 2), os.urandom(width * height * 3 // 4))
    noise = noise.filter(ImageFilter.GaussianBlur(0.4)).resize((width, height))
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    tint = Image.new("RGB", (width, height), (seed * 37 % 256, seed * 91 % 256, 128))
    image = Image.blend(Image.blend(noise, gradient, 0.4), tint, 0.3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=91)
    return buffer.getvalue()


class RssSampler:
    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.base = {name: p.memory_info().rss for name, p in self.processes.items()}
        self.peak = dict(self.base)
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            for name in self.processes:
                self.peak[name] = max(self.peak[name], self.processes[name].memory_info().rss)
            await asyncio.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self.task = asyncio.get_running_loop().create_task(self.run())
        return self

    def __exit__(self, *_: Any) -> None:
        assert self.task is not None
        self.task.cancel()

    def growth_mb(self) -> dict[str, float]:
        return {n: round((self.peak[n] - self.base[n]) / 2**20, 1) for n in self.processes}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time so far of each server, its worker processes apart, and of this client."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        parent = psutil.Process(pid)
        times = parent.cpu_times()
        out[name] = times.user + times.system
        children = parent.children(recursive=True)
        if children:
            out[f"{name}_workers"] = sum(
                c.cpu_times().user + c.cpu_times().system for c in children
            )
    me = psutil.Process().cpu_times()
    out["client"] = me.user + me.system
    return out


async def upload_jpegs(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    files: list[bytes],
    concurrency: int,
    pids: dict[str, int],
) -> dict[str, Any]:
    queue = list(enumerate(files))
    cpu_before = cpu_seconds(pids)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        while queue:
            index, data = queue.pop()
            body = aiohttp.FormData()
            body.add_field("file", data, filename=f"photo-{index}.jpg", content_type="image/jpeg")
            started = time.perf_counter()
            async with http.post(
                f"{base}/v1/media", data=body, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(pids)
    total = sum(len(f) for f in files)
    latencies.sort()
    cpu_ms = {
        name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / len(files) * 1000, 1)
        for name in cpu_after
    }
    return {
        "uploads": len(files),
        "concurrency": concurrency,
        "statuses": statuses,
        "mean_file_mb": round(total / len(files) / 2**20, 2),
        "uploads_per_s": round(len(files) / elapsed, 1),
        "mb_per_s": round(total / elapsed / 2**20, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "cpu_ms_per_upload": cpu_ms,
        "machine_cpu_share_used": round(
            sum(cpu_ms.values()) / 1000 * len(files) / elapsed / (os.cpu_count() or 1), 2
        ),
    }


async def upload_large(
    http: aiohttp.ClientSession, base: str, token: str, path: Path, sampler_pids: dict[str, int]
) -> dict[str, Any]:
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    with RssSampler(sampler_pids) as sampler:
        started = time.perf_counter()
        with open(path, "rb") as handle:  # noqa: ASYNC230 (aiohttp streams it)
            body = aiohttp.FormData()
            body.add_field("file", handle, filename="large.mp4", content_type="video/mp4")
            async with http.post(
                f"{base}/v1/media", data=body, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                answer = await response.json()
                status = response.status
        elapsed = time.perf_counter() - started
    return {
        "status": status,
        "duplicate": answer.get("duplicate"),
        "size_mb": round(size / 2**20),
        "seconds": round(elapsed, 2),
        "mb_per_s": round(size / elapsed / 2**20, 1),
        "rss_growth_mb": sampler.growth_mb(),
    }


async def upload_large_curl(
    base: str, token: str, path: Path, sampler_pids: dict[str, int]
) -> dict[str, Any]:
    """The same upload sent by curl: a client that costs little CPU, so the figure is the
    servers' streaming speed rather than aiohttp's in this process."""
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    command = [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
        "-H", f"Authorization: Bearer {token}", "-H", "Expect:",
        "-F", f"file=@{path};type=video/mp4", f"{base}/v1/media",
    ]  # fmt: skip
    with RssSampler(sampler_pids) as sampler:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        out, _ = await process.communicate()
        elapsed = time.perf_counter() - started
    return {
        "client": "curl",
        "status": int(out or 0),
        "size_mb": round(size / 2**20),
        "seconds": round(elapsed, 2),
        "mb_per_s": round(size / elapsed / 2**20, 1),
        "rss_growth_mb": sampler.growth_mb(),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parents[1] / "services" / "media" / "tests"))
    from media_samples import write_padded_mp4

    folder = Path(tempfile.mkdtemp(prefix="pressroom-bench-media-"))
    postgres = EmbeddedPostgres(folder / "pg")
    kafka = EmbeddedKafka()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        postgres.start()
        kafka.start()
        await ensure_databases(postgres.admin_dsn, ["pressroom_gateway", "pressroom_media"])
        media_port, gateway_port = free_port(), free_port()
        media = f"http://127.0.0.1:{media_port}"
        common = {
            **os.environ,
            "PRESSROOM_JWT_SECRET": SECRET,
            "PRESSROOM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        }
        processes["media"] = subprocess.Popen(
            [sys.executable, "-m", "pressroom_media"],
            env={
                **common,
                "PRESSROOM_MEDIA_PORT": str(media_port),
                "PRESSROOM_MEDIA_DATABASE_URL": replace_database(
                    postgres.admin_dsn, "pressroom_media"
                ),
                "PRESSROOM_DATA_DIR": str(folder / "data"),
                "PRESSROOM_MEDIA_DEFAULT_QUOTA_BYTES": str(100 * 2**30),
                "PRESSROOM_MEDIA_PROCESSING_WORKERS": str(args.workers),
                "PRESSROOM_MEDIA_LOG_LEVEL": "WARNING",
            },
            stdout=subprocess.DEVNULL,
        )
        processes["gateway"] = subprocess.Popen(
            [sys.executable, "-m", "pressroom_gateway"],
            env={
                **common,
                "PRESSROOM_GATEWAY_PORT": str(gateway_port),
                "PRESSROOM_GATEWAY_DATABASE_URL": replace_database(
                    postgres.admin_dsn, "pressroom_gateway"
                ),
                "PRESSROOM_GATEWAY_ROUTES": json.dumps({"/v1/media": media, "/media-files": media}),
                "PRESSROOM_GATEWAY_RATE_LIMIT_USER": "1000000000",
                "PRESSROOM_GATEWAY_RATE_LIMIT_BRAND": "1000000000",
                "PRESSROOM_GATEWAY_LOG_LEVEL": "WARNING",
            },
            stdout=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", media_port, 60)
        wait_for_port("127.0.0.1", gateway_port, 60)
        gateway = f"http://127.0.0.1:{gateway_port}"
        print("making test files", flush=True)
        jpegs = [photo(i) for i in range(args.jpegs + 8)]
        print(f"{len(jpegs)} JPEGs, {sum(map(len, jpegs)) / len(jpegs) / 2**20:.2f} MB each")
        large = folder / "large.mp4"
        write_padded_mp4(str(large), args.large_mb * 2**20)
        pids = {name: p.pid for name, p in processes.items()}
        results: dict[str, Any] = {"processing_workers": args.workers, "cpus": os.cpu_count()}
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            token = mint_token(SECRET, sub="bench", role="manager", brand_id=uuid.uuid4())
            await upload_jpegs(http, gateway, token, jpegs[-8:], 4, pids)  # warm the pool
            if args.jpegs:
                results["jpeg_1mb_via_gateway"] = await upload_jpegs(
                    http, gateway, token, jpegs[: args.jpegs], args.concurrency, pids
                )
                print(results["jpeg_1mb_via_gateway"], flush=True)
            for name, base in (("large_via_gateway", gateway), ("large_direct", media)):
                brand_token = mint_token(SECRET, sub="bench", role="manager", brand_id=uuid.uuid4())
                results[name] = await upload_large(http, base, brand_token, large, pids)
                print(name, results[name], flush=True)
                if shutil.which("curl"):
                    brand_token = mint_token(
                        SECRET, sub="bench", role="manager", brand_id=uuid.uuid4()
                    )
                    results[f"{name}_curl"] = await upload_large_curl(
                        base, brand_token, large, pids
                    )
                    print(f"{name}_curl", results[f"{name}_curl"], flush=True)
        return results
    finally:
        for process in processes.values():
            terminate(process, timeout=15)
        kafka.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.media")
    parser.add_argument("--jpegs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="processing worker processes")
    parser.add_argument("--large-mb", type=int, default=1024)
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
