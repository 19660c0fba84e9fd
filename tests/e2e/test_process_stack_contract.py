"""The schemathesis gate against the stack as ``pressroom dev`` runs it: every service in
its own process behind the gateway, configured from the environment as in production, with
a brand onboarded through the API. The same checks as the contract test on the in-process
stack (``tests/contract/test_openapi_contract.py``): no 5xx, and every response one the
merged document describes."""

from __future__ import annotations

import os

import aiohttp
import pytest
from main_flow import EXTRA_ENV, Flow, onboard
from process_stack import process_stack
from schemathesis_gate import run_schemathesis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = int(os.environ.get("PRESSROOM_E2E_CONTRACT_EXAMPLES", "3"))


async def test_schemathesis_against_the_stack_of_processes(tmp_path) -> None:
    async with process_stack(EXTRA_ENV) as stack, aiohttp.ClientSession() as http:
        flow = Flow(stack, http)
        await onboard(flow)
        code, text = await run_schemathesis(
            stack.gateway, flow.token(flow.admin, "admin"), tmp_path, examples=EXAMPLES
        )
        if code != 0:
            logs = "\n".join(f"--- {name}\n{stack.tail(name, 2000)}" for name in stack.services)
            raise AssertionError(f"{text[-20000:]}\n{logs}")
