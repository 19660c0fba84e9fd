"""The kit's HTTP contract on a small app: request schemas say what pydantic enforces, OPTIONS
names every method of a path, the unstorable-text check survives a route's own hook, and
every well-formed cursor is a position, a strict field stays strict."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

import pytest
from litestar import Controller, Request, get, patch, post
from litestar.params import JSONBody, QueryParameter
from litestar.testing import TestClient
from pressroom_kit.http import PUBLIC, create_service_app
from pressroom_kit.pagination import Cursor, position_cursor, read_position_cursor
from pressroom_kit.schemas import NOT_NULL
from pydantic import BaseModel, ConfigDict, Field, StrictBool

pytestmark = [pytest.mark.unit]


class ThingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str | None, NOT_NULL] = Field(default=None, min_length=1)
    tags: Annotated[list[str] | None, NOT_NULL] = Field(default=None, min_length=1)
    note: str | None = None
    enabled: Annotated[StrictBool | None, NOT_NULL] = None


seen_by_hook: list[str] = []


async def own_hook(request: Request[Any, Any, Any]) -> None:
    seen_by_hook.append(request.url.path)


class Things(Controller):
    path = "/things"
    opt = PUBLIC

    @get("/current", sync_to_thread=False)
    def read(self) -> dict[str, str]:
        return {"ok": "yes"}

    @patch("/current", sync_to_thread=False)
    def update(self, data: JSONBody[ThingUpdate]) -> dict[str, Any]:
        return data.model_dump(exclude_unset=True)

    @post("/echo", before_request=own_hook, sync_to_thread=False, status_code=200)
    def echo(self, data: JSONBody[dict[str, str]]) -> dict[str, str]:
        return data

    @get("/", sync_to_thread=False)
    def page(self, cursor: Cursor = None) -> dict[str, str | None]:
        return {"at": None if cursor is None else read_position_cursor(cursor)[0].isoformat()}


@pytest.fixture(scope="module")
def client() -> Any:
    app = create_service_app(name="things", route_handlers=[Things], verifier=None)
    with TestClient(app) as client:
        yield client


def test_request_schema_says_what_the_server_enforces(client):
    schema = client.get("/schema/openapi.json").json()["components"]["schemas"]["ThingUpdate"]
    assert schema["additionalProperties"] is False
    assert not schema.get("required")
    assert schema["properties"]["name"] == {"type": "string", "minLength": 1}
    assert schema["properties"]["tags"]["minItems"] == 1
    assert {"type": "null"} in schema["properties"]["note"]["anyOf"]  # null is allowed here

    assert client.patch("/things/current", json={"name": "a", "note": None}).status_code == 200
    for body in ({"name": None}, {"tags": None}, {"tags": []}, {"other": 1}, {"name": ""}):
        response = client.patch("/things/current", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_strict_field_is_strict_in_a_request_body(client):
    # Litestar's decoding passed strict=False, which let `0` and "false" through as False.
    for sent in (0, 1, "false", "true"):
        response = client.patch("/things/current", json={"enabled": sent})
        assert response.status_code == 422, (sent, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["enabled"]
    assert client.patch("/things/current", json={"enabled": False}).json() == {"enabled": False}
    schema = client.get("/schema/openapi.json").json()["components"]["schemas"]["ThingUpdate"]
    assert schema["properties"]["enabled"] == {"type": "boolean"}


def test_a_null_refusal_does_not_read_as_a_required_field(client):
    """Tools that learn from 422s (schemathesis) read "cannot be null" as "required"; the
    field may be left out, and the message must not say otherwise."""
    response = client.patch("/things/current", json={"name": None})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "name" and "leave the field out" in error["message"]
    required = re.compile(r"\b(?:(?:must|shall) not be|can(?:not|'?t) be|is required)\b", re.I)
    assert not required.search(error["message"]), error


def test_options_names_every_method_of_the_path(client):
    response = client.options("/things/current")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, OPTIONS, PATCH"


def test_the_text_check_runs_before_a_routes_own_hook(client):
    seen_by_hook.clear()
    response = client.post("/things/echo", json={"k": "a\x00b"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "k"
    assert seen_by_hook == []  # refused before the route's hook ran
    assert client.post("/things/echo", json={"k": "ab"}).json() == {"k": "ab"}
    assert seen_by_hook == ["/things/echo"]


def test_every_well_formed_cursor_is_a_position_and_others_are_a_422(client):
    at = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
    row = uuid.uuid4()
    cursor = position_cursor(at, row)
    assert read_position_cursor(cursor) == (at, row)
    assert client.get(f"/things/?cursor={cursor}").json() == {"at": at.isoformat()}
    foreign = "9" * 16 + "-" + "f" * 32  # never given out, still a position
    assert client.get(f"/things/?cursor={foreign}").status_code == 200
    for bad in ("nonsense", "1-abc", "-" + "f" * 32, "1" * 17 + "-" + "f" * 32):
        assert client.get(f"/things/?cursor={bad}").status_code == 422, bad
    parameters = client.get("/schema/openapi.json").json()["paths"]["/things"]["get"]
    (cursor_parameter,) = [p for p in parameters["parameters"] if p["name"] == "cursor"]
    assert "pattern" in str(cursor_parameter["schema"])


def test_a_query_problem_names_the_parameter_as_the_client_sent_it():
    @get("/days", opt=PUBLIC, sync_to_thread=False)
    def days(
        first: Annotated[date, QueryParameter(name="from")],
        last: Annotated[date, QueryParameter(name="to")],
        limit: int = 5,
    ) -> dict[str, int]:
        return {"days": (last - first).days}

    app = create_service_app(name="t", route_handlers=[days], verifier=None)
    with TestClient(app) as client:
        answer = client.get("/days?from=yesterday&to=2026-12-02")
        assert answer.status_code == 422
        assert [e["field"] for e in answer.json()["errors"]] == ["from"]  # not "first"
        answer = client.get("/days?from=2026-12-01")
        assert answer.status_code == 422
        assert answer.json()["errors"] == [{"field": "to", "message": "a required query parameter"}]
        answer = client.get("/days?from=2026-12-01&to=2026-12-02&limit=x")
        assert [e["field"] for e in answer.json()["errors"]] == ["limit"]
        assert client.get("/days?from=2026-12-01&to=2026-12-03").json() == {"days": 2}
