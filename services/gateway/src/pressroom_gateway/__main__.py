"""``python -m pressroom_gateway`` runs the gateway with uvicorn."""

from __future__ import annotations

import uvicorn
from pressroom_kit.logs import configure_logging
from pressroom_kit.telemetry import configure_tracing

from pressroom_gateway.app import create_app
from pressroom_gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", level=settings.log_level, json=settings.log_json)
    configure_tracing("gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
