"""How ``pressroom dev`` finds and runs the analytics service."""

from importlib import resources

from pressroom_kit.service import ServiceSpec


def _projections():  # type: ignore[no-untyped-def]
    from pressroom_analytics.projections import PROJECTIONS

    return list(PROJECTIONS)


SERVICE = ServiceSpec(
    name="analytics",
    module="pressroom_analytics",
    port=8103,
    database="pressroom_analytics",
    migrations=resources.files("pressroom_analytics") / "migrations",
    projections=_projections,
    prefixes=("/v1/analytics",),
)
