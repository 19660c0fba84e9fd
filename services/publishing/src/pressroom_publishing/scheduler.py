"""The scheduler: publishes due post platforms, each at most once, with any number of replicas.

How "never twice" holds:

1. Due targets are claimed across brands by ``publishing_claim_ahead`` (SECURITY DEFINER,
   ``FOR UPDATE SKIP LOCKED``, a lease token per claim; ``pressroom_kit.leases``). A running
   replica claims what falls due within ``claim_ahead_s`` in one claim and starts each
   target at its ``due_at``: one claim per batch rather than per target.
2. Before the platform call, one fenced transaction records the attempt: the target's
   ``attempts`` + 1 and ``attempt_open``, a ``publishing_logs`` row ``started``, and the post's
   ``PublishingStarted``. The call carries ``client_reference``, the same key for every
   attempt of the post on that platform, so a platform that deduplicates sees one post.
3. After the call, a second fenced transaction records the outcome. ``LeaseLost`` (another
   replica took over while this one stalled) records nothing: the other's outcome counts.
4. A claimed target whose attempt is still open (a crash between 2 and 3, or an ambiguous
   failure such as a timeout) is reconciled first: ``find_published(reference)`` says whether
   it went out (published) or not (attempt again); a platform that cannot be asked makes it
   ``unconfirmed`` with ``publishing.post.unconfirmed.v1``, and a person settles it.

Both transactions lock the post's row before the target's, like every post command, so a
cancel or an edit either happens before an attempt is recorded (and the attempt is dropped)
or is refused because the post is publishing.

Failures: transient ones (5xx, 429, timeouts) are retried up to ``max_retries`` times with
exponential backoff and jitter, never sooner than ``Retry-After``; an expired token is
refreshed once through the ``CredentialSource`` and the call repeated; a revoked grant marks
the connection revoked and fails the platform; a missing connection or a refusal by the
platform fails it at once with the reason. Platforms of one post succeed or fail on their
own (``partially_published``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import asyncpg
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound
from pressroom_kit.health import Heartbeats
from pressroom_kit.leases import Lease, LeasedRows, LeaseKeeper, LeaseLost
from pressroom_kit.logs import get_logger
from pressroom_kit.repository import retry_on_conflict
from pressroom_kit.runtime import first_set, idle_poll

from pressroom_publishing import metrics
from pressroom_publishing.media_links import MediaLinks, MediaServiceDown, MediaUnavailable
from pressroom_publishing.platforms.base import (
    AuthExpiredError,
    ConnectionUnusable,
    Credentials,
    CredentialSource,
    MediaItem,
    NotSupportedError,
    Platform,
    PlatformError,
    PostContent,
    PublishedPost,
    PublishRequest,
    RejectedError,
    RevokedError,
    TransientError,
)
from pressroom_publishing.posts import commands
from pressroom_publishing.posts.domain import Post
from pressroom_publishing.posts.validation import media_items
from pressroom_publishing.settings import PublishingSettings

log = get_logger(__name__)
Clock = Callable[[], datetime]
T = TypeVar("T")
NOTIFY_CHANNEL = "pressroom_publishing_due"
ACTIVE = ("scheduled", "publishing")
ACTOR = "scheduler"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    kind: Literal["published", "retry", "failed", "unconfirmed"]
    code: str | None = None  # ours: rejected, revoked, connection_missing, retries_exhausted...
    message: str | None = None
    platform_code: str | None = None
    published: PublishedPost | None = None
    retry_after_s: float | None = None
    reopen: bool = False  # the outcome is unknown: reconcile before attempting again
    check: int = 0  # a failed check of the open attempt, numbered (backs off on its own)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Opened:
    target: asyncpg.Record
    post: Post
    items: dict[uuid.UUID, MediaItem]
    begun: tuple[int, int] | None  # (attempt, log id) when the attempt was recorded


class _Abandon(Exception):
    """The target is no longer to be published (cancelled, unscheduled, taken over)."""


class _MaybeSent(Exception):
    """A transient failure of the publish call itself: the request may have reached the
    platform (a 5xx from a proxy in front of a platform that committed, a timeout, a dropped
    connection), so the outcome is unknown. Not a ``PlatformError``: it passes the refresh."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class Scheduler:
    pool: asyncpg.Pool
    settings: PublishingSettings
    platforms: Mapping[str, Platform]
    credentials: CredentialSource
    media: MediaLinks | None = None
    heartbeats: Heartbeats = field(default_factory=Heartbeats)
    clock: Clock = utcnow
    random_fraction: Callable[[], float] = random.random
    # How far ahead ``run`` claims (``step`` claims only what is due): at 100 targets due a
    # second, ~10 per claim instead of one claim, commit and wake-up of each replica each.
    claim_ahead_s: float = 0.1
    leases: LeasedRows = field(init=False)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    beat_name = "scheduler"

    def __post_init__(self) -> None:
        self.heartbeats.register(
            self.beat_name,
            max_age=max(
                30.0, self.settings.poll_interval_s * 20, self.settings.idle_poll_max_s * 2
            ),
        )
        self.leases = LeasedRows(
            "publishing_targets",
            duration=timedelta(seconds=self.settings.lease_s),
            clock=lambda: self.clock(),
        )

    # --- driving ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and publish until ``stop``; wakes on NOTIFY (new or moved targets), on a
        finished publication (capacity), or after ``poll_interval_s`` (retries come due)."""
        wake = asyncio.Event()

        def on_notify(*_: object) -> None:
            wake.set()

        listener = await self.pool.acquire()
        await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        next_gauge = 0.0
        quiet = 0  # rounds in a row that claimed nothing: the poll backs off
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                woken = wake.is_set()
                wake.clear()
                room = self.settings.publish_concurrency - len(self._inflight)
                claimed = (
                    await self.claim(min(room, self.settings.claim_batch), self.claim_ahead_s)
                    if room > 0
                    else []
                )
                self.heartbeats.beat(self.beat_name, detail=f"{len(self._inflight)} in flight")
                for lease, row in claimed:
                    task = asyncio.create_task(self._guarded(lease, row, wait=True))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if loop.time() >= next_gauge:
                    next_gauge = loop.time() + 5.0
                    await self._update_backlog()
                quiet = 0 if claimed or woken else quiet + 1
                full = room <= len(claimed)
                if not claimed or full:
                    # Full: wait for a publication to finish. Otherwise until the next target
                    # comes due, a NOTIFY, or the poll interval; not for every publication
                    # that ends (at 100 a second that was a claim each).
                    idle = self.settings.poll_interval_s if room <= 0 else await self._idle_s(quiet)
                    events = (stop, wake, self._done) if full else (stop, wake)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(first_set(*events), timeout=idle)
                    self._done.clear()
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(NOTIFY_CHANNEL, on_notify)
                await listener.execute(f"UNLISTEN {NOTIFY_CHANNEL}")
            await self.pool.release(listener)
            await self.close()

    async def close(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def step(self) -> int:
        """Claim what is due now (on the injected clock) and publish all of it; tests and
        tools drive time this way. Returns how many targets were claimed."""
        claimed = await self.claim(self.settings.claim_batch)
        await asyncio.gather(*(self._guarded(lease, row) for lease, row in claimed))
        return len(claimed)

    async def claim(self, limit: int, ahead_s: float = 0.0) -> list[tuple[Lease, asyncpg.Record]]:
        """Lease up to ``limit`` targets due by now + ``ahead_s`` (or whose lease expired);
        the rows come back whole."""
        return await self.leases.claim(
            self.pool,
            "SELECT * FROM publishing_claim_ahead($1, $2, $3, $4)",
            limit,
            timedelta(seconds=ahead_s),
        )

    async def _idle_s(self, quiet: int = 0) -> float:
        """How long to wait for work: until the next target comes due, at most the poll
        interval (which also catches what this replica was not woken for), doubled for
        each round in a row that claimed nothing, up to ``idle_poll_max_s``."""
        poll = idle_poll(self.settings.poll_interval_s, quiet, self.settings.idle_poll_max_s)
        try:
            next_due: datetime | None = await self.pool.fetchval("SELECT publishing_next_due()")
        except (asyncpg.PostgresError, OSError):
            return poll
        if next_due is None:
            return poll
        # Due already but not claimable (another replica's claim holds it): look again soon.
        wait = (next_due - self.clock()).total_seconds() - self.claim_ahead_s
        return min(poll, max(0.005, wait))

    async def _update_backlog(self) -> None:
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            count = await self.pool.fetchval("SELECT publishing_due_backlog($1)", self.clock())
            metrics.DUE_BACKLOG.set(count or 0)

    async def _guarded(self, lease: Lease, row: asyncpg.Record, *, wait: bool = False) -> None:
        try:
            if wait:  # claimed ahead: start at its time
                early = (row["due_at"] - self.clock()).total_seconds()
                if early > 0:
                    await asyncio.sleep(early)
            await self.publish_target(lease, row)
        except LeaseLost:
            log.warning("lease lost; outcome not recorded", target_id=str(lease.row_id))
        except _Abandon:
            pass
        except Exception:
            # The lease expires and the target is claimed again; an attempt left open is
            # reconciled with the platform first, so nothing goes out twice.
            log.exception("publishing crashed", target_id=str(lease.row_id))
        finally:
            self._done.set()

    # --- one target --------------------------------------------------------------------------

    async def publish_target(self, lease: Lease, claimed: asyncpg.Record) -> None:
        """Publish one claimed target (``claimed``: its row as the claim returned it)."""
        opened = await self._open(lease, claimed)
        if opened is None:
            return  # taken over, cancelled or unscheduled since the claim
        target, post = opened.target, opened.post
        platform = target["platform"]
        adapter = self.platforms.get(platform)
        content = post.content_for(platform)
        request = PublishRequest(
            post_id=uuid.UUID(post.id),
            reference=target["client_reference"],
            content=PostContent(
                text=content.text,
                media=[opened.items[m] for m in content.media_ids if m in opened.items],
                link=content.link,
                options=post.options_for(platform),
            ),
        )
        keeper = self.leases.keep(lease, lambda: tenant_transaction(self.pool, claimed["brand_id"]))
        async with keeper:
            if adapter is None:
                attempt, log_id = opened.begun or await self._begin(lease, target)
                outcome = Outcome(
                    "failed",
                    code="platform_unavailable",
                    message=f"{platform} is not available in this installation",
                )
                await self._record(lease, target, attempt, log_id, outcome)
                return
            if opened.begun is None:  # the last attempt is still open: ask the platform
                verdict = await self._reconcile(target, adapter, request, keeper)
                if verdict is not None and verdict.kind == "retry":
                    verdict = self._check_failed(target, adapter, verdict)
                if verdict is not None:
                    await self._settle_open(lease, target, verdict)
                    return
                if target["attempts"] - target["round_start"] > self.settings.max_retries:
                    await self._settle_open(
                        lease,
                        target,
                        Outcome(
                            "failed",
                            code="retries_exhausted",
                            message=f"{target['attempts']} attempts, none went out",
                        ),
                        log_status="not_found",
                    )
                    return
                await self._close_open(lease, target)
                attempt, log_id = await self._begin(lease, target)
                cached = None
            else:
                attempt, log_id = opened.begun
                cached = opened.post  # as saved with the attempt
            outcome = await self._attempt(
                target, adapter, request, keeper, first=target["attempts"] == 0
            )
        await self._record(lease, target, attempt, log_id, outcome, cached)

    async def _open(self, lease: Lease, target: asyncpg.Record) -> _Opened | None:
        """Read the claimed target's post (its row locked) and, unless an attempt is still
        open, record the new attempt: one transaction. The target is the claim's row: every
        write to it is fenced on the lease, so a command that changed it since (cancel,
        edit, retry clear the lease) makes that write fail with ``LeaseLost``."""

        async def command() -> _Opened | None:
            async with tenant_transaction(self.pool, target["brand_id"]) as conn:
                post = await self._locked(conn, target)
                platform = target["platform"]
                if post.status not in ACTIVE or platform not in post.platforms:
                    # Not to be published; if the command that decided so has not cleared
                    # the lease already, give the target up as cancelled.
                    await conn.execute(
                        "UPDATE publishing_targets SET status = 'cancelled', lease_token = NULL, "
                        "lease_until = NULL, updated_at = $3 WHERE id = $1 AND lease_token = $2",
                        lease.row_id,
                        lease.token,
                        self.clock(),
                    )
                    return None
                items = await media_items(conn, post.media_ids_for(platform))
                begun = None
                if not target["attempt_open"]:
                    begun = await self._record_attempt(conn, lease, target, post)
                return _Opened(target, post, items, begun)

        return await retry_on_conflict(command)

    def _check_failed(self, target: asyncpg.Record, adapter: Platform, verdict: Outcome) -> Outcome:
        """The platform could not be asked (a transient failure): ask again later, at most
        ``max_retries`` times in a row, then leave it to a person."""
        if target["checks"] < self.settings.max_retries:
            verdict.check = target["checks"] + 1
            return verdict
        return Outcome(
            "unconfirmed",
            code="lookup_failed",
            message=f"attempt {target['attempts']} has no recorded outcome and "
            f"{adapter.capabilities.display_name} could not be asked "
            f"{target['checks'] + 1} times: {verdict.message}",
        )

    def _still_held(self, keeper: LeaseKeeper) -> None:
        """Right before a platform call: a holder whose lease ran out (it stalled; another
        replica may be reconciling the target now) must not call the platform."""
        if keeper.lost.is_set() or keeper.lease.expires_at <= self.clock():
            raise LeaseLost(keeper.lease)

    async def _attempt(
        self,
        target: asyncpg.Record,
        adapter: Platform,
        request: PublishRequest,
        keeper: LeaseKeeper,
        *,
        first: bool,
    ) -> Outcome:
        """The platform call and what came of it (never raises for a platform's failure)."""
        brand_id = target["brand_id"]
        caps = adapter.capabilities
        try:
            creds = await self.credentials.credentials(brand_id, adapter.id)
            if self.media is not None and request.content.media:
                media = await self.media.fresh(brand_id, request.content.media)
                request = PublishRequest(
                    post_id=request.post_id,
                    reference=request.reference,
                    content=dataclasses.replace(request.content, media=media),
                )
            if first:
                metrics.PUBLISH_DELAY.labels(adapter.id).observe(
                    max(0.0, (self.clock() - target["scheduled_at"]).total_seconds())
                )

            async def publish(c: Credentials) -> PublishedPost:
                self._still_held(keeper)
                try:
                    return await adapter.publish(c, request)
                except TransientError as exc:
                    raise _MaybeSent(exc) from exc

            published = await self._with_refresh(creds, publish)
            return Outcome("published", published=published)
        except ConnectionUnusable as exc:
            return Outcome("failed", code=f"connection_{exc.status}", message=exc.message)
        except MediaUnavailable as exc:
            return Outcome("failed", code="media_unavailable", message=str(exc))
        except MediaServiceDown as exc:
            return Outcome("retry", code="media_service", message=str(exc))
        except _MaybeSent as sent:
            error = sent.error
            # Any transient answer to the publish call may hide a post that went out (a 502
            # or 504 from an edge whose platform committed); only a 429 did nothing, by
            # contract. An open outcome is reconciled before the next attempt.
            ambiguous = error.status != 429
            if ambiguous and not caps.lookup_by_reference:
                return Outcome(
                    "unconfirmed",
                    code="no_answer",
                    message=f"{error.message}; {caps.display_name} cannot be asked whether it "
                    "went out",
                    details=error.details,
                )
            return Outcome(
                "retry",
                code="transient",
                message=error.message,
                platform_code=error.code,
                retry_after_s=error.retry_after_s,
                reopen=ambiguous,
                details=error.details,
            )
        except TransientError as exc:  # credentials, a refresh: nothing was sent
            return Outcome(
                "retry",
                code="transient",
                message=exc.message,
                platform_code=exc.code,
                retry_after_s=exc.retry_after_s,
                details=exc.details,
            )
        except AuthExpiredError as exc:
            return self._platform_failure(
                "auth_expired", exc, "the platform refused the token again after a refresh"
            )
        except RevokedError as exc:
            await self._mark_revoked(brand_id, adapter.id, exc)
            return self._platform_failure("revoked", exc, "the connection was revoked")
        except (RejectedError, NotSupportedError) as exc:
            return self._platform_failure("rejected", exc, "the platform refused the post")
        except PlatformError as exc:
            return self._platform_failure("platform_error", exc, "the platform call failed")

    @staticmethod
    def _platform_failure(code: str, exc: PlatformError, what: str) -> Outcome:
        platform_code = exc.code or (str(exc.status) if exc.status else None)
        reason = f"{platform_code}: {exc.message}" if platform_code else exc.message
        return Outcome(
            "failed",
            code=code,
            message=f"{what}: {reason}",
            platform_code=exc.code,
            details=exc.details,
        )

    async def _with_refresh(
        self, creds: Credentials, call: Callable[[Credentials], Awaitable[T]]
    ) -> T:
        """``call`` with the connection's token; refused as expired, refresh once, call again."""
        try:
            return await call(creds)
        except AuthExpiredError:
            fresh = await self.credentials.refresh_after_rejection(creds)
            return await call(fresh)

    async def _mark_revoked(self, brand_id: uuid.UUID, platform: str, exc: PlatformError) -> None:
        with contextlib.suppress(ConnectionUnusable):
            creds = await self.credentials.credentials(brand_id, platform)
            await self.credentials.mark_revoked(creds, exc)

    async def _reconcile(
        self,
        target: asyncpg.Record,
        adapter: Platform,
        request: PublishRequest,
        keeper: LeaseKeeper,
    ) -> Outcome | None:
        """The last attempt's outcome is unknown: ask the platform. None: it did not go out,
        attempt again."""

        async def find(c: Credentials) -> PublishedPost | None:
            self._still_held(keeper)
            return await adapter.find_published(c, request)

        try:
            creds = await self.credentials.credentials(target["brand_id"], adapter.id)
            found = await self._with_refresh(creds, find)
        except NotSupportedError:
            return Outcome(
                "unconfirmed",
                code="no_lookup",
                message=f"attempt {target['attempts']} has no recorded outcome and "
                f"{adapter.capabilities.display_name} cannot be asked whether it went out",
            )
        except TransientError as exc:
            return Outcome(
                "retry",
                code="transient",
                message=f"could not check the last attempt: {exc.message}",
                retry_after_s=exc.retry_after_s,
                reopen=True,
            )
        except (ConnectionUnusable, PlatformError) as exc:
            return Outcome(
                "unconfirmed",
                code="lookup_failed",
                message=f"attempt {target['attempts']} has no recorded outcome and the "
                f"platform could not be asked: {exc}",
            )
        if found is None:
            return None
        return Outcome("published", published=found, details={"reconciled": True})

    # --- the fenced writes ---------------------------------------------------------------

    async def _locked(
        self, conn: asyncpg.Connection, target: asyncpg.Record, cached: Post | None = None
    ) -> Post:
        """The target's post, its row locked. With ``cached`` (the post as this scheduler
        saved it with the attempt): that object, unless its stream has moved since, which
        saves reading and replaying the stream in the common case. Having waited for the
        lock, the version may be read from before the other writer's commit; then the save's
        version check fails and the retry reads the stream."""
        if cached is not None:
            version = await conn.fetchval(
                "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $2) "
                "FROM publishing_jobs WHERE id = $1 FOR UPDATE",
                target["post_id"],
                cached.id,
            )
            if version is None:
                raise _Abandon()
            if version == cached.version and not cached.pending:
                return cached
            return await self._locked(conn, target)
        try:
            post = await commands.locked_post(conn, target["post_id"])
        except NotFound:
            raise _Abandon() from None
        return post

    async def _begin(self, lease: Lease, target: asyncpg.Record) -> tuple[int, int]:
        """Record an attempt before the call, in a transaction of its own."""

        async def command() -> tuple[int, int]:
            async with tenant_transaction(self.pool, target["brand_id"]) as conn:
                post = await self._locked(conn, target)
                if post.status not in ACTIVE:
                    raise _Abandon()
                return await self._record_attempt(conn, lease, target, post)

        return await retry_on_conflict(command)

    async def _record_attempt(
        self, conn: asyncpg.Connection, lease: Lease, target: asyncpg.Record, post: Post
    ) -> tuple[int, int]:
        """The attempt, fenced (the post's row is locked already): attempts + 1, the open
        marker, a ``started`` log row, and the post's ``publishing`` status."""
        attempt = target["attempts"] + 1
        now = self.clock()
        # The fenced update and the log row in one statement (one round trip).
        log_id: int | None = await conn.fetchval(
            "WITH t AS (UPDATE publishing_targets SET attempts = $3, attempt_open = true, "
            "checks = 0, updated_at = $4 WHERE id = $1 AND lease_token = $2 "
            "AND status = 'publishing' "
            "RETURNING post_id, brand_id, platform, client_reference) "
            "INSERT INTO publishing_logs (post_id, brand_id, platform, attempt, status, "
            "client_reference, started_at) "
            "SELECT post_id, brand_id, platform, $3, 'started', client_reference, $4 FROM t "
            "RETURNING id",
            lease.row_id,
            lease.token,
            attempt,
            now,
        )
        if log_id is None:
            raise LeaseLost(lease)
        post.start_publishing()
        await commands.save(conn, post, ACTOR)
        return attempt, log_id

    def backoff_s(self, retry: int, retry_after_s: float | None) -> float:
        return backoff_s(self.settings, retry, retry_after_s, self.random_fraction())

    async def _record(
        self,
        lease: Lease,
        target: asyncpg.Record,
        attempt: int,
        log_id: int,
        outcome: Outcome,
        cached: Post | None = None,
    ) -> None:
        """The outcome, fenced: ``LeaseLost`` rolls all of it back. Out of retries, the
        platform fails; if the last attempt's outcome is unknown, that attempt stays open, so
        a retry asks the platform before posting again."""
        if outcome.kind == "retry" and attempt - target["round_start"] > self.settings.max_retries:
            unknown = outcome.reopen
            outcome = Outcome(
                "failed",
                code="outcome_unknown" if unknown else "retries_exhausted",
                message=f"gave up after {attempt - target['round_start']} attempts: "
                f"{outcome.message}"
                + (
                    "; the last may have gone out: a retry asks the platform first"
                    if unknown
                    else ""
                ),
                platform_code=outcome.platform_code,
                reopen=unknown,
                details=outcome.details,
            )
        await self._write_outcome(lease, target, attempt, outcome, log_id=log_id, cached=cached)

    async def _settle_open(
        self,
        lease: Lease,
        target: asyncpg.Record,
        outcome: Outcome,
        *,
        log_status: str | None = None,
    ) -> None:
        """A reconciliation's verdict on the open attempt (its log row is the last one)."""
        await self._write_outcome(
            lease, target, target["attempts"], outcome, log_id=None, log_status=log_status
        )

    async def _close_open(self, lease: Lease, target: asyncpg.Record) -> None:
        """The open attempt did not go out; the next attempt follows at once."""
        async with tenant_transaction(self.pool, target["brand_id"]) as conn:
            await self._locked(conn, target)
            await self.leases.execute(
                conn,
                lease,
                "UPDATE publishing_targets SET attempt_open = false WHERE id = $1 "
                "AND lease_token = $2",
            )
            await self._finish_log(conn, target, None, "not_found", Outcome("retry"), self.clock())

    @staticmethod
    def _log_values(
        status: str, outcome: Outcome, now: datetime
    ) -> tuple[str, str | None, str | None, str | None, str | None, dict[str, Any], datetime]:
        published = outcome.published
        return (
            status,
            published.platform_post_id if published else None,
            published.url if published else None,
            outcome.platform_code or outcome.code,
            outcome.message,
            {**outcome.details, **({"code": outcome.code} if outcome.code else {})},
            now,
        )

    @staticmethod
    def _log_update(first: int, log_id: int | None) -> str:
        """``UPDATE publishing_logs`` of the attempt's row with parameters from ``$first``:
        the seven values of ``_log_values``, then the row's id, or the post id and platform
        (its last row) when ``log_id`` is None."""
        n = first
        row = (
            f"${n + 7}"
            if log_id is not None
            else f"(SELECT max(id) FROM publishing_logs WHERE post_id = ${n + 7} "
            f"AND platform = ${n + 8})"
        )
        sql = (
            f"UPDATE publishing_logs SET status = ${n}, platform_post_id = ${n + 1}, "
            f"url = ${n + 2}, error_code = ${n + 3}, message = ${n + 4}, details = ${n + 5}, "
            f"finished_at = ${n + 6} WHERE id = {row}"
        )
        return sql

    async def _finish_log(
        self,
        conn: asyncpg.Connection,
        target: asyncpg.Record,
        log_id: int | None,
        status: str,
        outcome: Outcome,
        now: datetime,
    ) -> None:
        sql = self._log_update(1, log_id)
        row_args = (log_id,) if log_id is not None else (target["post_id"], target["platform"])
        await conn.execute(sql, *self._log_values(status, outcome, now), *row_args)

    async def _fenced_with_log(
        self,
        conn: asyncpg.Connection,
        lease: Lease,
        target: asyncpg.Record,
        update: str,
        args: tuple[Any, ...],
        log_id: int | None,
        log: tuple[Any, ...],
    ) -> None:
        """The fenced target ``update`` (``$1`` id, ``$2`` token, then ``args``) and the
        attempt's log row in one statement: one round trip; ``LeaseLost`` when the target
        was not ours any more (then neither changed)."""
        log_sql = self._log_update(3 + len(args), log_id)
        row_args = (log_id,) if log_id is not None else (target["post_id"], target["platform"])
        # The log row's update runs whatever ``t`` did; without ``t`` the transaction is
        # rolled back (``LeaseLost``), so the log never records an outcome that was not ours.
        done = await conn.fetchval(
            f"WITH t AS ({update} RETURNING 1), l AS ({log_sql}) SELECT count(*) FROM t",
            lease.row_id,
            lease.token,
            *args,
            *log,
            *row_args,
        )
        if not done:
            raise LeaseLost(lease)

    async def _write_outcome(
        self,
        lease: Lease,
        target: asyncpg.Record,
        attempt: int,
        outcome: Outcome,
        *,
        log_id: int | None,
        log_status: str | None = None,
        cached: Post | None = None,
    ) -> None:
        now = self.clock()
        platform = target["platform"]
        reconciled = log_id is None
        tries = 0

        async def command() -> None:
            nonlocal tries
            tries += 1
            async with tenant_transaction(self.pool, target["brand_id"]) as conn:
                reuse = cached if tries == 1 else None  # a failed try may have changed it
                post = await self._locked(conn, target, reuse)
                update: str
                args: tuple[Any, ...]
                if outcome.kind == "published":
                    assert outcome.published is not None
                    found = outcome.published
                    published_at = found.published_at or now
                    update = (
                        "UPDATE publishing_targets SET status = 'published', attempt_open = false, "
                        "platform_post_id = $3, url = $4, published_at = $5, error_code = NULL, "
                        "last_error = NULL, lease_token = NULL, lease_until = NULL, "
                        "updated_at = $6 WHERE id = $1 AND lease_token = $2"
                    )
                    args = (found.platform_post_id, found.url, published_at, now)
                    post.published(
                        platform,
                        platform_post_id=found.platform_post_id,
                        url=found.url,
                        published_at=published_at,
                        attempts=attempt,
                    )
                    status = "found" if reconciled else "published"
                elif outcome.kind == "retry":
                    retry = outcome.check or max(1, attempt - target["round_start"])
                    delay = self.backoff_s(retry, outcome.retry_after_s)
                    update = (
                        "UPDATE publishing_targets SET status = 'pending', attempt_open = $3, "
                        "due_at = $4, error_code = $5, last_error = $6, lease_token = NULL, "
                        "lease_until = NULL, updated_at = $7, checks = $8 "
                        "WHERE id = $1 AND lease_token = $2"
                    )
                    args = (
                        outcome.reopen,
                        now + timedelta(seconds=delay),
                        outcome.code,
                        outcome.message,
                        now,
                        outcome.check,
                    )
                    outcome.details["retry_in_s"] = round(delay, 3)
                    status = "retrying"
                elif outcome.kind == "failed":
                    update = (
                        "UPDATE publishing_targets SET status = 'failed', attempt_open = $6, "
                        "error_code = $3, last_error = $4, lease_token = NULL, lease_until = NULL, "
                        "updated_at = $5 WHERE id = $1 AND lease_token = $2"
                    )
                    args = (outcome.code, outcome.message, now, outcome.reopen)
                    post.failed(
                        platform,
                        error_code=outcome.code or "failed",
                        error=outcome.message or "failed",
                        attempts=attempt,
                        failed_at=now,
                    )
                    status = "failed"
                else:
                    update = (
                        "UPDATE publishing_targets SET status = 'unconfirmed', "
                        "attempt_open = false, error_code = $3, last_error = $4, "
                        "lease_token = NULL, lease_until = NULL, updated_at = $5 "
                        "WHERE id = $1 AND lease_token = $2"
                    )
                    args = (outcome.code, outcome.message, now)
                    post.unconfirmed(
                        platform,
                        attempt=attempt,
                        client_reference=target["client_reference"],
                        attempted_at=now,
                    )
                    status = "unconfirmed"
                log = self._log_values(log_status or status, outcome, now)
                await self._fenced_with_log(conn, lease, target, update, args, log_id, log)
                await commands.save(conn, post, ACTOR)

        await retry_on_conflict(command)
        metrics.ATTEMPTS.labels(platform, outcome.kind).inc()


def backoff_s(
    settings: PublishingSettings, retry: int, retry_after_s: float | None, fraction: float
) -> float:
    """The wait before retry number ``retry``: exponential (``retry_base_s`` * 2^(retry-1), at
    most ``retry_max_s``), the last ``retry_jitter`` share of it random (``fraction`` in
    [0, 1); 1.0 is full jitter), never sooner than the platform's Retry-After."""
    cap = min(settings.retry_max_s, settings.retry_base_s * 2 ** (retry - 1))
    delay = cap * (1 - settings.retry_jitter * fraction)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return float(delay)
