"""Pictures as inline SVG, drawn on the server from the numbers a page also prints beside them (a chart
adds to the numbers, never replaces them). Pure: data in, markup out; every text escaped."""

from __future__ import annotations

from html import escape
from typing import Iterable

from markupsafe import Markup

# Colours chosen for contrast against white and between neighbours (and named in a legend).
COLOURS = {
    "SCHEDULED READY": "#1b7837", "SCHEDULED INCOMPLETE": "#e08214", "SCHEDULED UNAVAILABLE": "#b2182b",
    "IN PROGRESS": "#2166ac", "COMPLETED": "#8c8c8c", "CANCELED": "#4d4d4d",
    "ONLINE": "#1b7837", "NEARLINE": "#5aae61", "OFFLINE": "#e08214", "UNAVAILABLE": "#b2182b", "absent": "#f0f0f0",
    "MISSING_IN_ARCHIVE": "#b2182b", "UNEXPECTED_IN_ARCHIVE": "#762a83", "AVAILABILITY_MISMATCH": "#e08214",
    "LOCATION_MISMATCH": "#2166ac", "COUNT_MISMATCH": "#8c510a", "ARCHIVE_ERROR": "#4d4d4d",
}


def colour(name: str) -> str:
    return COLOURS.get(name, "#999999")


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> Markup:
    t = escape(title)
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" class="chart"><title>{t}</title>{"".join(body)}</svg>')


def stacked_days(days: list, series: tuple[str, ...], title: str) -> Markup:
    """One stacked bar per day (ChartDay: .day, .counts, .total), days left to right."""
    width, height, left, bottom, top = 640, 220, 40, 36, 10
    peak = max([d.total for d in days] + [1])
    bar = (width - left - 10) / max(1, len(days))
    scale = (height - bottom - top) / peak
    out = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="#333"/>',
           f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="10">{peak}</text>',
           f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end" font-size="10">0</text>']
    for i, d in enumerate(days):
        x = left + i * bar + 2
        y = height - bottom
        for name in series:
            n = d.counts.get(name, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" fill="{colour(name)}">'
                       f'<title>{escape(d.day.isoformat())}: {n} {escape(name)}</title></rect>')
        out.append(f'<text x="{x + (bar - 4) / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                   f'font-size="10">{d.day.strftime("%d %b")}</text>')
    return _svg(width, height, title, out)


def reason_bar(by_reason: dict[str, int], title: str, width: int = 480) -> Markup:
    """One horizontal bar split by reason, widths in proportion to the counts."""
    total = sum(by_reason.values())
    height = 22
    if not total:
        return _svg(width, height, title, [f'<rect x="0" y="2" width="{width}" height="18" fill="#f0f0f0"/>'])
    x, out = 0.0, []
    for reason, n in by_reason.items():
        w = width * n / total
        out.append(f'<rect x="{x:.1f}" y="2" width="{w:.1f}" height="18" fill="{colour(reason)}">'
                   f'<title>{escape(reason)}: {n}</title></rect>')
        x += w
    return _svg(width, height, title, out)


def availability_grid(series: list, locations: list[str], title: str) -> Markup:
    """A compact grid: one row per instance (grouped by series), one column per location, each cell
    coloured by the instance's availability there (light grey: not announced there)."""
    cell, gap, label = 14, 1, 0
    rows = [inst for s in series for inst in s.instances]
    width = max(1, len(locations)) * (cell + gap) + label
    height = max(1, len(rows)) * (cell + gap)
    out = []
    for r, inst in enumerate(rows):
        held = {loc["ae_title"]: loc["availability"] for loc in inst["locations"]}
        for c, ae in enumerate(locations):
            state = held.get(ae, "absent")
            out.append(f'<rect x="{label + c * (cell + gap)}" y="{r * (cell + gap)}" width="{cell}" height="{cell}" '
                       f'fill="{colour(state)}"><title>{escape(inst["sop_instance_uid"])} at {escape(ae)}: '
                       f'{escape(state)}</title></rect>')
    return _svg(width, height, title, out)
