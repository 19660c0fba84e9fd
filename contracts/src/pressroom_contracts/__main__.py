"""``python -m pressroom_contracts schemas [--out DIR]`` writes one JSON Schema per event type
and the AsyncAPI 3.0 document of the topics (``asyncapi.json`` beside the schemas folder).

``baseline [--force]`` records the current schemas as the released ones
(``contracts/baseline/``); ``compat [--baseline DIR]`` exits 1 naming every change since
that baseline that would break a consumer (see :mod:`pressroom_contracts.compat`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pressroom_contracts.compat import Problem, compare_catalogs, read_catalog
from pressroom_contracts.envelope import CloudEvent
from pressroom_contracts.registry import EVENT_TYPES
from pressroom_contracts.topics import TOPICS, dlq_topic, topic_for_type

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "schemas"
DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "baseline"


def catalog() -> dict[str, dict[str, Any]]:
    """The current schema of every registered type plus the envelope (``cloudevent``)."""
    schemas: dict[str, dict[str, Any]] = {"cloudevent": CloudEvent.model_json_schema()}
    for name, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"urn:pressroom:event:{name}"
        schema["x-pressroom-topic"] = topic_for_type(name)
        schemas[name] = schema
    return schemas


def _write_catalog(out: Path, schemas: dict[str, dict[str, Any]]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def write_schemas(out: Path) -> list[Path]:
    """Write ``<type>.json`` for every registered type plus the envelope; return the paths."""
    return _write_catalog(out, catalog())


def check_compat(baseline: Path = DEFAULT_BASELINE) -> list[Problem]:
    """Breaking changes of the current schemas against the baseline folder."""
    return compare_catalogs(read_catalog(baseline), catalog())


def write_baseline(baseline: Path = DEFAULT_BASELINE, *, force: bool = False) -> list[Path]:
    """Record the current schemas as released. Refuses (``ValueError``) a baseline that
    would hide a breaking change, unless ``force``; types no longer published keep their
    file only when forced, so a removal is never silent."""
    problems = check_compat(baseline) if baseline.exists() else []
    if problems and not force:
        raise ValueError("\n".join(str(p) for p in problems))
    current = catalog()
    if baseline.exists():
        for stale in baseline.glob("*.json"):
            if stale.name.removesuffix(".json") not in current:
                stale.unlink()
    return _write_catalog(baseline, current)


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


_KAFKA_BINDING = "0.4.0"


def asyncapi_document() -> dict[str, object]:
    """The AsyncAPI 3.0 description of every topic and event type, from Pressroom's side:
    its services *send* on these channels (a consumer's own document says ``receive``).
    Payloads are ``$ref``s to the schema files beside it; :func:`bundled_asyncapi` inlines
    them for serving over HTTP."""
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
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "aggregate id"},
                    "bindingVersion": _KAFKA_BINDING,
                }
            },
        }
    servers = [{"$ref": "#/servers/kafka"}]
    for topic, keys in by_topic.items():
        channel = topic.replace(".", "_")
        channels[channel] = {
            "address": topic,
            "servers": servers,
            "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in keys},
            "bindings": {"kafka": {"topic": topic, "bindingVersion": _KAFKA_BINDING}},
        }
        channels[f"{channel}_dlq"] = {
            "address": dlq_topic(topic),
            "servers": servers,
            "description": "messages a consumer could not handle, with dlq_* error headers",
            # Any of the topic's messages, as it was; an empty map (not none) keeps strict
            # AsyncAPI tooling (FastStream's models) reading the document.
            "messages": {},
            "bindings": {"kafka": {"topic": dlq_topic(topic), "bindingVersion": _KAFKA_BINDING}},
        }
        operations[f"send_{channel}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{k}"} for k in keys],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Pressroom events",
            "version": "1.0.0",
            "description": "Public CloudEvents published by Pressroom services on Kafka.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "pathname": "",
                "protocol": "kafka",
                "description": "the deployment's Kafka (PRESSROOM_KAFKA_BOOTSTRAP_SERVERS)",
                "variables": {"bootstrap": {"default": "localhost:19092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": _KAFKA_HEADERS}},
    }


def bundled_asyncapi() -> dict[str, Any]:
    """:func:`asyncapi_document` in one self-contained document: each payload schema under
    ``components.schemas`` (its ``$defs`` beside it, renamed ``<Payload>.<Def>``) and every
    ``$ref`` local, so a client fetching it over HTTP needs nothing else."""
    document: dict[str, Any] = json.loads(json.dumps(asyncapi_document()))
    schemas: dict[str, Any] = document["components"]["schemas"]
    for message in document["components"]["messages"].values():
        name = message["name"]
        model = EVENT_TYPES[name]
        schema = model.model_json_schema(
            ref_template=f"#/components/schemas/{model.__name__}.{{model}}"
        )
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[f"{model.__name__}.{def_name}"] = definition
        schema["$id"] = f"urn:pressroom:event:{name}"
        schemas[model.__name__] = schema
        message["payload"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    return document


def write_asyncapi(path: Path) -> Path:
    path.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pressroom-contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    schemas = sub.add_parser("schemas", help="write JSON Schemas of every event type")
    schemas.add_argument("--out", type=Path, default=DEFAULT_OUT)
    base = sub.add_parser("baseline", help="record the current schemas as the released ones")
    base.add_argument("--dir", type=Path, default=DEFAULT_BASELINE)
    base.add_argument("--force", action="store_true", help="write it even over a breaking change")
    compat = sub.add_parser("compat", help="refuse breaking changes against the baseline")
    compat.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    args = parser.parse_args(argv)
    if args.command == "schemas":
        for path in write_schemas(args.out):
            print(path)
        print(write_asyncapi(args.out.parent / "asyncapi.json"))
    elif args.command == "baseline":
        try:
            written = write_baseline(args.dir, force=args.force)
        except ValueError as exc:
            print(f"breaking changes (publish a new vN+1 type, or --force):\n{exc}")
            sys.exit(1)
        print(f"baseline: {len(written)} schemas in {args.dir}")
    elif args.command == "compat":
        if not args.baseline.is_dir():
            print(f"no baseline at {args.baseline}: run `python -m pressroom_contracts baseline`")
            sys.exit(2)
        problems = check_compat(args.baseline)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} breaking change(s): publish a new vN+1 type instead")
            sys.exit(1)
        print(f"compatible with the baseline ({args.baseline})")


if __name__ == "__main__":
    main()
