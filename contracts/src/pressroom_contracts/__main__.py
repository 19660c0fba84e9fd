"""``python -m pressroom_contracts schemas [--out DIR]`` writes one JSON Schema per event type
and the AsyncAPI 3.0 document of the topics (``asyncapi.json`` beside the schemas folder)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pressroom_contracts.envelope import CloudEvent
from pressroom_contracts.registry import EVENT_TYPES
from pressroom_contracts.topics import TOPICS, dlq_topic, topic_for_type

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "schemas"


def write_schemas(out: Path) -> list[Path]:
    """Write ``<type>.json`` for every registered type plus the envelope; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    envelope = out / "cloudevent.json"
    envelope.write_text(json.dumps(CloudEvent.model_json_schema(), indent=2, sort_keys=True) + "\n")
    written.append(envelope)
    for name, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"urn:pressroom:event:{name}"
        schema["x-pressroom-topic"] = topic_for_type(name)
        path = out / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


_KAFKA_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary content mode",
    "required": ["ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "content-type"],
    "properties": {
        "ce_id": {"type": "string", "format": "uuid"},
        "ce_source": {"type": "string"},
        "ce_type": {"type": "string"},
        "ce_subject": {"type": "string", "description": "the aggregate id (also the key)"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_specversion": {"const": "1.0"},
        "content-type": {"const": "application/json"},
        "ce_brandid": {"type": "string", "format": "uuid"},
        "ce_sequence": {"type": "string", "description": "the aggregate version"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}


def asyncapi_document() -> dict[str, object]:
    """The AsyncAPI 3.0 description of every topic and event type."""
    channels: dict[str, object] = {}
    operations: dict[str, object] = {}
    messages: dict[str, object] = {}
    by_topic: dict[str, list[str]] = {topic: [] for topic in TOPICS}
    for name, model in sorted(EVENT_TYPES.items()):
        key = name.replace(".", "_")
        by_topic[topic_for_type(name)].append(key)
        messages[key] = {
            "name": name,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"schemas/{name}.json"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "aggregate id"}}},
        }
    for topic, keys in by_topic.items():
        channel = topic.replace(".", "_")
        channels[channel] = {
            "address": topic,
            "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in keys},
        }
        channels[f"{channel}_dlq"] = {
            "address": dlq_topic(topic),
            "description": "messages a consumer could not handle, with dlq_* error headers",
        }
        operations[f"receive_{channel}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Pressroom events",
            "version": "1.0.0",
            "description": "Public CloudEvents published by Pressroom services on Kafka.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": _KAFKA_HEADERS}},
    }


def write_asyncapi(path: Path) -> Path:
    path.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pressroom-contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    schemas = sub.add_parser("schemas", help="write JSON Schemas of every event type")
    schemas.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.command == "schemas":
        for path in write_schemas(args.out):
            print(path)
        print(write_asyncapi(args.out.parent / "asyncapi.json"))


if __name__ == "__main__":
    main()
