"""What an idle local stack costs: CPU of every process of ``pressroom dev`` with no traffic.

Starts ``pressroom dev`` (embedded PostgreSQL, the Tansu broker, every service and the
gateway) on free ports in a throwaway data directory, waits until every service answers
``/readyz``, lets it settle, then samples ``utime + stime`` of every process of the stack
(from ``/proc/<pid>/stat`` through psutil, children included: PostgreSQL's backends, the
broker) over ``--seconds`` and prints each one's share of one core and the total.

    python -m bench.idle                 # 20 s, results in bench/results/idle.json
    python -m bench.idle --seconds 60 --settle 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pressroom_kit.embedded import free_port
from pressroom_kit.service import discover_services

RESULTS = Path(__file__).parent / "results" / "idle.json"


def _cpu_seconds(process: psutil.Process) -> float:
    # A backend that exits during the window shows up in its parent's children times.
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def _stack_processes(root: psutil.Process) -> dict[int, psutil.Process]:
    found = {root.pid: root}
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in root.children(recursive=True):
            found[child.pid] = child
    return found


def _label(process: psutil.Process) -> str:
    """A readable name: the service a Python child runs, or the server binary."""
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return "?"
    if "-m" in cmdline:
        module = cmdline[cmdline.index("-m") + 1]
        return module.removeprefix("pressroom_")
    name = Path(cmdline[0]).name if cmdline else process.name()
    if "postgres" in name:
        return "postgresql"
    if "broker" in cmdline or "tansu" in name:
        return "broker"
    if "pressroom" in " ".join(cmdline[:2]):
        return "pressroom dev"
    return name


async def _wait_ready(urls: list[str], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    pending = set(urls)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"not ready within {within_s:.0f} s: {sorted(pending)}")
            for url in list(pending):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url) as response:
                        if response.status == 200:
                            pending.discard(url)
            await asyncio.sleep(0.5)


async def measure(seconds: float, settle: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pressroom-idle-"))
    services = discover_services()
    ports = {spec.name: free_port() for spec in services}
    env = {
        **os.environ,
        "PRESSROOM_DATA_DIR": str(folder),
        "PRESSROOM_DEV_POSTGRES_PORT": str(free_port()),
        "PRESSROOM_DEV_KAFKA_PORT": str(free_port()),
        **{f"{spec.env_prefix}PORT": str(ports[spec.name]) for spec in services},
    }
    env.pop("PRESSROOM_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("PRESSROOM_DATABASE_URL", None)
    cli = Path(sys.executable).with_name("pressroom")
    process = await asyncio.create_subprocess_exec(
        str(cli),
        "dev",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        urls = [f"http://127.0.0.1:{port}/readyz" for port in ports.values()]
        await _wait_ready(urls, within_s=120)
        await asyncio.sleep(settle)
        root = psutil.Process(process.pid)
        procs = _stack_processes(root)
        before = {pid: _cpu_seconds(p) for pid, p in procs.items()}
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        labels = {pid: _label(p) for pid, p in procs.items()}
        per_name: dict[str, float] = {}
        for pid, proc in _stack_processes(root).items():
            with contextlib.suppress(psutil.NoSuchProcess):
                used = _cpu_seconds(proc) - before.get(pid, 0.0)
                name = labels.get(pid) or _label(proc)
                per_name[name] = per_name.get(name, 0.0) + used
        return {
            "seconds": round(elapsed, 1),
            "percent_of_one_core": {
                name: round(100 * used / elapsed, 2) for name, used in sorted(per_name.items())
            },
            "total_percent_of_one_core": round(100 * sum(per_name.values()) / elapsed, 2),
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0, help="wait after ready")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.seconds, args.settle))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    for name, percent in result["percent_of_one_core"].items():
        print(f"{name:<16} {percent:6.2f} % of one core")
    print(f"{'total':<16} {result['total_percent_of_one_core']:6.2f} % over {result['seconds']} s")
    if not args.no_save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
