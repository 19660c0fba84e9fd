"""Aggregates and their domain events: pure Python, no I/O.

An aggregate replays its events to rebuild its state, *decides* on a command by checking
the rules and recording new events, and keeps those as ``pending`` until a repository
saves them with optimistic concurrency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class DomainEvent(BaseModel):
    """An internal event of one aggregate. Subclasses set ``type_name`` (unique per service)."""

    model_config = ConfigDict(frozen=True)

    type_name: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1


class Aggregate(ABC):
    """Base of event-sourced aggregates.

    Subclasses set ``stream_type`` and ``event_classes`` and implement ``apply``, which
    changes state from one event and must never fail or decide anything.
    """

    stream_type: ClassVar[str] = ""
    event_classes: ClassVar[tuple[type[DomainEvent], ...]] = ()

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0
        self.pending: list[DomainEvent] = []

    @classmethod
    def event_class(cls, type_name: str) -> type[DomainEvent]:
        for event_class in cls.event_classes:
            if event_class.type_name == type_name:
                return event_class
        raise KeyError(f"{cls.__name__} has no event type {type_name!r}")

    @classmethod
    def rehydrate(cls, aggregate_id: str, history: Iterable[tuple[str, dict[str, Any]]]) -> Self:
        """Rebuild from ``(type_name, data)`` pairs in version order."""
        aggregate = cls(aggregate_id)
        for type_name, data in history:
            aggregate.apply(cls.event_class(type_name).model_validate(data))
            aggregate.version += 1
        return aggregate

    @property
    def is_new(self) -> bool:
        return self.version == 0 and not self.pending

    def record(self, event: DomainEvent) -> None:
        """Apply a newly decided event and keep it for saving."""
        self.apply(event)
        self.pending.append(event)

    @abstractmethod
    def apply(self, event: DomainEvent) -> None:
        """Change state from one event; never fails, never decides."""

    def mark_saved(self) -> list[DomainEvent]:
        saved, self.pending = self.pending, []
        self.version += len(saved)
        return saved
