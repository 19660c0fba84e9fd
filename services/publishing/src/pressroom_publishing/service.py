"""How ``pressroom dev`` finds and runs the publishing service."""

from importlib import resources

from pressroom_kit.service import ServiceSpec


def _projections():  # type: ignore[no-untyped-def]
    from pressroom_publishing.projections import PROJECTIONS

    return list(PROJECTIONS)


SERVICE = ServiceSpec(
    name="publishing",
    module="pressroom_publishing",
    port=8102,
    database="pressroom_publishing",
    migrations=resources.files("pressroom_publishing") / "migrations",
    projections=_projections,
    prefixes=("/v1/connections", "/v1/posts", "/v1/calendar", "/sandbox-platform"),
)
