"""Brand commands: load, decide, save (events, projections and outbox in one transaction)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from pressroom_contracts.events.brands import (
    BrandCreated as BrandCreatedV1,
)
from pressroom_contracts.events.brands import (
    BrandMemberAdded,
    BrandMemberRemoved,
)
from pressroom_contracts.events.brands import (
    BrandUpdated as BrandUpdatedV1,
)
from pressroom_contracts.topics import Topic
from pressroom_kit.auth import Principal
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import ConcurrencyError, NotFound
from pressroom_kit.eventstore import RecordedEvent
from pressroom_kit.projections import Projector
from pressroom_kit.repository import Repository, retry_on_conflict

from pressroom_gateway.domain import Brand, Role
from pressroom_gateway.projections import BRANDS

SOURCE = "/pressroom/gateway"


def to_public(event: RecordedEvent) -> list[tuple[str, str, dict[str, Any]]]:
    """Internal brand events -> the public ``brand.*`` contracts."""
    data, brand_id = event.data, str(event.brand_id)
    match event.type:
        case "BrandCreated":
            public_type = BrandCreatedV1.event_type
            payload = {
                "brand_id": brand_id,
                "name": data["name"],
                "timezone": data["timezone"],
                "settings": data["settings"],
                "created_by": data["created_by"],
            }
        case "BrandUpdated":
            public_type = BrandUpdatedV1.event_type
            payload = {
                "brand_id": brand_id,
                "name": data["name"],
                "timezone": data["timezone"],
                "settings": data["settings"],
                "changed": data["changed"],
            }
        case "MemberAdded":
            public_type = BrandMemberAdded.event_type
            payload = {
                "brand_id": brand_id,
                "user_id": data["user_id"],
                "email": data.get("email"),
                "role": data["role"],
            }
        case "MemberRemoved":
            public_type = BrandMemberRemoved.event_type
            payload = {"brand_id": brand_id, "user_id": data["user_id"]}
        case _:
            return []
    return [(Topic.BRANDS.value, public_type, payload)]


REPOSITORY: Repository[Brand] = Repository(
    Brand, source=SOURCE, projector=Projector([BRANDS]), to_public=to_public
)


async def create_brand(
    pool: asyncpg.Pool,
    principal: Principal,
    *,
    name: str,
    timezone: str,
    settings: dict[str, Any],
) -> uuid.UUID:
    brand_id = uuid.uuid4()
    brand = Brand.create(
        brand_id,
        name=name,
        timezone=timezone,
        settings=settings,
        created_by=principal.sub,
        creator_email=principal.email,
    )
    async with tenant_transaction(pool, brand_id) as conn:
        await REPOSITORY.save(conn, brand, brand_id=brand_id, actor=principal.sub)
    return brand_id


async def _change(pool: asyncpg.Pool, principal: Principal, decide: Any) -> None:
    brand_id = principal.brand_id

    async def command() -> None:
        async with tenant_transaction(pool, brand_id) as conn:
            brand = await REPOSITORY.load(conn, str(brand_id))
            if brand is None:
                raise NotFound("the token's brand does not exist", code="no_brand")
            decide(brand)
            await REPOSITORY.save(conn, brand, brand_id=brand_id, actor=principal.sub)

    await retry_on_conflict(command)


async def update_brand(
    pool: asyncpg.Pool,
    principal: Principal,
    *,
    name: str | None,
    timezone: str | None,
    settings: dict[str, Any] | None,
) -> None:
    await _change(
        pool, principal, lambda b: b.update(name=name, timezone=timezone, settings=settings)
    )


async def add_member(
    pool: asyncpg.Pool, principal: Principal, *, user_id: str, role: Role, email: str | None
) -> None:
    await _change(pool, principal, lambda b: b.add_member(user_id, role, email))


async def remove_member(pool: asyncpg.Pool, principal: Principal, *, user_id: str) -> None:
    await _change(pool, principal, lambda b: b.remove_member(user_id))


async def ensure_demo_brand(
    pool: asyncpg.Pool, brand_id: uuid.UUID, *, admin_sub: str, name: str = "Demo Brand"
) -> bool:
    """Create the local stack's demo brand once; ``False`` when it already exists."""
    # The development tokens' subjects: UUIDs like every id, stable with the brand id.
    members: tuple[tuple[str, Role], ...] = tuple(
        (str(uuid.uuid5(brand_id, f"dev-{role}")), role) for role in ("manager", "viewer")
    )
    try:
        async with tenant_transaction(pool, brand_id) as conn:
            if await REPOSITORY.load(conn, str(brand_id)) is not None:
                return False
            brand = Brand.create(
                brand_id,
                name=name,
                timezone="UTC",
                settings={},
                created_by=admin_sub,
                creator_email="admin@pressroom.local",
            )
            for sub, role in members:
                brand.add_member(sub, role, f"{role}@pressroom.local")
            await REPOSITORY.save(conn, brand, brand_id=brand_id, actor=admin_sub)
    except ConcurrencyError:
        return False  # another replica created it first
    return True
