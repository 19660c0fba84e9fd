"""The event catalog, one module per producing domain. Services add theirs as they land."""

from pressroom_contracts.events import analytics, approval, brands, media, publishing, webhook

__all__ = ["analytics", "approval", "brands", "media", "publishing", "webhook"]
