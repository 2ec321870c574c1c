"""A ``clovm migrate`` journal as one self-contained SVG document: :func:`render_svg`, :func:`write_svg`.

The picture an operator looks at instead of the logs, drawn lane by lane, top to bottom:

* a header (domain, CF node, source → target, scoped or manual window, outcome, result);
* the *procedure* lane: one coloured bar per step (``events`` begin → done; a step that was
  begun but not done is drawn open and dashed up to the end of the journal or to the next step's
  begin) and note markers; under it the *ldm migration* sub-lane with the ldmd phases of
  ``progress``;
* the guest's suspend interval(s) highlighted across every lane (:func:`.suspend_intervals`);
* one lane per CF node: the heartbeat gap (max over every observer, :func:`.merge_samples`) as
  a polyline against the effective timeout (dashed), on a per-lane ``log(1 + s)`` y scale so
  that a 1 s gap stays visible under a 600 s timeout; above the plot the CF state band (worst
  state any observer holds the node in) and a thin SF band (``sf`` of the node's own samples);
* a time axis in emulated seconds since the earliest time in the journal, and a legend.

Output is deterministic: the same journal gives the same bytes. :func:`write_svg` is the only
function with I/O (one atomic write).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..fsutil import StrPath, atomic_write
from .draw import (
    _CHAR_W,
    AXIS_H,
    FONT,
    HEADER_H,
    NODE_H,
    PLOT_X0,
    PLOT_X1,
    PROC_H,
    WIDTH,
    GapScale,
    _attr,
    _esc,
    _ident,
    _n,
    _Scale,
    _secs,
    _Svg,
    tick_step,
)
from .journal import (
    NodePoint,
    _all_times,
    _num,
    _phase_segments,
    _step_bars,
    _str,
    _timed,
    merge_samples,
    suspend_intervals,
)

__all__ = [
    "GAP_COLOUR",
    "OTHER_PHASE_COLOUR",
    "OTHER_SF_COLOUR",
    "OTHER_STATE_COLOUR",
    "OTHER_STEP_COLOUR",
    "PHASE_COLOURS",
    "RESULT_COLOURS",
    "SF_COLOURS",
    "STATE_COLOURS",
    "STEP_COLOURS",
    "SUSPEND_FILL",
    "TIMEOUT_COLOUR",
    "render_svg",
    "write_svg",
]

# ------------------------------------------------------------------------------------------ palette
STEP_COLOURS = {
    "prepare": "#4e79a7",
    "migrate": "#f28e2b",
    "recover": "#e15759",
    "complete": "#59a14f",
    "prove": "#b07aa1",
}
OTHER_STEP_COLOUR = "#9c755f"
PHASE_COLOURS = {
    "checks": "#bab0ac",
    "pre-copy": "#76b7b2",
    "suspend": "#e15759",
    "hand-off": "#ff9da7",
    "done": "#59a14f",
    "cancelled": "#edc948",
    "failed": "#d62728",
}
OTHER_PHASE_COLOUR = "#d3d3d3"
STATE_COLOURS = {"UP": "#8cd17d", "LEFTCLUSTER": "#f1ce63", "DOWN": "#e15759"}
OTHER_STATE_COLOUR = "#bab0ac"
SF_COLOURS = {"running": "#4e79a7", "stopped": "#ff9d9a"}
OTHER_SF_COLOUR = "#bab0ac"
RESULT_COLOURS = {"ok": "#2e7d32", "restored": "#b26a00", "failed": "#c62828"}
SUSPEND_FILL = "#e15759"
GAP_COLOUR = "#1f3a93"
TIMEOUT_COLOUR = "#c62828"


# ------------------------------------------------------------------------------------- the lanes
@dataclass(frozen=True, slots=True)
class _Frame:
    """What every lane shares: the time scale, the journal's first and last times, and the top
    and bottom of the lanes (the procedure lane and the node lanes)."""

    sc: _Scale
    t_first: float
    t_last: float
    lanes_top: float
    lanes_bottom: float


class _Rounds:
    """The sampling rounds of the merged node views: their times, index and typical interval."""

    def __init__(self, merged: Mapping[str, Sequence[NodePoint]], t_last: float) -> None:
        self.times = sorted({p.t for pts in merged.values() for p in pts})
        intervals = [b - a for a, b in itertools.pairwise(self.times)]
        self.typical = sorted(intervals)[len(intervals) // 2] if intervals else 1.0
        self.index = {t: i for i, t in enumerate(self.times)}
        self._t_last = t_last

    def seg_end(self, t: float) -> float:
        """A round's value holds until the next round, at most 1.5 sampling intervals (no data
        after that), and the last one for one interval (clipped to the journal's end)."""
        i = self.index[t]
        if i + 1 < len(self.times):
            return min(self.times[i + 1], t + 1.5 * self.typical)
        return min(t + self.typical, max(self._t_last, t))


def _time_ticks(sc: _Scale) -> tuple[float, list[float]]:
    """The tick spacing of the time axis and its ticks (seconds since the first time)."""
    step = tick_step(sc.span)
    ticks: list[float] = []
    k = 0
    while k * step <= sc.span + 1e-9 and k < 1000:
        ticks.append(k * step)
        k += 1
    return step, ticks


def _draw_header(svg: _Svg, f: _Frame, journal: Mapping[str, Any], domain: str, times: Sequence[float]) -> None:
    """Title, route and window, outcome and time origin, and the result (top right)."""
    result = journal.get("result")
    result_s = result if isinstance(result, str) else f"in progress (step {_str(journal.get('step'), '?')})"
    node = _str(journal.get("node"))
    svg.text(
        12,
        26,
        f"clovm migrate {domain}" + (f" (CF node {node})" if node else ""),
        18,
        cls="title",
        extra=' font-weight="bold"',
    )
    src, dst = _str(journal.get("source"), "?"), _str(journal.get("target"), "?")
    ss, ts = _str(journal.get("source_server")), _str(journal.get("target_server"))
    route = f"{src} → {dst}" + (f"   (server {ss} → {ts})" if ss or ts else "")
    window = (
        "scoped window: only the migrating node's timeout widened"
        if journal.get("scoped") is True
        else "manual window: cluster-wide 600 s CLUSTER_TIMEOUT"
    )
    svg.text(12, 48, f"{route}   ·   {window}", 12, cls="route")
    outcome = journal.get("outcome")
    line3 = f"outcome: {outcome if isinstance(outcome, str) else '—'}"
    complete_to = journal.get("complete_to")
    if isinstance(complete_to, str):
        line3 += f"   ·   SF completed to {complete_to}"
    if times:
        line3 += f"   ·   t = 0 at emulated {_secs(f.t_first)} s, span {_secs(f.t_last - f.t_first)} s"
    svg.text(12, 68, line3, 12, cls="outcome")
    svg.text(
        WIDTH - 20,
        30,
        f"result: {result_s}",
        16,
        anchor="end",
        cls="result",
        extra=f' font-weight="bold" fill="{RESULT_COLOURS.get(_str(result), "#555555")}"',
    )


def _draw_grid(svg: _Svg, f: _Frame, ticks: Sequence[float]) -> None:
    """The vertical grid at the time ticks (drawn first, under everything)."""
    for rel in ticks:
        x = f.sc.x(f.t_first + rel)
        svg.line(x, f.lanes_top, x, f.lanes_bottom, "#e6e6e6", cls="grid")


def _draw_suspend(svg: _Svg, f: _Frame, journal: Mapping[str, Any]) -> None:
    """The guest's suspend interval(s), highlighted across the whole height of the lanes."""
    for i, (s0, s1) in enumerate(suspend_intervals(journal)):
        x0, x1 = f.sc.x(s0), f.sc.x(s1)
        svg.rect(
            x0,
            f.lanes_top,
            max(x1 - x0, 1.0),
            f.lanes_bottom - f.lanes_top,
            SUSPEND_FILL,
            cls="suspend",
            extra=f' id="suspend-{i}" fill-opacity="0.14"',
            title=f"guest suspended {s1 - s0:.2f} s (t {_secs(s0 - f.t_first)} → {_secs(s1 - f.t_first)} s)",
        )
        svg.text(
            (x0 + x1) / 2,
            f.lanes_top + 10,
            f"guest suspended {s1 - s0:.1f} s",
            10,
            anchor="middle",
            cls="suspend-label",
            extra=f' fill="{SUSPEND_FILL}" font-weight="bold"',
        )


def _draw_steps(svg: _Svg, f: _Frame, events: Sequence[dict[str, Any]], bar_y: float, bar_h: float) -> None:
    """One bar per step (dashed and open while not done), its label on one of two levels."""
    label_ends = [-1e9, -1e9]
    for bar in _step_bars(events, f.t_last):
        x0, x1 = f.sc.x(bar.t0), f.sc.x(bar.t1)
        colour = STEP_COLOURS.get(bar.step, OTHER_STEP_COLOUR)
        title = f"{bar.step}: t {_secs(bar.t0 - f.t_first)} → {_secs(bar.t1 - f.t_first)} s ({bar.state})"
        if bar.text:
            title += f" — {bar.text}"
        if bar.state == "done":
            svg.rect(x0, bar_y, max(x1 - x0, 1.5), bar_h, colour, cls="step-bar", title=title)
        else:
            svg.rect(
                x0,
                bar_y,
                max(x1 - x0, 1.5),
                bar_h,
                colour,
                cls=f"step-bar {bar.state}",
                title=title,
                extra=f' fill-opacity="0.35" stroke="{colour}" stroke-dasharray="4 2"',
            )
        label = bar.step + ("" if bar.state == "done" else f" ({bar.state})")
        width = len(label) * _CHAR_W
        level = 0 if label_ends[0] < x0 else 1 if label_ends[1] < x0 else 0
        label_ends[level] = x0 + width + 4
        svg.text(x0, bar_y - 4 - 11 * level, label, 11, cls="step-label", extra=f' fill="{colour}"')


def _draw_notes(svg: _Svg, f: _Frame, events: Sequence[dict[str, Any]], bar_y: float, bar_h: float) -> None:
    """A marker under the step bars at every note event."""
    for e in events:
        if e.get("what") == "note":
            x = f.sc.x(_num(e["t"]))  # type: ignore[arg-type]
            d = f"M{_n(x)} {_n(bar_y + bar_h + 1)} l3 4 l-3 4 l-3 -4 z"
            svg.add(
                f'<path class="note" d="{d}" fill="#333333"><title>{_esc(e.get("step", ""))}: '
                f"{_esc(_str(e.get('text')))}</title></path>"
            )


def _draw_phases(
    svg: _Svg, f: _Frame, progress: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], ph_y: float
) -> None:
    """The ldm migration sub-lane: one segment per run of the same ldmd phase."""
    ph_h = 14.0
    for seg in _phase_segments(progress, events, f.t_last):
        x0, x1 = f.sc.x(seg.t0), f.sc.x(seg.t1)
        colour = PHASE_COLOURS.get(seg.phase, OTHER_PHASE_COLOUR)
        title = f"{seg.phase} {seg.percent} at t {_secs(seg.t0 - f.t_first)} s".replace("  ", " ")
        svg.rect(x0, ph_y, max(x1 - x0, 2.0), ph_h, colour, cls="phase", title=title)
        if x1 - x0 >= len(seg.phase) * 5.6 + 6:
            svg.text(x0 + 3, ph_y + 11, seg.phase, 10, cls="phase-label")


def _draw_procedure_lane(
    svg: _Svg, f: _Frame, events: Sequence[dict[str, Any]], progress: Sequence[dict[str, Any]]
) -> None:
    """The procedure lane: the steps and notes, and under them the ldm migration phases."""
    y = f.lanes_top
    svg.line(0, y, WIDTH, y, "#999999")
    svg.add('<g class="lane procedure" id="lane-procedure">')
    svg.text(12, y + 40, "procedure", 12, extra=' font-weight="bold"')
    svg.text(12, y + 66, "ldm migration", 11, extra=' fill="#555555"')
    bar_y, bar_h = y + 30, 16.0
    _draw_steps(svg, f, events, bar_y, bar_h)
    _draw_notes(svg, f, events, bar_y, bar_h)
    _draw_phases(svg, f, progress, events, y + 56)
    svg.add("</g>")


def _draw_state_bands(svg: _Svg, f: _Frame, rounds: _Rounds, x_node: str, pts: Sequence[NodePoint], top: float) -> None:
    """A node's CF state band (worst state any observer holds it in) and its thin SF band."""
    band_y, sf_y = top + 6, top + 19
    svg.text(PLOT_X0 - 6, band_y + 8, "CF", 9, anchor="end", extra=' fill="#555555"')
    svg.text(PLOT_X0 - 6, sf_y + 5, "SF", 8, anchor="end", extra=' fill="#555555"')
    for p in pts:
        x0, x1 = f.sc.x(p.t), f.sc.x(rounds.seg_end(p.t))
        if p.state is not None:
            who = ", ".join(p.observers)
            svg.rect(
                x0,
                band_y,
                x1 - x0,
                10,
                STATE_COLOURS.get(p.state, OTHER_STATE_COLOUR),
                cls="cf-state",
                title=f"{x_node} {p.state} (seen by {who}) at t {_secs(p.t - f.t_first)} s",
            )
        if p.sf is not None:
            svg.rect(
                x0,
                sf_y,
                x1 - x0,
                4,
                SF_COLOURS.get(p.sf, OTHER_SF_COLOUR),
                cls="sf-state",
                title=f"{x_node} SF {p.sf} at t {_secs(p.t - f.t_first)} s",
            )


def _draw_gap_axes(svg: _Svg, pts: Sequence[NodePoint], py0: float, py1: float) -> GapScale:
    """The frame, y ticks and scale label of a node's gap plot; returns its y scale."""
    ys = GapScale(
        [p.gap for p in pts if p.gap is not None], [p.timeout for p in pts if p.timeout is not None], py0, py1
    )
    gy = ys.y
    svg.rect(PLOT_X0, py0, PLOT_X1 - PLOT_X0, py1 - py0, "none", extra=' stroke="#dddddd"')
    for v in ys.ticks():
        yv = gy(v)
        svg.line(PLOT_X0 - 3, yv, PLOT_X1, yv, "#eeeeee", cls="ytick")
        svg.text(PLOT_X0 - 6, yv + 3, f"{v:g}", 8, anchor="end", cls="ytick-label", extra=' fill="#777777"')
    if ys.split:
        yb = gy(ys.linear_top)
        svg.line(PLOT_X0, yb, PLOT_X1, yb, "#aaaaaa", cls="scale-break", extra=' stroke-dasharray="1 3"')
    svg.text(12, py1 - 4, ys.label(), 9, cls="yaxis-label", extra=' fill="#777777"')
    if not pts:
        svg.text(
            (PLOT_X0 + PLOT_X1) / 2,
            (py0 + py1) / 2,
            "no samples of this node",
            11,
            anchor="middle",
            cls="empty",
            extra=' fill="#999999"',
        )
    return ys


def _draw_timeout(svg: _Svg, f: _Frame, rounds: _Rounds, x_node: str, pts: Sequence[NodePoint], ys: GapScale) -> None:
    """A node's effective timeout (min over observers) as a dashed step line, with its values."""
    gy = ys.y
    d: list[str] = []
    pen_down = False
    for p in pts:
        if p.timeout is None:
            pen_down = False
            continue
        x0, x1, yv = f.sc.x(p.t), f.sc.x(rounds.seg_end(p.t)), gy(p.timeout)
        d.append(f"{'L' if pen_down else 'M'}{_n(x0)} {_n(yv)} L{_n(x1)} {_n(yv)}")
        pen_down = True
    timeouts = sorted({p.timeout for p in pts if p.timeout is not None})
    if d:
        svg.add(
            f'<path class="timeout" d="{" ".join(d)}" fill="none" stroke="{TIMEOUT_COLOUR}" '
            f'stroke-width="1.2" stroke-dasharray="6 4"><title>{_esc(x_node)} effective timeout '
            f"{_esc(', '.join(f'{v:g}' for v in timeouts))} s</title></path>"
        )
        label_ys: list[float] = []
        for v in reversed(timeouts):  # largest first; skip labels that would overlap
            yv = gy(v)
            ly_ = yv - 3 if yv - 3 >= ys.py0 + 8 else yv + 9
            if all(abs(ly_ - other) >= 10 for other in label_ys):
                svg.text(
                    PLOT_X1 - 2,
                    ly_,
                    f"timeout {v:g} s",
                    9,
                    anchor="end",
                    cls="timeout-label",
                    extra=f' fill="{TIMEOUT_COLOUR}"',
                )
                label_ys.append(ly_)


def _draw_gap(svg: _Svg, f: _Frame, rounds: _Rounds, pts: Sequence[NodePoint], ys: GapScale) -> None:
    """A node's heartbeat gap (max over observers): polylines, gaps over the timeout circled, and
    the largest gap as a label."""
    gy = ys.y
    # polylines broken where no observer has a gap, the node is missing from a round, or no
    # round was taken for more than 1.5 sampling intervals
    runs: list[list[NodePoint]] = [[]]
    previous_round, previous_t = -2, -math.inf
    for p in pts:
        this_round = rounds.index[p.t]
        missing = this_round != previous_round + 1 or p.t - previous_t > 1.5 * rounds.typical
        if (p.gap is None or missing) and runs[-1]:
            runs.append([])
        if p.gap is not None:
            runs[-1].append(p)
        previous_round, previous_t = this_round, p.t
    for run in runs:
        if not run:
            continue
        points = " ".join(f"{_n(f.sc.x(p.t))},{_n(gy(p.gap))}" for p in run)  # type: ignore[arg-type]
        if len(run) == 1:
            svg.add(
                f'<circle class="gap" cx="{_n(f.sc.x(run[0].t))}" cy="{_n(gy(run[0].gap))}" r="2" '  # type: ignore[arg-type]
                f'fill="{GAP_COLOUR}"/>'
            )
        else:
            svg.add(f'<polyline class="gap" points="{points}" fill="none" stroke="{GAP_COLOUR}" stroke-width="1.5"/>')
    for p in pts:
        if p.gap is not None and p.timeout is not None and p.gap >= p.timeout:
            svg.add(
                f'<circle class="over-timeout" cx="{_n(f.sc.x(p.t))}" cy="{_n(gy(p.gap))}" r="3.5" '
                f'fill="none" stroke="{TIMEOUT_COLOUR}" stroke-width="1.5"><title>gap {p.gap:g} s ≥ '
                f"timeout {p.timeout:g} s</title></circle>"
            )
    gapped = [p for p in pts if p.gap is not None]
    if gapped:
        worst = max(gapped, key=lambda p: (p.gap, -p.t))
        svg.text(
            PLOT_X0 + 4,
            ys.py0 + 11,
            f"max gap {worst.gap:.1f} s at t {_secs(worst.t - f.t_first)} s",
            9,
            cls="maxgap-label",
            extra=f' fill="{GAP_COLOUR}"',
        )


def _draw_node_lane(
    svg: _Svg, f: _Frame, rounds: _Rounds, journal: Mapping[str, Any], x_node: str, pts: Sequence[NodePoint], top: float
) -> None:
    """One CF node's lane: its name and base timeout, state bands, and gap-against-timeout plot."""
    migrating = _str(journal.get("node"))
    base_timeouts = journal.get("timeouts") if isinstance(journal.get("timeouts"), dict) else {}
    svg.line(0, top, WIDTH, top, "#bbbbbb")
    svg.add(f'<g class="lane node" id="lane-{_attr(_ident(x_node))}">')
    svg.add(f"<title>CF node {_esc(x_node)}</title>")
    svg.text(12, top + 22, x_node, 13, cls="node-label", extra=' font-weight="bold"')
    svg.text(12, top + 37, "migrating node" if x_node == migrating else "CF node", 10, extra=' fill="#555555"')
    base = _num(base_timeouts.get(x_node)) if isinstance(base_timeouts, dict) else None
    if base is not None:
        svg.text(12, top + 50, f"CLUSTER_TIMEOUT {base:g} s", 10, cls="cluster-timeout", extra=' fill="#555555"')
    _draw_state_bands(svg, f, rounds, x_node, pts, top)
    ys = _draw_gap_axes(svg, pts, top + 30, top + NODE_H - 8)  # top and bottom of the plot area
    _draw_timeout(svg, f, rounds, x_node, pts, ys)
    _draw_gap(svg, f, rounds, pts, ys)
    svg.add("</g>")


def _draw_time_axis(svg: _Svg, f: _Frame, step: float, ticks: Sequence[float], timed: bool) -> None:
    """The time axis under the lanes, in emulated seconds since the first journal entry (and a
    word in the lanes when the journal has no timed entry at all)."""
    ay = f.lanes_bottom
    svg.line(PLOT_X0, ay, PLOT_X1, ay, "#333333", cls="axis")
    for rel in ticks:
        x = f.sc.x(f.t_first + rel)
        svg.line(x, ay, x, ay + 5, "#333333", cls="tick")
        label = (
            f"{rel:g}" if step >= 1 else f"{rel:.{max(0, -math.floor(math.log10(step)) + 1)}f}".rstrip("0").rstrip(".")
        )
        svg.text(x, ay + 17, label or "0", 10, anchor="middle", cls="tick-label")
    svg.text(
        (PLOT_X0 + PLOT_X1) / 2,
        ay + 34,
        "emulated seconds since the first journal entry",
        11,
        anchor="middle",
        cls="axis-label",
    )
    if not timed:
        svg.text(
            (PLOT_X0 + PLOT_X1) / 2,
            f.lanes_top + 20,
            "the journal has no timed entries yet",
            12,
            anchor="middle",
            cls="empty",
            extra=' fill="#999999"',
        )


class _Legend:
    """The legend's pen: items left to right from ``(12, y)``, wrapping before the right edge."""

    def __init__(self, svg: _Svg, y: float) -> None:
        self.svg, self.x, self.y = svg, 12.0, y

    def newline(self) -> None:
        self.x, self.y = 12.0, self.y + 18

    def item(self, label: str, colour: str, cls: str = "legend-item", kind: str = "box") -> None:
        """A swatch (``box``, ``line`` or ``dash``) and its label, or a bold ``label`` alone."""
        svg = self.svg
        width = 16 + len(label) * 5.8 + 14
        if self.x + width > WIDTH - 10:
            self.newline()
        x, ly = self.x, self.y
        if kind == "box":
            svg.rect(x, ly - 9, 12, 10, colour, cls=cls)
        elif kind == "label":
            width = len(label) * 5.8 + 6
            svg.text(x, ly, label, 10, extra=' font-weight="bold"')
            self.x += width
            return
        elif kind == "line":
            svg.line(x, ly - 4, x + 12, ly - 4, colour, cls=cls, extra=' stroke-width="1.5"')
        else:
            svg.line(x, ly - 4, x + 12, ly - 4, colour, cls=cls, extra=' stroke-width="1.2" stroke-dasharray="4 2"')
        svg.text(x + 16, ly, label, 10)
        self.x += width


def _draw_legend(svg: _Svg, y: float) -> None:
    """The legend: step and phase colours; suspend, gap and timeout; CF state and SF colours."""
    svg.add('<g class="legend">')
    pen = _Legend(svg, y)
    pen.item("steps:", "none", kind="label")
    for s, c in STEP_COLOURS.items():
        pen.item(s, c)
    pen.item("phases:", "none", kind="label")
    for s, c in PHASE_COLOURS.items():
        pen.item(s, c)
    pen.newline()
    pen.item("guest suspended", SUSPEND_FILL)
    pen.item("heartbeat gap (max over observers)", GAP_COLOUR, kind="line")
    pen.item("effective timeout (min over observers)", TIMEOUT_COLOUR, kind="dash")
    pen.newline()
    pen.item("CF state:", "none", kind="label")
    for s, c in STATE_COLOURS.items():
        pen.item(s, c)
    pen.item("other", OTHER_STATE_COLOUR)
    pen.item("SF:", "none", kind="label")
    for s, c in SF_COLOURS.items():
        pen.item(s, c)
    svg.add("</g>")


# ------------------------------------------------------------------------------------- the document
def render_svg(journal: Mapping[str, Any]) -> str:
    """The journal as one self-contained SVG document (a str ending with a newline).

    Coordinates: time axis from ``PLOT_X0`` (t = first time in the journal) to ``PLOT_X1`` (last
    time); element classes used: ``lane node`` (one ``<g>`` per CF node, ``id="lane-NODE"``),
    ``step-bar``, ``phase``, ``suspend``, ``gap``, ``timeout``, ``cf-state``, ``sf-state``,
    ``tick`` / ``tick-label``, ``legend``.
    """
    if not isinstance(journal, Mapping):
        journal = {}
    events = _timed(journal.get("events"))
    progress = _timed(journal.get("progress"))
    merged = merge_samples(journal)
    times = _all_times(journal)
    t_first = min(times) if times else 0.0
    t_last = max(times) if times else 1.0
    nodes = list(merged)
    height = HEADER_H + PROC_H + NODE_H * len(nodes) + AXIS_H + 72
    f = _Frame(_Scale(t_first, t_last), t_first, t_last, HEADER_H, HEADER_H + PROC_H + NODE_H * len(nodes))
    svg = _Svg()
    svg.add('<?xml version="1.0" encoding="UTF-8"?>')
    svg.add(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_n(height)}" '
        f'viewBox="0 0 {WIDTH} {_n(height)}" {FONT}>'
    )
    domain = _str(journal.get("domain"), "?")
    svg.add(f"<title>clovm migrate {_esc(domain)}</title>")
    svg.rect(0, 0, WIDTH, height, "#ffffff")
    _draw_header(svg, f, journal, domain, times)
    step, ticks = _time_ticks(f.sc)
    _draw_grid(svg, f, ticks)
    _draw_suspend(svg, f, journal)
    _draw_procedure_lane(svg, f, events, progress)
    rounds = _Rounds(merged, t_last)
    for idx, x_node in enumerate(nodes):
        _draw_node_lane(svg, f, rounds, journal, x_node, merged[x_node], HEADER_H + PROC_H + NODE_H * idx)
    _draw_time_axis(svg, f, step, ticks, bool(times))
    _draw_legend(svg, f.lanes_bottom + AXIS_H)
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n"


def write_svg(path: StrPath, journal: Mapping[str, Any]) -> None:
    """Write :func:`render_svg` of ``journal`` to ``path`` atomically (mode 0644)."""
    atomic_write(path, render_svg(journal), mode=0o644)
