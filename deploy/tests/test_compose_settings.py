"""docker-compose.yml, checked without an engine: every service is there with a health check
and a start order, and every setting it passes is one its settings class reads, with a value
the class accepts."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_testkit import ROOT, SERVICES, load_settings, settings_class, unknown_names

pytestmark = pytest.mark.unit

INFRA = ("kafka", "postgres", "minio", "otel-collector", "jaeger", "mailpit")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_stack_has_every_service_and_the_infrastructure(compose):
    services = compose["services"]
    assert set(SERVICES) | set(INFRA) <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("kafka", "postgres", "minio", "mailpit"):
        assert "healthcheck" in services[name], f"{name} has no health check"


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_service_reads_every_setting_compose_gives_it(service, compose, monkeypatch):
    spec = compose["services"][service]
    env = spec["environment"]
    assert not unknown_names(service, env), f"{service}: names its settings do not read"
    settings = load_settings(service, env, monkeypatch)
    # It listens on its documented port, on every interface, as its own database role.
    assert settings.port == SERVICES[service]
    assert settings.host == "0.0.0.0"
    assert urlsplit(settings.database_url).username == f"pressroom_{service}"
    assert urlsplit(settings.database_url).path == f"/pressroom_{service}"
    assert settings.migrate_database_url is not None
    assert settings.runtime_role == ""
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.jwt_secret is not None


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_service_starts_after_its_dependencies_and_reports_health(service, compose):
    spec = compose["services"][service]
    depends = spec["depends_on"]
    for infra in ("postgres", "kafka"):
        assert depends[infra]["condition"] == "service_healthy"
    probe = " ".join(spec["healthcheck"]["test"])
    assert f"127.0.0.1:{SERVICES[service]}/readyz" in probe
    assert spec["build"]["args"]["SERVICE"] == service


def test_the_gateway_starts_last_and_routes_to_every_backend(compose, monkeypatch):
    spec = compose["services"]["gateway"]
    backends = set(SERVICES) - {"gateway"}
    assert {n for n, d in spec["depends_on"].items() if n in backends} == backends
    assert all(spec["depends_on"][n]["condition"] == "service_healthy" for n in backends)

    gateway = settings_class("gateway")
    defaults = gateway.model_fields["routes"].get_default(call_default_factory=True)
    routes = load_settings("gateway", spec["environment"], monkeypatch).routes  # type: ignore[attr-defined]
    missing = set(defaults) - set(routes)
    assert not missing, f"compose does not route {sorted(missing)}"
    for prefix, target in routes.items():
        url = urlsplit(target)
        assert url.hostname in backends, f"{prefix} -> {target}: not a compose service"
        assert url.port == SERVICES[url.hostname]
        if prefix in defaults:
            assert urlsplit(defaults[prefix]).port == url.port, f"{prefix} goes elsewhere"


def test_approval_mail_goes_to_the_mail_catcher(compose, monkeypatch):
    settings = load_settings(
        "approval", compose["services"]["approval"]["environment"], monkeypatch
    )
    assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)  # type: ignore[attr-defined]


def test_every_service_database_and_role_is_created(compose):
    init = (ROOT / "deploy/compose/postgres-init.sql").read_text()
    for service in SERVICES:
        assert f"CREATE DATABASE pressroom_{service};" in init
        assert f"CREATE ROLE pressroom_{service} LOGIN" in init
    mounted = compose["services"]["postgres"]["volumes"][0]
    assert mounted.startswith("./deploy/compose/postgres-init.sql:")
