"""Schemathesis as a gate: ``st run`` against a running stack's merged OpenAPI document,
every check on, a bounded number of cases per operation, in a subprocess whose report is
kept. Used by the contract tests (the in-process stack) and by the end-to-end tests (the
stack of processes as ``pressroom dev`` runs it)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")


async def run_schemathesis(
    base: str, token: str, workdir: Path, *, examples: int, timeout_s: float = 240
) -> tuple[int, str]:
    """Run the gate against ``base`` (the gateway) as ``token``; (exit code, report)."""
    report = workdir / "schemathesis.txt"
    st = Path(sys.executable).with_name("st")
    with report.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(st),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base}/schema/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--seed",
            "1",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {token}",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
            cwd=workdir,  # nothing of schemathesis' is written into the checkout
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout=timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            code = -1
    return code, report.read_text(errors="replace")
