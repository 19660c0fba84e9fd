"""Fixtures of the approval service's tests: ``svc``, the service on a real port (its
consumer running on the session's broker, its workers stepped by the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from approval_testkit import Service, approval_service
from pressroom_kit.testing.plugin import TestDatabase


@pytest.fixture
async def svc(fresh_db: TestDatabase, kafka_bootstrap: str, topics: None) -> AsyncIterator[Service]:
    async with approval_service(fresh_db, kafka_bootstrap) as service:
        yield service
