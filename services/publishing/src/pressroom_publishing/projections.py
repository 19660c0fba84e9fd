"""The publishing service's projections (``pressroom rebuild publishing`` replays them)."""

from __future__ import annotations

from pressroom_kit.projections import Projection

PROJECTIONS: tuple[Projection, ...] = ()
