"""The main flow end to end on a stack of processes as ``pressroom dev`` runs it (see
``main_flow``), once as it should go, and once while every service is SIGKILLed at a random
moment and restarted, the broker is frozen for a minute and PostgreSQL restarts. Both
times: the flow completes, nothing is lost and nothing happens twice — one platform post per
platform, one webhook delivery per event, one usage entry — and ``/readyz`` is red while a
part is down and green after."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from typing import Any

import aiohttp
import pytest
from main_flow import EXTRA_ENV, LIFECYCLE, PLATFORMS, Flow, lifecycle_deliveries, run_flow
from pressroom_publishing.posts.commands import client_reference
from pressroom_webhook.signing import verify as verify_signature
from process_stack import ProcessStack, dump, process_stack
from sandbox_testkit import SandboxClient
from webhook_testkit import Receiver, receiver

pytestmark = pytest.mark.e2e

BROKER_PAUSE_S = float(os.environ.get("PRESSROOM_E2E_BROKER_PAUSE_S", "60"))


async def check_once(
    stack: ProcessStack, hooks: Receiver, flow: Flow, outcome: dict[str, Any]
) -> None:
    post_id = outcome["post_id"]
    # One platform post per platform, sent with the post's idempotency key.
    control = SandboxClient(stack.sandbox_url, flow.http)
    sent = [
        p
        for p in await control.posts()
        if post_id in json.dumps(p)
        or any(
            p.get("idempotency_key") == client_reference(post_id, platform)
            for platform in PLATFORMS
        )
    ]
    keys = Counter(p["idempotency_key"] for p in sent)
    assert keys == Counter({client_reference(post_id, p): 1 for p in PLATFORMS}), dump(sent)

    # Every lifecycle event of the post reached the partner once, signed.
    async def all_delivered() -> Any:
        counted = lifecycle_deliveries(hooks.requests, post_id)
        types = Counter(key.split(" ", 1)[0] for key in counted)
        return (
            counted
            if set(types) >= LIFECYCLE and types["publishing.post.published.v1"] == 2
            else None
        )

    from main_flow import eventually

    counted = await eventually(all_delivered, "every lifecycle event is delivered", 120)
    await asyncio.sleep(2)  # a duplicate would come now, not later: retries are seconds apart
    counted = lifecycle_deliveries(hooks.requests, post_id)
    assert all(n == 1 for n in counted.values()), dump(counted)
    for request in hooks.requests:
        headers = {name.lower(): value for name, value in request["headers"].items()}
        verify_signature(flow.seen["webhook_secret"], headers, request["body"])

    # One usage entry per action of the post.
    status, usage = await flow.call(
        "GET", f"/v1/media/{outcome['asset_id']}/usage", flow.author, "viewer"
    )
    assert status == 200, usage
    entries = [u for u in usage["items"] if u["used_in"] == f"post:{post_id}"]
    actions = Counter(u["action"] for u in entries)
    wanted = {"scheduled", *(f"published:{p}" for p in PLATFORMS)}
    assert actions == Counter(dict.fromkeys(wanted, 1)), dump(usage)


async def test_the_main_flow_by_a_manager_and_by_a_client() -> None:
    async with (
        process_stack(EXTRA_ENV) as stack,
        receiver() as hooks,
        aiohttp.ClientSession() as http,
    ):
        for by_link in (False, True):
            hooks.requests.clear()
            flow = Flow(stack, http)
            try:
                outcome = await run_flow(flow, hooks.url, by_review_link=by_link, publish_in_s=8)
            except AssertionError as failure:
                raise AssertionError(f"{failure}\n{explain(stack, flow)}") from None
            await check_once(stack, hooks, flow, outcome)


def explain(stack: ProcessStack, flow: Flow) -> str:
    """What a failed flow leaves to read: what it saw last and each service's log tail."""
    logs = "\n".join(f"--- {name}\n{stack.tail(name, 3000)}" for name in stack.services)
    return f"seen: {dump(flow.seen)}\n{logs}"


async def red_then_green(stack: ProcessStack, break_it: Any, mend_it: Any, watch: str) -> None:
    """``/readyz`` of ``watch`` is red while a part is down and green once it is back."""
    await break_it()

    async def red() -> bool:
        return await stack.status(watch, "/readyz") != 200

    from main_flow import eventually

    await eventually(red, f"{watch} /readyz turns red", 60)
    await mend_it()
    await stack.wait_ready(within_s=180)


async def chaos(stack: ProcessStack, rng: random.Random) -> list[str]:
    done: list[str] = []
    services = [name for name in stack.services if name != "gateway"]
    rng.shuffle(services)
    for name in [*services, "gateway"]:
        await asyncio.sleep(rng.uniform(0.5, 4.0))
        if name == "gateway":
            await stack.restart(name)
        else:
            await red_then_green(
                stack, lambda n=name: stack.kill(n), lambda n=name: stack.start(n), "gateway"
            )
        done.append(f"killed {name}")

    async def pause() -> None:
        stack.pause_broker()

    async def resume() -> None:
        await asyncio.sleep(max(0.0, BROKER_PAUSE_S - 10))
        stack.resume_broker()

    await red_then_green(stack, pause, resume, "publishing")
    done.append(f"froze the broker {BROKER_PAUSE_S:.0f} s")

    async def stop_pg() -> None:
        await asyncio.to_thread(stack.postgres.stop)

    async def start_pg() -> None:
        await asyncio.to_thread(stack.postgres.start)

    await red_then_green(stack, stop_pg, start_pg, "approval")
    done.append("restarted PostgreSQL")
    return done


@pytest.mark.slow
async def test_the_main_flow_survives_kills_a_frozen_broker_and_a_database_restart() -> None:
    rng = random.Random(int(os.environ.get("PRESSROOM_E2E_SEED", "7")))
    async with (
        process_stack(EXTRA_ENV) as stack,
        receiver() as hooks,
        aiohttp.ClientSession() as http,
    ):
        flow = Flow(stack, http)
        faults = asyncio.create_task(chaos(stack, rng))
        try:
            outcome = await run_flow(flow, hooks.url, publish_in_s=20)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{explain(stack, flow)}") from None
        injected = await faults
        assert len(injected) == len(stack.services) + 2, injected
        await stack.wait_ready()
        await check_once(stack, hooks, flow, outcome)
