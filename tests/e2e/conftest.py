"""The end-to-end tests start the real gateway with the real services behind it; the service
test kits live in each service's tests folder."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in (
    "services/analytics/tests",
    "services/approval/tests",
    "services/gateway/tests",
    "services/media/tests",
    "services/publishing/tests",
    "services/webhook/tests",
    "tests/contract",  # the schemathesis gate
):
    if str(ROOT / folder) not in sys.path:
        sys.path.append(str(ROOT / folder))
