"""Is a post publishable as it is? Checked at create, edit and submit, per platform.

One ``errors`` entry per platform and field, so a client can show each problem where it
belongs: ``platforms.<id>`` (unknown id, or no adapter here), ``platforms.<id>.connection``
(the brand has no usable connection), ``platforms.<id>.text`` / ``.media`` (the adapter's
rules on the content with that platform's overrides applied), ``content.media_ids[i]`` and
``overrides.<id>.media_ids[i]`` (not an asset of the brand), ``overrides.<id>`` (not one of
the post's platforms).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

import asyncpg
from pressroom_kit.errors import Invalid

from pressroom_publishing.platforms import PLATFORM_IDS, known_platform
from pressroom_publishing.platforms.base import MediaItem, Platform, PostContent
from pressroom_publishing.posts.domain import Content, Override

FieldError = dict[str, str]


async def media_items(conn: asyncpg.Connection, ids: Sequence[UUID]) -> dict[UUID, MediaItem]:
    """The brand's assets among ``ids`` (the tenant transaction scopes the brand)."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT asset_id, kind, filename, content_type, size_bytes, width, height, duration_s "
        "FROM publishing_media WHERE asset_id = ANY($1::uuid[])",
        list(ids),
    )
    return {
        r["asset_id"]: MediaItem(
            media_id=r["asset_id"],
            kind=r["kind"],
            content_type=r["content_type"],
            size_bytes=r["size_bytes"],
            width=r["width"],
            height=r["height"],
            duration_s=r["duration_s"],
            filename=r["filename"],
        )
        for r in rows
    }


async def connected_platforms(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT platform FROM platform_connections WHERE status = 'connected'")
    return {r["platform"] for r in rows}


def content_for(content: Content, override: Override | None) -> Content:
    if override is None:
        return content
    return Content(
        text=content.text if override.text is None else override.text,
        media_ids=content.media_ids if override.media_ids is None else override.media_ids,
        link=content.link,
    )


async def validate_post(
    conn: asyncpg.Connection,
    available: Mapping[str, Platform],
    *,
    content: Content,
    platforms: Sequence[str],
    overrides: Mapping[str, Override],
) -> None:
    """Raise ``Invalid`` (422, ``invalid_post``) naming every problem, or return."""
    errors: list[FieldError] = []
    if not platforms:
        errors.append({"field": "platforms", "message": "name at least one platform"})
    seen: set[str] = set()
    for platform in platforms:
        if platform in seen:
            errors.append({"field": f"platforms.{platform}", "message": "named twice"})
        seen.add(platform)
    for platform in overrides:
        if platform not in seen:
            errors.append(
                {"field": f"overrides.{platform}", "message": "not one of the post's platforms"}
            )
    wanted = list(content.media_ids) + [m for o in overrides.values() for m in (o.media_ids or [])]
    known = await media_items(conn, wanted)
    for index, media_id in enumerate(content.media_ids):
        if media_id not in known:
            errors.append(
                {"field": f"content.media_ids[{index}]", "message": f"no asset {media_id}"}
            )
    for platform, override in overrides.items():
        for index, media_id in enumerate(override.media_ids or []):
            if media_id not in known:
                errors.append(
                    {
                        "field": f"overrides.{platform}.media_ids[{index}]",
                        "message": f"no asset {media_id}",
                    }
                )
    connected = await connected_platforms(conn) if platforms else set()
    for platform in dict.fromkeys(platforms):
        if not known_platform(platform):
            errors.append(
                {
                    "field": f"platforms.{platform}",
                    "message": f"unknown platform; one of {', '.join(PLATFORM_IDS)}",
                }
            )
            continue
        adapter = available.get(platform)
        if adapter is None:
            errors.append(
                {"field": f"platforms.{platform}", "message": "not available in this installation"}
            )
            continue
        if platform not in connected:
            errors.append(
                {
                    "field": f"platforms.{platform}.connection",
                    "message": f"the brand has no usable {adapter.capabilities.display_name} "
                    "connection; connect it first",
                }
            )
        chosen = content_for(content, overrides.get(platform))
        items = [known[m] for m in chosen.media_ids if m in known]
        for problem in adapter.validate(
            PostContent(
                text=chosen.text,
                media=items,
                link=chosen.link,
                options=(overrides[platform].options or {}) if platform in overrides else {},
            )
        ):
            errors.append(
                {"field": f"platforms.{platform}.{problem.field}", "message": problem.message}
            )
    if errors:
        raise Invalid(
            f"the post cannot be published as it is ({len(errors)} problem"
            f"{'' if len(errors) == 1 else 's'})",
            code="invalid_post",
            errors=errors,
        )
