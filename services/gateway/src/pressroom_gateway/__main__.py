"""``python -m pressroom_gateway`` runs the gateway on uvicorn (or granian, by setting)."""

from __future__ import annotations

from pressroom_kit.logs import configure_logging
from pressroom_kit.telemetry import configure_tracing

from pressroom_gateway.app import create_app
from pressroom_gateway.edge import Edge
from pressroom_gateway.settings import GatewaySettings


def served_app() -> Edge:
    """The factory each server worker calls: logging and tracing, then the app."""
    settings = GatewaySettings()
    configure_logging("gateway", level=settings.log_level, json=settings.log_json)
    configure_tracing("gateway")
    return create_app(settings)


def main() -> None:
    settings = GatewaySettings()
    if settings.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            "pressroom_gateway.__main__:served_app",
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            factory=True,
            workers=settings.workers,
            websockets=False,
            log_access=False,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        served_app(),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
