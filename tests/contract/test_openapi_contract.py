"""Schemathesis, a tool nobody on the project wrote, against the merged document of the
running gateway and services: every check on, every operation, a bounded number of cases.
It fails on any 5xx and on any response the document does not describe."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from contract_stack import running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
]
CONFIG = Path(__file__).with_name("schemathesis.toml")

EXAMPLES = int(os.environ.get("PRESSROOM_CONTRACT_EXAMPLES", "5"))


async def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    async with running_stack(fresh_db, kafka_bootstrap, tmp_path) as stack:
        report = tmp_path / "schemathesis.txt"
        st = Path(sys.executable).with_name("st")
        with report.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                str(st),
                "--config-file",
                str(CONFIG),
                "run",
                f"{stack.base}/schema/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                "1",
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "10",
                "--header",
                f"Authorization: Bearer {stack.token('admin')}",
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
                cwd=tmp_path,  # nothing of schemathesis' is written into the checkout
            )
            code = await asyncio.wait_for(process.wait(), timeout=240)
        text = report.read_text(errors="replace")
        assert code == 0, text[-20000:]
