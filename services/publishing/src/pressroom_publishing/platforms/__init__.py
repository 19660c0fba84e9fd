"""Platform ids and adapters. Every id of the public API is known here; an id whose adapter is
not built (or not configured) is refused by validation as unavailable."""

from __future__ import annotations

import dataclasses
import re
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


# More sandbox-backed platform ids (``sandbox_b``...): the built-in sandbox under another
# id, so that a local stack or a test can post to "several platforms" without any real
# one. Configured as ``{"sandbox_b": {"adapter": "sandbox"}}`` in PRESSROOM_PUBLISHING_PLATFORMS.
SANDBOX_ALIAS = re.compile(r"^sandbox_[a-z0-9]{1,20}$")


def known_platform(platform_id: str) -> bool:
    """An id of the public API, or a sandbox alias."""
    return platform_id in PLATFORM_IDS or bool(SANDBOX_ALIAS.fullmatch(platform_id))


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
        adapter = str(config.get("adapter") or platform_id)
        if adapter != platform_id and not (
            adapter == "sandbox" and SANDBOX_ALIAS.fullmatch(platform_id)
        ):
            raise ValueError(
                f"platform {platform_id!r}: only sandbox_<name> ids may name another adapter "
                "(the sandbox)"
            )
        cls = adapter_class(adapter)
        if cls is None:
            raise ValueError(f"no adapter for platform {platform_id!r}")
        if adapter != platform_id:
            cls = _alias(cls, platform_id)
        platforms[platform_id] = cls(http, {k: v for k, v in config.items() if k != "adapter"})
    return platforms


def _alias(cls: type[Platform], platform_id: str) -> type[Platform]:
    suffix = platform_id.split("_", 1)[1].upper()
    capabilities = dataclasses.replace(
        cls.capabilities,
        platform=platform_id,
        display_name=f"{cls.capabilities.display_name} {suffix}",
    )
    return type(f"{cls.__name__}_{platform_id}", (cls,), {"capabilities": capabilities})
