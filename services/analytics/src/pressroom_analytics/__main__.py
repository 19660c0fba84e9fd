"""``python -m pressroom_analytics`` runs the analytics service on uvicorn."""

from __future__ import annotations

from pressroom_kit.runtime import serve

from pressroom_analytics.app import create_app
from pressroom_analytics.settings import AnalyticsSettings


def main() -> None:
    serve("analytics", AnalyticsSettings(), create_app)


if __name__ == "__main__":
    main()
