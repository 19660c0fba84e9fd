"""Prometheus metrics of the kit's background work (exposed on ``/metrics``)."""

from prometheus_client import Counter, Gauge, Histogram

OUTBOX_BACKLOG = Gauge("pressroom_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PARKED = Gauge(
    "pressroom_outbox_parked",
    "Outbox rows parked after a permanent publish failure (operator action needed)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "pressroom_outbox_published_total", "Outbox rows published to Kafka", ["service"]
)
OUTBOX_PUBLISH_LAG = Histogram(
    "pressroom_outbox_publish_lag_seconds",
    "Time from outbox insert to broker acknowledgement",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RELAY_LEADER = Gauge(
    "pressroom_relay_leader", "1 when this process holds the relay lock", ["service"]
)
CONSUMER_LAG = Gauge(
    "pressroom_consumer_lag",
    "Messages behind the partition end",
    ["consumer", "topic", "partition"],
)
CONSUMER_PROCESSED = Counter(
    "pressroom_consumer_processed_total", "Messages handled", ["consumer", "topic", "outcome"]
)
DLQ_MESSAGES = Counter(
    "pressroom_dlq_messages_total", "Messages sent to a dead-letter topic", ["consumer", "topic"]
)
CONSUMER_RETRYING = Gauge(
    "pressroom_consumer_retrying",
    "Partitions paused while a transient failure (database, lost race) is retried",
    ["consumer"],
)
CONSUMER_TRANSIENT_RETRIES = Counter(
    "pressroom_consumer_transient_retries_total",
    "Transient failures that made a consumer pause a partition and retry",
    ["consumer", "topic"],
)
CONSUMER_COMMIT_FAILURES = Counter(
    "pressroom_consumer_commit_failures_total",
    "Offset commits skipped because they failed (e.g. partitions revoked by a rebalance)",
    ["consumer"],
)
INBOX_DELETED = Counter(
    "pressroom_inbox_deleted_total", "Inbox rows deleted after the retention", ["consumer"]
)
HEARTBEAT_LAST = Gauge(
    "pressroom_heartbeat_last_seconds",
    "Unix time of a background worker's last beat (its registration until it first beats)",
    ["worker"],
)
HEARTBEAT_MAX_AGE = Gauge(
    "pressroom_heartbeat_max_age_seconds",
    "How old a worker's last beat may be before /readyz fails",
    ["worker"],
)
HEARTBEAT_OK = Gauge(
    "pressroom_heartbeat_ok", "1 when the worker's last beat reported success", ["worker"]
)
