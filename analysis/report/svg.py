"""Small inline-SVG chart builders for the leadership report.

Why hand-made SVG: the report must be one offline file that opens anywhere and prints, so no
JavaScript, no plotting library, no fonts or images from outside. Each builder returns a
`Markup` string holding one `<svg data-chart="...">` element that is also well-formed XML (the
tests parse it). The `xmlns` attribute is left out on purpose: inline SVG in HTML does not need
it, and the report must contain no URL at all.

Styling is for print as much as for screens: light fills, dark strokes, and series told apart by
dash pattern and marker shape as well as colour, so a black-and-white print stays readable.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

WIDTH = 720
FONT_SIZE = 12
# Dark enough for black-and-white print, distinct in colour on screen.
PALETTE = ("#1f4e79", "#b35900", "#2e7d32", "#6a1b9a", "#8d6e63", "#00838f")
DASHES = ("", "6 4", "2 3", "8 3 2 3", "4 2", "1 2")
MARKERS = ("circle", "square", "diamond", "triangle", "circle", "square")
AXIS_COLOUR = "#555555"
GRID_COLOUR = "#e0e0e0"


@dataclass(frozen=True)
class LineSeries:
    """One line of a line chart: a value per x position (None = no data) and an optional band."""

    name: str
    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    # Per x position: draw the point hollow (a small sample, whose band may be missing or wide).
    flagged: Sequence[bool] | None = None


@dataclass(frozen=True)
class PointMark:
    """A triangle marking one point of a line chart (e.g. a significant change): up or down."""

    series: int
    x_index: int
    up: bool


@dataclass(frozen=True)
class Interval:
    """One estimate with its interval, for dot-and-whisker charts; `flagged` draws it hollow."""

    label: str
    estimate: float | None
    low: float | None = None
    high: float | None = None
    flagged: bool = False


@dataclass(frozen=True)
class ScatterPoint:
    """One labelled point of a scatter chart; `highlight` draws it filled and its label bold."""

    x: float
    y: float
    label: str
    highlight: bool = False


@dataclass(frozen=True)
class _Frame:
    """The plotting area inside the SVG: pixel box plus the data domain on each axis."""

    left: float
    top: float
    width: float
    height: float
    y_min: float
    y_max: float
    x_min: float = 0.0
    x_max: float = 1.0
    y_ticks: list[float] = field(default_factory=list)

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return self.top + self.height * (1 - (value - self.y_min) / span)

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return self.left + self.width * (value - self.x_min) / span


def is_number(value: object) -> bool:
    """Whether a value is a finite real number (None, NaN, pandas NA and infinities are not)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """Approximate rendered width of a text in pixels (wide East Asian characters count double)."""
    return sum(size * (1.0 if unicodedata.east_asian_width(ch) in ("W", "F") else 0.58) for ch in text)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) that cover [low, high]."""
    if not (is_number(low) and is_number(high)):
        raise ValueError("nice_ticks needs finite bounds")
    if high < low:
        low, high = high, low
    if high == low:
        # A flat series still needs an axis: open a unit-wide window around it.
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.5:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _fmt(value: float) -> str:
    """Coordinates with two decimals: small files, no float noise."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _tick_label(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def _text(x: float, y: float, content: str, *, anchor: str = "middle", size: int = FONT_SIZE,
          weight: str = "normal", fill: str = "#222222", extra: str = "") -> str:
    return (
        f'<text x="{_fmt(x)}" y="{_fmt(y)}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}" fill="{fill}"{extra}>{escape(content)}</text>'
    )


def _marker(shape: str, x: float, y: float, colour: str, *, hollow: bool = False, size: float = 4) -> str:
    fill = "#ffffff" if hollow else colour
    style = f'fill="{fill}" stroke="{colour}" stroke-width="1.5"'
    if shape == "square":
        return f'<rect x="{_fmt(x - size)}" y="{_fmt(y - size)}" width="{_fmt(2 * size)}" ' \
               f'height="{_fmt(2 * size)}" {style}/>'
    if shape == "diamond":
        s = size * 1.3
        points = f"{_fmt(x)},{_fmt(y - s)} {_fmt(x + s)},{_fmt(y)} {_fmt(x)},{_fmt(y + s)} {_fmt(x - s)},{_fmt(y)}"
        return f'<polygon points="{points}" {style}/>'
    if shape == "triangle":
        return _triangle(x, y, True, colour, size=size * 1.2, hollow=hollow)
    return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{_fmt(size)}" {style}/>'


def _triangle(x: float, y: float, up: bool, colour: str, *, size: float = 6, hollow: bool = False) -> str:
    tip = y - size if up else y + size
    base = y + size * 0.7 if up else y - size * 0.7
    points = f"{_fmt(x)},{_fmt(tip)} {_fmt(x + size)},{_fmt(base)} {_fmt(x - size)},{_fmt(base)}"
    fill = "#ffffff" if hollow else colour
    return f'<polygon points="{points}" fill="{fill}" stroke="{colour}" stroke-width="1.2"/>'


def _open_svg(chart_id: str, title: str, height: float) -> str:
    return (
        f'<svg data-chart="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {WIDTH} {_fmt(height)}" '
        f'width="{WIDTH}" height="{_fmt(height)}" aria-label="{escape(title)}" '
        f'font-family="system-ui, \'Noto Sans CJK JP\', \'Hiragino Sans\', \'Yu Gothic\', sans-serif">'
        f"<title>{escape(title)}</title>"
    )


def _y_axis(frame: _Frame, label: str, tick_format: Callable[[float], str]) -> list[str]:
    parts = []
    for tick in frame.y_ticks:
        y = frame.y(tick)
        parts.append(
            f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left + frame.width)}" y1="{_fmt(y)}" '
            f'y2="{_fmt(y)}" stroke="{GRID_COLOUR}" stroke-width="1"/>'
        )
        parts.append(_text(frame.left - 6, y + 4, tick_format(tick), anchor="end", fill=AXIS_COLOUR))
    mid = frame.top + frame.height / 2
    parts.append(
        _text(14, mid, label, fill=AXIS_COLOUR, extra=f' transform="rotate(-90 14 {_fmt(mid)})"')
    )
    parts.append(
        f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left)}" y1="{_fmt(frame.top)}" '
        f'y2="{_fmt(frame.top + frame.height)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
    )
    return parts


def _y_domain(values: Sequence[float], clamp: tuple[float, float] | None) -> tuple[list[float], float, float]:
    low, high = min(values), max(values)
    if clamp is not None:
        low, high = max(low, clamp[0]), min(high, clamp[1])
    ticks = nice_ticks(low, high)
    if clamp is not None:
        ticks = [t for t in ticks if clamp[0] <= t <= clamp[1]] or [clamp[0], clamp[1]]
    return ticks, ticks[0], ticks[-1]


def _category_positions(count: int, left: float, width: float) -> list[float]:
    step = width / count
    return [left + step * (i + 0.5) for i in range(count)]


def _x_category_labels(labels: Sequence[str], xs: Sequence[float], baseline: float, width: float) -> list[str]:
    """Category labels under the axis, thinned so neighbours never overlap."""
    if not labels:
        return []
    widest = max(text_width(label) for label in labels) + 8
    every = max(1, math.ceil(widest * len(labels) / width))
    parts = []
    last = len(labels) - 1
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        # Count from the end so the last label (the latest month, the one readers look for) is always shown.
        if (last - i) % every == 0:
            parts.append(_text(x, baseline + 16, label, fill=AXIS_COLOUR))
    return parts


def _floats(values: Sequence[float | None] | None) -> list[float | None]:
    """Values as floats, with every missing or non-finite entry as None."""
    if values is None:
        return []
    return [float(v) if is_number(v) else None for v in values]  # type: ignore[arg-type]


def _band(run: Sequence[int], xs: Sequence[float], lows: Sequence[float], highs: Sequence[float],
          frame: _Frame, colour: str) -> str:
    """A shaded interval band over consecutive positions (a thick bar when the run is one position)."""
    if len(run) == 1:
        x = xs[run[0]]
        return (f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(frame.y(lows[0]))}" y2="{_fmt(frame.y(highs[0]))}" '
                f'stroke="{colour}" stroke-opacity="0.3" stroke-width="6"/>')
    upper = [f"{_fmt(xs[k])},{_fmt(frame.y(h))}" for k, h in zip(run, highs, strict=True)]
    lower = [f"{_fmt(xs[k])},{_fmt(frame.y(lo))}" for k, lo in zip(reversed(run), reversed(lows), strict=True)]
    return f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" fill-opacity="0.12" stroke="none"/>'


def _all_numbers(*sequences: Sequence[float | None] | None) -> list[float]:
    return [float(v) for seq in sequences if seq is not None for v in seq if is_number(v)]


def line_chart(
    *,
    chart_id: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[LineSeries],
    x_label: str,
    y_label: str,
    marks: Sequence[PointMark] = (),
    mark_label: str = "",
    flag_label: str = "",
    y_clamp: tuple[float, float] | None = None,
    height: float = 320,
) -> Markup:
    """A line chart over categorical x positions, with shaded interval bands and triangle marks.

    A series' flagged points are drawn hollow; when any is, the legend explains them with `flag_label`.
    """
    if not x_labels or not series:
        raise ValueError("line_chart needs at least one x position and one series")
    for s in series:
        if len(s.values) != len(x_labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(x_labels)} x positions")
    numbers = _all_numbers(*[seq for s in series for seq in (s.values, s.low, s.high)])
    if not numbers:
        raise ValueError("line_chart needs at least one finite value")
    any_flagged = any(s.flagged and any(s.flagged) for s in series)
    legend_rows = math.ceil((len(series) + (1 if marks else 0) + (1 if any_flagged else 0)) / 3)
    plot_bottom_pad = 44 + 20 * legend_rows
    ticks, y_min, y_max = _y_domain(numbers, y_clamp)
    frame = _Frame(left=56, top=14, width=WIDTH - 56 - 16, height=height - 14 - plot_bottom_pad,
                   y_min=y_min, y_max=y_max, y_ticks=ticks)
    xs = _category_positions(len(x_labels), frame.left, frame.width)
    parts = [_open_svg(chart_id, title, height)]
    parts += _y_axis(frame, y_label, _tick_label)
    baseline = frame.top + frame.height
    parts.append(
        f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left + frame.width)}" y1="{_fmt(baseline)}" '
        f'y2="{_fmt(baseline)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
    )
    parts += _x_category_labels(x_labels, xs, baseline, frame.width)
    parts.append(_text(frame.left + frame.width / 2, baseline + 34, x_label, fill=AXIS_COLOUR))

    def clamp(v: float) -> float:
        return min(max(float(v), frame.y_min), frame.y_max)

    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        values, lows, highs = _floats(s.values), _floats(s.low), _floats(s.high)
        if lows and highs:
            # One band per run of consecutive positions that have both bounds.
            run: list[int] = []
            for j in range(len(x_labels) + 1):
                lo = lows[j] if j < len(x_labels) else None
                hi = highs[j] if j < len(x_labels) else None
                if lo is not None and hi is not None:
                    run.append(j)
                    continue
                if run:
                    parts.append(_band(run, xs, [clamp(lows[k]) for k in run], [clamp(highs[k]) for k in run],
                                       frame, colour))
                    run = []
        path: list[str] = []
        pen_down = False
        for j, value in enumerate(values):
            if value is not None:
                path.append(f"{'L' if pen_down else 'M'}{_fmt(xs[j])},{_fmt(frame.y(clamp(value)))}")
                pen_down = True
            else:
                pen_down = False
        dash = DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if path:
            parts.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>'
            )
        for j, value in enumerate(values):
            if value is not None:
                hollow = bool(s.flagged and s.flagged[j])
                parts.append(_marker(MARKERS[i % len(MARKERS)], xs[j], frame.y(clamp(value)), colour, size=3,
                                     hollow=hollow))
    for mark in marks:
        if not 0 <= mark.series < len(series) or not 0 <= mark.x_index < len(x_labels):
            continue
        value = _floats(series[mark.series].values)[mark.x_index]
        if value is None:
            continue
        y = frame.y(clamp(value)) + (-12 if mark.up else 12)
        parts.append(_triangle(xs[mark.x_index], y, mark.up, "#c62828", size=6))
    # Legend: up to three entries a row under the axis label.
    legend_top = baseline + 52
    entries: list[tuple[str, str]] = []
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        dash = DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        entries.append((s.name, f'<line x1="0" x2="24" y1="0" y2="0" stroke="{colour}" stroke-width="2"{dash_attr}/>'
                        + _marker(MARKERS[i % len(MARKERS)], 12, 0, colour, size=3)))
    if marks:
        entries.append((mark_label, _triangle(12, 0, True, "#c62828", size=6)))
    if any_flagged:
        entries.append((flag_label, _marker("circle", 12, 0, AXIS_COLOUR, size=3, hollow=True)))
    column_width = frame.width / 3
    for n, (name, sample) in enumerate(entries):
        x = frame.left + column_width * (n % 3)
        y = legend_top + 20 * (n // 3)
        parts.append(f'<g transform="translate({_fmt(x)} {_fmt(y)})">{sample}</g>')
        parts.append(_text(x + 30, y + 4, name, anchor="start"))
    parts.append("</svg>")
    return Markup("".join(parts))


def interval_chart(
    *,
    chart_id: str,
    title: str,
    items: Sequence[Interval],
    x_label: str,
    y_label: str,
    connect: bool = True,
    y_clamp: tuple[float, float] | None = None,
    tick_format: Callable[[float], str] = _tick_label,
    height: float = 280,
) -> Markup:
    """Estimates with vertical interval whiskers over ordered categories (e.g. contact bins)."""
    numbers = _all_numbers([i.estimate for i in items], [i.low for i in items], [i.high for i in items])
    if not items or not numbers:
        raise ValueError("interval_chart needs at least one finite estimate")
    ticks, y_min, y_max = _y_domain(numbers, y_clamp)
    frame = _Frame(left=56, top=14, width=WIDTH - 56 - 16, height=height - 14 - 50,
                   y_min=y_min, y_max=y_max, y_ticks=ticks)
    xs = _category_positions(len(items), frame.left, frame.width)
    parts = [_open_svg(chart_id, title, height)]
    parts += _y_axis(frame, y_label, tick_format)
    baseline = frame.top + frame.height
    parts.append(
        f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left + frame.width)}" y1="{_fmt(baseline)}" '
        f'y2="{_fmt(baseline)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
    )
    parts += _x_category_labels([i.label for i in items], xs, baseline, frame.width)
    parts.append(_text(frame.left + frame.width / 2, baseline + 34, x_label, fill=AXIS_COLOUR))
    colour = PALETTE[0]

    def clamp(v: float) -> float:
        return min(max(float(v), frame.y_min), frame.y_max)

    estimates, lows, highs = (_floats([getattr(i, a) for i in items]) for a in ("estimate", "low", "high"))
    if connect:
        points = [f"{_fmt(x)},{_fmt(frame.y(clamp(e)))}" for x, e in zip(xs, estimates, strict=True) if e is not None]
        if len(points) > 1:
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                         f'stroke-width="1.5" stroke-opacity="0.6"/>')
    for x, item, estimate, low, high in zip(xs, items, estimates, lows, highs, strict=True):
        if low is not None and high is not None:
            y_lo, y_hi = frame.y(clamp(low)), frame.y(clamp(high))
            parts.append(
                f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(y_lo)}" y2="{_fmt(y_hi)}" '
                f'stroke="{colour}" stroke-width="1.5"/>'
            )
            for y in (y_lo, y_hi):
                parts.append(f'<line x1="{_fmt(x - 5)}" x2="{_fmt(x + 5)}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
                             f'stroke="{colour}" stroke-width="1.5"/>')
        if estimate is not None:
            parts.append(_marker("circle", x, frame.y(clamp(estimate)), colour, hollow=item.flagged))
    parts.append("</svg>")
    return Markup("".join(parts))


def forest_chart(
    *,
    chart_id: str,
    title: str,
    items: Sequence[Interval],
    x_label: str,
    x_clamp: tuple[float, float] | None = None,
    reference: float | None = None,
) -> Markup:
    """Horizontal dot-and-whisker rows, one per labelled group; flagged rows are hollow and marked †."""
    numbers = _all_numbers([i.estimate for i in items], [i.low for i in items], [i.high for i in items])
    if not items or not numbers:
        raise ValueError("forest_chart needs at least one finite estimate")
    if reference is not None:
        numbers.append(reference)
    ticks, x_min, x_max = _y_domain(numbers, x_clamp)
    labels = [f"{i.label} †" if i.flagged else i.label for i in items]
    label_width = min(max(text_width(label) for label in labels) + 16, WIDTH * 0.4)
    row = 24
    height = 14 + row * len(items) + 46
    frame = _Frame(left=label_width, top=14, width=WIDTH - label_width - 24, height=row * len(items),
                   y_min=0, y_max=1, x_min=x_min, x_max=x_max)
    parts = [_open_svg(chart_id, title, height)]
    baseline = frame.top + frame.height
    for tick in ticks:
        x = frame.x(tick)
        parts.append(f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(frame.top)}" y2="{_fmt(baseline)}" '
                     f'stroke="{GRID_COLOUR}" stroke-width="1"/>')
        parts.append(_text(x, baseline + 16, _tick_label(tick), fill=AXIS_COLOUR))
    if reference is not None and x_min <= reference <= x_max:
        x = frame.x(reference)
        parts.append(f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(frame.top)}" y2="{_fmt(baseline)}" '
                     f'stroke="{AXIS_COLOUR}" stroke-width="1" stroke-dasharray="4 3"/>')
    parts.append(
        f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left + frame.width)}" y1="{_fmt(baseline)}" '
        f'y2="{_fmt(baseline)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
    )
    parts.append(_text(frame.left + frame.width / 2, baseline + 36, x_label, fill=AXIS_COLOUR))
    colour = PALETTE[0]

    def clamp(v: float) -> float:
        return min(max(float(v), x_min), x_max)

    estimates, lows, highs = (_floats([getattr(i, a) for i in items]) for a in ("estimate", "low", "high"))
    for n, (item, label) in enumerate(zip(items, labels, strict=True)):
        y = frame.top + row * (n + 0.5)
        parts.append(_text(frame.left - 8, y + 4, label, anchor="end"))
        low, high, estimate = lows[n], highs[n], estimates[n]
        if low is not None and high is not None:
            x_lo, x_hi = frame.x(clamp(low)), frame.x(clamp(high))
            parts.append(f'<line x1="{_fmt(x_lo)}" x2="{_fmt(x_hi)}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
                         f'stroke="{colour}" stroke-width="1.5"/>')
        if estimate is not None:
            parts.append(_marker("circle", frame.x(clamp(estimate)), y, colour, hollow=item.flagged))
    parts.append("</svg>")
    return Markup("".join(parts))


def scatter_chart(
    *,
    chart_id: str,
    title: str,
    points: Sequence[ScatterPoint],
    x_label: str,
    y_label: str,
    height: float = 360,
) -> Markup:
    """A labelled scatter with dashed lines at the mean of x and of y (quadrants of importance x performance)."""
    good = [p for p in points if is_number(p.x) and is_number(p.y)]
    if not good:
        raise ValueError("scatter_chart needs at least one finite point")
    x_ticks = nice_ticks(min(p.x for p in good), max(p.x for p in good))
    y_ticks = nice_ticks(min(p.y for p in good), max(p.y for p in good))
    frame = _Frame(left=56, top=14, width=WIDTH - 56 - 24, height=height - 14 - 50,
                   y_min=y_ticks[0], y_max=y_ticks[-1], x_min=x_ticks[0], x_max=x_ticks[-1], y_ticks=y_ticks)
    parts = [_open_svg(chart_id, title, height)]
    parts += _y_axis(frame, y_label, _tick_label)
    baseline = frame.top + frame.height
    for tick in x_ticks:
        x = frame.x(tick)
        parts.append(f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(frame.top)}" y2="{_fmt(baseline)}" '
                     f'stroke="{GRID_COLOUR}" stroke-width="1"/>')
        parts.append(_text(x, baseline + 16, _tick_label(tick), fill=AXIS_COLOUR))
    parts.append(
        f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left + frame.width)}" y1="{_fmt(baseline)}" '
        f'y2="{_fmt(baseline)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
    )
    parts.append(_text(frame.left + frame.width / 2, baseline + 36, x_label, fill=AXIS_COLOUR))
    mean_x = sum(p.x for p in good) / len(good)
    mean_y = sum(p.y for p in good) / len(good)
    parts.append(f'<line x1="{_fmt(frame.x(mean_x))}" x2="{_fmt(frame.x(mean_x))}" y1="{_fmt(frame.top)}" '
                 f'y2="{_fmt(baseline)}" stroke="{AXIS_COLOUR}" stroke-dasharray="4 3" stroke-width="1"/>')
    parts.append(f'<line x1="{_fmt(frame.left)}" x2="{_fmt(frame.left + frame.width)}" y1="{_fmt(frame.y(mean_y))}" '
                 f'y2="{_fmt(frame.y(mean_y))}" stroke="{AXIS_COLOUR}" stroke-dasharray="4 3" stroke-width="1"/>')
    for p in good:
        x, y = frame.x(p.x), frame.y(p.y)
        colour = "#c62828" if p.highlight else PALETTE[0]
        parts.append(_marker("diamond" if p.highlight else "circle", x, y, colour, hollow=not p.highlight))
        # Labels go right of the point unless that would run off the chart.
        right = x + 8 + text_width(p.label, 11) < WIDTH - 4
        parts.append(_text(x + 8 if right else x - 8, y - 6, p.label, anchor="start" if right else "end",
                           size=11, weight="bold" if p.highlight else "normal"))
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    x_label: str,
    value_format: Callable[[float], str],
) -> Markup:
    """Horizontal bars from zero, one per label, each with its formatted value at the end."""
    if len(labels) != len(values):
        raise ValueError("bar_chart needs one value per label")
    numbers = _all_numbers(values)
    if not numbers:
        raise ValueError("bar_chart needs at least one finite value")
    ticks = nice_ticks(min(0.0, *numbers), max(0.0, *numbers))
    label_width = min(max(text_width(label) for label in labels) + 16, WIDTH * 0.35)
    row = 30
    height = 14 + row * len(labels) + 46
    # Room on the right for the value printed after the longest bar.
    value_room = max(text_width(value_format(v)) for v in numbers) + 12
    frame = _Frame(left=label_width, top=14, width=WIDTH - label_width - value_room, height=row * len(labels),
                   y_min=0, y_max=1, x_min=ticks[0], x_max=ticks[-1])
    parts = [_open_svg(chart_id, title, height)]
    baseline = frame.top + frame.height
    for tick in ticks:
        x = frame.x(tick)
        parts.append(f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{_fmt(frame.top)}" y2="{_fmt(baseline)}" '
                     f'stroke="{GRID_COLOUR}" stroke-width="1"/>')
        parts.append(_text(x, baseline + 16, value_format(tick), fill=AXIS_COLOUR, size=10))
    parts.append(_text(frame.left + frame.width / 2, baseline + 36, x_label, fill=AXIS_COLOUR))
    zero = frame.x(0.0)
    for n, (label, value) in enumerate(zip(labels, _floats(values), strict=True)):
        y = frame.top + row * n
        parts.append(_text(frame.left - 8, y + row / 2 + 4, label, anchor="end"))
        if value is None:
            continue
        end = frame.x(value)
        parts.append(f'<rect x="{_fmt(min(zero, end))}" y="{_fmt(y + 6)}" width="{_fmt(abs(end - zero))}" '
                     f'height="{_fmt(row - 12)}" fill="{PALETTE[n % len(PALETTE)]}" fill-opacity="0.3" '
                     f'stroke="{PALETTE[n % len(PALETTE)]}" stroke-width="1"/>')
        parts.append(_text(max(zero, end) + 6, y + row / 2 + 4, value_format(value), anchor="start"))
    parts.append(f'<line x1="{_fmt(zero)}" x2="{_fmt(zero)}" y1="{_fmt(frame.top)}" y2="{_fmt(baseline)}" '
                 f'stroke="{AXIS_COLOUR}" stroke-width="1"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
