"""``python -m pressroom_publishing`` runs the publishing service on uvicorn."""

from __future__ import annotations

from pressroom_kit.runtime import serve

from pressroom_publishing.app import create_app
from pressroom_publishing.settings import PublishingSettings


def main() -> None:
    serve("publishing", PublishingSettings(), create_app)


if __name__ == "__main__":
    main()
