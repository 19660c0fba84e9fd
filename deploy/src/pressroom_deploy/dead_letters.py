"""``pressroom dlq list|show|replay <service>``: a service consumer's dead letters."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime

from aiokafka.errors import KafkaError
from pressroom_kit.dlq import DeadLetter, parse_since, read_dead_letters, replay_dead_letters

ERROR_WIDTH = 72


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dlq`` and its ``list``, ``show`` and ``replay`` commands."""
    dlq = sub.add_parser("dlq", help="list, show and replay a service's dead letters")
    actions = dlq.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("list", "one line per dead letter"),
        ("show", "every matching dead letter in full: headers and value"),
        ("replay", "publish the matching dead letters again to their original topic"),
    ):
        command = actions.add_parser(action, help=help_text)
        command.add_argument(
            "service",
            help="the consumer whose dead letters to read: a service name (its consumer "
            "group pressroom-<service>, or PRESSROOM_<SERVICE>_CONSUMER_GROUP) or a "
            "consumer name",
        )
        command.add_argument(
            "--topic",
            action="append",
            help="an original topic (repeatable; default: every public topic)",
        )
        command.add_argument(
            "--since", type=_since, help="failed at or after: a duration (30m, 2h, 7d) or a time"
        )
        command.add_argument("--id", type=_event_id, help="the CloudEvent id (ce_id)")
        command.add_argument(
            "--bootstrap",
            help="Kafka bootstrap servers (default: PRESSROOM_KAFKA_BOOTSTRAP_SERVERS, "
            "else the local stack's broker)",
        )
        if action == "replay":
            command.add_argument(
                "--dry-run", action="store_true", help="say what would be replayed, send nothing"
            )


def consumer_names(service: str) -> set[str]:
    """The names a service's consumer writes into ``dlq_consumer``."""
    names = {service, f"pressroom-{service}"}
    configured = os.environ.get(f"PRESSROOM_{service.upper()}_CONSUMER_GROUP")
    if configured:
        names.add(configured)
    return names


def bootstrap_servers(flag: str | None) -> str:
    if flag:
        return flag
    configured = os.environ.get("PRESSROOM_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured
    return f"127.0.0.1:{os.environ.get('PRESSROOM_DEV_KAFKA_PORT', '19092')}"


async def run(args: argparse.Namespace) -> int:
    """Run one ``dlq`` command; the exit status."""
    # Broker failures are reported below, once; aiokafka's own log lines would repeat them.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = bootstrap_servers(args.bootstrap)
    consumers = consumer_names(args.service)
    try:
        letters = await read_dead_letters(
            bootstrap, topics=args.topic, consumers=consumers, since=args.since, event_id=args.id
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        print(f"cannot read the dead-letter topics from {bootstrap}: {exc!r}", file=sys.stderr)
        return 1
    if not letters:
        print(f"no dead letters of {' / '.join(sorted(consumers))} match")
        return 0 if args.action == "list" else 1
    if args.action == "list":
        _print_table(letters)
        return 0
    if args.action == "show":
        for index, letter in enumerate(letters):
            if index:
                print()
            _print_letter(letter)
        return 0
    return await _replay(bootstrap, letters, dry_run=args.dry_run)


async def _replay(bootstrap: str, letters: Sequence[DeadLetter], *, dry_run: bool) -> int:
    try:
        outcomes = await replay_dead_letters(bootstrap, letters, dry_run=dry_run)
    except (KafkaError, OSError) as exc:
        print(f"cannot publish to {bootstrap}: {exc!r}", file=sys.stderr)
        return 1
    sent = 0
    for outcome in outcomes:
        letter = outcome.letter
        if outcome.sent:
            sent += 1
            print(
                f"replayed {letter.event_id} ({letter.event_type}) to "
                f"{letter.original_topic}[{outcome.partition}]@{outcome.offset}"
            )
        elif outcome.skipped == "dry run":
            print(
                f"would replay {letter.event_id} ({letter.event_type}) to "
                f"{letter.original_topic}[{letter.original_partition}]"
            )
        else:
            print(f"skipped {_position(letter)}: {outcome.skipped}")
    if dry_run:
        print("dry run: nothing sent")
        return 0
    print(
        f"{sent} of {len(outcomes)} replayed; consumers that already applied an event skip it "
        "(same ce_id), those that still fail dead-letter it again"
    )
    return 0 if sent == len(outcomes) else 1


def _print_table(letters: Sequence[DeadLetter]) -> None:
    rows = [
        (
            str(letter.event_id or "-"),
            letter.event_type or "-",
            _origin(letter),
            _time(letter.failed_at),
            _first_line(letter.error),
        )
        for letter in letters
    ]
    header = ("ID", "TYPE", "ORIGINAL", "FAILED AT", "ERROR")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print(
            "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
        )
    print(f"{len(rows)} dead letter{'s' if len(rows) != 1 else ''}")


def _print_letter(letter: DeadLetter) -> None:
    print(f"dead letter {_position(letter)}")
    fields = [
        ("id", str(letter.event_id or "- (no valid ce_id)")),
        ("type", letter.event_type or "-"),
        ("consumer", letter.consumer),
        ("original", _origin(letter)),
        ("failed at", _time(letter.failed_at)),
        ("key", letter.key.decode(errors="replace") if letter.key is not None else "-"),
    ]
    for name, value in fields:
        print(f"  {name:<10} {value}")
    print("error")
    for line in letter.error.splitlines() or [""]:
        print(f"  {line}")
    print("headers")
    for name, raw in letter.headers:
        print(f"  {name}: {raw.decode(errors='replace')}")
    print("value")
    for line in letter.value_text().splitlines():
        print(f"  {line}")


def _position(letter: DeadLetter) -> str:
    return f"{letter.topic}[{letter.partition}]@{letter.offset}"


def _origin(letter: DeadLetter) -> str:
    partition = "?" if letter.original_partition is None else letter.original_partition
    offset = "?" if letter.original_offset is None else letter.original_offset
    return f"{letter.original_topic or '?'}[{partition}]@{offset}"


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _first_line(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


def _since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _event_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None
