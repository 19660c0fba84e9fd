from __future__ import annotations

import json
import uuid

import pytest
from pressroom_contracts import EVENT_TYPES, TOPICS, CloudEvent, dlq_topic, payload_model
from pressroom_contracts.__main__ import write_schemas
from pressroom_contracts.topics import topic_for_type

pytestmark = pytest.mark.unit


def test_catalog_names_follow_the_convention():
    assert "brand.created.v1" in EVENT_TYPES
    for name in EVENT_TYPES:
        assert topic_for_type(name) in TOPICS
    assert dlq_topic("pressroom.media.v1") == "pressroom.media.v1.dlq"


def test_payload_parses_from_the_envelope():
    brand = uuid.uuid4()
    event = CloudEvent(
        source="/gateway",
        type="brand.created.v1",
        brandid=brand,
        data={
            "brand_id": str(brand),
            "name": "Acme",
            "timezone": "Europe/Paris",
            "created_by": "u1",
        },
    )
    payload = event.payload()
    assert isinstance(payload, payload_model("brand.created.v1"))
    with pytest.raises(KeyError):
        CloudEvent(source="/x", type="nope.v1").payload()


def test_schemas_are_written_and_match_the_committed_ones(tmp_path):
    from pathlib import Path

    written = write_schemas(tmp_path)
    names = {p.name for p in written}
    assert "brand.created.v1.json" in names and "cloudevent.json" in names
    committed = Path(__file__).resolve().parents[1] / "schemas"
    for path in written:
        assert (committed / path.name).exists(), f"run `make schemas`: {path.name} is missing"
        assert json.loads((committed / path.name).read_text()) == json.loads(path.read_text()), (
            f"run `make schemas`: {path.name} is out of date"
        )


def test_asyncapi_lists_every_topic_and_type_and_is_committed(tmp_path):
    from pathlib import Path

    from pressroom_contracts.__main__ import asyncapi_document, write_asyncapi

    document = asyncapi_document()
    addresses = {c["address"] for c in document["channels"].values()}
    assert set(TOPICS) <= addresses
    assert {dlq_topic(t) for t in TOPICS} <= addresses
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == set(EVENT_TYPES)
    committed = Path(__file__).resolve().parents[1] / "asyncapi.json"
    fresh = write_asyncapi(tmp_path / "asyncapi.json")
    assert json.loads(committed.read_text()) == json.loads(fresh.read_text()), (
        "run `make schemas`: asyncapi.json is out of date"
    )
