"""Text rules that platforms apply beyond a plain count: X's weighted length, Mastodon's
URL-and-mention rule, Threads' emoji bytes, and the spans (links, mentions, tags) Bluesky
wants as facets.

Written from the platforms' documentation: X's counting is twitter-text v3
(``maxWeightedTweetLength`` 280, ``scale`` 100, ``defaultWeight`` 200, weight 100 for the
code point ranges 0-4351, 8192-8205, 8208-8223, 8242-8247, an emoji sequence weighs 200
whatever its code points, a URL weighs ``transformedURLLength`` 23, text NFC-normalised
first, a link without a scheme found by its TLD like ``extractUrlsWithoutProtocol``);
Mastodon counts grapheme clusters, a URL with a scheme as ``characters_reserved_per_url``
and a remote mention ``@user@domain`` as ``@user``. Grapheme clusters are UAX #29 extended
clusters (``regex``'s ``\\X``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import regex

from pressroom_publishing.platforms import tlds

# A URL with a scheme, as the platforms find them in plain text: up to white space; trailing
# punctuation that ends a sentence is not part of it.
URL_RE = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""

# A link without a scheme, as twitter-text v3 extracts it (``extractUrlsWithoutProtocol``):
# not preceded by a letter, digit, ``@ $ #`` or ``- _ . /``; dot-separated labels ending in a
# known TLD that is not followed by a letter, digit, ``@ + -``; an optional port and path.
_TLD_ALTERNATION = "|".join(
    re.escape(tld) for tld in sorted(tlds.ALL, key=lambda tld: (-len(tld), tld))
)
BARE_URL_RE = re.compile(
    r"(?<![A-Za-z0-9@\uff20$#\uff03\-_./])"
    r"(?:[-a-z0-9\u00c0-\u024f]+\.)+"
    rf"(?:{_TLD_ALTERNATION})(?![0-9a-z@+\-])"
    r"(?::[0-9]+)?(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)

X_URL_WEIGHT = 23
X_LIMIT = 280
_X_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


def urls(text: str, *, without_scheme: bool = False) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the URLs in ``text``: those with ``http(s)://``,
    and with ``without_scheme`` also bare domains with a known TLD (``example.com/path``,
    ``www.example.org``) outside them, as X counts and Bluesky links them."""
    spans = [_trimmed(text, *match.span()) for match in URL_RE.finditer(text)]
    if without_scheme:
        for match in BARE_URL_RE.finditer(text):
            start, end = _trimmed(text, *match.span())
            if not any(a < end and start < b for a, b in spans):
                spans.append((start, end))
    return sorted(span for span in spans if span[1] > span[0])


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while end > start and text[end - 1] in _TRAILING:
        # A closing bracket stays when the URL opened one (Wikipedia links).
        if text[end - 1] == ")" and "(" in text[start : end - 1]:
            break
        end -= 1
    return start, end


_CLUSTER = regex.compile(r"\X")


def grapheme_clusters(text: str) -> list[str]:
    """The text split into user-perceived characters: Unicode extended grapheme clusters
    (UAX #29, by the ``regex`` module's ``\\X``), as Bluesky's ``maxGraphemes`` and
    Mastodon's length count them."""
    return _CLUSTER.findall(text)


def is_emoji(cluster: str) -> bool:
    """An emoji presentation sequence: a pictograph, a flag, a keycap, or anything asking
    for emoji presentation (U+FE0F)."""
    for char in cluster:
        code = ord(char)
        if (
            0x1F000 <= code <= 0x1FAFF
            or 0x2600 <= code <= 0x27BF
            or 0x2B00 <= code <= 0x2BFF
            or code in (0xFE0F, 0x20E3, 0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139)
        ):
            return True
    return False


def weighted_length(text: str) -> int:
    """X's weighted length of ``text`` (the limit is 280)."""
    text = unicodedata.normalize("NFC", text)
    weight = 0
    position = 0
    for start, end in [*urls(text, without_scheme=True), (len(text), len(text))]:
        for cluster in grapheme_clusters(text[position:start]):
            if is_emoji(cluster):
                weight += 200
                continue
            for char in cluster:
                code = ord(char)
                light = any(low <= code <= high for low, high in _X_LIGHT)
                weight += 100 if light else 200
        if end > start:
            weight += X_URL_WEIGHT * 100
        position = end
    return (weight + 99) // 100


def emoji_as_utf8_length(text: str) -> int:
    """Threads' length: characters, except that an emoji counts as many as its UTF-8
    bytes (the Threads Posts documentation: "Emojis are counted as the number of UTF-8
    bytes")."""
    return sum(
        len(cluster.encode("utf-8")) if is_emoji(cluster) else len(cluster)
        for cluster in grapheme_clusters(text)
    )


_REMOTE_MENTION = re.compile(r"(?<![\w@])@(\w+)@[\w.-]+\w", re.UNICODE)


def mastodon_length(text: str, *, url_length: int = 23) -> int:
    """Mastodon's length of a status text: grapheme clusters, with every URL that has a
    scheme counted as ``url_length`` characters (``StatusLengthValidator`` extracts with
    ``extract_url_without_protocol: false``: ``www.example.com`` is plain text) and
    ``@user@domain`` counted as ``@user``."""
    pieces: list[str] = []
    position = 0
    for start, end in urls(text):
        pieces.append(text[position:start])
        pieces.append("x" * url_length)
        position = end
    pieces.append(text[position:])
    countable = "".join(pieces)
    countable = _REMOTE_MENTION.sub(lambda m: "@" + m.group(1), countable)
    return len(grapheme_clusters(countable))


# --- Bluesky facets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A facet candidate: ``kind`` link | mention | tag, UTF-8 byte offsets into the text,
    and its value (the URI, the handle without ``@``, the tag without ``#``)."""

    kind: str
    byte_start: int
    byte_end: int
    value: str


_MENTION_RE = re.compile(r"(?:^|(?<=[\s(]))@([a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?\.[a-zA-Z]+)")
_TAG_RE = re.compile(r"(?:^|(?<=\s))[#＃]([^\s\u00AD\u2060\u200A\u200B\u200C\u200D#＃]+)")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def spans(text: str) -> list[Span]:
    """Links, mentions and hashtags of ``text`` with UTF-8 byte offsets, as Bluesky's facets
    index them. A link without a scheme gets ``https://``; a tag loses trailing punctuation
    and is at most 64 characters; a tag of digits only is none."""
    found: list[Span] = []
    link_spans = urls(text, without_scheme=True)
    for start, end in link_spans:
        uri = text[start:end]
        if not uri.lower().startswith(("http://", "https://")):
            uri = "https://" + uri
        found.append(Span("link", _byte_offset(text, start), _byte_offset(text, end), uri))

    def inside_link(index: int) -> bool:
        return any(start <= index < end for start, end in link_spans)

    for match in _MENTION_RE.finditer(text):
        start = match.start(1) - 1
        if inside_link(start):
            continue
        handle = match.group(1).rstrip(".")
        end = start + 1 + len(handle)
        found.append(Span("mention", _byte_offset(text, start), _byte_offset(text, end), handle))
    for match in _TAG_RE.finditer(text):
        start = match.start()
        if inside_link(start):
            continue
        tag = match.group(1).rstrip(_TRAILING)
        if not tag or tag.isdigit() or len(tag) > 64:
            continue
        end = start + 1 + len(tag)
        found.append(Span("tag", _byte_offset(text, start), _byte_offset(text, end), tag))
    return sorted(found, key=lambda span: span.byte_start)
