"""Pure parts of escalations: working hours across DST (America/New_York, Europe/Berlin),
unsubscribe tokens, the translations, the rendered email and the Slack message."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pressroom_approval.escalations.delivery import (
    Notice,
    Recipient,
    message_id,
    render_email,
    slack_message,
)
from pressroom_approval.escalations.hours import _opening, is_open, next_opening, zone
from pressroom_approval.escalations.messages import LANGUAGES, MESSAGES
from pressroom_approval.escalations.scheduler import unsubscribed
from pressroom_approval.escalations.tokens import BadToken, Unsubscribe, UnsubscribeTokens

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("at", "tz", "expected"),
    [
        # Inside: unchanged.
        (utc(2026, 12, 7, 15, 0), NY, utc(2026, 12, 7, 15, 0)),
        # Before opening on a working day: 09:00 the same day (EST, UTC-5).
        (utc(2026, 12, 7, 12, 0), NY, utc(2026, 12, 7, 14, 0)),
        # 18:00 is closed: the next day's opening.
        (utc(2026, 12, 7, 23, 0), NY, utc(2026, 12, 8, 14, 0)),
        # Friday evening before the spring change (Sun 2026-03-08): Monday 09:00 EDT, UTC-4.
        (utc(2026, 3, 6, 23, 30), NY, utc(2026, 3, 9, 13, 0)),
        # Friday evening before the autumn change (Sun 2026-11-01): Monday 09:00 EST, UTC-5.
        (utc(2026, 10, 30, 22, 30), NY, utc(2026, 11, 2, 14, 0)),
        # Berlin, spring (Sun 2026-03-29): Saturday -> Monday 09:00 CEST, UTC+2.
        (utc(2026, 3, 28, 12, 0), BERLIN, utc(2026, 3, 30, 7, 0)),
        # Berlin, autumn (Sun 2026-10-25): Friday 19:00 CEST -> Monday 09:00 CET, UTC+1.
        (utc(2026, 10, 23, 17, 0), BERLIN, utc(2026, 10, 26, 8, 0)),
        # The change night itself (Sunday 02:30 local happens twice in Berlin): Monday.
        (utc(2026, 10, 25, 0, 30), BERLIN, utc(2026, 10, 26, 8, 0)),
        # 17:59 local is still open; 18:00 UTC is 19:00 in Berlin in winter, closed.
        (utc(2026, 12, 7, 16, 59), BERLIN, utc(2026, 12, 7, 16, 59)),
        (utc(2026, 12, 7, 17, 0), BERLIN, utc(2026, 12, 8, 8, 0)),
    ],
)
def test_next_opening(at: datetime, tz: ZoneInfo, expected: datetime) -> None:
    assert next_opening(at, tz) == expected
    assert is_open(next_opening(at, tz), tz)
    assert next_opening(at, tz).astimezone(tz).hour in (9, at.astimezone(tz).hour)


def test_an_opening_inside_the_skipped_hour_is_the_first_instant_after_it() -> None:
    # 02:00-03:00 does not exist in New York on 2026-03-08: 02:30 is 03:30 EDT (07:30 UTC).
    assert _opening(date(2026, 3, 8), NY, 2) == utc(2026, 3, 8, 7, 0)
    assert _opening(date(2026, 3, 8), NY, 2).astimezone(NY).hour == 3
    # 02:00 happens twice in Berlin on 2026-10-25: the first one (CEST, 00:00 UTC).
    assert _opening(date(2026, 10, 25), BERLIN, 2) == utc(2026, 10, 25, 0, 0)


def test_custom_hours_and_bad_input() -> None:
    assert next_opening(utc(2026, 12, 7, 7, 0), BERLIN, 7, 20) == utc(2026, 12, 7, 7, 0)
    assert next_opening(utc(2026, 12, 7, 6, 0), BERLIN, 8, 24) == utc(2026, 12, 7, 7, 0)
    with pytest.raises(ValueError, match="range"):
        next_opening(utc(2026, 12, 7, 7, 0), BERLIN, 18, 9)
    with pytest.raises(ValueError, match="naive"):
        next_opening(datetime(2026, 12, 7, 7, 0), BERLIN)
    assert zone("Not/AZone").key == "UTC" and zone(None).key == "UTC"


def test_every_working_hour_for_a_year_maps_into_working_hours() -> None:
    start = utc(2026, 1, 1, 0, 0)
    for step in range(0, 365 * 24, 5):
        at = start + timedelta(hours=step, minutes=17)
        for tz in (NY, BERLIN):
            opening = next_opening(at, tz)
            assert opening >= at and is_open(opening, tz)
            assert opening - at < timedelta(days=3, hours=1)


def test_unsubscribe_tokens_round_trip_and_refuse_tampering() -> None:
    tokens = UnsubscribeTokens("key-one")
    brand = uuid.uuid4()
    claim = Unsubscribe(brand, "mo", "reminder_24h")
    token = tokens.sign(claim)
    assert tokens.verify(token) == claim
    assert tokens.verify(tokens.sign(Unsubscribe(brand, "mo"))).type is None
    body, mac = token.split(".")
    for bad in (
        f"{body}.{mac[:-1]}A" if mac[-1] != "A" else f"{body}.{mac[:-1]}B",
        f"{body[:-2]}xx.{mac}",
        "nonsense",
        "a.b.c",
        "%%%.%%%",
        "x" * 700,
        UnsubscribeTokens("another-key").sign(claim),
    ):
        with pytest.raises(BadToken):
            tokens.verify(bad)


def test_every_language_has_every_sentence() -> None:
    assert set(MESSAGES) == set(LANGUAGES)
    for language in LANGUAGES:
        assert set(MESSAGES[language]) == set(MESSAGES["en"]), language


def notice(**overrides: object) -> Notice:
    values: dict[str, object] = {
        "escalation_id": uuid.uuid4(),
        "approval_id": uuid.uuid4(),
        "post_id": uuid.uuid4(),
        "brand_name": "Acme & Co",
        "rule_type": "reminder_24h",
        "hours": 24,
        "title": "<script>x</script>",
        "excerpt": "Body <i>text</i>",
        "platforms": ("x", "bluesky"),
        "scheduled_at": utc(2026, 12, 8, 15, 0),
        "post_url": "http://gateway.test/v1/approvals/1",
    }
    values.update(overrides)
    return Notice(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("language", "words"),
    [("en", "Reminder"), ("es", "Recordatorio"), ("fr", "Rappel"), ("de", "Erinnerung")],
)
def test_the_email_in_each_language(language: str, words: str) -> None:
    item = notice()
    person = Recipient("mo", "mo@example.com", "Mo", language, BERLIN)
    msg = render_email(
        item,
        person,
        mail_from="Pressroom <noreply@pressroom.example>",
        unsubscribe_url="http://gateway.test/v1/unsubscribe/t1",
        unsubscribe_all_url="http://gateway.test/v1/unsubscribe/t2",
        now=utc(2026, 12, 7, 9, 0),
    )
    assert msg["Subject"].startswith(words)
    assert msg["List-Unsubscribe"] == "<http://gateway.test/v1/unsubscribe/t1>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == message_id(item, person, "pressroom.example")
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "<script>x</script>" in text  # the text part is not HTML
    assert "2026-12-08 16:00 (Europe/Berlin)" in text  # in the recipient's zone
    assert "http://gateway.test/v1/unsubscribe/t2" in html


def test_the_slack_message_has_blocks_and_a_button() -> None:
    message = slack_message(notice(rule_type="escalate_48h", hours=48), "admin")
    kinds = [b["type"] for b in message["blocks"]]
    assert kinds == ["section", "context", "actions"]
    assert "&lt;script&gt;" in message["blocks"][0]["text"]["text"]
    button = message["blocks"][2]["elements"][0]
    assert button["url"] == "http://gateway.test/v1/approvals/1"
    assert message["text"].startswith("Escalation")


def test_preferences_decide_what_is_skipped() -> None:
    base = {"unsubscribed_from_all": False, "unsubscribed_types": [], "email_preferences": {}}
    assert not unsubscribed(base, "reminder_24h")
    assert unsubscribed({**base, "unsubscribed_from_all": True}, "reminder_24h")
    assert unsubscribed({**base, "unsubscribed_types": ["reminder_24h"]}, "reminder_24h")
    assert not unsubscribed({**base, "unsubscribed_types": ["reminder_24h"]}, "escalate_48h")
    assert unsubscribed({**base, "unsubscribed_types": ["reminder"]}, "reminder_2h")
    assert unsubscribed({**base, "email_preferences": {"escalate": False}}, "escalate_48h")
    assert not unsubscribed({**base, "email_preferences": {"escalate": True}}, "escalate_48h")
