"""The AsyncAPI document FastStream generates for the partner example, set beside ours
(contracts/asyncapi.json, served bundled by the gateway): they describe the same channel
from its two ends, with the same Kafka bindings, and FastStream's own AsyncAPI 3.0 models
read our document. docs/integrate.md says what was reconciled."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from faststream.specification.asyncapi.v3_0_0.schema.schema import ApplicationSchema
from pressroom_contracts import EVENT_TYPES
from pressroom_contracts.__main__ import asyncapi_document, bundled_asyncapi

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partner_consumer.py"


@pytest.fixture(scope="module")
def theirs() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("partner_consumer", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("partner_consumer", module)
    spec.loader.exec_module(module)
    document: dict[str, Any] = json.loads(module.app.schema.to_specification().to_json())
    return document


def test_both_describe_the_topic_from_its_two_ends(theirs):
    ours = asyncapi_document()
    assert theirs["asyncapi"] == ours["asyncapi"] == "3.0.0"
    (their_op,) = theirs["operations"].values()
    their_channel = theirs["channels"][their_op["channel"]["$ref"].rsplit("/", 1)[-1]]
    assert their_op["action"] == "receive"
    our_channels = {c["address"]: (k, c) for k, c in ours["channels"].items()}
    key, our_channel = our_channels[their_channel["address"]]
    (our_op,) = [o for o in ours["operations"].values() if o["channel"]["$ref"].endswith(key)]
    assert our_op["action"] == "send"
    # The same Kafka channel binding, in the same binding version.
    assert their_channel["bindings"]["kafka"] == our_channel["bindings"]["kafka"]
    # Both name a Kafka server; ours leaves the address to the deployment.
    assert {s["protocol"] for s in theirs["servers"].values()} == {"kafka"}
    assert {s["protocol"] for s in ours["servers"].values()} == {"kafka"}  # type: ignore[attr-defined]
    assert theirs["defaultContentType"] == ours["defaultContentType"]


def test_faststream_reads_our_bundled_document():
    document = bundled_asyncapi()
    parsed = ApplicationSchema.model_validate(document)
    assert {c.address for c in parsed.channels.values()} == {  # type: ignore[union-attr]
        c["address"] for c in document["channels"].values()
    }
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for ref in refs:
        assert ref.startswith("#/"), f"{ref}: not self-contained"
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part]
    messages = document["components"]["messages"]
    assert {m["name"] for m in messages.values()} == set(EVENT_TYPES)
