from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest
from pressroom_contracts import CloudEvent
from pressroom_kit import cloudevents
from pressroom_kit.consumer import is_transient
from pressroom_kit.db import MigrationError, load_migrations, replace_database, replace_user
from pressroom_kit.errors import ConcurrencyError, Invalid
from pressroom_kit.health import Heartbeats
from pressroom_kit.testing.sample import domain as sample

pytestmark = pytest.mark.unit


def test_cloudevent_round_trips_through_kafka_binary_mode():
    event = CloudEvent(
        source="/s",
        type="brand.created.v1",
        subject="b1",
        brandid=uuid.uuid4(),
        sequence=3,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        data={"name": "Ünïcode", "n": 1},
    )
    headers = cloudevents.kafka_headers(cloudevents.to_headers(event))
    decoded = cloudevents.decode(headers, cloudevents.encode_value(event))
    assert decoded == event


@pytest.mark.parametrize(
    ("headers", "value", "message"),
    [
        ([], b"{}", "missing CloudEvents headers"),
        (
            [("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t"), ("ce_specversion", b"0.3")],
            b"{}",
            "specversion",
        ),
        (
            [("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t"), ("ce_specversion", b"1.0")],
            b"[1]",
            "JSON object",
        ),
        (
            [
                ("ce_id", b"not-a-uuid"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("ce_specversion", b"1.0"),
            ],
            b"{}",
            "bad CloudEvents attributes",
        ),
        ([("ce_id", b"\xff"), ("ce_source", b"s")], b"{}", "UTF-8"),
    ],
)
def test_bad_messages_are_decode_errors(headers, value, message):
    with pytest.raises(cloudevents.DecodeError, match=message):
        cloudevents.decode(headers, value)


def test_aggregate_decides_records_and_rehydrates():
    brand = uuid.uuid4()
    note = sample.Note.write("n1", brand, "first")
    note.rename("second")
    note.rename("second")  # no change, no event
    assert [type(e).__name__ for e in note.pending] == ["NoteWritten", "NoteRenamed"]
    saved = note.mark_saved()
    assert note.version == 2 and not note.pending
    again = sample.Note.rehydrate("n1", [(e.type_name, e.model_dump(mode="json")) for e in saved])
    assert again.title == "second" and again.version == 2
    with pytest.raises(Invalid):
        sample.Note.write("n2", brand, "  ")


def test_migration_files_must_be_numbered_and_unique(tmp_path: Path):
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    assert [m.version for m in load_migrations("x", tmp_path)] == [1, 2]
    (tmp_path / "0002_again.sql").write_text("SELECT 3;")
    with pytest.raises(MigrationError, match="two migrations"):
        load_migrations("x", tmp_path)
    (tmp_path / "0002_again.sql").unlink()
    (tmp_path / "3_bad.sql").write_text("")
    with pytest.raises(MigrationError, match="bad migration file name"):
        load_migrations("x", tmp_path)


def test_dsn_helpers():
    dsn = "postgresql://owner:pw@db:5432/main?sslmode=require"
    assert replace_database(dsn, "other") == "postgresql://owner:pw@db:5432/other?sslmode=require"
    assert replace_user(dsn, "app") == "postgresql://app@db:5432/main?sslmode=require"


def test_heartbeats_go_stale():
    beats = Heartbeats()
    beats.register("w", max_age=60)
    assert not beats.healthy()
    beats.beat("w")
    assert beats.healthy()
    beats.beat("w", ok=False, detail="broker down")
    assert beats.status()["w"] == {"ok": False, "detail": "broker down", "age_s": 0.0}


def test_cursors_round_trip_and_foreign_cursors_are_refused():
    from pressroom_kit.pagination import decode_cursor, encode_cursor, page

    cursor = encode_cursor("2026-11-24T12:00:00+00:00", "abc")
    assert decode_cursor(cursor, 2) == ["2026-11-24T12:00:00+00:00", "abc"]
    assert decode_cursor(None, 2) is None
    for bad in ("not-base64!!", encode_cursor("only one"), "e30="):
        with pytest.raises(Invalid):
            decode_cursor(bad, 2)
    items, next_cursor = page([1, 2, 3], 2, lambda n: (n,))
    assert items == [1, 2] and decode_cursor(next_cursor, 1) == [2]
    assert page([1, 2], 2, lambda n: (n,)) == ([1, 2], None)


def test_structured_mode_carries_attributes_and_data_in_one_object():
    event = CloudEvent(
        source="/s",
        type="brand.created.v1",
        subject="b1",
        brandid=uuid.uuid4(),
        sequence=2,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        data={"name": "Acme"},
    )
    body = cloudevents.to_structured(event)
    assert CloudEvent.model_validate(body) == event.model_copy(update={"traceparent": None})
    assert "traceparent" not in body and body["specversion"] == "1.0"


def test_transient_failures_are_told_from_deterministic_ones() -> None:
    assert is_transient(asyncpg.DeadlockDetectedError("x"))
    assert is_transient(asyncpg.SerializationError("x"))
    assert is_transient(asyncpg.LockNotAvailableError("x"))
    assert is_transient(asyncpg.ConnectionDoesNotExistError("x"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(ConcurrencyError("lost the race"))
    wrapped = RuntimeError("handler wrapped it")
    wrapped.__cause__ = asyncpg.DeadlockDetectedError("x")
    assert is_transient(wrapped)
    assert not is_transient(RuntimeError("receiver exploded"))
    assert not is_transient(asyncpg.UniqueViolationError("x"))
    assert not is_transient(asyncpg.UndefinedColumnError("x"))
    assert not is_transient(Invalid("bad payload"))


def test_a_naive_occurred_at_is_refused_before_anything_is_staged():
    from datetime import UTC, datetime, timedelta, timezone

    from pressroom_kit import eventstore
    from pressroom_kit.eventstore import NewEvent

    def preview(occurred_at: datetime) -> list[eventstore.RecordedEvent]:
        return eventstore.preview(
            stream_id="s",
            stream_type="note",
            expected_version=0,
            events=[NewEvent("NoteWritten", {"title": "t"})],
            brand_id=None,
            metadata={},
            occurred_at=occurred_at,
        )

    with pytest.raises(ValueError, match="occurred_at must be timezone-aware"):
        preview(datetime(2026, 1, 1, 12, 0))
    paris = timezone(timedelta(hours=1))
    (event,) = preview(datetime(2026, 1, 1, 13, 0, tzinfo=paris))
    assert event.occurred_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_dollar_quote_picks_a_tag_the_text_cannot_close(monkeypatch: pytest.MonkeyPatch):
    """The staged writes travel as a dollar-quoted literal: the tag must occur in the text
    neither whole (``$tag$``) nor as a tail the closing ``$`` would complete (``$tag``)."""
    from pressroom_kit import eventstore

    tags = iter(["aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(eventstore.secrets, "token_hex", lambda _n: next(tags))
    # "$praaaa" ends the text (the closing $ would complete it), "$prbbbb$" is inside it.
    text = "x $prbbbb$ y $praaaa"
    assert eventstore.dollar_quote(text) == f"$prcccc${text}$prcccc$"
    with pytest.raises(ValueError, match="NUL"):
        eventstore.dollar_quote("a\x00b")
