"""``python -m pressroom_media`` runs the media service on uvicorn."""

from __future__ import annotations

import uvicorn
from pressroom_kit.logs import configure_logging
from pressroom_kit.telemetry import configure_tracing

from pressroom_media.app import create_app
from pressroom_media.settings import MediaSettings


def main() -> None:
    settings = MediaSettings()
    configure_logging("media", level=settings.log_level, json=settings.log_json)
    configure_tracing("media")
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
