"""Metrics for analytics: ``analytics.sync.requested.v1`` in, one
``publishing.metrics.collected.v1`` per platform asked for out. Platform tokens never leave
this service.

Two halves, so that no platform is called inside the inbox consumer's transaction:

1. ``record_request`` (the inbox handler) writes one work row per (sync, platform) in
   ``publishing_metric_syncs``; a redelivered or resent request adds nothing (the rows are
   unique per brand, sync and platform).
2. ``MetricsSync`` (a worker on every replica) claims due rows across brands
   (``publishing_metric_syncs_claim``: ``FOR UPDATE SKIP LOCKED`` and a lease through
   ``pressroom_kit.leases``), fetches through the adapter's ``fetch_metrics`` with the
   connection's credentials (``CredentialSource``: refreshed tokens), maps the platform's post
   ids to ours, and writes the answer to the outbox **in the transaction that marks the row
   done, fenced on the lease**. A crash between the fetch and that commit leaves the row
   pending: its lease runs out, another claim fetches again, and exactly one answer is ever
   written. The answer's event id is ``uuid5(brand, sync, platform)``, so even a publisher
   that resends is deduplicated by the consumers' inboxes.

Answers: ``ok``; ``not_connected`` (no usable connection, or the platform says the grant is
revoked); ``not_supported`` (no adapter for that id here, or the adapter reports no metrics);
``failed`` with ``error`` (a refusal, a range that is too long or backwards, an answer too
large for one message, or transient errors past ``metrics_max_retries``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from pressroom_contracts.events.analytics import SyncRequested
from pressroom_contracts.events.publishing import AccountDay, MetricsCollected, PostDay
from pressroom_kit.cloudevents import new_event
from pressroom_kit.db import tenant_transaction
from pressroom_kit.health import Heartbeats
from pressroom_kit.leases import Lease, LeasedRows, LeaseLost
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import MessageTooLarge, OutboxMessage, outbox_row, write_outbox

from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    ConnectionUnusable,
    Credentials,
    CredentialSource,
    MetricsReport,
    NotSupportedError,
    Platform,
    PlatformError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.posts.commands import SOURCE, TOPIC
from pressroom_publishing.scheduler import Clock, utcnow
from pressroom_publishing.settings import PublishingSettings

log = get_logger(__name__)

# The longest range one request may ask for (the platforms' own insights windows are about
# three months: the sandbox's 93 days, Graph's 93). A longer one is answered ``failed``
# with an error saying so: analytics asks in parts.
MAX_RANGE_DAYS = 93
# Posts published this long before the range still earn numbers in it; older ones are not
# asked about (their numbers have faded to nothing on every platform we know).
LOOKBACK_DAYS = 90
# At most this many published posts are asked about per answer (the newest), which with
# ``MAX_RANGE_DAYS`` keeps the answer inside one Kafka message in practice; a larger one is
# answered ``failed`` rather than cut silently.
MAX_POSTS = 1000
# Platform ids in one request: more is not a request but noise.
MAX_PLATFORMS = 64
PLATFORM_CHARS = 64
NAMESPACE = uuid.UUID("5d7c1f2e-3a4b-4c8d-9e0f-1a2b3c4d5e6f")
# PostgreSQL refuses U+0000 in text and jsonb (the row's last_error, the outbox payload) and a
# lone surrogate cannot be encoded: a platform's error or post id holding one would fail the
# answer's transaction on every attempt (a fetch each time) and end as an internal error.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """``value`` with what PostgreSQL cannot store replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value)


def answer_id(brand_id: uuid.UUID, sync_id: uuid.UUID, platform: str) -> uuid.UUID:
    """The answer's event id: the same for every attempt, so resends deduplicate."""
    return uuid.uuid5(NAMESPACE, f"{brand_id}:{sync_id}:{platform}")


async def record_request(conn: asyncpg.Connection, request: SyncRequested, now: datetime) -> int:
    """One pending work row per platform asked for; returns how many were new."""
    platforms = list(dict.fromkeys(request.platforms))
    usable = [p for p in platforms if 0 < len(p) <= PLATFORM_CHARS][:MAX_PLATFORMS]
    if len(usable) < len(platforms):
        log.warning(
            "a sync request names platforms that cannot be answered; ignored",
            sync_id=str(request.sync_id),
            asked=len(platforms),
            kept=len(usable),
        )
    status: str = await conn.execute(
        "INSERT INTO publishing_metric_syncs (brand_id, sync_id, platform, since, until, "
        "timezone, due_at, created_at, updated_at) "
        "SELECT $1, $2, p, $3, $4, $5, $6, $6, $6 FROM unnest($7::text[]) AS p "
        "ON CONFLICT (brand_id, sync_id, platform) DO NOTHING",
        request.brand_id,
        request.sync_id,
        request.since,
        request.until,
        request.timezone[:64],
        now,
        usable,
    )
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True)
class Answer:
    status: Literal["ok", "failed", "not_connected", "not_supported"]
    account: Sequence[AccountDay] = ()
    posts: Sequence[PostDay] = ()
    error: str | None = None


def storable_answer(answer: Answer) -> Answer:
    """The answer with the platform's text made storable (the numbers as they are)."""
    posts = [
        p
        if storable(p.platform_post_id) == p.platform_post_id
        else p.model_copy(update={"platform_post_id": storable(p.platform_post_id)})
        for p in answer.posts
    ]
    error = None if answer.error is None else storable(answer.error)
    return Answer(answer.status, answer.account, posts, error)


@dataclass(frozen=True)
class Retry:
    """A passing failure: try again later (or answer ``failed`` when out of attempts)."""

    error: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Published:
    post_id: uuid.UUID
    published_at: datetime
    media_kind: str | None


def media_kind(kinds: Sequence[str | None], has_media: bool) -> str | None:
    """``text`` without media; ``image``/``video`` when all are; ``mixed`` otherwise. None
    when the post had media but none is known here any more (deleted assets)."""
    if not has_media:
        return "text"
    known = {k for k in kinds if k}
    if not known:
        return None
    if known == {"image"}:
        return "image"
    if known == {"video"}:
        return "video"
    return "mixed"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass
class MetricsSync:
    pool: asyncpg.Pool
    settings: PublishingSettings
    platforms: Mapping[str, Platform]
    credentials: CredentialSource
    heartbeats: Heartbeats = field(default_factory=Heartbeats)
    clock: Clock = utcnow
    beat_name: str = "metrics_sync"

    def __post_init__(self) -> None:
        self.heartbeats.register(
            self.beat_name, max_age=max(30.0, self.settings.metrics_poll_s * 20)
        )
        self.leases = LeasedRows(
            "publishing_metric_syncs",
            duration=timedelta(seconds=self.settings.metrics_lease_s),
            clock=lambda: self.clock(),
        )
        self._gate = asyncio.Semaphore(self.settings.metrics_concurrency)

    # --- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work due rows until ``stop``: at once again after a full batch, else after
        ``metrics_poll_s``."""
        while not stop.is_set():
            claimed = 0
            try:
                claimed = await self.step()
                self.heartbeats.beat(self.beat_name, detail=f"{claimed} claimed")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("metrics pass failed; the next pass retries", error=str(exc))
                self.heartbeats.beat(self.beat_name, ok=False, detail=str(exc))
            if claimed >= self.settings.metrics_claim_batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.metrics_poll_s)

    async def claim(self, limit: int | None = None) -> list[tuple[Lease, asyncpg.Record]]:
        return await self.leases.claim(
            self.pool,
            "SELECT * FROM publishing_metric_syncs_claim($1, $2, $3)",
            limit or self.settings.metrics_claim_batch,
        )

    async def step(self) -> int:
        """Claim what is due now (on the injected clock) and work all of it; returns how
        many rows were claimed."""
        claimed = await self.claim()
        await asyncio.gather(*(self._guarded(lease, row) for lease, row in claimed))
        return len(claimed)

    async def _guarded(self, lease: Lease, row: asyncpg.Record) -> None:
        try:
            async with self._gate:
                await self.work(lease, row)
        except LeaseLost:
            log.info("another worker took the sync over", sync_id=str(row["sync_id"]))
        except Exception as exc:  # a bug or an unreadable answer: retried, bounded
            log.exception("a metrics sync failed", sync_id=str(row["sync_id"]))
            try:
                await self._settle(lease, row, Retry(f"internal error: {type(exc).__name__}"))
            except LeaseLost:
                pass
            except Exception:  # the database too: the lease runs out, a later claim retries
                log.exception("a failed metrics sync could not be rescheduled")

    async def work(self, lease: Lease, row: asyncpg.Record) -> None:
        """Collect one (sync, platform) and record the outcome, fenced on ``lease``."""
        keeper = self.leases.keep(lease, lambda: tenant_transaction(self.pool, row["brand_id"]))
        async with keeper:
            outcome = await self.collect(row)
        await self._settle(keeper.lease, row, outcome)

    async def _settle(self, lease: Lease, row: asyncpg.Record, outcome: Answer | Retry) -> None:
        if isinstance(outcome, Retry):
            if row["attempts"] > self.settings.metrics_max_retries:
                outcome = Answer(
                    "failed",
                    error=f"gave up after {row['attempts']} attempts: {outcome.error}",
                )
            else:
                await self._reschedule(lease, row, outcome)
                return
        await self._answer(lease, row, outcome)

    # --- collecting ------------------------------------------------------------------------

    async def collect(self, row: asyncpg.Record) -> Answer | Retry:
        """What to answer for one work row (or that it is to be tried again)."""
        since, until, platform = row["since"], row["until"], row["platform"]
        if row["attempts"] > self.settings.metrics_max_retries + 1:
            # Claimed again and again without an outcome (a worker dies on it): stop.
            return Answer("failed", error=f"gave up after {row['attempts'] - 1} attempts")
        if until < since:
            return Answer("failed", error=f"the range ends ({until}) before it starts ({since})")
        days = (until - since).days + 1
        if days > MAX_RANGE_DAYS:
            return Answer(
                "failed",
                error=f"the range is {days} days; at most {MAX_RANGE_DAYS} days per request "
                "(ask for it in parts)",
            )
        adapter = self.platforms.get(platform)
        if adapter is None:
            return Answer("not_supported", error=f"{platform} is not available here")
        if not adapter.capabilities.metrics:
            return Answer("not_supported", error=f"{platform} reports no metrics")
        brand_id: uuid.UUID = row["brand_id"]
        try:
            credentials = await self.credentials.credentials(brand_id, platform)
        except ConnectionUnusable as exc:
            return Answer("not_connected", error=exc.message)
        except TransientError as exc:
            return Retry(exc.message, exc.retry_after_s)
        published = await self.published_posts(
            brand_id, platform, since, until, _zone(row["timezone"])
        )
        try:
            report = await self._fetch(adapter, credentials, since, until, list(published))
        except ConnectionUnusable as exc:
            return Answer("not_connected", error=exc.message)
        except RevokedError as exc:
            await self.credentials.mark_revoked(credentials, exc)
            return Answer("not_connected", error=f"the connection was revoked: {exc.message}")
        except NotSupportedError as exc:
            return Answer("not_supported", error=exc.message)
        except TransientError as exc:
            return Retry(exc.message, exc.retry_after_s)
        except PlatformError as exc:
            return Answer("failed", error=f"{platform} refused: {exc.message}")
        return Answer(
            "ok",
            account=[
                AccountDay(
                    date=d.day,
                    reach=d.reach,
                    impressions=d.impressions,
                    engagement=d.engagement,
                    followers=d.followers,
                )
                for d in report.account
            ],
            posts=[self._post_day(m, published.get(m.platform_post_id)) for m in report.posts],
        )

    async def _fetch(
        self,
        adapter: Platform,
        credentials: Credentials,
        since: date,
        until: date,
        ids: list[str],
    ) -> MetricsReport:
        """One fetch; a token the platform calls expired is refreshed once and the fetch
        repeated (``ConnectionUnusable`` when it cannot be refreshed)."""
        try:
            return await adapter.fetch_metrics(credentials, since, until, ids)
        except AuthExpiredError:
            fresh = await self.credentials.refresh_after_rejection(credentials)
            return await adapter.fetch_metrics(fresh, since, until, ids)

    @staticmethod
    def _post_day(metrics: Any, ours: Published | None) -> PostDay:
        return PostDay(
            post_id=ours.post_id if ours else None,
            platform_post_id=metrics.platform_post_id,
            date=metrics.day,
            reach=metrics.reach,
            impressions=metrics.impressions,
            engagement=metrics.engagement,
            likes=metrics.likes,
            comments=metrics.comments,
            shares=metrics.shares,
            published_at=ours.published_at if ours else None,
            media_kind=ours.media_kind if ours else None,
        )

    async def published_posts(
        self, brand_id: uuid.UUID, platform: str, since: date, until: date, zone: ZoneInfo
    ) -> dict[str, Published]:
        """The brand's posts out on ``platform`` that can have numbers in the range (published
        before its end, at most ``LOOKBACK_DAYS`` before its start; the newest
        ``MAX_POSTS``), by the platform's post id, with what they carried."""
        start = datetime.combine(since - timedelta(days=LOOKBACK_DAYS), time(), zone)
        end = datetime.combine(until + timedelta(days=1), time(), zone)
        async with tenant_transaction(self.pool, brand_id) as conn:
            rows = await conn.fetch(
                "SELECT t.post_id, t.platform_post_id, t.published_at, "
                "CASE WHEN jsonb_typeof(j.overrides->$1->'media_ids') = 'array' "
                "THEN ARRAY(SELECT jsonb_array_elements_text(j.overrides->$1->'media_ids'))"
                "::uuid[] ELSE j.media_ids END AS media "
                "FROM publishing_targets t JOIN publishing_jobs j ON j.id = t.post_id "
                "WHERE t.platform = $1 AND t.status = 'published' "
                "AND t.platform_post_id IS NOT NULL AND t.published_at >= $2 "
                "AND t.published_at < $3 ORDER BY t.published_at DESC LIMIT $4",
                platform,
                start.astimezone(UTC),
                end.astimezone(UTC),
                MAX_POSTS,
            )
            assets = {m for r in rows for m in r["media"]}
            found = await conn.fetch(
                "SELECT asset_id, kind FROM publishing_media WHERE asset_id = ANY($1::uuid[])",
                list(assets),
            )
            kinds: dict[uuid.UUID, str] = {r["asset_id"]: r["kind"] for r in found}
        return {
            r["platform_post_id"]: Published(
                r["post_id"],
                r["published_at"],
                media_kind([kinds.get(m) for m in r["media"]], bool(r["media"])),
            )
            for r in rows
        }

    # --- recording -------------------------------------------------------------------------

    @staticmethod
    def _message(
        row: Mapping[str, Any] | asyncpg.Record, answer: Answer, now: datetime
    ) -> OutboxMessage:
        payload = MetricsCollected(
            sync_id=row["sync_id"],
            brand_id=row["brand_id"],
            platform=row["platform"],
            status=answer.status,
            since=row["since"],
            until=row["until"],
            account=list(answer.account),
            posts=list(answer.posts),
            error=answer.error,
            collected_at=now,
        )
        return OutboxMessage(
            topic=TOPIC,
            key=str(row["sync_id"]),
            event=new_event(
                source=SOURCE,
                type=MetricsCollected.event_type,
                data=payload.model_dump(mode="json", by_alias=True),
                event_id=answer_id(row["brand_id"], row["sync_id"], row["platform"]),
                subject=str(row["sync_id"]),
                brand_id=row["brand_id"],
                sequence=None,
                time=now,
                traceparent=None,
            ),
        )

    @classmethod
    def fitted(
        cls, row: Mapping[str, Any] | asyncpg.Record, answer: Answer, now: datetime
    ) -> tuple[Answer, OutboxMessage]:
        """The answer's message, or, when it would be too large for the broker, a ``failed``
        answer saying so (never a silently cut one)."""
        message = cls._message(row, answer, now)
        try:
            outbox_row(message)  # the size check, before anything is written
        except MessageTooLarge as exc:
            answer = Answer(
                "failed",
                error=f"the numbers ({len(answer.account)} account days, {len(answer.posts)} "
                f"post days) do not fit in one message ({exc.extra.get('size')} bytes, at most "
                f"{exc.extra.get('limit')}); ask for a shorter range",
            )
            message = cls._message(row, answer, now)
        return answer, message

    async def _answer(self, lease: Lease, row: asyncpg.Record, answer: Answer) -> None:
        """The answer and the row's completion in one transaction, fenced on the lease:
        a worker that lost the row writes nothing."""
        now = self.clock()
        answer, message = self.fitted(row, storable_answer(answer), now)
        async with tenant_transaction(self.pool, row["brand_id"]) as conn:
            await self.leases.execute(
                conn,
                lease,
                "UPDATE publishing_metric_syncs SET status = 'done', answer = $3, "
                "last_error = $4, finished_at = $5, updated_at = $5, lease_token = NULL, "
                "lease_until = NULL WHERE id = $1 AND lease_token = $2",
                answer.status,
                answer.error,
                now,
            )
            await write_outbox(conn, [message])
        log.info(
            "metrics answered",
            sync_id=str(row["sync_id"]),
            platform=row["platform"],
            status=answer.status,
            posts=len(answer.posts),
        )

    async def _reschedule(self, lease: Lease, row: asyncpg.Record, retry: Retry) -> None:
        now = self.clock()
        settings = self.settings
        backoff = min(
            settings.metrics_retry_max_s,
            settings.metrics_retry_base_s * 2 ** max(0, row["attempts"] - 1),
        )
        wait = max(backoff, retry.retry_after_s or 0.0)
        async with tenant_transaction(self.pool, row["brand_id"]) as conn:
            await self.leases.execute(
                conn,
                lease,
                "UPDATE publishing_metric_syncs SET due_at = $3, last_error = $4, "
                "updated_at = $5, lease_token = NULL, lease_until = NULL "
                "WHERE id = $1 AND lease_token = $2",
                now + timedelta(seconds=wait),
                storable(retry.error),
                now,
            )
        log.info(
            "metrics fetch will be retried",
            sync_id=str(row["sync_id"]),
            platform=row["platform"],
            attempt=row["attempts"],
            in_s=wait,
            error=retry.error,
        )
