"""The gateway serves the event catalog's AsyncAPI document beside the OpenAPI one, public
and self-contained (every ``$ref`` inside it), so partners need only the gateway's URL."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_testkit import call
from pressroom_contracts import EVENT_TYPES, TOPICS
from pressroom_contracts.__main__ import bundled_asyncapi

pytestmark = pytest.mark.integration


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for k, v in node.items() if k != "$ref"))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


async def test_the_asyncapi_document_is_public_and_self_contained(gateway, http):
    # No token: the catalog is public, like the OpenAPI document.
    status, headers, document = await call(http, "GET", f"{gateway}/schema/asyncapi.json")
    assert status == 200, document
    assert headers["Content-Type"].startswith("application/json")
    assert document == bundled_asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert {m["name"] for m in document["components"]["messages"].values()} == set(EVENT_TYPES)
    assert set(TOPICS) <= {c["address"] for c in document["channels"].values()}
    for ref in refs(document):
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part]  # resolves, or KeyError

    # A schema that names a payload also lists it with its nested definitions.
    schemas = document["components"]["schemas"]
    collected = document["components"]["messages"]["publishing_metrics_collected_v1"]
    payload = schemas[collected["payload"]["$ref"].rsplit("/", 1)[-1]]
    assert any(ref.startswith("#/components/schemas/") for ref in refs(payload))

    # The OpenAPI document stays where it was; the AsyncAPI one is not an HTTP operation.
    status, _, openapi = await call(http, "GET", f"{gateway}/schema/openapi.json")
    assert status == 200
    assert "/schema/asyncapi.json" not in openapi["paths"]


async def test_the_asyncapi_document_refuses_other_methods(gateway, http):
    status, headers, body = await call(http, "POST", f"{gateway}/schema/asyncapi.json")
    assert status == 405
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == 405
