"""Hostile review of the escalation scheduler's leases: a replica claims a batch at once and
works through it ``concurrency`` steps at a time, so a step queued behind slow sends starts
with a lease that has almost run out. Another replica then claims it mid-send and the
reminder goes out twice. A step must start its work with a full lease."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from approval_testkit import Service
from mail_testkit import add_members, address, escalation_service, scheduler
from pressroom_approval.escalations.delivery import Mailer
from pressroom_approval.escalations.scheduler import EscalationScheduler
from pressroom_kit.testing.plugin import TestDatabase

pytestmark = pytest.mark.integration
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
LEASE_S = 60.0


class SlowMailer(Mailer):
    """The real mailer (real SMTP) whose every send to ``to`` takes 50 s of the fake clock;
    before the second one it lets ``meanwhile`` run (another replica's round). (The
    session's broker replays earlier tests' events, so other brands' steps may be due too:
    only this test's recipient is slow.)"""

    def __init__(
        self, real: Mailer, svc: Service, to: str, meanwhile: Callable[[], Awaitable[int]]
    ):
        super().__init__(real.settings)
        self.svc, self.to, self.meanwhile, self.sends = svc, to, meanwhile, 0

    async def send(self, message: EmailMessage) -> None:
        if self.to in str(message["To"]):
            self.sends += 1
            self.svc.clock.advance(LEASE_S * 5 / 6)
            if self.sends == 2:
                await self.meanwhile()
        await super().send(message)


async def test_a_queued_step_is_not_sent_twice_by_two_replicas(
    fresh_db: TestDatabase, kafka_bootstrap: str, topics: None
) -> None:
    async with escalation_service(
        fresh_db, kafka_bootstrap, start=MONDAY, escalation_lease_s=LEASE_S
    ) as (svc, mail):
        brand = await svc.brand("Acme", "UTC")
        await add_members(svc, brand, ("ann", "manager"), ("mo", "manager"))
        for _ in range(2):
            await svc.submit(brand, uuid.uuid4(), author="ann")
        real = scheduler(svc)

        def replica(mailer: Mailer, concurrency: int) -> EscalationScheduler:
            return EscalationScheduler(
                svc.pool,
                real.settings,
                mailer=mailer,
                slack=real.slack,
                box=real.box,
                tokens=real.tokens,
                clock=svc.clock,
                concurrency=concurrency,
            )

        other = replica(real.mailer, 50)
        mo = address("mo", brand)
        slow = replica(SlowMailer(real.mailer, svc, mo, other.step), 1)
        svc.clock.now = MONDAY + timedelta(hours=24)
        assert await slow.step() >= 2  # both reminders claimed, worked one after the other
        while await other.step():
            pass
        # One reminder per approval to mo (ann is the author), each exactly once.
        assert len(mail.to(mo)) == 2
