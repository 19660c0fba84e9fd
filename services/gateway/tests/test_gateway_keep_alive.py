"""The gateway's pool of upstream connections closes an idle one before the service would:
a request forwarded on a connection the service is closing would be reset (and a POST is
not retried), so the order of the two timeouts is part of the contract."""

from __future__ import annotations

from typing import Any

import pytest
from pressroom_gateway import __main__ as entry
from pressroom_gateway.proxy import UPSTREAM_KEEPALIVE_S
from pressroom_kit.settings import ServiceSettings

pytestmark = pytest.mark.unit


def test_the_pool_lets_go_of_idle_connections_before_the_services_do():
    service_keep_alive = ServiceSettings.model_fields["http_keep_alive_s"].default
    assert service_keep_alive > UPSTREAM_KEEPALIVE_S


def test_the_gateway_serves_clients_with_the_keep_alive_setting(monkeypatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: seen.update(options))
    monkeypatch.setattr(entry, "served_app", lambda: object())
    monkeypatch.setenv("PRESSROOM_GATEWAY_HTTP_KEEP_ALIVE_S", "120")
    monkeypatch.setenv("PRESSROOM_GATEWAY_SERVER", "uvicorn")
    entry.main()
    assert seen["timeout_keep_alive"] == 120
