"""How a service package describes itself to the ``pressroom`` CLI.

A service exposes a ``ServiceSpec`` under the ``pressroom.services`` entry-point group;
``pressroom dev`` then creates its database and runs ``python -m <module>`` with its
settings, and ``pressroom rebuild <name>`` replays its projections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from importlib.resources.abc import Traversable
from pathlib import Path

from pressroom_kit.projections import Projection


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    database: str
    migrations: Traversable | Path | None = None
    projections: Callable[[], Sequence[Projection]] = field(default=lambda: ())
    prefixes: tuple[str, ...] = ()  # public path prefixes the gateway routes to this service
    order: int = 100  # start order: the gateway goes last

    @property
    def env_prefix(self) -> str:
        return f"PRESSROOM_{self.name.upper()}_"


def discover_services() -> list[ServiceSpec]:
    """Every installed service package, in start order."""
    found = []
    for entry in entry_points(group="pressroom.services"):
        spec = entry.load()
        if not isinstance(spec, ServiceSpec):
            raise TypeError(f"entry point {entry.name} is not a ServiceSpec")
        found.append(spec)
    return sorted(found, key=lambda s: (s.order, s.name))
