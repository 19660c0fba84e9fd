"""What the deployment tests share: the services, their settings classes and the
environment names each one reads.

A deployment file (compose, a Kubernetes ConfigMap) that sets a name no settings class reads
is a setting silently ignored (``extra="ignore"``): a typo in production. These helpers list
the names a service really reads, from its settings class, so the tests can refuse any other.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from pressroom_kit.settings import ServiceSettings
from pydantic import AliasChoices, AliasPath

ROOT = Path(__file__).resolve().parents[2]

# Every service and its port (docs/architecture.md); the two newest may not be installed yet.
SERVICES: dict[str, int] = {
    "gateway": 8000,
    "media": 8101,
    "publishing": 8102,
    "analytics": 8103,
    "approval": 8104,
    "webhook": 8105,
}

# Read by the kit outside the settings classes (tracing, the services' JSON logs).
OTHER_NAMES = frozenset({"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"})


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's settings class (every service has landed: a package that does not
    import fails the test rather than skipping it)."""
    module = importlib.import_module(f"pressroom_{service}.settings")
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ServiceSettings)
        and obj is not ServiceSettings
        and obj.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__}: expected one ServiceSettings subclass"
    return classes[0]


def env_names(cls: type[ServiceSettings]) -> set[str]:
    """Every environment name the class reads (upper case), shared names included."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names.add(choice.upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasPath):  # pragma: no cover - none of ours
            continue
        else:
            names.add(f"{prefix}{field_name.upper()}")
    return names


_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def substitute(value: Any) -> str:
    """A compose value as the service sees it when the variable is unset (``${X:-d}`` -> d)."""
    return _DEFAULTED.sub(lambda m: m.group(2), str(value))


def unknown_names(service: str, env: dict[str, Any]) -> list[str]:
    """The ``PRESSROOM_*`` names of ``env`` that the service's settings class does not read."""
    known = env_names(settings_class(service)) | OTHER_NAMES
    return sorted(name for name in env if name.startswith("PRESSROOM_") and name not in known)


def load_settings(
    service: str, env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    """The service's settings built from exactly ``env`` (every other PRESSROOM_ name unset),
    so a value of the wrong shape (bad JSON, a word for a number) fails here."""
    import os

    for name in list(os.environ):
        if name.startswith("PRESSROOM_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, substitute(value))
    return settings_class(service)()
