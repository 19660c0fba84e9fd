"""``GET /v1/analytics/charts/{metric}.svg|.png``: a line per platform for reports.

matplotlib is used without pyplot: each render builds its own ``Figure`` on the Agg canvas,
so there is no global figure state for concurrent requests to trample. Rendering is
CPU-bound, so it runs in a worker thread (``anyio.to_thread``) behind a limiter of
``chart_concurrency`` renders; the event loop keeps serving meanwhile. The size is fixed:
a PNG is 1200x600 px (12x6 in at 100 dpi), an SVG says ``width="864pt" height="432pt"``
(the same 12x6 in) with a matching ``viewBox``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import anyio
import anyio.to_thread
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from pressroom_kit.db import tenant_transaction
from pressroom_kit.errors import NotFound

from pressroom_analytics.sync import store
from pressroom_analytics.sync.metrics_api import From, To, read_range
from pressroom_analytics.sync.params import VIEWER, PlatformFilter, who

WIDTH_IN, HEIGHT_IN, DPI = 12, 6, 100
# The API's names (engagementRate, as in /metrics) -> the column and the axis label.
METRICS: dict[str, tuple[str, str]] = {
    "reach": ("reach", "Reach"),
    "impressions": ("impressions", "Impressions"),
    "engagement": ("engagement", "Engagement"),
    "followers": ("followers", "Followers"),
    "engagementRate": ("engagement_rate", "Engagement rate"),
}
FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
Series = Mapping[str, Sequence[tuple[date, float]]]


def render(metric: str, fmt: str, series: Series, since: date, until: date, subtitle: str) -> bytes:
    """The chart as PNG or SVG bytes: a line per platform over ``since..until``, or a chart
    that says "no data" when there is none."""
    _, label = METRICS[metric]
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(f"{label} per platform, {since.isoformat()} to {until.isoformat()}")
    axes.set_xlabel(f"Date ({subtitle})")
    axes.set_ylabel(label)
    axes.set_xlim(since, max(until, since))  # type: ignore[arg-type]
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.grid(True, alpha=0.3)
    if metric == "engagementRate":
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    drawn = False
    for platform in sorted(series):
        points = sorted(series[platform])
        if points:
            axes.plot(
                [d for d, _ in points],  # type: ignore[arg-type]
                [v for _, v in points],
                marker="o" if len(points) < 40 else None,
                markersize=3,
                linewidth=1.8,
                label=platform,
                gid=f"series-{platform}",
            )
            drawn = True
    if drawn:
        axes.legend(title="Platform", loc="upper left")
        axes.set_ylim(bottom=0)
    else:
        axes.set_ylim(0, 1)
        axes.text(
            0.5,
            0.5,
            "no data",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=24,
            color="0.5",
            gid="no-data",
        )
    out = io.BytesIO()
    figure.savefig(out, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()


class ChartRenderer:
    """Renders in worker threads, at most ``concurrency`` at once."""

    def __init__(self, concurrency: int) -> None:
        self.limiter = anyio.CapacityLimiter(max(1, concurrency))

    async def render(self, *args: Any) -> bytes:
        return await anyio.to_thread.run_sync(render, *args, limiter=self.limiter)


def _parse(name: str) -> tuple[str, str]:
    metric, _, fmt = name.rpartition(".")
    if fmt not in FORMATS:
        raise NotFound(
            f"no chart {name!r}: charts are <metric>.svg or <metric>.png", code="no_chart"
        )
    if metric not in METRICS:
        raise NotFound(
            f"no chart of {metric!r}; metrics: {', '.join(METRICS)}", code="unknown_metric"
        )
    return metric, fmt


class ChartController(Controller):
    path = "/v1/analytics/charts"
    tags = ["analytics"]
    guards = VIEWER

    @get("/{name:str}", media_type="image/png")
    async def chart(
        self,
        request: Request[Any, Any, Any],
        state: State,
        name: FromPath[str],
        platform: PlatformFilter = None,
        since: From = None,
        until: To = None,
    ) -> Response[bytes]:
        """``reach``, ``impressions``, ``engagement``, ``followers`` or ``engagementRate``,
        as ``.png`` (1200x600 px) or ``.svg``; the last 30 local days by default. 404 for
        another metric or format."""
        metric, fmt = _parse(name)
        column, _ = METRICS[metric]
        async with tenant_transaction(state.pool, who(request).brand_id) as conn:
            first, last, tz = await read_range(conn, state, since, until)
            rows = await store.daily_rows(conn, first, last, platform)
        series: dict[str, list[tuple[date, float]]] = {}
        for row in rows:
            series.setdefault(row["platform"], []).append((row["date"], float(row[column])))
        body = await state.charts.render(metric, fmt, series, first, last, tz)
        return Response(
            body,
            media_type=FORMATS[fmt],
            headers={"Cache-Control": "private, max-age=60"},
        )
