"""The analytics service's projections for ``pressroom rebuild``: none.

Analytics keeps no event-sourced aggregate. Its tables are upserted straight from other
services' events and publishing's answers (idempotently: one row per brand, platform and
date), and a sync log is work state, not a read model. There is no event stream of ours
to replay them from; lost numbers come back by syncing again (``pressroom analytics
backfill``), which is what a rebuild would amount to.
"""

from pressroom_kit.projections import Projection

PROJECTIONS: list[Projection] = []
