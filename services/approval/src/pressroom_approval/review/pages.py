"""The review page's HTML: Jinja2 templates with autoescape, and the headers every page gets.

Every answer of ``/review/...`` is a page a person reads in a browser, errors included, so
they are rendered here rather than as problem+json. The Content-Security-Policy allows no
script at all, images only from the origins of the thumbnails on the page (and ``data:``),
inline styles (the templates' one ``<style>``), and forms posting only back to this origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Response
from litestar.enums import MediaType

_ENV = Environment(
    loader=PackageLoader("pressroom_approval", "review/templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def zone(name: str | None) -> ZoneInfo:
    """The brand's zone; UTC when the brand has none or a name this system does not know."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(moment: datetime, tz: ZoneInfo) -> str:
    """``Monday 7 December 2026, 09:30 CET (Europe/Paris)``: a reviewer reads the brand's
    wall clock, with the zone named so nobody guesses."""
    local = moment.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} {local.tzname()} ({tz.key})"


def headers(image_origins: Iterable[str] = ()) -> dict[str, str]:
    images = " ".join([*sorted(set(image_origins)), "data:"])
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def render(
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    image_origins: Iterable[str] = (),
) -> Response[str]:
    return Response(
        _ENV.get_template(template).render(**context),
        status_code=status,
        media_type=MediaType.HTML,
        headers=headers(image_origins),
    )


def message(status: int, title: str, text: str) -> Response[str]:
    """A page with one human sentence: the answer to every link that cannot be used."""
    return render("message.html", {"title": title, "message": text}, status=status)
