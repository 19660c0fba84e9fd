"""``python -m pressroom_media`` runs the media service on uvicorn."""

from __future__ import annotations

from pressroom_kit.runtime import serve

from pressroom_media.app import create_app
from pressroom_media.settings import MediaSettings


def main() -> None:
    serve("media", MediaSettings(), create_app)


if __name__ == "__main__":
    main()
