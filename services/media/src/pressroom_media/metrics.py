"""Prometheus metrics of uploads (exposed on ``/metrics`` beside the kit's)."""

from prometheus_client import Counter, Histogram

UPLOADS = Counter(
    "pressroom_media_uploads_total",
    "Uploads by outcome: created, duplicate, or the refusal's status code (413, 415, 422, ...)",
    ["outcome"],
)
UPLOADED_BYTES = Counter("pressroom_media_uploaded_bytes_total", "Bytes of created assets")
UPLOAD_STAGE = Histogram(
    "pressroom_media_upload_stage_seconds",
    "Time an upload spends in each stage",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
