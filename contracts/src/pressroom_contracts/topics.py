"""Kafka topics: one per producing domain; dead letters go to ``<topic>.dlq``."""

from enum import StrEnum


class Topic(StrEnum):
    BRANDS = "pressroom.brands.v1"
    MEDIA = "pressroom.media.v1"
    PUBLISHING = "pressroom.publishing.v1"
    APPROVAL = "pressroom.approval.v1"
    ANALYTICS = "pressroom.analytics.v1"
    WEBHOOK = "pressroom.webhook.v1"


TOPICS: tuple[str, ...] = tuple(topic.value for topic in Topic)

DOMAIN_TOPICS: dict[str, Topic] = {
    "brand": Topic.BRANDS,
    "media": Topic.MEDIA,
    "publishing": Topic.PUBLISHING,
    "approval": Topic.APPROVAL,
    "analytics": Topic.ANALYTICS,
    "webhook": Topic.WEBHOOK,
}


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return f"{topic}.dlq"


def topic_for_type(event_type: str) -> str:
    """The topic an event type is published on, from its domain prefix."""
    domain = event_type.split(".", 1)[0]
    try:
        return DOMAIN_TOPICS[domain].value
    except KeyError:
        raise ValueError(f"no topic for event type {event_type!r}") from None
