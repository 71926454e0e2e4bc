"""Server-rendered SVG charts: lines over time on shared axes, an optional band and threshold.

No script and no external asset: the browser shows them as images, so the console
needs no chart library and works offline under a strict Content-Security-Policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 560, 240  # default width; the page asks for its own
MIN_WIDTH, MAX_WIDTH = 300, 1200
LEFT, RIGHT, TOP, BOTTOM = 60, 14, 50, 28
COLOURS = ("#1f6feb", "#d9480f", "#2f9e44", "#7048e8")  # baseline, candidate, then others
DASHES = ("", "6 3", "2 3", "8 3 2 3")
BAND = "#d9480f"


@dataclass
class Line:
    name: str
    points: list[tuple[datetime, float]]
    band: list[tuple[datetime, float, float]] = field(default_factory=list)  # (at, lower, upper)


# the smallest y span an axis shows, per unit: below it (every value 0, or all alike) ticks would read
# 8e-07 %; a share shows at least 0–0.1 %, milliseconds 0–1 ms, dollars 0–$0.0001
MIN_SPAN = {"%": 0.001, "ms": 1.0, "$": 0.0001, "/s": 0.1}
DEFAULT_MIN_SPAN = 0.01


def axis(low: float, high: float, unit: str = "", count: int = 4) -> list[float]:
    """Tick values from at most `low` to at least `high`, on a step of 1, 2 or 5 times a power of ten, the span
    at least the unit's MIN_SPAN: round numbers even when every value is 0 or all are alike."""
    span = max(high - low, MIN_SPAN.get(unit, DEFAULT_MIN_SPAN))
    rough = span / count
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - 1e-9))
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < max(high, low + span) - step * 1e-9:
        ticks.append(first + step * len(ticks))
    return [round(t / step) * step for t in ticks]


def _label(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.3g} %"
    if unit == "$":  # fixed point: tick steps are round, and a money label never reads 5e-05
        return "$" + (f"{float(f'{value:.3g}'):.8f}".rstrip("0").rstrip(".") or "0")
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k{unit and ' ' + unit}"
    return f"{value:.3g}{unit and ' ' + unit}"


def _time_label(at: datetime, span_s: float) -> str:
    return at.strftime("%d %b %H:%M" if span_s > 2 * 86400 else "%H:%M")


def line_chart(title: str, lines: list[Line], since: datetime, until: datetime, *, unit: str = "",
               threshold: float | None = None, threshold_label: str = "threshold", width: int = WIDTH) -> str:
    """An SVG document `width` pixels wide: `lines` against time from `since` to `until`; y from 0 unless
    values go below. The page asks for the width it has, so the text stays readable on a phone."""
    w = min(max(width, MIN_WIDTH), MAX_WIDTH)
    values = [v for line in lines for _, v in line.points] + [x for line in lines for _, lo, hi in line.band
                                                              for x in (lo, hi)]
    if threshold is not None:
        values.append(threshold)
    ticks = axis(min([0.0, *values]), max([0.0, *values]) * 1.04, unit)
    if unit == "%" and ticks[-1] > 1 >= max(values, default=0):
        ticks = [t for t in ticks if t < 1] + [1.0]  # a share never reads above 100 %
    low, high = ticks[0], ticks[-1]
    span = max((until - since).total_seconds(), 1.0)
    plot_w, plot_h = w - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + plot_w * min(max((at - since).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {HEIGHT}" width="{w}" '
            f'height="{HEIGHT}" role="img" font-family="system-ui, sans-serif" font-size="12">'),
           f"<title>{escape(title)}</title>",
           f'<rect width="{w}" height="{HEIGHT}" fill="#ffffff"/>',
           f'<text x="8" y="16" font-size="14" font-weight="600" fill="#1b1f24">{escape(title)}</text>']
    for tick in ticks:
        out.append(f'<line x1="{LEFT}" x2="{w - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                   f'stroke="#e3e6ea"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#57606a">'
                   f'{escape(_label(tick, unit))}</text>')
    for i in range(5):
        at = since + (until - since) * (i / 4)
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        out.append(f'<text x="{x(at):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" fill="#57606a">'
                   f'{escape(_time_label(at, span))}</text>')
    if threshold is not None:
        out.append(f'<line x1="{LEFT}" x2="{w - RIGHT}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                   f'stroke="#cf222e" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{w - RIGHT}" y="{y(threshold) - 4:.1f}" text-anchor="end" fill="#cf222e">'
                   f'{escape(threshold_label)} {escape(_label(threshold, unit))}</text>')
    legend_x = float(LEFT)
    for i, line in reversed(list(enumerate(lines))):  # the baseline drawn last, on top
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        if line.band:
            upper = " ".join(f"{x(at):.1f},{y(hi):.1f}" for at, _, hi in line.band)
            lower = " ".join(f"{x(at):.1f},{y(lo):.1f}" for at, lo, _ in reversed(line.band))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15" stroke="none"/>')
        if len(line.band) == 1:  # one evaluation: its interval as an error bar
            at, lo, hi = line.band[0]
            out.append(f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" '
                       f'stroke="{colour}" stroke-opacity="0.5" stroke-width="6"/>')
        if len(line.points) > 1:
            path = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in line.points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
                       f'stroke-dasharray="{dash}" stroke-linejoin="round"/>')
        for at, v in line.points if len(line.points) <= 3 else ():
            out.append(f'<circle cx="{x(at):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
    for i, line in enumerate(lines):  # the legend, left to right under the title
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        out.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="32" y2="32" stroke="{colour}" '
                   f'stroke-width="3" stroke-dasharray="{dash and "4 2"}"/>')
        out.append(f'<text x="{legend_x + 23}" y="36" fill="#1b1f24">{escape(line.name)}</text>')
        legend_x += 40 + 7 * len(line.name)
    if not any(line.points for line in lines):
        out.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" fill="#57606a">'
                   "no data in this range</text>")
    out.append("</svg>")
    return "".join(out)
