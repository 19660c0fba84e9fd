"""Prometheus metrics of the scheduler (exposed on ``/metrics`` beside the kit's)."""

from prometheus_client import Counter, Gauge, Histogram

DUE_BACKLOG = Gauge(
    "pressroom_publishing_due_backlog",
    "Post platforms due for publishing and not yet claimed, across brands",
)
PUBLISH_DELAY = Histogram(
    "pressroom_publishing_delay_seconds",
    "Time from a post's scheduled_at to its first platform call",
    ["platform"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
ATTEMPTS = Counter(
    "pressroom_publishing_attempts_total",
    "Publishing attempts by platform and outcome (published, retry, failed, unconfirmed)",
    ["platform", "outcome"],
)
