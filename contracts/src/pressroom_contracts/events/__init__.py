"""The event catalog, one module per producing domain. Services add theirs as they land."""

from pressroom_contracts.events import brands, media, publishing, webhook

__all__ = ["brands", "media", "publishing", "webhook"]
