"""Event type name -> payload model."""

from __future__ import annotations

from typing import TypeVar

from pressroom_contracts.envelope import EventPayload

EVENT_TYPES: dict[str, type[EventPayload]] = {}

P = TypeVar("P", bound=type[EventPayload])


def register(model: P) -> P:
    """Class decorator adding a payload model to the catalog (one model per type)."""
    name = model.event_type
    if not name or name.count(".") < 2 or not name.rsplit(".", 1)[-1].startswith("v"):
        raise ValueError(f"{model.__name__}: event_type must look like domain.thing.event.vN")
    if name in EVENT_TYPES and EVENT_TYPES[name] is not model:
        raise ValueError(f"event type {name!r} is registered twice")
    EVENT_TYPES[name] = model
    return model


def payload_model(event_type: str) -> type[EventPayload]:
    """The payload model of ``event_type``; ``KeyError`` when the type is unknown."""
    return EVENT_TYPES[event_type]
