"""Prometheus metrics of deliveries (exposed on ``/metrics`` beside the kit's): the
failure-rate alert in deploy/monitoring reads them."""

from prometheus_client import Counter

ATTEMPTS = Counter(
    "pressroom_webhook_attempts_total",
    "Delivery attempts (HTTP requests to endpoints) by outcome: succeeded, failed",
    ["outcome"],
)
