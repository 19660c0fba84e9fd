"""The delivery worker: claims due deliveries, POSTs them signed, records every attempt.

Safe with several replicas: work is claimed with ``FOR UPDATE SKIP LOCKED`` and a lease
(``webhook_claim_due``, through ``pressroom_kit.leases``); a replica that dies mid-delivery
loses its lease and another picks the row up. The lease is renewed while a send runs, and the
outcome is recorded only while the row still carries this claim's token, so a worker that
stalled past its lease never records over the one that took over. Per-endpoint concurrency
(in the claim and in-process) and a per-endpoint rate keep one slow receiver from holding up
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver
from pressroom_contracts import CloudEvent
from pressroom_contracts.events.webhook import WebhookDeliveryFailed, WebhookDeliverySucceeded
from pressroom_contracts.topics import Topic
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import Conflict, NotFound
from pressroom_kit.health import Heartbeats
from pressroom_kit.leases import Lease, LeasedRows, LeaseLost
from pressroom_kit.logs import get_logger
from pressroom_kit.outbox import OutboxMessage, write_outbox
from pressroom_kit.runtime import first_set, idle_poll
from pressroom_kit.secrets import SecretBox

from pressroom_webhook import handlers, signing
from pressroom_webhook.metrics import ATTEMPTS
from pressroom_webhook.providers import render
from pressroom_webhook.settings import WebhookSettings
from pressroom_webhook.ssrf import GuardedResolver, UnsafeTarget, check_target

log = get_logger(__name__)
Clock = Callable[[], datetime]
USER_AGENT = "Pressroom-Webhooks/1.0"
NOTIFY_CHANNEL = "pressroom_webhook_due"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    body: str | None = None
    retry_after_s: float | None = None
    duration_ms: int = 0

    @property
    def gone(self) -> bool:
        return self.status == 410


class _Bucket:
    """A small token bucket: at most ``rate`` sends per second to one endpoint."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.stamp = rate, rate, time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class DeliveryWorker:
    pool: asyncpg.Pool
    box: SecretBox
    settings: WebhookSettings
    heartbeats: Heartbeats = field(default_factory=Heartbeats)
    clock: Clock = utcnow
    inner_resolver: AbstractResolver | None = None
    random_fraction: Callable[[], float] = random.random
    _session: aiohttp.ClientSession | None = None
    _gates: dict[uuid.UUID, tuple[asyncio.Semaphore, _Bucket]] = field(default_factory=dict)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    leases: LeasedRows = field(init=False)

    beat_name = "delivery"

    def __post_init__(self) -> None:
        max_age = max(30.0, self.settings.poll_interval_s * 10, self.settings.idle_poll_max_s * 2)
        self.heartbeats.register(self.beat_name, max_age=max_age)
        self.leases = LeasedRows(
            "webhook_events",
            duration=timedelta(seconds=self.settings.lease_s),
            clock=lambda: self.clock(),
        )

    async def start(self) -> None:
        if self._session is None:
            resolver = GuardedResolver(
                allow_private=self.settings.allow_private_targets, inner=self.inner_resolver
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=resolver,
                    limit=512,
                    limit_per_host=64,
                    ttl_dns_cache=None,
                    use_dns_cache=False,
                ),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        wake = asyncio.Event()

        def on_notify(*_: object) -> None:
            wake.set()

        listener = await self.pool.acquire()
        await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        quiet = 0  # rounds in a row that claimed nothing and were not woken
        woken = False  # the last wait ended by a NOTIFY or a finished delivery
        try:
            while not stop.is_set():
                woken = woken or wake.is_set()
                wake.clear()
                claimed = await self.claim()
                quiet = 0 if claimed or woken else quiet + 1
                woken = False
                self.heartbeats.beat(self.beat_name, detail=f"{len(self._inflight)} in flight")
                for lease, row in claimed:
                    task = asyncio.create_task(self._deliver_guarded(lease, row))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if not claimed:
                    # Wake on NOTIFY (new work), on a finished delivery (its endpoint may
                    # have more), when the next attempt or lease comes due, or after the
                    # poll, which backs off while nothing happens.
                    idle = await self._idle_s(quiet)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(first_set(stop, wake, self._done), timeout=idle)
                    woken = wake.is_set() or self._done.is_set()
                    self._done.clear()
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(NOTIFY_CHANNEL, on_notify)
                await listener.execute(f"UNLISTEN {NOTIFY_CHANNEL}")
            await self.pool.release(listener)
            await self.close()

    async def _idle_s(self, quiet: int) -> float:
        base = float(self.settings.poll_interval_s)
        poll = idle_poll(base, quiet, self.settings.idle_poll_max_s)
        try:
            next_due = await self.pool.fetchval("SELECT webhook_next_due()")
        except (asyncpg.PostgresError, OSError):
            return base
        if next_due is None:
            return poll
        wait = (next_due - self.clock()).total_seconds()
        # Due already but not claimed (an endpoint at its concurrency, another replica's
        # lease): a finished delivery wakes us, else look again after the base poll.
        return base if wait <= 0 else min(poll, max(0.005, wait))

    async def run_once(self) -> int:
        """Claim what is due now and deliver it all (tests and tools drive time this way)."""
        await self.start()
        claimed = await self.claim()
        await asyncio.gather(*(self._deliver_guarded(lease, row) for lease, row in claimed))
        return len(claimed)

    async def claim(self) -> list[tuple[Lease, asyncpg.Record]]:
        return await self.leases.claim(
            self.pool,
            "SELECT * FROM webhook_claim_due($1, $2, $3, $4)",
            self.settings.claim_batch,
            self.settings.per_endpoint_concurrency,
        )

    async def _deliver_guarded(self, lease: Lease, row: asyncpg.Record) -> None:
        try:
            await self.deliver(lease, row["brand_id"], row["endpoint_id"])
        except Exception:
            # The lease expires and the delivery is claimed again; nothing is lost.
            log.exception("delivery crashed", delivery_id=str(row["id"]))
        finally:
            self._done.set()

    def _gate(self, endpoint_id: uuid.UUID) -> tuple[asyncio.Semaphore, _Bucket]:
        if endpoint_id not in self._gates:
            self._gates[endpoint_id] = (
                asyncio.Semaphore(self.settings.per_endpoint_concurrency),
                _Bucket(self.settings.per_endpoint_rate),
            )
        return self._gates[endpoint_id]

    async def deliver(self, lease: Lease, brand_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
        """Send one claimed delivery and record the outcome, unless the lease was lost."""
        now = self.clock()
        delivery_id = lease.row_id
        async with tenant_transaction(self.pool, brand_id) as conn:
            delivery = await conn.fetchrow(
                "SELECT * FROM webhook_events WHERE id = $1", delivery_id
            )
            endpoint = await conn.fetchrow(
                "SELECT * FROM webhook_endpoints WHERE id = $1", endpoint_id
            )
        if delivery is None or delivery["lease_token"] != lease.token:
            return  # taken over (or finished) since the claim
        try:
            if endpoint is None or not endpoint["enabled"] or endpoint["deleted"]:
                error = "the endpoint is disabled or deleted"
                await self._finish_failed(lease, delivery, now, error, None)
                return
            await self._send_and_record(lease, delivery, endpoint, now)
        except LeaseLost:
            # Another worker holds the delivery now; its outcome is the one that counts.
            log.warning("lease lost; outcome not recorded", delivery_id=str(delivery_id))

    async def _send_and_record(
        self, lease: Lease, delivery: asyncpg.Record, endpoint: asyncpg.Record, now: datetime
    ) -> None:
        delivery_id, endpoint_id = delivery["id"], endpoint["id"]
        try:
            check_target(
                endpoint["url"],
                allow_private=self.settings.allow_private_targets,
                require_https=self.settings.require_https,
            )
        except UnsafeTarget as exc:
            refused = Outcome(False, error=f"refused target: {exc}")
            await self._record(lease, delivery, endpoint, refused, now)
            return
        context = str(endpoint_id)
        secrets = [self.box.decrypt(endpoint["secret_enc"], context=context)]
        if endpoint["previous_secret_enc"] and endpoint["previous_valid_until"] > now:
            secrets.append(self.box.decrypt(endpoint["previous_secret_enc"], context=context))
        body, content_type = render(endpoint["provider"], delivery["payload"])
        message_id = f"msg_{delivery_id}"
        headers = {
            **signing.headers(secrets, message_id, int(now.timestamp()), body),
            "content-type": content_type,
            "user-agent": USER_AGENT,
        }
        semaphore, bucket = self._gate(endpoint_id)
        brand_id = delivery["brand_id"]
        keeper = self.leases.keep(lease, lambda: tenant_transaction(self.pool, brand_id))
        async with keeper as kept, semaphore:
            await bucket.take()
            outcome = await self._post(endpoint["url"], body, headers)
            ATTEMPTS.labels(outcome="succeeded" if outcome.ok else "failed").inc()
        await self._record(kept.lease, delivery, endpoint, outcome, now)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        assert self._session is not None
        started = time.perf_counter()
        cap = self.settings.response_capture_bytes
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(cap)
                text = raw.decode("utf-8", errors="replace")
                ok = 200 <= response.status < 300
                retry_after = None
                if response.status in (429, 503):
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                error = (
                    None
                    if ok
                    else (
                        f"redirect to {response.headers.get('Location', '?')} (not followed)"
                        if 300 <= response.status < 400
                        else f"HTTP {response.status}"
                    )
                )
                return Outcome(ok, response.status, error, text, retry_after, _ms(started))
        except UnsafeTarget as exc:
            return Outcome(False, error=f"refused target: {exc}", duration_ms=_ms(started))
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error if isinstance(exc.os_error, UnsafeTarget) else None
            message = f"refused target: {cause}" if cause else f"connection failed: {exc.strerror}"
            return Outcome(False, error=message, duration_ms=_ms(started))
        except TimeoutError:
            return Outcome(
                False,
                error=f"timed out after {self.settings.timeout_s:g} s",
                duration_ms=_ms(started),
            )
        except aiohttp.ClientError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started))

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        schedule = self.settings.schedule_s
        base = schedule[min(attempt, len(schedule) - 1)]
        spread = base * self.settings.jitter
        delay = base + (self.random_fraction() * 2 - 1) * spread
        if retry_after is not None:
            delay = max(delay, retry_after)
        return max(0.0, delay)

    async def _record(
        self,
        lease: Lease,
        delivery: asyncpg.Record,
        endpoint: asyncpg.Record,
        outcome: Outcome,
        now: datetime,
    ) -> None:
        """The attempt, the delivery's new state, health and events in one transaction whose
        first statement is the fenced update: ``LeaseLost`` rolls all of it back."""
        attempt = delivery["attempts"] + 1
        final = outcome.ok or outcome.gone or attempt >= delivery["max_attempts"]
        backoff_s = None if final else self._backoff_s(attempt, outcome.retry_after_s)
        disable_reason = None
        async with tenant_transaction(self.pool, delivery["brand_id"]) as conn:
            if outcome.ok:
                await self.leases.execute(
                    conn,
                    lease,
                    "UPDATE webhook_events SET status = 'delivered', attempts = $3, "
                    "last_response_code = $4, last_error = NULL, delivered_at = $5, "
                    "lease_token = NULL, lease_until = NULL, updated_at = $5 "
                    "WHERE id = $1 AND lease_token = $2",
                    attempt,
                    outcome.status,
                    now,
                )
            elif final:
                await self.leases.execute(
                    conn,
                    lease,
                    "UPDATE webhook_events SET status = 'failed', attempts = $3, "
                    "last_response_code = $4, last_error = $5, lease_token = NULL, "
                    "lease_until = NULL, updated_at = $6 WHERE id = $1 AND lease_token = $2",
                    attempt,
                    outcome.status,
                    outcome.error,
                    now,
                )
            else:
                await self.leases.execute(
                    conn,
                    lease,
                    "UPDATE webhook_events SET status = 'pending', attempts = $3, "
                    "last_response_code = $4, last_error = $5, lease_token = NULL, "
                    "lease_until = NULL, next_attempt_at = $6, updated_at = $7 "
                    "WHERE id = $1 AND lease_token = $2",
                    attempt,
                    outcome.status,
                    outcome.error,
                    now + timedelta(seconds=backoff_s or 0),
                    now,
                )
            await conn.execute(
                "INSERT INTO webhook_attempts (webhook_event_id, brand_id, attempt, status, "
                "response_code, error, backoff_ms, response_body, duration_ms, attempted_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                delivery["id"],
                delivery["brand_id"],
                attempt,
                "succeeded" if outcome.ok else "failed",
                outcome.status,
                outcome.error,
                None if backoff_s is None else int(backoff_s * 1000),
                outcome.body,
                outcome.duration_ms,
                now,
            )
            if outcome.ok:
                await conn.execute(
                    "INSERT INTO webhook_endpoint_health (endpoint_id, brand_id, failing_since, "
                    "last_success_at) VALUES ($1, $2, NULL, $3) ON CONFLICT (endpoint_id) "
                    "DO UPDATE SET failing_since = NULL, last_success_at = $3",
                    endpoint["id"],
                    delivery["brand_id"],
                    now,
                )
                await self._announce(
                    conn,
                    delivery,
                    WebhookDeliverySucceeded.event_type,
                    {
                        "attempts": attempt,
                        "response_code": outcome.status,
                        "delivered_at": now.isoformat(),
                    },
                    now,
                )
                return
            failing_since = await conn.fetchval(
                "INSERT INTO webhook_endpoint_health (endpoint_id, brand_id, failing_since) "
                "VALUES ($1, $2, $3) ON CONFLICT (endpoint_id) DO UPDATE SET failing_since = "
                "coalesce(webhook_endpoint_health.failing_since, $3) RETURNING failing_since",
                endpoint["id"],
                delivery["brand_id"],
                now,
            )
            if outcome.gone:
                disable_reason = "the receiver answered 410 Gone"
            elif now - failing_since >= timedelta(seconds=self.settings.disable_after_s):
                disable_reason = f"failing continuously since {failing_since.isoformat()}"
            if final:
                await self._announce(
                    conn,
                    delivery,
                    WebhookDeliveryFailed.event_type,
                    {
                        "attempts": attempt,
                        "last_error": outcome.error or "failed",
                        "response_code": outcome.status,
                    },
                    now,
                )
        if disable_reason is not None and endpoint["enabled"]:
            await self._disable(delivery["brand_id"], endpoint["id"], disable_reason)

    async def _finish_failed(
        self,
        lease: Lease,
        delivery: asyncpg.Record,
        now: datetime,
        error: str,
        status: int | None,
    ) -> None:
        async with tenant_transaction(self.pool, delivery["brand_id"]) as conn:
            await self.leases.execute(
                conn,
                lease,
                "UPDATE webhook_events SET status = 'failed', last_error = $3, lease_token = NULL, "
                "lease_until = NULL, updated_at = $4 WHERE id = $1 AND lease_token = $2",
                error,
                now,
            )
            await self._announce(
                conn,
                delivery,
                WebhookDeliveryFailed.event_type,
                {"attempts": delivery["attempts"], "last_error": error, "response_code": status},
                now,
            )

    async def _disable(self, brand_id: uuid.UUID, endpoint_id: uuid.UUID, reason: str) -> None:
        with contextlib.suppress(Conflict, NotFound):  # already disabled or deleted meanwhile
            await handlers.change_endpoint(
                self.pool,
                brand_id=brand_id,
                endpoint_id=endpoint_id,
                actor="system",
                decide=lambda e: e.disable(reason),
            )
            log.warning("webhook endpoint disabled", endpoint_id=str(endpoint_id), reason=reason)

    @staticmethod
    async def _announce(
        conn: asyncpg.Connection,
        delivery: asyncpg.Record,
        event_type: str,
        extra: dict[str, Any],
        now: datetime,
    ) -> None:
        data = {
            "delivery_id": str(delivery["id"]),
            "endpoint_id": str(delivery["endpoint_id"]),
            "event_id": str(delivery["event_id"]),
            "event_type_delivered": delivery["event_type"],
            **extra,
        }
        await write_outbox(
            conn,
            [
                OutboxMessage(
                    topic=Topic.WEBHOOK.value,
                    key=str(delivery["endpoint_id"]),
                    event=CloudEvent(
                        source=handlers.SOURCE,
                        type=event_type,
                        subject=str(delivery["id"]),
                        brandid=delivery["brand_id"],
                        time=now,
                        data=data,
                    ),
                )
            ],
        )


def _retry_after(value: str | None, cap_s: float = 86_400) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap_s)
    with contextlib.suppress(TypeError, ValueError):
        moment = email.utils.parsedate_to_datetime(value)
        return min(max(0.0, (moment - datetime.now(UTC)).total_seconds()), cap_s)
    return None


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
