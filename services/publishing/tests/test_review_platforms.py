"""Review of the platform adapters against the platforms' own rules (issue #12): each test
states what the platform's documentation or reference library does and fails where the
adapter's counting differs, so a post passes our validation and is refused by the platform
(or the other way round)."""

from __future__ import annotations

import unicodedata

import pytest
from pressroom_publishing.platforms.base import TextCount, count_text
from pressroom_publishing.platforms.text import mastodon_length, weighted_length

pytestmark = pytest.mark.unit


def test_x_counts_a_url_without_scheme_as_23() -> None:
    """twitter-text v3 (the counting X's docs point to, "Counting characters") extracts URLs
    without a protocol (``extractUrlsWithoutProtocol`` defaults to true) when the host has a
    valid TLD, and weighs every extracted URL ``transformedURLLength`` 23. 260 letters, a
    space and ``example.com`` weigh 260 + 1 + 23 = 284: over 280, X answers 403/400."""
    assert weighted_length("a" * 260 + " example.com") == 284


def test_x_bare_domain_with_path_counts_23() -> None:
    """``pressroom.dev/some/long/path`` is one URL for twitter-text, weighing 23."""
    assert weighted_length("read pressroom.dev/" + "p" * 60) == 5 + 23


def test_mastodon_counts_only_urls_with_a_scheme() -> None:
    """Mastodon's StatusLengthValidator counts URLs found by
    ``extract_urls_with_indices(text, extract_url_without_protocol: false)``: ``www.``
    without ``http(s)://`` is ordinary text, counted character by character."""
    text = "www." + "a" * 100 + ".com"
    assert mastodon_length(text) == len(text)


@pytest.mark.parametrize(
    ("text", "graphemes"),
    [
        ("\u0915\u093f", 1),  # Devanagari KA + vowel sign I (a SpacingMark, category Mc)
        ("\r\n", 1),  # UAX #29 GB3: CR LF is one cluster
        (unicodedata.normalize("NFD", "\ud55c"), 1),  # Hangul L V T jamo: one syllable
        ("\u0e01\u0e33", 1),  # Thai KO KAI + SARA AM (SpacingMark)
    ],
)
def test_graphemes_follow_uax29_extended_clusters(text: str, graphemes: int) -> None:
    """Bluesky's post lexicon limits ``text`` to 300 ``maxGraphemes``, which the atproto
    lexicon defines as Unicode extended grapheme clusters (UAX #29). SpacingMark (Mc),
    CR LF and Hangul jamo sequences join a cluster; the approximation counts them apart,
    so 300 Hindi syllables are refused as 600."""
    assert count_text(text, TextCount.GRAPHEMES) == graphemes
