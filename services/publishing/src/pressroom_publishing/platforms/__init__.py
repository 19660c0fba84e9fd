"""Platform ids and adapters. Every id of the public API is known here; an id whose adapter is
not built (or not configured) is refused by validation as unavailable."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from pressroom_publishing.platforms.base import Platform, PlatformHTTP

PLATFORM_IDS: tuple[str, ...] = (
    "sandbox",
    "facebook",
    "instagram",
    "linkedin",
    "x",
    "mastodon",
    "bluesky",
    "threads",
    "pinterest",
    "tiktok",
    "youtube",
)

# Platform id -> "module:class" of its adapter.
ADAPTERS: dict[str, str] = {
    "sandbox": "pressroom_publishing.platforms.sandbox:SandboxPlatform",
    "mastodon": "pressroom_publishing.platforms.mastodon:MastodonPlatform",
    "bluesky": "pressroom_publishing.platforms.bluesky:BlueskyPlatform",
    "x": "pressroom_publishing.platforms.x:XPlatform",
    "linkedin": "pressroom_publishing.platforms.linkedin:LinkedInPlatform",
    "facebook": "pressroom_publishing.platforms.facebook:FacebookPlatform",
    "threads": "pressroom_publishing.platforms.threads:ThreadsPlatform",
    "instagram": "pressroom_publishing.platforms.instagram:InstagramPlatform",
    "pinterest": "pressroom_publishing.platforms.pinterest:PinterestPlatform",
    "tiktok": "pressroom_publishing.platforms.tiktok:TikTokPlatform",
    "youtube": "pressroom_publishing.platforms.youtube:YouTubePlatform",
}


def adapter_class(platform_id: str) -> type[Platform] | None:
    target = ADAPTERS.get(platform_id)
    if target is None:
        return None
    module, _, name = target.partition(":")
    cls: type[Platform] = getattr(import_module(module), name)
    return cls


def build_platforms(
    http: PlatformHTTP, configs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Platform]:
    """One adapter per configured platform id (``configs``: id -> its settings)."""
    platforms: dict[str, Platform] = {}
    for platform_id, config in configs.items():
        cls = adapter_class(platform_id)
        if cls is None:
            raise ValueError(f"no adapter for platform {platform_id!r}")
        platforms[platform_id] = cls(http, config)
    return platforms
