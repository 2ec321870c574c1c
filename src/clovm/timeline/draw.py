"""The SVG building blocks of the timeline: page layout, text and number formatting, the element
writer, and the two scales (time → x, and a node lane's linear-then-log gap → y)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from .journal import _clean

__all__ = ["AXIS_H", "FONT", "HEADER_H", "NODE_H", "PLOT_X0", "PLOT_X1", "PROC_H", "WIDTH", "GapScale", "tick_step"]

# ------------------------------------------------------------------------------------------ layout
WIDTH = 1200
PLOT_X0 = 210.0
PLOT_X1 = 1170.0
HEADER_H = 84.0
PROC_H = 78.0  # procedure lane: step labels, step bars, phase sub-lane
NODE_H = 124.0  # one CF node lane
AXIS_H = 52.0
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
_CHAR_W = 6.2  # estimated width of one character at font-size 11


# ------------------------------------------------------------------------------------- SVG text
def _esc(text: Any) -> str:
    return escape(_clean(text))


def _attr(text: Any) -> str:
    return escape(_clean(text), {'"': "&quot;"})


def _n(x: float) -> str:
    """Coordinate / number text: at most 2 decimals, no trailing zeros, never ``-0``."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _secs(x: float) -> str:
    """A duration or time in seconds for labels: 1 decimal below 100 s, else whole seconds."""
    return f"{x:.1f}" if abs(x) < 100 else f"{x:.0f}"


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


def tick_step(span: float, max_ticks: int = 8) -> float:
    """A 1-2-2.5-5 × 10^k tick spacing giving at most ``max_ticks`` intervals over ``span`` seconds.

    5 s → 1, 30 s → 5, 100 s → 25, 600 s → 100, 2000 s → 250.
    """
    if not span > 0 or not math.isfinite(span):
        return 1.0
    base = 10.0 ** math.floor(math.log10(span / max_ticks))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0, 20.0):
        step = mult * base
        if span / step <= max_ticks + 1e-9:
            return step
    return 20.0 * base  # pragma: no cover - the loop always returns


# ---------------------------------------------------------------------------------- SVG primitives
class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        fill: str,
        cls: str = "",
        extra: str = "",
        title: str | None = None,
    ) -> None:
        c = f' class="{cls}"' if cls else ""
        body = f"<title>{_esc(title)}</title>" if title else ""
        open_ = f'<rect{c} x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" height="{_n(h)}" fill="{fill}"{extra}'
        self.add(open_ + (f">{body}</rect>" if body else "/>"))

    def text(
        self, x: float, y: float, s: str, size: float = 11, anchor: str = "start", cls: str = "", extra: str = ""
    ) -> None:
        c = f' class="{cls}"' if cls else ""
        a = f' text-anchor="{anchor}"' if anchor != "start" else ""
        self.add(f'<text{c} x="{_n(x)}" y="{_n(y)}" font-size="{_n(size)}"{a}{extra}>{_esc(s)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, cls: str = "", extra: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.add(f'<line{c} x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}"{extra}/>')


class _Scale:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0 = t0
        self.span = t1 - t0 if t1 > t0 else 1.0

    def x(self, t: float) -> float:
        """x of an absolute emulated time."""
        return PLOT_X0 + (t - self.t0) / self.span * (PLOT_X1 - PLOT_X0)


def _nice_ceil(v: float) -> float:
    """The smallest 1-2-5 × 10^k that is >= v (v > 0)."""
    base = 10.0 ** math.floor(math.log10(v))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if mult * base >= v * (1 - 1e-9):
            return mult * base
    return 10.0 * base  # pragma: no cover


class GapScale:
    """The y scale of one node lane's gap plot: *linear then log*.

    ``linear_top`` = the 1-2-5 value at or above 1.25 × the lane's largest gap (at least 1 s).
    If every value (gaps and timeouts) fits under it, the whole plot height is linear 0 …
    ``linear_top``. Otherwise the lower 75 % is linear 0 … ``linear_top`` and the upper 25 % is
    logarithmic from ``linear_top`` to 1.3 × the largest value, so that a 1 s gap stays clearly
    visible under a 600 s timeout while the timeout line still has its place.
    """

    SPLIT = 0.75

    def __init__(self, gaps: Sequence[float], timeouts: Sequence[float], py0: float, py1: float) -> None:
        self.py0, self.py1 = py0, py1
        self.linear_top = _nice_ceil(max([1.0] + [1.25 * g for g in gaps]))
        vmax = max([1.0, *gaps, *timeouts])
        self.split = vmax > self.linear_top
        self.log_top = vmax * 1.3

    def frac(self, v: float) -> float:
        v = max(v, 0.0)
        if not self.split:
            return min(v / self.linear_top, 1.0)
        if v <= self.linear_top:
            return self.SPLIT * v / self.linear_top
        f = self.SPLIT + (1 - self.SPLIT) * math.log(v / self.linear_top) / math.log(self.log_top / self.linear_top)
        return min(f, 1.0)

    def y(self, v: float) -> float:
        return self.py1 - self.frac(v) * (self.py1 - self.py0)

    def ticks(self) -> list[float]:
        out = [0.0, self.linear_top / 2, self.linear_top]
        if self.split:
            last_y = self.y(self.linear_top)
            for k in range(8):
                v = 10.0**k
                if self.linear_top < v <= self.log_top / 1.3 and last_y - self.y(v) >= 10:
                    out.append(v)
                    last_y = self.y(v)
        return out

    def label(self) -> str:
        top = f"{self.linear_top:g}"
        return f"gap s: linear ≤ {top}, log above" if self.split else f"gap s: linear 0–{top}"
