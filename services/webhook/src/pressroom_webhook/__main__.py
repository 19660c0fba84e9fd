"""``python -m pressroom_webhook`` runs the webhook service on uvicorn."""

from __future__ import annotations

from pressroom_kit.runtime import serve

from pressroom_webhook.app import create_app
from pressroom_webhook.settings import WebhookSettings


def main() -> None:
    serve("webhook", WebhookSettings(), create_app)


if __name__ == "__main__":
    main()
