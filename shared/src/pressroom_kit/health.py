"""Heartbeats of background work, read by ``/readyz``.

A relay, consumer or scheduler beats on every loop. ``/readyz`` fails when a registered
worker has not beaten within its ``max_age`` or reported itself unhealthy, so a worker that
silently stopped is visible instead of hiding behind a green health check. A worker that
works but needs an operator (say parked outbox rows) beats ``degraded``: ``/readyz`` stays
ready and says so.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from pressroom_kit.metrics import HEARTBEAT_LAST, HEARTBEAT_MAX_AGE, HEARTBEAT_OK


@dataclass
class _Beat:
    max_age: float
    last: float | None = None
    ok: bool = False
    detail: str = "not started"
    degraded: str | None = None


@dataclass
class Heartbeats:
    _beats: dict[str, _Beat] = field(default_factory=dict)

    def register(self, name: str, max_age: float) -> None:
        self._beats[name] = _Beat(max_age=max_age)
        # Exported too, so an alert sees a stalled worker (deploy/monitoring).
        HEARTBEAT_MAX_AGE.labels(worker=name).set(max_age)
        HEARTBEAT_LAST.labels(worker=name).set(time.time())
        HEARTBEAT_OK.labels(worker=name).set(0)

    def unregister(self, name: str) -> None:
        if self._beats.pop(name, None) is not None:
            for gauge in (HEARTBEAT_LAST, HEARTBEAT_MAX_AGE, HEARTBEAT_OK):
                with contextlib.suppress(KeyError):
                    gauge.remove(name)

    def beat(
        self, name: str, *, ok: bool = True, detail: str = "ok", degraded: str | None = None
    ) -> None:
        beat = self._beats.setdefault(name, _Beat(max_age=30.0))
        beat.last, beat.ok, beat.detail = time.monotonic(), ok, detail
        HEARTBEAT_LAST.labels(worker=name).set(time.time())
        HEARTBEAT_OK.labels(worker=name).set(1 if ok else 0)
        beat.degraded = degraded

    def status(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        report: dict[str, dict[str, Any]] = {}
        for name, beat in self._beats.items():
            age = None if beat.last is None else now - beat.last
            fresh = age is not None and age <= beat.max_age
            report[name] = {
                "ok": beat.ok and fresh,
                "detail": beat.detail if fresh or age is None else f"no beat for {age:.0f}s",
                "age_s": None if age is None else round(age, 3),
            }
            if beat.degraded is not None:
                report[name]["degraded"] = beat.degraded
        return report

    def healthy(self) -> bool:
        return all(entry["ok"] for entry in self.status().values())

    def degraded(self) -> bool:
        return any("degraded" in entry for entry in self.status().values())
