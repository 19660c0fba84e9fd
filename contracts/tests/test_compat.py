"""The compatibility check: the current schemas against the committed baseline, and
synthetic before/after pairs (pydantic models, as the real schemas are made) proving each
kind of breaking change is caught and each allowed change passes."""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import pytest
from pressroom_contracts.__main__ import DEFAULT_BASELINE, catalog, check_compat, main
from pressroom_contracts.compat import compare, compare_catalogs
from pydantic import BaseModel, Field

pytestmark = pytest.mark.unit


def kinds(old: type[BaseModel], new: type[BaseModel]) -> list[tuple[str, str]]:
    return [
        (p.kind, p.path)
        for p in compare("x.y.z.v1", old.model_json_schema(), new.model_json_schema())
    ]


def test_the_current_schemas_are_compatible_with_the_committed_baseline():
    problems = check_compat(DEFAULT_BASELINE)
    assert not problems, (
        "breaking change to a published type (publish a vN+1 type instead):\n"
        + "\n".join(map(str, problems))
    )
    # Every type in the catalog has a baseline: `python -m pressroom_contracts baseline`.
    missing = set(catalog()) - {p.stem for p in DEFAULT_BASELINE.glob("*.json")}
    assert not missing, f"no baseline for {sorted(missing)}: run the baseline command"


class Base(BaseModel):
    post_id: uuid.UUID
    text: str
    count: int = 0
    note: str | None = None


def test_identical_and_annotated_schemas_pass():
    class Described(BaseModel):
        post_id: uuid.UUID = Field(description="the post")
        text: str = Field(title="Body")
        count: int = 5
        note: str | None = Field(default=None, description="free text")

    assert kinds(Base, Base) == []
    assert kinds(Base, Described) == []


def test_a_new_optional_field_passes_and_a_new_required_one_does_not():
    class WithOptional(Base):
        extra: str | None = None
        tags: list[str] = Field(default_factory=list)

    class WithRequired(Base):
        extra: str

    assert kinds(Base, WithOptional) == []
    assert kinds(Base, WithRequired) == [("required-added", "extra")]


def test_an_optional_field_made_required_is_caught():
    class Required(BaseModel):
        post_id: uuid.UUID
        text: str
        count: int
        note: str | None = None

    assert kinds(Base, Required) == [("required-added", "count")]


def test_a_removed_field_is_caught():
    class Removed(BaseModel):
        post_id: uuid.UUID
        count: int = 0
        note: str | None = None

    assert kinds(Base, Removed) == [("removed-field", "text")]


def test_retyped_fields_are_caught():
    class Retyped(BaseModel):
        post_id: str  # lost its uuid format
        text: int
        count: float = 0
        note: str = ""  # may no longer be null

    assert kinds(Base, Retyped) == [
        ("retyped", "count"),
        ("retyped", "note"),
        ("retyped", "post_id"),
        ("retyped", "text"),
    ]

    class Nullable(Base):
        text: str | None  # type: ignore[assignment]

    assert kinds(Base, Nullable) == [("retyped", "text")]


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    VIEWER = "viewer"


class NarrowRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"


class WideRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    VIEWER = "viewer"
    GUEST = "guest"


def test_enums_may_widen_and_may_not_narrow():
    class Old(BaseModel):
        role: Role
        state: Literal["draft", "scheduled"] = "draft"

    class Narrow(BaseModel):
        role: NarrowRole
        state: Literal["draft"] = "draft"

    class Wide(BaseModel):
        role: WideRole
        state: Literal["draft", "scheduled", "published"] = "draft"

    class Free(BaseModel):
        role: str
        state: str = "draft"

    assert kinds(Old, Wide) == []
    assert kinds(Old, Free) == []
    assert kinds(Old, Narrow) == [("enum-narrowed", "role"), ("enum-narrowed", "state")]
    assert kinds(Free, Old) == [("enum-narrowed", "role"), ("enum-narrowed", "state")]
    problem = compare("t.v1", Old.model_json_schema(), Narrow.model_json_schema())[0]
    assert '"viewer"' in problem.detail


def test_nested_models_and_list_items_are_compared():
    class Day(BaseModel):
        date: str
        reach: int = 0

    class DayRetyped(BaseModel):
        date: str
        reach: str = "0"

    class DayShort(BaseModel):
        date: str

    class Old(BaseModel):
        days: list[Day]
        first: Day | None = None
        ids: list[uuid.UUID] = Field(default_factory=list)

    class NewRetyped(BaseModel):
        days: list[DayRetyped]
        first: DayShort | None = None
        ids: list[str] = Field(default_factory=list)

    class NewGrown(BaseModel):
        days: list[Day]
        first: Day | None = None
        ids: list[uuid.UUID] = Field(default_factory=list)
        more: list[Day] = Field(default_factory=list)

    assert kinds(Old, NewGrown) == []
    assert kinds(Old, NewRetyped) == [
        ("retyped", "days[].reach"),
        ("removed-field", "first.reach"),
        ("retyped", "ids[]"),
    ]


def test_catalogs_new_types_pass_and_removed_types_do_not():
    old = {"a.b.c.v1": Base.model_json_schema(), "a.b.d.v1": Base.model_json_schema()}
    new = {"a.b.c.v1": Base.model_json_schema(), "a.b.c.v2": {"type": "object"}}
    problems = compare_catalogs(old, new)
    assert [(p.event_type, p.kind) for p in problems] == [("a.b.d.v1", "removed-type")]
    assert "a.b.d.v1: removed-type" in str(problems[0])


def _tamper(folder: Path, name: str, edit: Any) -> None:
    path = folder / f"{name}.json"
    schema = json.loads(path.read_text())
    edit(schema)
    path.write_text(json.dumps(schema))


def test_the_commands_refuse_a_breaking_change(tmp_path, capsys):
    baseline = tmp_path / "baseline"
    main(["baseline", "--dir", str(baseline)])
    main(["compat", "--baseline", str(baseline)])
    assert "compatible" in capsys.readouterr().out

    # The baseline knew a field the current schema does not have: a removal.
    _tamper(
        baseline,
        "brand.created.v1",
        lambda s: s["properties"].update(legacy={"type": "string"}),
    )
    with pytest.raises(SystemExit) as exit_:
        main(["compat", "--baseline", str(baseline)])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "brand.created.v1 legacy: removed-field" in out

    # Rewriting the baseline over it needs --force.
    with pytest.raises(SystemExit):
        main(["baseline", "--dir", str(baseline)])
    assert "legacy" in capsys.readouterr().out
    main(["baseline", "--dir", str(baseline), "--force"])
    main(["compat", "--baseline", str(baseline)])
    assert "compatible" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_:
        main(["compat", "--baseline", str(tmp_path / "none")])
    assert exit_.value.code == 2
