"""deploy/monitoring: every metric the alert rules and the Grafana dashboard name is one a
service exports, with the labels the queries use. The names come from the prometheus_client
registry after importing the kit's and every importable service's metrics, and after one
request through a kit app (Litestar's HTTP metrics are created on first use)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_testkit import ROOT, SERVICES
from litestar import get
from litestar.testing import TestClient
from prometheus_client import REGISTRY

pytestmark = pytest.mark.unit

MONITORING = ROOT / "deploy" / "monitoring"

# Modules that define metrics at import (the kit's, and each service's where it has them).
METRIC_MODULES = [
    "pressroom_kit.metrics",
    "pressroom_gateway.edge",
    *(f"pressroom_{service}.metrics" for service in SERVICES),
]
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}
# Labels Prometheus adds when it scrapes, and histogram buckets'.
SCRAPE_LABELS = {"job", "instance", "le"}


def _register_http_metrics() -> None:
    from pressroom_kit.http import create_service_app

    @get("/ping", sync_to_thread=False)
    def ping() -> str:
        return "pong"

    app = create_service_app(name="probe", route_handlers=[ping], verifier=None)
    with TestClient(app) as client:
        assert client.get("/ping").status_code == 200


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Exported sample name -> the label names it carries."""
    for module in METRIC_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A service not installed yet, or one without a metrics module; anything else
            # missing is a real error.
            if exc.name not in (module, module.split(".")[0]):
                raise
    _register_http_metrics()
    names: dict[str, set[str]] = {}
    collectors = REGISTRY._collector_to_names  # no public API lists the collectors
    for collector in list(collectors):
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe() if hasattr(collector, "describe") else []:
            for suffix in SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = labels
    return names


def rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    board = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


_METRIC = re.compile(r"\b(pressroom_[a-z0-9_]+)(\{[^}]*\})?")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")


def check(where: str, expr: str, exported: dict[str, set[str]]) -> list[str]:
    errors = []
    used = _METRIC.findall(expr)
    if not used:
        errors.append(f"{where}: names no pressroom metric")
    labels_available: set[str] = set(SCRAPE_LABELS)
    for name, selector in used:
        if name not in exported:
            errors.append(f"{where}: {name} is not exported by any service")
            continue
        labels_available |= exported[name]
        for label in _MATCHER.findall(selector):
            if label not in exported[name] | SCRAPE_LABELS:
                errors.append(f"{where}: {name} has no label {label!r}")
    for group in _BY.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            if label not in labels_available:
                errors.append(f"{where}: no metric of the query has the label {label!r}")
    return errors


def test_the_alert_rules_cover_what_operators_must_know():
    alerts = dict(rule_expressions())
    expressions = " ".join(alerts.values())
    for metric in (
        "pressroom_outbox_backlog",  # outbox backlog
        "pressroom_consumer_lag",  # consumer lag
        "pressroom_dlq_messages_total",  # dead-letter growth
        'pressroom_heartbeat_last_seconds{worker="scheduler"}',  # a silent scheduler
        "pressroom_webhook_attempts_total",  # webhook failure rate
    ):
        assert metric in expressions, f"no alert on {metric}"
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


def test_every_metric_the_alerts_name_is_exported(exported):
    errors = [e for alert, expr in rule_expressions() for e in check(alert, expr, exported)]
    assert not errors, "\n".join(errors)


def test_every_metric_the_dashboard_names_is_exported(exported):
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    errors = [e for title, expr in expressions for e in check(title, expr, exported)]
    assert not errors, "\n".join(errors)


def test_every_exported_metric_family_is_on_the_dashboard(exported):
    shown = " ".join(expr for _, expr in dashboard_expressions())
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported}
    ours = {f for f in families if f.startswith("pressroom_")}
    missing = sorted(f for f in ours if f not in shown)
    assert not missing, f"not on the dashboard: {missing}"


def test_the_checker_catches_a_wrong_name_and_a_wrong_label(exported):
    assert check("x", "rate(pressroom_outbox_publishd_total[5m])", exported)
    assert check("x", 'pressroom_outbox_backlog{consumer="a"}', exported)
    assert check("x", "sum by (platform) (pressroom_outbox_backlog)", exported)
    assert not check("x", "sum by (service) (pressroom_outbox_backlog)", exported)


def test_the_dashboard_is_importable_json():
    board: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert board["uid"] and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "command",
    [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]],
    ids=["check", "unit-tests"],
)
def test_promtool_accepts_the_rules_and_their_unit_tests(command):
    """Syntax, and the alerts firing (or not) on the series of alerts.test.yaml."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    out = subprocess.run(
        [promtool, *command],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
