"""``python -m pressroom_contracts schemas [--out DIR]`` writes one JSON Schema per event type."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pressroom_contracts.envelope import CloudEvent
from pressroom_contracts.registry import EVENT_TYPES
from pressroom_contracts.topics import topic_for_type

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pressroom-contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    schemas = sub.add_parser("schemas", help="write JSON Schemas of every event type")
    schemas.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.command == "schemas":
        for path in write_schemas(args.out):
            print(path)


if __name__ == "__main__":
    main()
