"""docs/events.md documents every registered event type with its topic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pressroom_contracts import EVENT_TYPES
from pressroom_contracts.topics import topic_for_type

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def catalog_rows(text: str) -> dict[str, str]:
    """Event type -> topic, from the catalog table's rows (`| `type` | `topic` | ...`)."""
    return dict(re.findall(r"^\| `([a-z_.]+\.v[0-9]+)` \| `([a-z0-9_.]+)` \|", text, re.MULTILINE))


def sections(text: str) -> set[str]:
    return set(re.findall(r"^### `([^`]+)`", text, re.MULTILINE))


def test_every_event_type_is_in_the_catalog_with_its_topic():
    text = DOC.read_text(encoding="utf-8")
    rows = catalog_rows(text)
    missing = sorted(set(EVENT_TYPES) - set(rows))
    assert not missing, f"docs/events.md lacks a catalog row for: {', '.join(missing)}"
    wrong = {t: rows[t] for t in EVENT_TYPES if rows[t] != topic_for_type(t)}
    assert not wrong, f"docs/events.md gives the wrong topic for: {wrong}"


def test_every_event_type_has_a_section_with_its_fields():
    text = DOC.read_text(encoding="utf-8")
    missing = sorted(set(EVENT_TYPES) - sections(text))
    assert not missing, f"docs/events.md lacks a section for: {', '.join(missing)}"
    for name, model in EVENT_TYPES.items():
        section = text.split(f"### `{name}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        documented = set(re.findall(r"`([a-z_]+)`", section))
        absent = sorted(set(model.model_fields) - documented)
        assert not absent, f"docs/events.md, {name}: fields not described: {', '.join(absent)}"


def test_the_catalog_names_no_type_that_does_not_exist():
    text = DOC.read_text(encoding="utf-8")
    unknown = sorted((set(catalog_rows(text)) | sections(text)) - set(EVENT_TYPES))
    assert not unknown, f"docs/events.md documents unknown types: {', '.join(unknown)}"


def test_a_type_missing_from_the_doc_is_caught():
    text = DOC.read_text(encoding="utf-8")
    without = "\n".join(line for line in text.splitlines() if "media.asset.used.v1" not in line)
    assert "media.asset.used.v1" in catalog_rows(text)
    assert "media.asset.used.v1" not in catalog_rows(without)
    assert "media.asset.used.v1" not in sections(without)
