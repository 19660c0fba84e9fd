"""Charts over HTTP: a PNG of exactly 1200x600 px (decoded with Pillow), an SVG that parses
as XML with its width, height and a line per platform, "no data" when there is none, 404 for
an unknown metric or format; renders running at once do not trample each other."""

from __future__ import annotations

import asyncio
import io
import sys
import uuid
import xml.etree.ElementTree as ET
from datetime import date

import pytest
from analytics_testkit import analytics_service, brand_created, insert_history
from PIL import Image
from pressroom_analytics.sync import charts

pytestmark = pytest.mark.integration
SVG = "{http://www.w3.org/2000/svg}"


def svg_ids(body: bytes) -> set[str]:
    root = ET.fromstring(body)
    return {e.get("id", "") for e in root.iter()}


async def test_png_and_svg_charts(fresh_db, kafka_bootstrap, topics):
    brand = uuid.uuid4()
    async with analytics_service(fresh_db, kafka_bootstrap) as svc:
        await svc.inject(brand_created(brand))
        for platform in ("sandbox", "x"):
            await insert_history(fresh_db, brand, platform, date(2027, 1, 1), date(2027, 3, 10))
        status, (kind, body) = await svc.call(
            "GET",
            "/v1/analytics/charts/reach.png?from=2027-01-01&to=2027-03-10",
            brand,
            role="viewer",
            raw=True,
        )
        assert status == 200 and kind == "image/png"
        image = Image.open(io.BytesIO(body))
        assert image.format == "PNG" and image.size == (1200, 600)
        assert len(image.convert("RGB").getcolors(1_000_000) or []) > 50  # lines, not blank

        status, (kind, body) = await svc.call(
            "GET",
            "/v1/analytics/charts/engagementRate.svg?from=2027-01-01&to=2027-03-10",
            brand,
            role="viewer",
            raw=True,
        )
        assert status == 200 and kind.startswith("image/svg+xml")
        root = ET.fromstring(body)
        assert root.tag == f"{SVG}svg"
        assert (root.get("width"), root.get("height")) == ("864pt", "432pt")
        assert root.get("viewBox") == "0 0 864 432"
        ids = svg_ids(body)
        assert {"series-sandbox", "series-x"} <= ids and "no-data" not in ids

        status, (_, body) = await svc.call(
            "GET",
            "/v1/analytics/charts/followers.svg?platform=x&from=2027-01-01&to=2027-03-10",
            brand,
            role="viewer",
            raw=True,
        )
        assert status == 200
        ids = svg_ids(body)
        assert "series-x" in ids and "series-sandbox" not in ids

        # Nothing in the range: a chart that says so, same size.
        status, (_, body) = await svc.call(
            "GET",
            "/v1/analytics/charts/impressions.svg?from=2020-01-01&to=2020-01-31",
            brand,
            role="viewer",
            raw=True,
        )
        assert status == 200 and "no-data" in svg_ids(body)
        status, (_, body) = await svc.call(
            "GET",
            "/v1/analytics/charts/impressions.png?from=2020-01-01&to=2020-01-31",
            brand,
            role="viewer",
            raw=True,
        )
        assert status == 200 and Image.open(io.BytesIO(body)).size == (1200, 600)

        for name in ("clicks.png", "reach.gif", "reach", "engagement_rate.svg", ".png"):
            status, problem = await svc.call(
                "GET", f"/v1/analytics/charts/{name}", brand, role="viewer"
            )
            assert status == 404, (name, problem)
            assert problem["status"] == 404

        # Several renders at once (a limiter of 2 threads): each a whole, valid chart.
        async def one(metric: str) -> tuple[int, bytes]:
            status, (_, body) = await svc.call(
                "GET",
                f"/v1/analytics/charts/{metric}.png?from=2027-01-01&to=2027-03-10",
                brand,
                role="viewer",
                raw=True,
            )
            return status, body

        results = await asyncio.gather(*[one(m) for m in list(charts.METRICS) * 2])
        for status, body in results:
            assert status == 200
            assert Image.open(io.BytesIO(body)).size == (1200, 600)


def test_render_uses_no_pyplot_state() -> None:
    series = {"x": [(date(2027, 1, d), float(d * 10)) for d in range(1, 11)]}
    body = charts.render("reach", "svg", series, date(2027, 1, 1), date(2027, 1, 10), "UTC")
    assert "series-x" in svg_ids(body)
    assert b"<dc:date>" not in body  # no render time in the file
    assert "matplotlib.pyplot" not in sys.modules
