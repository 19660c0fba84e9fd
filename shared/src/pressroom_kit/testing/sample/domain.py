"""A tiny service domain for exercising the kit: notes that can be written and renamed."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar
from uuid import UUID

import asyncpg
from pressroom_contracts import EVENT_TYPES, EventPayload

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import Invalid
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projection, Projector
from pressroom_kit.repository import Repository

MIGRATIONS = ("sample", Path(__file__).parent / "migrations")


class NoteWritten(DomainEvent):
    type_name: ClassVar[str] = "NoteWritten"
    brand_id: UUID
    title: str


class NoteRenamed(DomainEvent):
    type_name: ClassVar[str] = "NoteRenamed"
    title: str


class Note(Aggregate):
    stream_type = "note"
    event_classes = (NoteWritten, NoteRenamed)

    title: str = ""

    def apply(self, event: DomainEvent) -> None:
        match event:
            case NoteWritten(title=title) | NoteRenamed(title=title):
                self.title = title

    @classmethod
    def write(cls, note_id: str, brand_id: UUID, title: str) -> Note:
        if not title.strip():
            raise Invalid("a note needs a title")
        note = cls(note_id)
        note.record(NoteWritten(brand_id=brand_id, title=title))
        return note

    def rename(self, title: str) -> None:
        if title == self.title:
            return
        self.record(NoteRenamed(title=title))


class NoteChangedV1(EventPayload):
    """Public event of the sample domain (only in tests, so not in the global catalog)."""

    event_type = "sample.note.changed.v1"
    note_id: str
    title: str


REGISTRY = {**EVENT_TYPES, NoteChangedV1.event_type: NoteChangedV1}


async def _project_written(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "INSERT INTO notes (id, brand_id, title, updated_at) VALUES ($1, $2, $3, $4)",
        event.stream_id,
        event.brand_id,
        event.data["title"],
        event.occurred_at,
    )


async def _project_renamed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE notes SET title = $2, edits = edits + 1, updated_at = $3 WHERE id = $1",
        event.stream_id,
        event.data["title"],
        event.occurred_at,
    )


NOTES_PROJECTION = Projection(
    name="notes",
    tables=("notes",),
    handlers={"NoteWritten": _project_written, "NoteRenamed": _project_renamed},
)


def repository(topic: str) -> Repository[Note]:
    def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, object]]]:
        return [
            (
                topic,
                NoteChangedV1.event_type,
                {"note_id": event.stream_id, "title": event.data["title"]},
            )
        ]

    return Repository(
        Note,
        source="/pressroom/sample",
        projector=Projector([NOTES_PROJECTION]),
        to_public=to_public,
    )
