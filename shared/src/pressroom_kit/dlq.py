"""Dead letters: read what a consumer gave up on, and replay it once its cause is fixed.

``InboxConsumer`` dead-letters a message to ``<topic>.dlq`` with its original value, key and
headers plus ``dlq_error``, ``dlq_consumer``, ``dlq_original_topic``,
``dlq_original_partition``, ``dlq_original_offset`` and ``dlq_failed_at``. Reading assigns
every partition of the dead-letter topics, starts at the beginning and stops at the end
offsets taken at the start (and no record appended after it), so it terminates while
consumers keep writing; it joins no group and commits nothing.

A replay publishes the value, key and original headers (without the ``dlq_*`` ones) to the
original topic and partition. The CloudEvent id (``ce_id``) is unchanged, so every inbox
consumer of that topic that already applied the event skips it: replaying twice applies
once. Nothing records that an entry was replayed: the inbox is the one record of what was
applied, and a replay that fails again comes back as a new dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pressroom_contracts import TOPICS, dlq_topic

from pressroom_kit.outbox import make_producer

DLQ_HEADER_PREFIX = "dlq_"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class DeadLetter:
    """One message on a dead-letter topic, with the consumer's notes decoded."""

    topic: str  # the dead-letter topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    consumer: str
    error: str
    failed_at: datetime
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    event_id: UUID | None  # ``ce_id``; None for a message that was not a CloudEvent
    event_type: str | None

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> DeadLetter:
        headers = tuple((name, raw or b"") for name, raw in record.headers or ())
        text = {name: raw.decode(errors="replace") for name, raw in headers}
        failed_at = _epoch(text.get("dlq_failed_at"))
        if failed_at is None:  # not written by InboxConsumer: the broker's timestamp
            failed_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=headers,
            consumer=text.get("dlq_consumer", ""),
            error=text.get("dlq_error", ""),
            failed_at=failed_at,
            original_topic=text.get("dlq_original_topic") or None,
            original_partition=_integer(text.get("dlq_original_partition")),
            original_offset=_integer(text.get("dlq_original_offset")),
            event_id=_uuid(text.get("ce_id")),
            event_type=text.get("ce_type"),
        )

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had before it was dead-lettered."""
        return [(n, v) for n, v in self.headers if not n.startswith(DLQ_HEADER_PREFIX)]

    @property
    def replay_refusal(self) -> str | None:
        """Why this entry cannot be replayed safely, or None when it can."""
        if self.event_id is None:
            # Without an id no inbox can recognise a second delivery.
            return "no valid ce_id: not a CloudEvent, an inbox could not deduplicate it"
        if self.original_topic is None:
            return "no dlq_original_topic header"
        return None

    def value_text(self) -> str:
        """The value as indented JSON when it is JSON, else as (lossy) text."""
        if self.value is None:
            return "(no value)"
        try:
            return json.dumps(json.loads(self.value), indent=2, ensure_ascii=False)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self.value.decode(errors="replace")


@dataclass(frozen=True)
class Replayed:
    """The outcome of replaying one dead letter."""

    letter: DeadLetter
    sent: bool
    partition: int | None = None
    offset: int | None = None
    skipped: str | None = None  # why it was not sent


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A point in time from ``2h``, ``1h30m``, ``7d``, ``45s``, ``2w`` (that long before
    ``now``) or an ISO 8601 time (UTC when it names no offset). ``ValueError`` otherwise."""
    now = now or datetime.now(UTC)
    compact = text.strip().lower()
    if compact and _DURATION.sub("", compact).strip() == "":
        delta = timedelta()
        for amount, unit in _DURATION.findall(compact):
            delta += timedelta(**{_UNITS[unit]: float(amount)})
        return now - delta
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def dead_letter_topics(topics: Iterable[str] | None = None) -> list[str]:
    """The dead-letter topics of ``topics`` (default: every public topic). A name that is
    already a dead-letter topic is kept as it is."""
    chosen = list(topics) if topics else list(TOPICS)
    names = [t if t.endswith(dlq_topic("")) else dlq_topic(t) for t in chosen]
    return list(dict.fromkeys(names))


async def read_dead_letters(
    bootstrap_servers: str,
    *,
    topics: Iterable[str] | None = None,
    consumers: Collection[str] | None = None,
    since: datetime | None = None,
    event_id: UUID | None = None,
    max_seconds: float = 30.0,
) -> list[DeadLetter]:
    """The dead letters on the DLQs of ``topics`` (original topic names, default every
    public topic) written by one of ``consumers`` (default any), failed at or after
    ``since``, with CloudEvent id ``event_id``; oldest first per partition.

    DLQ topics that do not exist are skipped. Raises ``TimeoutError`` when the end offsets
    taken at the start are not reached within ``max_seconds``."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        request_timeout_ms=int(max_seconds * 1000),
    )
    try:
        await reader.start()
        existing = await reader.topics()
        wanted = [t for t in dead_letter_topics(topics) if t in existing]
        partitions = [
            TopicPartition(topic, p)
            for topic in wanted
            for p in sorted(reader.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        async with asyncio.timeout(max_seconds):
            records = await _read_to_end(reader, partitions)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.stop(), timeout=5)
    letters = (DeadLetter.from_record(r) for r in records)
    return [
        letter
        for letter in letters
        if (consumers is None or letter.consumer in consumers)
        and (since is None or letter.failed_at >= since)
        and (event_id is None or letter.event_id == event_id)
    ]


async def replay_dead_letters(
    bootstrap_servers: str, letters: Sequence[DeadLetter], *, dry_run: bool = False
) -> list[Replayed]:
    """Publish each letter's message again to its original topic and partition, once per
    CloudEvent id (the latest entry of an id stands for the others), and wait for the
    broker's acknowledgement. Entries without a usable id or origin are skipped with the
    reason; with ``dry_run`` nothing is sent."""
    outcomes: list[Replayed] = []
    latest: dict[UUID, DeadLetter] = {}
    for letter in sorted(letters, key=lambda item: item.failed_at):
        refusal = letter.replay_refusal
        if refusal is not None:
            outcomes.append(Replayed(letter, sent=False, skipped=refusal))
        elif letter.event_id is not None:
            latest.pop(letter.event_id, None)  # keep the first-seen order of the latest
            latest[letter.event_id] = letter
    chosen = list(latest.values())
    if dry_run or not chosen:
        outcomes.extend(Replayed(letter, sent=False, skipped="dry run") for letter in chosen)
        return outcomes
    producer = make_producer(bootstrap_servers)
    try:
        await producer.start()
        pending: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
        for letter in chosen:  # sent in batches, acknowledged below
            assert letter.original_topic is not None
            try:
                partitions = await producer.partitions_for(letter.original_topic)
                # The original partition keeps the key's partition even if the first
                # producer partitioned differently; a topic without it gets the key's.
                partition = (
                    letter.original_partition if letter.original_partition in partitions else None
                )
                future = await producer.send(
                    letter.original_topic,
                    value=letter.value,
                    key=letter.key,
                    headers=letter.original_headers,
                    partition=partition,
                )
            except KafkaError as exc:
                outcomes.append(Replayed(letter, sent=False, skipped=f"not sent: {exc!r}"))
                continue
            pending.append((letter, future))
        for letter, future in pending:
            try:
                metadata = await future
            except KafkaError as exc:
                outcomes.append(Replayed(letter, sent=False, skipped=f"not sent: {exc!r}"))
                continue
            outcomes.append(
                Replayed(letter, sent=True, partition=metadata.partition, offset=metadata.offset)
            )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=5)
    return outcomes


async def _read_to_end(
    reader: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
) -> list[ConsumerRecord]:
    """Every record the partitions held when the read began.

    The end offsets taken at the start bound the read on Kafka. Tansu can report an end
    offset below what it holds (seen after batched produce requests), so a partition is done
    only once it reached that offset and a whole poll found nothing more, or when it yields
    a record appended after the start: the read ends even while consumers keep writing."""
    started_ms = time.time() * 1000
    ends = await reader.end_offsets(list(partitions))
    remaining = set(partitions)
    records: list[ConsumerRecord] = []
    while remaining:
        batches = await reader.getmany(*remaining, timeout_ms=200)
        for tp, batch in batches.items():
            for record in batch:
                if record.offset >= ends[tp] and record.timestamp >= started_ms:
                    remaining.discard(tp)
                    reader.pause(tp)
                    break
                records.append(record)
        if not any(batches.values()):
            for tp in list(remaining):
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    return records


def _epoch(text: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(text), UTC) if text else None
    except (ValueError, OverflowError, OSError):
        return None


def _integer(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None
