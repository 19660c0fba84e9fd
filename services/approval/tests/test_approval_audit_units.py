"""Pure parts of the audit feature: pseudonyms, metadata scrubbing, the canonical bytes,
CSV cells, filter validation and subject parsing."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pressroom_approval.audit.api import _csv_cell, filters
from pressroom_approval.audit.chain import GENESIS, canonical, entry_hash
from pressroom_approval.audit.log import (
    chained_actor_id,
    normalize_subject,
    pseudonym,
    scrub_metadata,
    set_pseudonym_key,
)
from pressroom_approval.audit.privacy import _parse
from pressroom_approval.settings import DEV_AUDIT_KEY
from pressroom_kit.errors import Invalid

pytestmark = pytest.mark.unit


def test_pseudonyms_ignore_the_case_of_an_email_and_depend_on_the_key() -> None:
    assert normalize_subject(" client:Ann@X.org ") == "client:ann@x.org"
    assert normalize_subject("User-ABC") == "User-ABC"  # account ids keep their case
    assert pseudonym("client:Ann@X.org") == pseudonym("client:ann@x.org")
    before = pseudonym("u1")
    set_pseudonym_key("another key")
    try:
        assert pseudonym("u1") != before
    finally:
        set_pseudonym_key(DEV_AUDIT_KEY)
    assert pseudonym("u1") == before


def test_an_actor_id_with_an_email_is_chained_as_a_pseudonym() -> None:
    assert chained_actor_id("u1") == "u1"
    assert chained_actor_id("system") == "system"
    chained = chained_actor_id("client:ann@x.org")
    assert chained == "client:~" + pseudonym("client:ann@x.org")[:20] and "@" not in chained


def test_scrub_metadata_replaces_personal_values_anywhere() -> None:
    scrubbed = scrub_metadata(
        {
            "link_id": "abc",
            "email": "Ann@X.org",
            "Name": "Ann",
            "nested": [{"to": ["b@y.org"]}, "mail c@z.org now", 3, None, True],
            "n\x00ul": "a\x00b",
        }
    )
    assert scrubbed["link_id"] == "abc"
    assert scrubbed["email"] == "~" + pseudonym("ann@x.org")[:20]
    assert scrubbed["Name"].startswith("~")
    assert scrubbed["nested"][0]["to"][0].startswith("~")
    assert scrubbed["nested"][1].startswith("mail ~") and scrubbed["nested"][1].endswith(" now")
    assert scrubbed["nested"][2:] == [3, None, True]
    assert scrubbed["nul"] == "ab"
    assert "@" not in repr(scrubbed)


def test_canonical_bytes_are_length_prefixed_and_hashed_after_prev() -> None:
    entry = uuid.UUID(int=1)
    brand = uuid.UUID(int=2)
    at = datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)
    body = canonical(
        id=entry,
        brand_id=brand,
        seq=7,
        at=at,
        actor_id="a|b",
        actor_ref="r",
        action="x",
        post_id=None,
        approval_id=None,
        metadata_text="{}",
    )
    assert body == (f"36:{entry}|36:{brand}|1:7|7:1000005|3:a|b|1:r|1:x|-|-|2:{{}}".encode())
    assert entry_hash(GENESIS, body) == hashlib.sha256(bytes(32) + body).digest()
    # The same instant in another zone is the same entry.
    other = at.astimezone(timezone(timedelta(hours=5)))
    assert (
        canonical(
            id=entry,
            brand_id=brand,
            seq=7,
            at=other,
            actor_id="a|b",
            actor_ref="r",
            action="x",
            post_id=None,
            approval_id=None,
            metadata_text="{}",
        )
        == body
    )


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    assert [_csv_cell(v) for v in ("=1", "+1", "-1", "@x", "\tx", "ok", None, 5)] == [
        "'=1",
        "'+1",
        "'-1",
        "'@x",
        "'\tx",
        "ok",
        "",
        "5",
    ]


def test_filters_refuse_naive_and_reversed_times() -> None:
    with pytest.raises(Invalid, match="offset"):
        filters(None, None, None, "2026-01-01T00:00:00", None)  # as a query string gives it
    late, early = "2026-02-01T00:00:00Z", "2026-01-01T00:00:00+00:00"
    with pytest.raises(Invalid, match="after"):
        filters(None, None, None, late, early)
    with pytest.raises(Invalid, match="RFC 3339"):
        filters(None, None, None, "0.5", None)
    pairs = dict(filters(None, "client:Ann@X.org", None, None, None))
    assert pairs["actor_ref = {}"] == pseudonym("client:ann@x.org")
    assert pairs["actor_id = {}"] is None
    pairs = dict(filters(None, "client:~abc", None, None, None))
    assert pairs["actor_id = {}"] == "client:~abc" and pairs["actor_ref = {}"] is None


def test_subjects_parse_to_ids_and_emails() -> None:
    s = _parse("Ann@X.org")
    assert s.emails == {"ann@x.org"} and s.ids == {"client:ann@x.org"}
    s = _parse("client:Ann@X.org")
    assert s.emails == {"ann@x.org"} and s.ids == {"client:ann@x.org"}
    s = _parse("client:7c1f")
    assert s.emails == set() and s.ids == {"client:7c1f"}
    s = _parse("user-1")
    assert s.emails == set() and s.ids == {"user-1"}
