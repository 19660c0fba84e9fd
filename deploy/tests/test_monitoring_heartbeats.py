"""The heartbeat gauges the worker alerts read: registering a worker exports its allowed age
and a start time, each beat moves the time and the ok flag, unregistering removes the series
(what the alerts make of them is tested by deploy/monitoring/alerts.test.yaml)."""

from __future__ import annotations

import time
import uuid

import pytest
from pressroom_kit.health import Heartbeats
from prometheus_client import REGISTRY

pytestmark = pytest.mark.unit


def sample(name: str, worker: str) -> float | None:
    value = REGISTRY.get_sample_value(name, {"worker": worker})
    return value


def test_beats_are_exported_for_the_alerts():
    worker = f"scheduler-{uuid.uuid4().hex[:6]}"
    beats = Heartbeats()
    before = time.time()
    beats.register(worker, max_age=12.5)
    assert sample("pressroom_heartbeat_max_age_seconds", worker) == 12.5
    registered = sample("pressroom_heartbeat_last_seconds", worker)
    assert registered is not None and registered >= before
    assert sample("pressroom_heartbeat_ok", worker) == 0  # not started yet

    beats.beat(worker, ok=False, detail="database down")
    assert sample("pressroom_heartbeat_ok", worker) == 0
    beats.beat(worker)
    assert sample("pressroom_heartbeat_ok", worker) == 1
    last = sample("pressroom_heartbeat_last_seconds", worker)
    assert last is not None and last >= registered

    beats.unregister(worker)
    assert sample("pressroom_heartbeat_last_seconds", worker) is None
    assert sample("pressroom_heartbeat_max_age_seconds", worker) is None
