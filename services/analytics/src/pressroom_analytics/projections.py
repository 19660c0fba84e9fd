"""The analytics service's projections (placeholder of the skeleton: the owners replace it)."""

from pressroom_kit.projections import Projection

PROJECTIONS: list[Projection] = []
