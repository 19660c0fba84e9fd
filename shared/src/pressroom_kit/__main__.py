"""``python -m pressroom_kit relay --service NAME --dsn DSN --bootstrap HOST:PORT``.

Runs an outbox relay on its own (services normally run it inside their process).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from pressroom_kit.logs import configure_logging
from pressroom_kit.outbox import Relay, RelaySettings


async def _relay(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    relay = Relay(
        service=args.service,
        dsn=args.dsn,
        bootstrap_servers=args.bootstrap,
        settings=RelaySettings(batch_size=args.batch_size, poll_interval=args.poll_interval),
    )
    await relay.run(stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pressroom_kit")
    sub = parser.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay", help="publish a service database's outbox to Kafka")
    relay.add_argument("--service", required=True)
    relay.add_argument("--dsn", required=True)
    relay.add_argument("--bootstrap", required=True)
    relay.add_argument("--batch-size", type=int, default=500)
    relay.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    configure_logging(args.service)
    asyncio.run(_relay(args))


if __name__ == "__main__":
    main()
