"""How ``pressroom dev`` finds and runs the approval service."""

from importlib import resources

from pressroom_kit.service import ServiceSpec


def _projections():  # type: ignore[no-untyped-def]
    from pressroom_approval.approvals.projections import PROJECTIONS

    return list(PROJECTIONS)


SERVICE = ServiceSpec(
    name="approval",
    module="pressroom_approval",
    port=8104,
    database="pressroom_approval",
    migrations=resources.files("pressroom_approval") / "migrations",
    projections=_projections,
    prefixes=(
        "/v1/approvals",
        "/v1/escalation-rules",
        "/v1/client-settings",
        "/v1/unsubscribe",
        "/v1/audit-logs",
        "/v1/privacy",
        "/review",
    ),
)
