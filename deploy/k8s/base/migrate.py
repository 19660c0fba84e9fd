"""Migrate one service's database ahead of a rollout (the ``<service>-migrate`` Jobs).

Runs in the service's own image (``SERVICE_MODULE``, set by deploy/Dockerfile.service) with
the service's settings from the environment, and does what the service's lifespan does
first: ``prepare_database`` (the kit's migrations, then the service's, as the owner under an
advisory lock; grants the runtime role; refuses an unsafe runtime role). Services still
migrate on start, so the Job is an early, visible failure rather than a requirement, and
running it again is a no-op. Mounted from a ConfigMap (kustomize ``configMapGenerator``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys

from pressroom_kit.db import prepare_database
from pressroom_kit.service import discover_services
from pressroom_kit.settings import ServiceSettings


def _settings(module: str) -> ServiceSettings:
    settings_module = importlib.import_module(f"{module}.settings")
    for obj in vars(settings_module).values():
        if (
            inspect.isclass(obj)
            and issubclass(obj, ServiceSettings)
            and obj is not ServiceSettings
            and obj.__module__ == settings_module.__name__
        ):
            return obj()
    raise SystemExit(f"{module}.settings has no ServiceSettings subclass")


async def migrate(module: str) -> str:
    """Migrate the service whose package is ``module``; return the runtime role's DSN user."""
    spec = next((s for s in discover_services() if s.module == module), None)
    if spec is None:
        raise SystemExit(f"no installed service runs as {module} (pressroom.services)")
    settings = _settings(module)
    migrations = [(spec.name, spec.migrations)] if spec.migrations is not None else []
    dsn = await prepare_database(
        database_url=settings.database_url,
        migrate_database_url=settings.migrate_database_url,
        runtime_role=settings.runtime_role,
        migrations=migrations,
    )
    return dsn.split("://", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def main() -> None:
    module = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SERVICE_MODULE", "")
    if not module:
        raise SystemExit("usage: migrate.py <service package> (or SERVICE_MODULE)")
    user = asyncio.run(migrate(module))
    print(f"{module}: migrated; runs as {user}")


if __name__ == "__main__":
    main()
