"""``python -m pressroom_webhook`` runs the webhook service on uvicorn."""

from __future__ import annotations

import uvicorn
from pressroom_kit.logs import configure_logging
from pressroom_kit.telemetry import configure_tracing

from pressroom_webhook.app import create_app
from pressroom_webhook.settings import WebhookSettings


def main() -> None:
    settings = WebhookSettings()
    configure_logging("webhook", level=settings.log_level, json=settings.log_json)
    configure_tracing("webhook")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
