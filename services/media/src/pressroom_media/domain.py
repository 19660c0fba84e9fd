"""The media asset aggregate and the quota arithmetic. Pure Python."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from uuid import UUID

from pressroom_kit.domain import Aggregate, DomainEvent
from pressroom_kit.errors import Conflict, Invalid, NotFound
from pydantic import BaseModel

MAX_TAGS = 50
MAX_TAG_LENGTH = 64
MAX_FILENAME_LENGTH = 255
MAX_CATEGORY_LENGTH = 64


class StoredFile(BaseModel):
    """One stored file of an asset: the served original, the thumbnail or a variant."""

    key: str
    content_type: str
    width: int
    height: int
    size_bytes: int


class QuotaChange(BaseModel):
    """The brand's quota as this event leaves it (so the projection never needs settings)."""

    limit_bytes: int
    warning_threshold: float
    used_bytes_after: int
    warning: Literal["raised", "cleared"] | None = None


class AssetUploaded(DomainEvent):
    type_name: ClassVar[str] = "AssetUploaded"
    brand_id: UUID
    kind: Literal["image", "video"]
    filename: str
    content_type: str
    size_bytes: int
    hash: str
    category: str | None
    tags: list[str]
    metadata: dict[str, Any]
    files: dict[str, StoredFile]
    quota: QuotaChange


class AssetUpdated(DomainEvent):
    type_name: ClassVar[str] = "AssetUpdated"
    filename: str
    category: str | None
    tags: list[str]
    changed: list[str]


class AssetUsed(DomainEvent):
    type_name: ClassVar[str] = "AssetUsed"
    used_in: str
    action: str
    usage_key: str
    used_by_user: str | None
    source_event: UUID


class AssetUsageReleased(DomainEvent):
    """A use given back (a cancelled post's ``scheduled``). ``still_used`` says whether
    ``used_in`` keeps naming it (the post was published somewhere before it was cancelled),
    so the projection and a rebuild never need the rest of the history."""

    type_name: ClassVar[str] = "AssetUsageReleased"
    used_in: str
    action: str
    usage_key: str
    still_used: bool
    released_by_user: str | None
    source_event: UUID


class AssetDeleted(DomainEvent):
    type_name: ClassVar[str] = "AssetDeleted"
    size_bytes: int
    forced: bool
    quota: QuotaChange


def clean_filename(name: str | None, extension: str) -> str:
    """A display name: no path, no control characters, bounded; the default names the type."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if not name or name in {".", ".."}:
        name = f"upload.{extension}"
    return name[:MAX_FILENAME_LENGTH]


def clean_tags(tags: list[str]) -> list[str]:
    cleaned: dict[str, None] = {}
    for tag in tags:
        tag = unicodedata.normalize("NFC", tag).strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise Invalid(
                f"a tag is at most {MAX_TAG_LENGTH} characters",
                errors=[{"field": "tags", "message": f"too long: {tag[:20]}..."}],
            )
        cleaned[tag] = None
        if len(cleaned) > MAX_TAGS:
            raise Invalid(
                f"at most {MAX_TAGS} tags", errors=[{"field": "tags", "message": "too many"}]
            )
    return list(cleaned)


def clean_category(category: str | None) -> str | None:
    if category is None or not category.strip():
        return None
    category = unicodedata.normalize("NFC", category).strip()
    if len(category) > MAX_CATEGORY_LENGTH:
        raise Invalid(
            f"a category is at most {MAX_CATEGORY_LENGTH} characters",
            errors=[{"field": "category", "message": "too long"}],
        )
    return category


@dataclass(frozen=True)
class Quota:
    """A brand's storage quota at one moment (under the brand's quota lock)."""

    limit_bytes: int
    warning_threshold: float
    used_bytes: int
    reserved_bytes: int
    warning_active: bool

    def fits(self, size: int) -> bool:
        return self.used_bytes + self.reserved_bytes + size <= self.limit_bytes

    def after(self, delta: int) -> QuotaChange:
        """The quota once ``delta`` bytes are added (or freed); says when the warning line is
        crossed upwards (once, until usage drops below it again) or downwards."""
        used = max(0, self.used_bytes + delta)
        above = used >= round(self.warning_threshold * self.limit_bytes)  # 0.8 * 10 is 8.000…1
        warning: Literal["raised", "cleared"] | None = None
        if above and not self.warning_active:
            warning = "raised"
        elif not above and self.warning_active:
            warning = "cleared"
        return QuotaChange(
            limit_bytes=self.limit_bytes,
            warning_threshold=self.warning_threshold,
            used_bytes_after=used,
            warning=warning,
        )


class MediaAsset(Aggregate):
    stream_type = "media_asset"
    event_classes = (AssetUploaded, AssetUpdated, AssetUsed, AssetUsageReleased, AssetDeleted)

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.brand_id: UUID | None = None
        self.size_bytes = 0
        self.filename = ""
        self.category: str | None = None
        self.tags: list[str] = []
        self.files: dict[str, StoredFile] = {}
        self.used_in: list[str] = []
        self.usage_keys: set[str] = set()
        self.usage_count = 0
        self.deleted = False

    def apply(self, event: DomainEvent) -> None:
        match event:
            case AssetUploaded():
                self.brand_id, self.size_bytes = event.brand_id, event.size_bytes
                self.filename, self.category = event.filename, event.category
                self.tags, self.files = list(event.tags), dict(event.files)
            case AssetUpdated():
                self.filename, self.category, self.tags = (
                    event.filename,
                    event.category,
                    list(event.tags),
                )
            case AssetUsed():
                if event.used_in not in self.used_in:
                    self.used_in.append(event.used_in)
                self.usage_keys.add(event.usage_key)
                self.usage_count += 1
            case AssetUsageReleased():
                self.usage_keys.discard(event.usage_key)
                if not event.still_used and event.used_in in self.used_in:
                    self.used_in.remove(event.used_in)
                self.usage_count = max(0, self.usage_count - 1)
            case AssetDeleted():
                self.deleted = True

    @classmethod
    def upload(cls, asset_id: UUID, **fields: Any) -> MediaAsset:
        asset = cls(str(asset_id))
        asset.record(AssetUploaded(**fields))
        return asset

    def _live(self) -> None:
        if self.deleted:
            raise NotFound(f"no media asset {self.id}", code="no_asset")

    def change(
        self, *, filename: str | None, category: str | None, tags: list[str] | None, clear: set[str]
    ) -> None:
        """Rename, recategorise or retag; ``clear`` names fields set to null on purpose."""
        self._live()
        new_filename = self.filename if filename is None else clean_filename(filename, "bin")
        new_category = (
            None if "category" in clear else self.category if category is None else category
        )
        new_category = clean_category(new_category)
        new_tags = self.tags if tags is None else clean_tags(tags)
        changed = [
            name
            for name, old, new in (
                ("filename", self.filename, new_filename),
                ("category", self.category, new_category),
                ("tags", self.tags, new_tags),
            )
            if old != new
        ]
        if changed:
            self.record(
                AssetUpdated(
                    filename=new_filename, category=new_category, tags=new_tags, changed=changed
                )
            )

    def use(
        self, *, used_in: str, action: str, used_by_user: str | None, source_event: UUID
    ) -> bool:
        """Record one use; the same (what, action) counted once however often it arrives."""
        if self.deleted:
            return False
        usage_key = f"{used_in}:{action}"
        if usage_key in self.usage_keys:
            return False
        self.record(
            AssetUsed(
                used_in=used_in,
                action=action,
                usage_key=usage_key,
                used_by_user=used_by_user,
                source_event=source_event,
            )
        )
        return True

    def release(
        self,
        *,
        used_in: str,
        action: str,
        released_as: str,
        released_by_user: str | None,
        source_event: UUID,
    ) -> bool:
        """Give back the (what, action) use, if it is held: the count goes down and ``used_in``
        drops ``used_in`` unless another of its uses remains. A release that arrives again
        finds nothing held and records nothing."""
        if self.deleted:
            return False
        usage_key = f"{used_in}:{action}"
        if usage_key not in self.usage_keys:
            return False
        others = any(k.startswith(f"{used_in}:") for k in self.usage_keys - {usage_key})
        self.record(
            AssetUsageReleased(
                used_in=used_in,
                action=released_as,
                usage_key=usage_key,
                still_used=others,
                released_by_user=released_by_user,
                source_event=source_event,
            )
        )
        return True

    def delete(self, *, force: bool, quota: Quota) -> None:
        self._live()
        if self.used_in and not force:
            raise Conflict(
                f"the asset is in use ({', '.join(self.used_in[:5])}); "
                "delete with ?force=true to remove it anyway",
                code="asset_in_use",
                used_in=self.used_in,
            )
        self.record(
            AssetDeleted(
                size_bytes=self.size_bytes,
                forced=bool(self.used_in),
                quota=quota.after(-self.size_bytes),
            )
        )
