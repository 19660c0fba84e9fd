"""The brand aggregate: name, timezone, posting settings and members. Pure Python."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import Conflict, Invalid, NotFound

Role = Literal["admin", "manager", "viewer"]


class BrandCreated(DomainEvent):
    type_name: ClassVar[str] = "BrandCreated"
    brand_id: UUID
    name: str
    timezone: str
    settings: dict[str, Any]
    created_by: str
    creator_email: str | None = None


class BrandUpdated(DomainEvent):
    type_name: ClassVar[str] = "BrandUpdated"
    name: str
    timezone: str
    settings: dict[str, Any]
    changed: list[str]


class MemberAdded(DomainEvent):
    type_name: ClassVar[str] = "MemberAdded"
    user_id: str
    email: str | None = None
    role: Role


class MemberRemoved(DomainEvent):
    type_name: ClassVar[str] = "MemberRemoved"
    user_id: str


def valid_timezone(name: str) -> str:
    """``name`` when it is an IANA time zone; ``Invalid`` otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(
            f"{name!r} is not an IANA time zone",
            code="bad_timezone",
            errors=[{"field": "timezone", "message": "unknown time zone"}],
        ) from exc
    return name


def valid_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 200:
        raise Invalid(
            "a brand name has 1 to 200 characters",
            code="bad_name",
            errors=[{"field": "name", "message": "1 to 200 characters"}],
        )
    return cleaned


class Brand(Aggregate):
    stream_type = "brand"
    event_classes = (BrandCreated, BrandUpdated, MemberAdded, MemberRemoved)

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.timezone = "UTC"
        self.settings: dict[str, Any] = {}
        self.members: dict[str, Role] = {}

    @property
    def brand_id(self) -> UUID:
        return UUID(self.id)

    def apply(self, event: DomainEvent) -> None:
        match event:
            case BrandCreated():
                self.name, self.timezone = event.name, event.timezone
                self.settings = dict(event.settings)
                self.members[event.created_by] = "admin"
            case BrandUpdated():
                self.name, self.timezone = event.name, event.timezone
                self.settings = dict(event.settings)
            case MemberAdded():
                self.members[event.user_id] = event.role
            case MemberRemoved():
                self.members.pop(event.user_id, None)

    @classmethod
    def create(
        cls,
        brand_id: UUID,
        *,
        name: str,
        timezone: str,
        settings: dict[str, Any],
        created_by: str,
        creator_email: str | None,
    ) -> Brand:
        brand = cls(str(brand_id))
        brand.record(
            BrandCreated(
                brand_id=brand_id,
                name=valid_name(name),
                timezone=valid_timezone(timezone),
                settings=settings,
                created_by=created_by,
                creator_email=creator_email,
            )
        )
        return brand

    def update(
        self,
        *,
        name: str | None = None,
        timezone: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Change what is given; settings are merged key by key (``null`` removes a key)."""
        new_name = self.name if name is None else valid_name(name)
        new_timezone = self.timezone if timezone is None else valid_timezone(timezone)
        new_settings = dict(self.settings)
        for key, value in (settings or {}).items():
            if value is None:
                new_settings.pop(key, None)
            else:
                new_settings[key] = value
        changed = [
            field
            for field, old, new in (
                ("name", self.name, new_name),
                ("timezone", self.timezone, new_timezone),
                ("settings", self.settings, new_settings),
            )
            if old != new
        ]
        if changed:
            self.record(
                BrandUpdated(
                    name=new_name, timezone=new_timezone, settings=new_settings, changed=changed
                )
            )

    def add_member(self, user_id: str, role: Role, email: str | None) -> None:
        if self.members.get(user_id) == role:
            return
        if self.members.get(user_id) == "admin" and role != "admin":
            self._keep_an_admin(user_id)
        self.record(MemberAdded(user_id=user_id, role=role, email=email))

    def remove_member(self, user_id: str) -> None:
        if user_id not in self.members:
            raise NotFound(f"{user_id} is not a member of this brand", code="no_member")
        if self.members[user_id] == "admin":
            self._keep_an_admin(user_id)
        self.record(MemberRemoved(user_id=user_id))

    def _keep_an_admin(self, leaving: str) -> None:
        admins = [u for u, r in self.members.items() if r == "admin" and u != leaving]
        if not admins:
            raise Conflict("a brand keeps at least one admin", code="last_admin")
