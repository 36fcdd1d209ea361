"""Inline SVG charts, drawn in Python: the report must open offline, from a blob, with no script or CDN.

Bars are horizontal because combination labels ("summarize=variant_1, temperature=0.2") are long; they wrap
on the left instead of being rotated or cut under the axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from shared.reports.tables import format_number

# Distinguishable for common colour-vision deficiencies (Okabe–Ito inspired), one per dataset.
PALETTE = ("#2563eb", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#0072b2", "#7f7f7f")

WIDTH = 600
LABEL_WIDTH = 200
VALUE_PAD = 52       # room right of the longest bar for its value label
BAR = 14
BAR_GAP = 3
GROUP_PAD = 12
LINE_HEIGHT = 14
LEGEND_HEIGHT = 24
AXIS_HEIGHT = 20
LABEL_CHARS = 30


@dataclass(frozen=True)
class BarGroup:
    label: str                          # wrapped onto up to two lines; the full text is the tooltip
    values: Sequence[float | None]      # one per series; None draws "n/a"
    highlight: bool = False             # e.g. the verdict's winner


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def wrap_label(text: str, width: int = LABEL_CHARS, max_lines: int = 3) -> list[str]:
    """Break at ", " between combination parts; hard-cut a part longer than a line; ellipsis past max_lines."""
    words: list[str] = []
    for part in text.split(", "):
        words += [part[start:start + width] for start in range(0, max(len(part), 1), width)]
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 2 + len(word) <= width:
            lines[-1] = f"{lines[-1]}, {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1] + "…"
    return lines or [""]


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick values covering [low, high], including 0 — e.g. 0, 0.2, ..., 1.0."""
    low, high = min(low, 0.0), max(high, 0.0)
    if math.isclose(low, high):
        high = low + 1.0
    raw = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    start, stop = math.floor(low / step), math.ceil(high / step)
    return [round(i * step, 10) for i in range(start, stop + 1)]


def _legend(series: Sequence[str]) -> list[str]:
    parts, x = [], LABEL_WIDTH
    for index, name in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" rx="2" fill="{colour}"/>')
        parts.append(f'<text x="{x + 17}" y="16" fill="#334155">{_e(name)}</text>')
        x += 17 + 7 * len(name) + 20
    return parts


def grouped_bar_chart(title: str, series: Sequence[str], groups: Sequence[BarGroup]) -> Markup:
    """One group of horizontal bars per entry of `groups`, one bar per series (coloured, with a legend)."""
    numbers = [value for group in groups for value in group.values if value is not None]
    ticks = nice_ticks(min(numbers, default=0.0), max(numbers, default=1.0))
    left, right = LABEL_WIDTH, WIDTH - VALUE_PAD

    def x(value: float) -> float:
        return left + (value - ticks[0]) / (ticks[-1] - ticks[0]) * (right - left)

    heights = [
        max(len(series) * BAR + (len(series) - 1) * BAR_GAP, len(wrap_label(group.label)) * LINE_HEIGHT)
        for group in groups
    ]
    top = LEGEND_HEIGHT + AXIS_HEIGHT
    height = top + sum(h + 2 * GROUP_PAD for h in heights) + 4
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'role="img" aria-label="{_e(title)}" font-family="system-ui, -apple-system, Segoe UI, Roboto, '
        f'Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{_e(title)}</title>",
        *_legend(series),
    ]
    for tick in ticks:
        tx = x(tick)
        body.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{height - 4}" '
                    f'stroke="{"#94a3b8" if tick == 0 else "#e2e8f0"}" stroke-width="1"/>')
        body.append(f'<text x="{tx:.1f}" y="{top - 8}" text-anchor="middle" fill="#64748b" font-size="11">'
                    f"{_e(format_number(tick))}</text>")
    y = top
    for group, inner in zip(groups, heights, strict=True):
        block = inner + 2 * GROUP_PAD
        if group.highlight:
            body.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{block}" fill="#fef9c3" opacity="0.7"/>')
        lines = wrap_label(group.label)
        first = y + GROUP_PAD + (inner - len(lines) * LINE_HEIGHT) / 2 + 11
        weight = ' font-weight="600"' if group.highlight else ""
        body.append(f'<text x="{LABEL_WIDTH - 10}" y="{first:.1f}" text-anchor="end" fill="#0f172a"{weight}>'
                    f"<title>{_e(group.label)}</title>"
                    + "".join(f'<tspan x="{LABEL_WIDTH - 10}" dy="{0 if i == 0 else LINE_HEIGHT}">{_e(line)}</tspan>'
                              for i, line in enumerate(lines))
                    + "</text>")
        bars_top = y + GROUP_PAD + (inner - (len(series) * BAR + (len(series) - 1) * BAR_GAP)) / 2
        for index, value in enumerate(group.values):
            by = bars_top + index * (BAR + BAR_GAP)
            if value is None:
                body.append(f'<text x="{x(0) + 4:.1f}" y="{by + 11:.1f}" fill="#94a3b8" font-style="italic">'
                            f"n/a — {_e(series[index])}</text>")
                continue
            x0, x1 = sorted((x(0), x(value)))
            colour = PALETTE[index % len(PALETTE)]
            body.append(f'<rect x="{x0:.1f}" y="{by:.1f}" width="{max(x1 - x0, 1):.1f}" height="{BAR}" rx="2" '
                        f'fill="{colour}"><title>{_e(series[index])}: {_e(format_number(value))}</title></rect>')
            anchor, tx = ("start", x1 + 4) if value >= 0 else ("end", x0 - 4)
            body.append(f'<text x="{tx:.1f}" y="{by + 11:.1f}" text-anchor="{anchor}" fill="#334155" '
                        f'font-size="11">{_e(format_number(value))}</text>')
        y += block
        body.append(f'<line x1="0" y1="{y}" x2="{WIDTH}" y2="{y}" stroke="#f1f5f9"/>')
    body.append("</svg>")
    return Markup("\n".join(body))  # every interpolated text went through escape() above
