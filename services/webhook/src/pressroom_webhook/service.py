"""How ``pressroom dev`` finds and runs the webhook service."""

from importlib import resources

from pressroom_kit.service import ServiceSpec


def _projections():  # type: ignore[no-untyped-def]
    from pressroom_webhook.projections import ENDPOINTS

    return [ENDPOINTS]


SERVICE = ServiceSpec(
    name="webhook",
    module="pressroom_webhook",
    port=8105,
    database="pressroom_webhook",
    migrations=resources.files("pressroom_webhook") / "migrations",
    projections=_projections,
    prefixes=("/v1/webhooks",),
)
