"""Pressroom's public event contracts.

Partners subscribe to these: a published ``<type>.vN`` never changes incompatibly; a breaking
change is a new type with the next version number.
"""

from pressroom_contracts.envelope import CloudEvent, EventPayload
from pressroom_contracts.registry import EVENT_TYPES, payload_model, register
from pressroom_contracts.topics import TOPICS, Topic, dlq_topic

__all__ = [
    "EVENT_TYPES",
    "TOPICS",
    "CloudEvent",
    "EventPayload",
    "Topic",
    "dlq_topic",
    "payload_model",
    "register",
]

from pressroom_contracts import events as _events  # noqa: F401  (registers the catalog)
