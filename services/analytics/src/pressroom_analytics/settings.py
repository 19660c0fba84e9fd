"""Analytics settings: ``PRESSROOM_ANALYTICS_*`` plus the shared ``PRESSROOM_*`` names."""

from __future__ import annotations

from pressroom_kit.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class AnalyticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_ANALYTICS_", extra="ignore", populate_by_name=True
    )

    port: int = 8103
    database_url: str = "postgresql://postgres@127.0.0.1:54329/pressroom_analytics"
    consumer_group: str = "pressroom-analytics"
    consumer_session_timeout_ms: int = 10_000

    # Syncs: how long a sync waits for publishing's answers, the daily sync's hour (UTC) and
    # how many days back it fetches.
    sync_timeout_s: float = 300.0
    daily_sync_hour_utc: int = 3
    daily_sync_days: int = 3
    worker_poll_s: float = 5.0

    # Charts: how many render at once (each in a worker thread; rendering is CPU-bound).
    chart_concurrency: int = 2
