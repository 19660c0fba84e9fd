"""The event catalog, one module per producing domain. Services add theirs as they land."""

from pressroom_contracts.events import approval, brands, media, publishing, webhook

__all__ = ["approval", "brands", "media", "publishing", "webhook"]
