"""Pure pieces of the media service: quota arithmetic, URL signing, ranges, OpenAPI."""

from __future__ import annotations

import pytest
from pressroom_kit.errors import Forbidden
from pressroom_media.domain import Quota, clean_filename, clean_tags
from pressroom_media.files import parse_range
from pressroom_media.signing import UrlSigner

pytestmark = pytest.mark.unit


def quota(used: int, warning_active: bool = False, reserved: int = 0) -> Quota:
    return Quota(
        limit_bytes=100,
        warning_threshold=0.8,
        used_bytes=used,
        reserved_bytes=reserved,
        warning_active=warning_active,
    )


def test_the_warning_is_raised_on_the_way_up_and_cleared_on_the_way_down():
    assert quota(70).after(9).warning is None
    assert quota(70).after(10).warning == "raised"  # exactly 80 %
    assert quota(85, warning_active=True).after(10).warning is None  # already raised
    assert quota(85, warning_active=True).after(-6).warning == "cleared"
    assert quota(85, warning_active=True).after(-5).warning is None  # still at 80 %
    assert quota(10).after(-50).used_bytes_after == 0


def test_reservations_count_against_the_limit():
    assert quota(50, reserved=30).fits(20)
    assert not quota(50, reserved=30).fits(21)


def test_signed_urls_round_trip_expire_and_refuse_tampering():
    signer = UrlSigner(b"key", base_url="https://media.example/", ttl_s=24 * 3600)
    url = signer.url("b/a/original.jpg", now=1_000)
    assert url.startswith("https://media.example/media-files/b/a/original.jpg?expires=")
    expires = url.split("expires=")[1].split("&")[0]
    signature = url.split("signature=")[1]
    assert int(expires) % 3600 == 0 and int(expires) >= 1_000 + 24 * 3600
    assert signer.url("b/a/original.jpg", now=1_500) == url  # stable within the hour
    assert signer.verify("b/a/original.jpg", expires, signature, now=2_000) == int(expires)
    for key, exp, sig, now in (
        ("b/a/other.jpg", expires, signature, 2_000),
        ("b/a/original.jpg", str(int(expires) + 1), signature, 2_000),
        ("b/a/original.jpg", expires, signature[:-1] + "x", 2_000),
        ("b/a/original.jpg", expires, None, 2_000),
        ("b/a/original.jpg", "soon", signature, 2_000),
        ("b/a/original.jpg", expires, signature, int(expires) + 1),
    ):
        with pytest.raises(Forbidden):
            signer.verify(key, exp, sig, now)
    assert UrlSigner(b"other", base_url="x", ttl_s=60).url("k", 0) != signer.url("k", 0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=50-5000", (50, 99)),
        ("bytes=100-", False),
        ("bytes=-0", False),
        ("bytes=5-3", None),
        ("bytes=0-1,4-5", None),
        ("lines=0-1", None),
        ("bytes=" + "9" * 40 + "-", None),
    ],
)
def test_byte_ranges(header, expected):
    assert parse_range(header, 100) == expected


def test_names_and_tags_are_cleaned():
    assert clean_filename("../../etc/passwd", "jpg") == "passwd"
    assert clean_filename("C:\\photos\\a\x00b.png", "png") == "ab.png"
    assert clean_filename("", "webp") == "upload.webp"
    assert clean_tags([" a", "b", "a", "", "c "]) == ["a", "b", "c"]


def test_the_openapi_document_describes_the_multipart_upload():
    from openapi_spec_validator import validate
    from pressroom_media.app import create_app
    from pressroom_media.settings import MediaSettings

    document = create_app(MediaSettings(jwt_secret="x" * 40)).openapi_schema.to_schema()
    validate(document)
    upload = document["paths"]["/v1/media"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert {"200", "201"} <= set(upload["responses"])


def test_file_urls_follow_the_shared_public_url_unless_overridden(monkeypatch):
    from pressroom_media.settings import MediaSettings

    for name in ("PRESSROOM_PUBLIC_URL", "PRESSROOM_MEDIA_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRESSROOM_GATEWAY_PORT", "9000")
    assert MediaSettings().public_base_url == "http://127.0.0.1:9000"
    monkeypatch.setenv("PRESSROOM_PUBLIC_URL", "https://social.example.com/")
    assert MediaSettings().public_base_url == "https://social.example.com"
    monkeypatch.setenv("PRESSROOM_MEDIA_PUBLIC_BASE_URL", "https://cdn.example.com/")
    assert MediaSettings().public_base_url == "https://cdn.example.com"


def test_a_released_use_is_given_back_once_and_keeps_what_was_published():
    import uuid

    from pressroom_media.domain import MediaAsset

    asset = MediaAsset(str(uuid.uuid4()))
    for action in ("scheduled", "published:instagram"):
        asset.use(used_in="post:1", action=action, used_by_user="u", source_event=uuid.uuid4())
    asset.use(used_in="post:2", action="scheduled", used_by_user="u", source_event=uuid.uuid4())
    release = {"action": "scheduled", "released_as": "cancelled", "released_by_user": "c"}
    assert asset.release(used_in="post:1", source_event=uuid.uuid4(), **release)
    assert not asset.release(used_in="post:1", source_event=uuid.uuid4(), **release)
    assert asset.used_in == ["post:1", "post:2"] and asset.usage_count == 2
    assert asset.release(used_in="post:2", source_event=uuid.uuid4(), **release)
    assert asset.used_in == ["post:1"] and asset.usage_count == 1
    assert not asset.release(used_in="post:3", source_event=uuid.uuid4(), **release)
    released = [e for e in asset.pending if e.type_name == "AssetUsageReleased"]
    assert [e.still_used for e in released] == [True, False]
