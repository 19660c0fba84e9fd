"""The ``pressroom`` command: the local embedded stack, development tokens, projection
rebuilds and dead letters."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import uuid

from pressroom_kit.auth import mint_token

from pressroom_deploy import dead_letters
from pressroom_deploy.stack import LocalStack, data_dir, jwt_secret


def _token(args: argparse.Namespace) -> None:
    secret = jwt_secret(data_dir())
    print(
        mint_token(
            secret,
            sub=args.sub,
            role=args.role,
            brand_id=args.brand,
            email=args.email,
            ttl_seconds=args.ttl,
            issuer=os.environ.get("PRESSROOM_JWT_ISSUER"),
            audience=os.environ.get("PRESSROOM_JWT_AUDIENCE"),
        )
    )


def _dev(args: argparse.Namespace) -> None:
    stack = LocalStack(data_dir(), only=args.only)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await stack.run(stop)

    sys.exit(asyncio.run(main()))


def _rebuild(args: argparse.Namespace) -> None:
    from pressroom_deploy.stack import rebuild_service

    sys.exit(asyncio.run(rebuild_service(args.service, args.database_url, swap=args.swap)))


def _dlq(args: argparse.Namespace) -> None:
    sys.exit(asyncio.run(dead_letters.run(args)))


def _analytics_backfill(args: argparse.Namespace) -> None:
    from datetime import date

    from pressroom_analytics.sync.backfill import BackfillError, run_with_progress

    token = args.token or os.environ.get("PRESSROOM_TOKEN")
    if not token:
        token = mint_token(
            jwt_secret(data_dir()), sub="pressroom-backfill", role="manager", brand_id=args.brand
        )
    try:
        result = run_with_progress(
            args.url,
            token,
            date.fromisoformat(args.since),
            date.fromisoformat(args.until),
            platforms=args.platform,
            chunk_days=args.chunk_days,
            parallel=args.parallel,
        )
    except (BackfillError, ValueError) as exc:
        print(f"backfill failed: {exc}", file=sys.stderr)
        sys.exit(2)
    print(", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())))
    sys.exit(0 if result.ok else 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pressroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the embedded stack (PostgreSQL, broker, services)")
    dev.add_argument("--only", nargs="*", help="run only these services")
    dev.set_defaults(func=_dev)

    token = sub.add_parser("token", help="mint a development JWT (HS256, the local secret)")
    token.add_argument("--brand", type=uuid.UUID, help="brand id (omit for onboarding tokens)")
    token.add_argument("--role", choices=["admin", "manager", "viewer"], default="admin")
    token.add_argument("--sub", default=f"dev-{secrets.token_hex(4)}")
    token.add_argument("--email", default="dev@pressroom.local")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    token.set_defaults(func=_token)

    rebuild = sub.add_parser("rebuild", help="replay a service's projections and verify them")
    rebuild.add_argument("service")
    rebuild.add_argument("--database-url", help="owner DSN (default: the local stack's)")
    rebuild.add_argument("--swap", action="store_true", help="replace live rows when done")
    rebuild.set_defaults(func=_rebuild)

    analytics = sub.add_parser("analytics", help="analytics operations").add_subparsers(
        dest="action", required=True
    )
    backfill = analytics.add_parser("backfill", help="sync a long range in pieces, with progress")
    backfill.add_argument("--brand", type=uuid.UUID, required=True)
    backfill.add_argument("--from", dest="since", required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="until", required=True, help="last day, YYYY-MM-DD")
    backfill.add_argument("--platform", action="append", help="repeatable; default: connected")
    backfill.add_argument(
        "--url", default=os.environ.get("PRESSROOM_ANALYTICS_URL", "http://127.0.0.1:8103")
    )
    backfill.add_argument(
        "--token",
        help="a manager token (default: PRESSROOM_TOKEN, else "
        "one minted with the local stack's secret)",
    )
    backfill.add_argument("--chunk-days", type=int, default=31)
    backfill.add_argument("--parallel", type=int, default=2)
    backfill.set_defaults(func=_analytics_backfill)

    dead_letters.add_commands(sub)
    sub.choices["dlq"].set_defaults(func=_dlq)

    args = parser.parse_args(argv)
    args.func(args)
