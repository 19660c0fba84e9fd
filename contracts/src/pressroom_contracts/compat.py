"""Backward compatibility of the published event schemas against a committed baseline.

A ``vN`` event type is a promise to partners: once published, its payload may only grow by
optional fields. ``contracts/baseline/<type>.json`` holds the schema of every type as last
released (written by ``python -m pressroom_contracts baseline``); :func:`compare` reads a
baseline schema and the current one and names every change that would break a consumer:

- a field removed (a consumer reading it finds nothing);
- a field retyped: its set of JSON types (with ``format``) differs, in either direction
  (``string`` -> ``integer``, a UUID that became free text, a field that may now be null);
- a field added as required, or an optional one made required (events already in the log,
  and producers still on the old version, do not carry it);
- an enum narrowed (a value the old schema allowed is gone; widening is allowed);
- a whole type removed from the catalog.

New types and new optional fields pass. A breaking change is a new type ``...vN+1``
published beside the old one. The comparison works on the JSON Schema documents pydantic
generates (``$ref`` into ``$defs``, ``anyOf`` for optional values, ``enum``/``const``), so it
needs no model imports and can compare any two revisions of the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Schema = Mapping[str, Any]

# Keys that describe a value without changing what it accepts.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$id", "$schema", "x-pressroom-topic"}
)


@dataclass(frozen=True)
class Problem:
    """One breaking change: the event type, where in the payload, and what happened."""

    event_type: str
    path: str
    kind: str  # removed-type | removed-field | retyped | required-added | enum-narrowed
    detail: str

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"{self.event_type}{where}: {self.kind}: {self.detail}"


class _Doc:
    """A schema document: resolves local ``$ref``s into its ``$defs``."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def resolve(self, node: Schema, seen: frozenset[str] = frozenset()) -> Schema:
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node
        if not ref.startswith("#/") or ref in seen:
            return {k: v for k, v in node.items() if k != "$ref"}
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return self.resolve(merged, seen | {ref})

    def alternatives(self, node: Schema) -> list[Schema]:
        """The node as a flat list of alternatives without ``anyOf``/``oneOf``/type lists."""
        node = self.resolve(node)
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            node = {**self.resolve(all_of[0]), **rest}
        for key in ("anyOf", "oneOf"):
            branches = node.get(key)
            if isinstance(branches, list):
                out: list[Schema] = []
                for branch in branches:
                    out.extend(self.alternatives(branch))
                return out
        types = node.get("type")
        if isinstance(types, list):
            return [{**node, "type": t} for t in types]
        return [node]


def _kind(alt: Schema) -> str:
    """What JSON values an alternative is: its type and format (``string:uuid``)."""
    kind = alt.get("type")
    if kind is None:
        if "const" in alt:
            kind = type(alt["const"]).__name__.replace("str", "string")
        elif "properties" in alt:
            kind = "object"
        else:
            kind = "any"
    fmt = alt.get("format")
    return f"{kind}:{fmt}" if fmt else str(kind)


def _allowed(alt: Schema) -> set[Any] | None:
    """The values an enum/const alternative allows; None when it allows any of its kind."""
    if "const" in alt:
        return {json.dumps(alt["const"], sort_keys=True)}
    if isinstance(alt.get("enum"), list):
        return {json.dumps(v, sort_keys=True) for v in alt["enum"]}
    return None


def _group(doc: _Doc, node: Schema) -> dict[str, list[Schema]]:
    groups: dict[str, list[Schema]] = {}
    for alt in doc.alternatives(node):
        groups.setdefault(_kind(alt), []).append(alt)
    return groups


def _walk(
    event_type: str, path: str, old_doc: _Doc, old: Schema, new_doc: _Doc, new: Schema
) -> Iterator[Problem]:
    old_groups, new_groups = _group(old_doc, old), _group(new_doc, new)
    if "any" not in new_groups and set(old_groups) != set(new_groups):
        yield Problem(
            event_type,
            path,
            "retyped",
            f"{' | '.join(sorted(old_groups))} -> {' | '.join(sorted(new_groups))}",
        )
        return
    for kind, old_alts in old_groups.items():
        new_alts = new_groups.get(kind) or new_groups.get("any", [])
        yield from _enum(event_type, path, old_alts, new_alts)
        if kind == "object":
            yield from _objects(event_type, path, old_doc, old_alts, new_doc, new_alts)
        elif kind == "array":
            for old_alt in old_alts:
                for new_alt in new_alts:
                    if "items" in old_alt and "items" in new_alt:
                        yield from _walk(
                            event_type,
                            f"{path}[]",
                            old_doc,
                            old_alt["items"],
                            new_doc,
                            new_alt["items"],
                        )


def _enum(
    event_type: str, path: str, old_alts: list[Schema], new_alts: list[Schema]
) -> Iterator[Problem]:
    def values(alts: list[Schema]) -> set[Any] | None:
        out: set[Any] = set()
        for alt in alts:
            allowed = _allowed(alt)
            if allowed is None:
                return None  # any value of the kind
            out |= allowed
        return out

    old_values, new_values = values(old_alts), values(new_alts)
    if new_values is None:
        return  # the new schema allows any value of the kind: same or wider
    if old_values is None:
        limited = ", ".join(sorted(new_values))
        yield Problem(event_type, path, "enum-narrowed", f"now limited to {limited}")
        return
    gone = old_values - new_values
    if gone:
        yield Problem(
            event_type, path, "enum-narrowed", "no longer allows " + ", ".join(sorted(gone))
        )


def _objects(
    event_type: str,
    path: str,
    old_doc: _Doc,
    old_alts: list[Schema],
    new_doc: _Doc,
    new_alts: list[Schema],
) -> Iterator[Problem]:
    # Several object alternatives (a union of models) are matched by title.
    new_by_title = {alt.get("title"): alt for alt in new_alts}
    for old_alt in old_alts:
        new_alt = new_by_title.get(old_alt.get("title"))
        if new_alt is None:
            if len(old_alts) == 1 and len(new_alts) == 1:
                new_alt = new_alts[0]
            else:
                yield Problem(event_type, path, "retyped", f"variant {old_alt.get('title')} gone")
                continue
        old_props: Mapping[str, Schema] = old_alt.get("properties", {})
        new_props: Mapping[str, Schema] = new_alt.get("properties", {})
        old_required = set(old_alt.get("required", []))
        for name in sorted(set(new_alt.get("required", [])) - old_required):
            what = "new field" if name not in old_props else "was optional"
            yield Problem(event_type, _join(path, name), "required-added", what)
        for name, old_prop in sorted(old_props.items()):
            if name not in new_props:
                yield Problem(event_type, _join(path, name), "removed-field", "gone")
                continue
            yield from _walk(
                event_type, _join(path, name), old_doc, old_prop, new_doc, new_props[name]
            )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def compare(event_type: str, old: Schema, new: Schema) -> list[Problem]:
    """Every breaking change from ``old`` to ``new`` (two schemas of ``event_type``)."""
    return list(_walk(event_type, "", _Doc(old), old, _Doc(new), new))


def compare_catalogs(old: Mapping[str, Schema], new: Mapping[str, Schema]) -> list[Problem]:
    """Breaking changes between two catalogs (type name -> schema); new types pass."""
    problems: list[Problem] = []
    for event_type, old_schema in sorted(old.items()):
        if event_type not in new:
            problems.append(Problem(event_type, "", "removed-type", "no longer published"))
            continue
        problems.extend(compare(event_type, old_schema, new[event_type]))
    return problems


def read_catalog(folder: Path) -> dict[str, Schema]:
    """``<type>.json`` files of a folder as type name -> schema."""
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text())
        for path in sorted(folder.glob("*.json"))
    }
