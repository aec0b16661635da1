"""Small charts as inline SVG, drawn on the server (the pages' CSP allows no inline styles or scripts, and
there is no charting library to load): lines of metrics 0..1 over days, and bars of counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from api.review.views import DayStats

WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 12, 28


@dataclass(frozen=True)
class Metric:
    attribute: str
    label: str
    css_class: str


METRICS = (
    Metric("perfect_match_rate", "perfect match", "series-perfect"),
    Metric("ted_accuracy", "TED accuracy", "series-ted"),
    Metric("f1", "F1", "series-f1"),
)


def line_chart(days: Sequence[DayStats], *, title: str) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w / 2 if len(days) == 1 else plot_w * index / (len(days) - 1))

    def y(value: float) -> float:
        return TOP + plot_h * (1 - max(0.0, min(1.0, value)))

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for level in (0.0, 0.5, 1.0):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y(level) + 4:.1f}" text-anchor="end">{level:.1f}</text>'
        )
    if days:
        parts.append(_day_label(days[0].day.isoformat(), x(0), "start" if len(days) > 1 else "middle"))
        if len(days) > 1:
            parts.append(_day_label(days[-1].day.isoformat(), x(len(days) - 1), "end"))
    for metric in METRICS:
        points = [(x(i), y(getattr(day, metric.attribute))) for i, day in enumerate(days)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline class="{metric.css_class}" fill="none" points="{path}"/>')
        for (px, py), day in zip(points, days, strict=True):
            value = getattr(day, metric.attribute)
            parts.append(
                f'<circle class="{metric.css_class}" cx="{px:.1f}" cy="{py:.1f}" r="3">'
                f"<title>{day.day.isoformat()} {metric.label}: {value:.3f} ({day.documents} docs)</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _day_label(text: str, x: float, anchor: str) -> str:
    return f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">{escape(text)}</text>'


BAR_HEIGHT, BAR_GAP, BAR_LABEL_WIDTH, BAR_COUNT_WIDTH = 16, 6, 230, 36


def bar_chart(rows: Sequence[tuple[str, int]], *, title: str) -> Markup:
    """One horizontal bar per (label, count), longest for the largest count; the caller's order is kept."""
    height = max(1, len(rows)) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    span = WIDTH - BAR_LABEL_WIDTH - BAR_COUNT_WIDTH
    largest = max((count for _, count in rows), default=0) or 1
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, count) in enumerate(rows):
        top = BAR_GAP + index * (BAR_HEIGHT + BAR_GAP)
        middle = top + BAR_HEIGHT / 2 + 4
        width = max(2.0, span * count / largest)
        parts.append(
            f'<text class="axis bar-label" x="{BAR_LABEL_WIDTH - 8}" y="{middle:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        parts.append(
            f'<rect class="bar" x="{BAR_LABEL_WIDTH}" y="{top}" width="{width:.1f}" height="{BAR_HEIGHT}">'
            f"<title>{escape(label)}: {count}</title></rect>"
        )
        parts.append(
            f'<text class="axis" x="{BAR_LABEL_WIDTH + width + 6:.1f}" y="{middle:.1f}">{count}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
