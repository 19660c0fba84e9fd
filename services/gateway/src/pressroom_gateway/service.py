"""How ``pressroom dev`` finds and runs the gateway."""

from importlib import resources

from pressroom_kit.service import ServiceSpec


def _projections():  # type: ignore[no-untyped-def]
    from pressroom_gateway.projections import BRANDS

    return [BRANDS]


SERVICE = ServiceSpec(
    name="gateway",
    module="pressroom_gateway",
    port=8000,
    database="pressroom_gateway",
    migrations=resources.files("pressroom_gateway") / "migrations",
    projections=_projections,
    order=1000,
)
