"""Schemathesis, a tool nobody on the project wrote, against the merged document of the
running gateway and services: every check on, every operation, a bounded number of cases.
It fails on any 5xx and on any response the document does not describe."""

from __future__ import annotations

import os

import pytest
from contract_stack import running_stack
from schemathesis_gate import run_schemathesis

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
]

EXAMPLES = int(os.environ.get("PRESSROOM_CONTRACT_EXAMPLES", "5"))


async def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
    fresh_db, kafka_bootstrap, topics, tmp_path
):
    async with running_stack(fresh_db, kafka_bootstrap, tmp_path) as stack:
        code, text = await run_schemathesis(
            stack.base, stack.token("admin"), tmp_path, examples=EXAMPLES
        )
        assert code == 0, text[-20000:]
