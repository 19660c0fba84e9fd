"""The approval service's projections (placeholder of the skeleton: the approvals owner
replaces this with the real ones)."""

from pressroom_kit.projections import Projection

PROJECTIONS: list[Projection] = []
