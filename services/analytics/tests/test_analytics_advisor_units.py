"""The advisor's statistics and analysis on generated histories (pure, no I/O)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pressroom_analytics.advisor import analysis, stats
from pressroom_analytics.advisor.analysis import PostOutcome

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Europe/Berlin")
START = datetime(2026, 6, 1, tzinfo=UTC)


def history(
    n: int,
    *,
    best_hour: int = 18,
    lift: float = 60.0,
    seed: int = 1,
    platform: str = "x",
    hours: tuple[int, ...] = (8, 10, 12, 14, 16, 18, 20),
    sd: float = 40.0,
    tz: ZoneInfo = TZ,
) -> list[PostOutcome]:
    """``n`` posts spread over ``hours`` (local time in ``tz``), engagement ~ N(100, sd),
    ``lift`` more at ``best_hour``."""
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        hour = hours[i % len(hours)]
        day = (START + timedelta(days=i // len(hours))).astimezone(tz).date()
        local = datetime(day.year, day.month, day.day, hour, 5, tzinfo=tz)
        value = rng.gauss(100 + (lift if hour == best_hour else 0.0), sd)
        kind = "image" if i % 2 else None
        posts.append(PostOutcome(platform, local.astimezone(UTC), kind, max(0.0, value)))
    return posts


def insight(result: analysis.PlatformAnalysis, type_: str) -> analysis.Insight:
    return next(i for i in result.insights if i.type == type_)


def test_the_known_best_hour_is_found_and_confidence_grows_with_the_sample() -> None:
    small = analysis.analyse_platform("x", history(70), TZ)
    large = analysis.analyse_platform("x", history(700), TZ)
    for result in (small, large):
        best = insight(result, "best_hour")
        assert best.kind == "insight"
        assert best.evidence["slots"][0]["slot"] == 18
        assert "18:00" in best.title
    assert 0 < insight(small, "best_hour").confidence < insight(large, "best_hour").confidence <= 1
    assert insight(large, "best_hour").sample_size == 700


def test_best_hour_is_read_in_the_brand_timezone() -> None:
    posts = history(140, tz=ZoneInfo("America/New_York"))
    in_ny = analysis.analyse_platform("x", posts, ZoneInfo("America/New_York"))
    in_utc = analysis.analyse_platform("x", posts, ZoneInfo("UTC"))
    assert insight(in_ny, "best_hour").evidence["slots"][0]["slot"] == 18
    assert insight(in_utc, "best_hour").evidence["slots"][0]["slot"] in (22, 23)  # EDT/EST


def test_too_few_posts_say_so_and_guess_nothing() -> None:
    result = analysis.analyse_platform("x", history(analysis.MIN_POSTS - 1), TZ)
    for type_ in ("best_hour", "best_weekday", "media_vs_text", "video_vs_image", "frequency"):
        item = insight(result, type_)
        assert item.kind == "insufficient_data", type_
        assert item.confidence == 0.0
    assert str(analysis.MIN_POSTS) in insight(result, "best_hour").explanation
    assert result.hours is None
    assert analysis.analyse([], TZ) == {}
    assert {i.kind for i in analysis.no_history_insights()} == {"insufficient_data"}


def test_two_lucky_posts_do_not_beat_a_well_sampled_slot() -> None:
    # 100 posts at 18:00 are 40% better; 2 posts at 03:00 were lucky (+2 sd, raw mean higher).
    posts = history(700, lift=40.0, sd=60.0, seed=7)
    lucky_day = (START - timedelta(days=3)).date()
    for minute in (1, 2):
        local = datetime(lucky_day.year, lucky_day.month, lucky_day.day, 3, minute, tzinfo=TZ)
        posts.append(PostOutcome("x", local.astimezone(UTC), None, 230.0))
    result = analysis.analyse_platform("x", posts, TZ)
    assert result.hours is not None
    slots = {s.key: s for s in result.hours.slots}
    assert slots[3].raw_mean > slots[18].raw_mean  # raw means would pick the lucky hour
    assert result.hours.ranked()[0].key == 18
    assert slots[3].posterior_mean < slots[3].raw_mean - 50  # shrunk hard towards the mean


def test_no_difference_between_slots_gives_zero_confidence() -> None:
    result = analysis.analyse_platform("x", history(210, lift=0.0, sd=1e-9), TZ)
    best = insight(result, "best_hour")
    assert best.confidence == 0.0
    assert best.title.startswith("No hour stands out")


def test_format_comparisons() -> None:
    rng = random.Random(3)
    posts = [
        PostOutcome("x", START + timedelta(hours=i), kind, rng.gauss(mean, 10))
        for i in range(120)
        for kind, mean in [(("video", 200.0), ("image", 120.0), (None, 100.0))[i % 3]]
    ]
    result = analysis.analyse_platform("x", posts, TZ)
    mvt, vvi = insight(result, "media_vs_text"), insight(result, "video_vs_image")
    assert mvt.kind == vvi.kind == "insight"
    assert mvt.evidence["lift"] > 0.3 and vvi.evidence["lift"] > 0.5
    assert mvt.confidence > 0.5 and vvi.confidence > 0.5
    assert result.format_advice() == "video"


def test_frequency_correlation() -> None:
    # Busier weeks dilute: week w has w+1 posts with engagement 200 / (w+1) each.
    posts = [
        PostOutcome("x", START + timedelta(weeks=w, hours=p), None, 200.0 / (w + 1))
        for w in range(8)
        for p in range(w + 1)
    ]
    item = insight(analysis.analyse_platform("x", posts, TZ), "frequency")
    assert item.kind == "insight"
    assert item.evidence["correlation"] < -0.5
    assert "dilutes" in item.title
    few = insight(analysis.analyse_platform("x", posts[:3], TZ), "frequency")
    assert few.kind == "insufficient_data"


def test_shrinkage_formula() -> None:
    shrunk = stats.shrink({1: [10.0, 12.0, 11.0, 9.0], 2: [20.0, 22.0, 21.0, 19.0], 3: [15.0]})
    k = shrunk.k
    slot = next(s for s in shrunk.slots if s.key == 3)
    assert slot.posterior_mean == pytest.approx((1 * 15.0 + k * shrunk.grand_mean) / (1 + k))
    assert shrunk.between_var > 0 and shrunk.within_var > 0
    assert stats.compare([1.0] * 5, [1.0] * 5).confidence == 0.0
    assert stats.correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_a_difference_within_noise_names_no_winner() -> None:
    result = analysis.analyse_platform("x", history(140), TZ)  # media and text alike
    mvt = insight(result, "media_vs_text")
    assert mvt.kind == "insight" and mvt.confidence < analysis.CLEAR
    assert "about as well" in mvt.title
    assert result.format_advice() is None
