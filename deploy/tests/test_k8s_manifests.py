"""deploy/k8s: each overlay rendered with ``kubectl kustomize`` and every object validated
against the Kubernetes schemas (kubernetes-validate bundles them: no cluster, no network);
then what the schemas cannot say: each service has its probes, resources, budget and
migration Job, and reads every setting it is given."""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_testkit import ROOT, SERVICES, load_settings, settings_class, unknown_names

pytestmark = pytest.mark.unit

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production")
KUBERNETES_VERSION = "1.30"  # the oldest minor we support
STATELESS = {"gateway", "media", "publishing", "webhook"}

Objects = list[dict[str, Any]]


@functools.cache
def _rendered(overlay: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize overlays cannot be rendered")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def render(overlay: str) -> Objects:
    """The overlay's objects (rendered once per session, parsed afresh for each test)."""
    return [doc for doc in yaml.safe_load_all(_rendered(overlay)) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, Objects]:
    return request.param, render(request.param)


def find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def by_prefix(objects: Objects, kind: str, prefix: str) -> dict[str, Any]:
    """A generated object (ConfigMap, Secret: kustomize appends a content hash)."""
    matches = [
        o
        for o in objects
        if o["kind"] == kind and o["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    assert len(matches) == 1, f"{kind}/{prefix}-<hash>: {len(matches)} objects"
    return matches[0]


def containers(objects: Objects) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service, workload, container) of every Deployment and Job of ours."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            service = obj["metadata"].get("labels", {}).get("app.kubernetes.io/name")
            if service in SERVICES:
                for container in obj["spec"]["template"]["spec"]["containers"]:
                    yield service, obj, container


def test_every_object_is_valid_for_kubernetes(overlay):
    name, objects = overlay
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_every_service_has_its_workload_objects(overlay):
    name, objects = overlay
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {"pressroom-local" if name == "local" else "pressroom"}
    for service, port in SERVICES.items():
        deployment = find(objects, "Deployment", service)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["image"].rsplit(":", 1)[0].endswith(f"pressroom/{service}")
        assert ":" in container["image"], "an overlay pins the image tag"

        svc = find(objects, "Service", service)
        assert svc["spec"]["ports"][0]["port"] == port
        assert svc["spec"]["selector"].items() <= pod_labels(deployment).items()
        pdb = find(objects, "PodDisruptionBudget", service)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()

        job = find(objects, "Job", f"{service}-migrate")
        (migrate,) = job["spec"]["template"]["spec"]["containers"]
        assert migrate["image"] == container["image"]
        assert migrate["command"][-1] == f"pressroom_{service}"

        hpas = [
            o
            for o in objects
            if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == service
        ]
        if service in STATELESS:
            (hpa,) = hpas
            assert hpa["spec"]["scaleTargetRef"]["name"] == service
            assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        else:
            assert not hpas, f"{service} is not scaled automatically"
    script = by_prefix(objects, "ConfigMap", "pressroom-migrate")["data"]["migrate.py"]
    assert script == (K8S / "base" / "migrate.py").read_text()


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def environment(objects: Objects, container: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment: ConfigMap values, Secret values when the overlay has
    the Secret, None for a Secret supplied by the cluster (production)."""
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in configmaps, f"ConfigMap {ref} is not in the overlay"
        env.update(configmaps[ref].get("data", {}))
    for entry in container.get("env", []):
        ref = entry["valueFrom"]["secretKeyRef"]
        secret = secrets.get(ref["name"])
        if secret is None:
            env[entry["name"]] = None
            continue
        data = secret.get("data", {})
        assert ref["key"] in data or ref.get("optional"), f"{ref} is not in its Secret"
        if ref["key"] in data:
            env[entry["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return env


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_service_reads_every_setting_it_is_given(service, overlay):
    _, objects = overlay
    settings_class(service)  # skips a service whose package is not installed yet
    ours = [(w, c) for s, w, c in containers(objects) if s == service]
    assert [w["kind"] for w, _ in ours] == ["Deployment", "Job"]
    for _workload, container in ours:
        env = environment(objects, container)
        assert not unknown_names(service, env), f"{service}: names its settings do not read"
        assert env[f"PRESSROOM_{service.upper()}_HOST"] == "0.0.0.0"
        assert f"PRESSROOM_{service.upper()}_DATABASE_URL" in env
        assert f"PRESSROOM_{service.upper()}_MIGRATE_DATABASE_URL" in env


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_local_settings_load(service, monkeypatch):
    objects = render("local")
    settings_class(service)  # skips a service whose package is not installed yet
    container = next(c for s, w, c in containers(objects) if s == service and w["kind"] != "Job")
    env = {k: v for k, v in environment(objects, container).items() if v is not None}
    settings = load_settings(service, env, monkeypatch)
    assert settings.port == SERVICES[service]
    assert settings.runtime_role == ""
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.database_url.startswith(f"postgresql://pressroom_{service}:")
    if service == "approval":
        assert (settings.smtp_host, settings.smtp_port) == ("mailpit", 1025)  # type: ignore[attr-defined]


def test_production_commits_no_secret_and_documents_each_one():
    objects = render("production")
    assert not [o for o in objects if o["kind"] == "Secret"]
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for _service, _workload, container in containers(objects):
        for entry in container.get("env", []):
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] in guide, f"docs/deploy.md does not name Secret {ref['name']}"
            assert ref["key"] in guide, f"docs/deploy.md does not name key {ref['key']}"


def test_the_local_database_init_matches_compose():
    local = (K8S / "overlays" / "local" / "postgres-init.sql").read_text()
    assert local == (ROOT / "deploy" / "compose" / "postgres-init.sql").read_text()
