"""Pictures and summaries of a ``clovm migrate`` journal (pure functions; see docs/safe-migration.md).

:func:`render_svg` turns the journal dict (the "Journal" section of ``docs/safe-migration.md``)
into one self-contained SVG document, the picture an operator looks at instead of the logs:

* a header (domain, CF node, source → target, scoped or manual window, outcome, result);
* the *procedure* lane: one coloured bar per step (``events`` begin → done; a step that was
  begun but not done is drawn open and dashed up to the end of the journal or to the next step's
  begin) and note markers; under it the *ldm migration* sub-lane with the ldmd phases of
  ``progress``;
* the guest's suspend interval(s) highlighted across every lane (:func:`suspend_intervals`);
* one lane per CF node: the heartbeat gap (max over every observer, :func:`merge_samples`) as
  a polyline against the effective timeout (dashed), on a per-lane ``log(1 + s)`` y scale so
  that a 1 s gap stays visible under a 600 s timeout; above the plot the CF state band (worst
  state any observer holds the node in) and a thin SF band (``sf`` of the node's own samples);
* a time axis in emulated seconds since the earliest time in the journal, and a legend.

:func:`render_text_summary` is the one-screen text of ``clovm migrate --status``.
:func:`write_svg` is the only function with I/O (one atomic write).

Output is deterministic: the same journal gives the same bytes. Malformed entries (non-dict
items, missing or non-numeric ``t``) are skipped, never raised on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import escape

from .fsutil import StrPath, atomic_write

__all__ = [
    "GapScale",
    "NodePoint",
    "merge_samples",
    "suspend_intervals",
    "tick_step",
    "render_svg",
    "render_text_summary",
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

_STATE_RANK = {"UP": 0, "LEFTCLUSTER": 2, "DOWN": 3}  # anything else ranks 1
_TERMINAL_PHASES = {"done", "cancelled", "failed"}
_SUSPENDED_PHASES = {"suspend", "hand-off"}

# ------------------------------------------------------------------------------------------ layout
WIDTH = 1200
PLOT_X0 = 210.0
PLOT_X1 = 1170.0
HEADER_H = 84.0
PROC_H = 78.0  # procedure lane: step labels, step bars, phase sub-lane
NODE_H = 124.0  # one CF node lane
AXIS_H = 52.0
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
ROUND_TOLERANCE_S = 1.0  # samples of distinct observers within this of a round's start form a round
_CHAR_W = 6.2  # estimated width of one character at font-size 11
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ------------------------------------------------------------------------------------- tolerant reads
def _num(value: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN and infinities are not times)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _dicts(value: Any) -> list[dict]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _timed(value: Any) -> list[dict]:
    """The dict items of a list that carry a numeric ``t``, stably sorted by ``t``."""
    items = [x for x in _dicts(value) if _num(x.get("t")) is not None]
    return sorted(items, key=lambda x: _num(x["t"]))  # type: ignore[arg-type, return-value]


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _phase(value: Any) -> str:
    """Normalised ldmd phase name: ``handoff`` / ``Hand-Off`` → ``hand-off``, ``precopy`` → ``pre-copy``."""
    p = _str(value, "?").strip().lower().replace("_", "-")
    return {"handoff": "hand-off", "precopy": "pre-copy", "suspended": "suspend"}.get(p, p)


def _clean(text: Any) -> str:
    """Text safe for XML 1.0 (control characters replaced)."""
    return _CTRL.sub("?", text if isinstance(text, str) else str(text))


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


# --------------------------------------------------------------------------------------- analysis
@dataclass(frozen=True, slots=True)
class NodePoint:
    """The merged view of one CF node at one sampling round.

    ``gap``: max over observers that report a gap (None if none does, e.g. every observer holds it
    not UP); ``timeout``: min of the observers' effective timeouts (None if none reports one);
    ``state``: the worst state an observer holds it in (DOWN > LEFTCLUSTER > other > UP), None if
    none reports one; ``sf``: the node's own ``sf`` in this round (None if it did not answer);
    ``observers``: the observers that reported the node, sorted.
    """

    t: float
    gap: float | None
    timeout: float | None
    state: str | None
    sf: str | None
    observers: tuple[str, ...]


def _rounds(samples: Sequence[dict]) -> list[tuple[float, list[dict]]]:
    """Group time-sorted samples into sampling rounds: a round ends when an observer repeats or a
    sample is more than the tolerance after the round's first one. Round time = its first t.

    Tolerance: half the median interval between two samples of one observer (the sampling
    cadence), at most ROUND_TOLERANCE_S, so that a node missing from a round (suspended guest)
    does not pull the next round's sample into it."""
    last_of: dict[str, float] = {}
    intervals: list[float] = []
    for s in samples:
        t = _num(s.get("t"))
        assert t is not None
        observer = _str(s.get("node"), "?")
        if observer in last_of and t > last_of[observer]:
            intervals.append(t - last_of[observer])
        last_of[observer] = t
    tolerance = ROUND_TOLERANCE_S
    if intervals:
        tolerance = min(tolerance, sorted(intervals)[len(intervals) // 2] / 2)
    rounds: list[tuple[float, list[dict]]] = []
    seen: set[str] = set()
    for s in samples:
        t = _num(s.get("t"))
        assert t is not None
        observer = _str(s.get("node"), "?")
        if not rounds or observer in seen or t - rounds[-1][0] > tolerance:
            rounds.append((t, []))
            seen = set()
        rounds[-1][1].append(s)
        seen.add(observer)
    return rounds


def _node_order(journal: Mapping[str, Any], extra: Iterable[str]) -> list[str]:
    listed = [n for n in journal.get("nodes") or [] if isinstance(n, str)] if isinstance(journal.get("nodes"), list) else []
    order = list(dict.fromkeys(listed))
    order += sorted(set(extra) - set(order))
    return order


def merge_samples(journal: Mapping[str, Any]) -> dict[str, list[NodePoint]]:
    """Per CF node, its merged view at every sampling round in which some observer reported it.

    Keys: the journal's ``nodes`` (in their order) then any other node seen in ``samples``
    (sorted); a node never reported has an empty list. See :class:`NodePoint` for the merge.
    """
    samples = _timed(journal.get("samples"))
    seen_nodes: set[str] = set()
    for s in samples:
        seen_nodes.add(_str(s.get("node"), "?"))
        peers = s.get("peers")
        if isinstance(peers, dict):
            seen_nodes.update(k for k in peers if isinstance(k, str))
    result: dict[str, list[NodePoint]] = {n: [] for n in _node_order(journal, seen_nodes)}
    for t, members in _rounds(samples):
        views: dict[str, list[tuple[str, dict]]] = {}
        own_sf: dict[str, str] = {}
        for s in members:
            observer = _str(s.get("node"), "?")
            if isinstance(s.get("sf"), str):
                own_sf[observer] = s["sf"]
            peers = s.get("peers")
            if isinstance(peers, dict):
                for x, view in peers.items():
                    if isinstance(x, str) and isinstance(view, dict):
                        views.setdefault(x, []).append((observer, view))
        for x in result:
            vs = views.get(x, [])
            if not vs and x not in own_sf:
                continue
            gaps = [g for g in (_num(v.get("gap")) for _, v in vs) if g is not None]
            timeouts = [g for g in (_num(v.get("timeout")) for _, v in vs) if g is not None]
            states = [v["state"] for _, v in vs if isinstance(v.get("state"), str)]
            state = max(states, key=lambda s: (_STATE_RANK.get(s, 1), s)) if states else None
            result[x].append(
                NodePoint(
                    t=t,
                    gap=max(gaps) if gaps else None,
                    timeout=min(timeouts) if timeouts else None,
                    state=state,
                    sf=own_sf.get(x),
                    observers=tuple(sorted({o for o, _ in vs})),
                )
            )
    return result


def suspend_intervals(journal: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The guest's suspend intervals from ``progress`` (absolute emulated seconds).

    An interval starts at the first sample whose phase is ``suspend``; it runs through the
    following ``suspend`` / ``hand-off`` (``handoff``) samples and ends at the first later
    sample of another phase (``done``, ``cancelled``...: the guest runs again by then), or, when
    there is none, at the last ``suspend`` / ``hand-off`` sample.
    """
    out: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for p in _timed(journal.get("progress")):
        t = _num(p["t"])
        assert t is not None
        phase = _phase(p.get("phase"))
        if start is None:
            if phase == "suspend":
                start = last = t
        elif phase in _SUSPENDED_PHASES:
            last = t
        else:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, last))
    return out


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


@dataclass(frozen=True, slots=True)
class _StepBar:
    step: str
    t0: float
    t1: float
    state: str  # done, running (unfinished, journal end), interrupted (another begin came first)
    text: str


def _step_bars(events: Sequence[dict], t_end: float) -> list[_StepBar]:
    bars: list[_StepBar] = []
    for i, e in enumerate(events):
        if e.get("what") != "begin":
            continue
        step = _str(e.get("step"), "?")
        t0 = _num(e["t"])
        assert t0 is not None
        end: tuple[float, str] | None = None
        for later in events[i + 1 :]:
            lt = _num(later["t"])
            assert lt is not None
            if later.get("what") == "done" and later.get("step") == step:
                end = (lt, "done")
                break
            if later.get("what") == "begin":
                end = (lt, "interrupted")
                break
        bars.append(_StepBar(step, t0, *(end or (t_end, "running")), text=_str(e.get("text"))))
    return bars


@dataclass(frozen=True, slots=True)
class _PhaseSeg:
    phase: str
    t0: float
    t1: float
    percent: str


def _phase_segments(progress: Sequence[dict], events: Sequence[dict], t_end: float) -> list[_PhaseSeg]:
    """Runs of equal phase; each lasts until the next run. The last run of a non-terminal phase
    lasts until the ``migrate`` step's next ``done`` event, else to the end of the journal."""
    runs: list[tuple[str, float, str]] = []
    for p in progress:
        phase = _phase(p.get("phase"))
        pct = _num(p.get("percent"))
        pct_s = f"{pct:.0f}%" if pct is not None else ""
        t = _num(p["t"])
        assert t is not None
        if runs and runs[-1][0] == phase:
            runs[-1] = (phase, runs[-1][1], pct_s or runs[-1][2])
        else:
            runs.append((phase, t, pct_s))
    segs: list[_PhaseSeg] = []
    for i, (phase, t0, pct) in enumerate(runs):
        if i + 1 < len(runs):
            t1 = runs[i + 1][1]
        elif phase in _TERMINAL_PHASES:
            t1 = t0
        else:
            dones = [
                _num(e["t"]) for e in events if e.get("step") == "migrate" and e.get("what") == "done"
            ]
            later = [t for t in dones if t is not None and t >= t0]
            t1 = min(later) if later else t_end
        segs.append(_PhaseSeg(phase, t0, t1, pct))
    return segs


def _all_times(journal: Mapping[str, Any]) -> list[float]:
    times: list[float] = []
    for key in ("events", "progress", "samples"):
        times += [_num(x["t"]) for x in _timed(journal.get(key))]  # type: ignore[misc]
    return times


# ------------------------------------------------------------------------------------- SVG output
class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, cls: str = "", extra: str = "",
             title: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        body = f"<title>{_esc(title)}</title>" if title else ""
        open_ = (f'<rect{c} x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" height="{_n(h)}" '
                 f'fill="{fill}"{extra}')
        self.add(open_ + (f">{body}</rect>" if body else "/>"))

    def text(self, x: float, y: float, s: str, size: float = 11, anchor: str = "start", cls: str = "",
             extra: str = "") -> None:
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
            for k in range(0, 8):
                v = 10.0**k
                if self.linear_top < v <= self.log_top / 1.3 and last_y - self.y(v) >= 10:
                    out.append(v)
                    last_y = self.y(v)
        return out

    def label(self) -> str:
        top = f"{self.linear_top:g}"
        return f"gap s: linear ≤ {top}, log above" if self.split else f"gap s: linear 0–{top}"


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
    sc = _Scale(t_first, t_last)
    nodes = list(merged)
    height = HEADER_H + PROC_H + NODE_H * len(nodes) + AXIS_H + 72
    lanes_top = HEADER_H
    lanes_bottom = HEADER_H + PROC_H + NODE_H * len(nodes)
    svg = _Svg()
    svg.add('<?xml version="1.0" encoding="UTF-8"?>')
    svg.add(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_n(height)}" '
            f'viewBox="0 0 {WIDTH} {_n(height)}" {FONT}>')
    domain = _str(journal.get("domain"), "?")
    svg.add(f"<title>clovm migrate {_esc(domain)}</title>")
    svg.rect(0, 0, WIDTH, height, "#ffffff")

    # ---- header
    result = journal.get("result")
    result_s = result if isinstance(result, str) else f"in progress (step {_str(journal.get('step'), '?')})"
    node = _str(journal.get("node"))
    svg.text(12, 26, f"clovm migrate {domain}" + (f" (CF node {node})" if node else ""), 18, cls="title",
             extra=' font-weight="bold"')
    src, dst = _str(journal.get("source"), "?"), _str(journal.get("target"), "?")
    ss, ts = _str(journal.get("source_server")), _str(journal.get("target_server"))
    route = f"{src} → {dst}" + (f"   (server {ss} → {ts})" if ss or ts else "")
    window = ("scoped window: only the migrating node's timeout widened" if journal.get("scoped") is True
              else "manual window: cluster-wide 600 s CLUSTER_TIMEOUT")
    svg.text(12, 48, f"{route}   ·   {window}", 12, cls="route")
    outcome = journal.get("outcome")
    line3 = f"outcome: {outcome if isinstance(outcome, str) else '—'}"
    complete_to = journal.get("complete_to")
    if isinstance(complete_to, str):
        line3 += f"   ·   SF completed to {complete_to}"
    if times:
        line3 += f"   ·   t = 0 at emulated {_secs(t_first)} s, span {_secs(t_last - t_first)} s"
    svg.text(12, 68, line3, 12, cls="outcome")
    svg.text(WIDTH - 20, 30, f"result: {result_s}", 16, anchor="end", cls="result",
             extra=f' font-weight="bold" fill="{RESULT_COLOURS.get(_str(result), "#555555")}"')

    # ---- vertical grid + time ticks (drawn first, under everything)
    step = tick_step(sc.span)
    ticks: list[float] = []
    k = 0
    while k * step <= sc.span + 1e-9 and k < 1000:
        ticks.append(k * step)
        k += 1
    for rel in ticks:
        x = sc.x(t_first + rel)
        svg.line(x, lanes_top, x, lanes_bottom, "#e6e6e6", cls="grid")

    # ---- suspend highlight across the whole height
    for i, (s0, s1) in enumerate(suspend_intervals(journal)):
        x0, x1 = sc.x(s0), sc.x(s1)
        svg.rect(x0, lanes_top, max(x1 - x0, 1.0), lanes_bottom - lanes_top, SUSPEND_FILL, cls="suspend",
                 extra=f' id="suspend-{i}" fill-opacity="0.14"',
                 title=f"guest suspended {s1 - s0:.2f} s (t {_secs(s0 - t_first)} → {_secs(s1 - t_first)} s)")
        svg.text((x0 + x1) / 2, lanes_top + 10, f"guest suspended {s1 - s0:.1f} s", 10, anchor="middle",
                 cls="suspend-label", extra=f' fill="{SUSPEND_FILL}" font-weight="bold"')

    # ---- procedure lane
    y = lanes_top
    svg.line(0, y, WIDTH, y, "#999999")
    svg.add('<g class="lane procedure" id="lane-procedure">')
    svg.text(12, y + 40, "procedure", 12, extra=' font-weight="bold"')
    svg.text(12, y + 66, "ldm migration", 11, extra=' fill="#555555"')
    bar_y, bar_h = y + 30, 16.0
    label_ends = [-1e9, -1e9]
    for bar in _step_bars(events, t_last):
        x0, x1 = sc.x(bar.t0), sc.x(bar.t1)
        colour = STEP_COLOURS.get(bar.step, OTHER_STEP_COLOUR)
        title = f"{bar.step}: t {_secs(bar.t0 - t_first)} → {_secs(bar.t1 - t_first)} s ({bar.state})"
        if bar.text:
            title += f" — {bar.text}"
        if bar.state == "done":
            svg.rect(x0, bar_y, max(x1 - x0, 1.5), bar_h, colour, cls="step-bar", title=title)
        else:
            svg.rect(x0, bar_y, max(x1 - x0, 1.5), bar_h, colour, cls=f"step-bar {bar.state}", title=title,
                     extra=f' fill-opacity="0.35" stroke="{colour}" stroke-dasharray="4 2"')
        label = bar.step + ("" if bar.state == "done" else f" ({bar.state})")
        width = len(label) * _CHAR_W
        level = 0 if label_ends[0] < x0 else 1 if label_ends[1] < x0 else 0
        label_ends[level] = x0 + width + 4
        svg.text(x0, bar_y - 4 - 11 * level, label, 11, cls="step-label", extra=f' fill="{colour}"')
    for e in events:
        if e.get("what") == "note":
            x = sc.x(_num(e["t"]))  # type: ignore[arg-type]
            d = f"M{_n(x)} {_n(bar_y + bar_h + 1)} l3 4 l-3 4 l-3 -4 z"
            svg.add(f'<path class="note" d="{d}" fill="#333333"><title>{_esc(e.get("step", ""))}: '
                    f'{_esc(_str(e.get("text")))}</title></path>')
    ph_y, ph_h = y + 56, 14.0
    for seg in _phase_segments(progress, events, t_last):
        x0, x1 = sc.x(seg.t0), sc.x(seg.t1)
        colour = PHASE_COLOURS.get(seg.phase, OTHER_PHASE_COLOUR)
        title = f"{seg.phase} {seg.percent} at t {_secs(seg.t0 - t_first)} s".replace("  ", " ")
        svg.rect(x0, ph_y, max(x1 - x0, 2.0), ph_h, colour, cls="phase", title=title)
        if x1 - x0 >= len(seg.phase) * 5.6 + 6:
            svg.text(x0 + 3, ph_y + 11, seg.phase, 10, cls="phase-label")
    svg.add("</g>")

    # ---- one lane per CF node
    migrating = _str(journal.get("node"))
    base_timeouts = journal.get("timeouts") if isinstance(journal.get("timeouts"), dict) else {}
    round_times = sorted({p.t for pts in merged.values() for p in pts})
    intervals = [b - a for a, b in zip(round_times, round_times[1:])]
    typical = sorted(intervals)[len(intervals) // 2] if intervals else 1.0

    round_index = {t: i for i, t in enumerate(round_times)}

    def seg_end(t: float) -> float:
        """A round's value holds until the next round, at most 1.5 sampling intervals (no data
        after that), and the last one for one interval (clipped to the journal's end)."""
        i = round_index[t]
        if i + 1 < len(round_times):
            return min(round_times[i + 1], t + 1.5 * typical)
        return min(t + typical, max(t_last, t))

    for idx, x_node in enumerate(nodes):
        pts = merged[x_node]
        top = HEADER_H + PROC_H + NODE_H * idx
        svg.line(0, top, WIDTH, top, "#bbbbbb")
        svg.add(f'<g class="lane node" id="lane-{_attr(_ident(x_node))}">')
        svg.add(f"<title>CF node {_esc(x_node)}</title>")
        svg.text(12, top + 22, x_node, 13, cls="node-label", extra=' font-weight="bold"')
        svg.text(12, top + 37, "migrating node" if x_node == migrating else "CF node", 10, extra=' fill="#555555"')
        base = _num(base_timeouts.get(x_node)) if isinstance(base_timeouts, dict) else None
        if base is not None:
            svg.text(12, top + 50, f"CLUSTER_TIMEOUT {base:g} s", 10, cls="cluster-timeout", extra=' fill="#555555"')
        # state band and SF band
        band_y, sf_y = top + 6, top + 19
        svg.text(PLOT_X0 - 6, band_y + 8, "CF", 9, anchor="end", extra=' fill="#555555"')
        svg.text(PLOT_X0 - 6, sf_y + 5, "SF", 8, anchor="end", extra=' fill="#555555"')
        for p in pts:
            x0, x1 = sc.x(p.t), sc.x(seg_end(p.t))
            if p.state is not None:
                who = ", ".join(p.observers)
                svg.rect(x0, band_y, x1 - x0, 10, STATE_COLOURS.get(p.state, OTHER_STATE_COLOUR), cls="cf-state",
                         title=f"{x_node} {p.state} (seen by {who}) at t {_secs(p.t - t_first)} s")
            if p.sf is not None:
                svg.rect(x0, sf_y, x1 - x0, 4, SF_COLOURS.get(p.sf, OTHER_SF_COLOUR), cls="sf-state",
                         title=f"{x_node} SF {p.sf} at t {_secs(p.t - t_first)} s")
        # gap plot
        py0, py1 = top + 30, top + NODE_H - 8  # top and bottom of the plot area
        ys = GapScale([p.gap for p in pts if p.gap is not None],
                      [p.timeout for p in pts if p.timeout is not None], py0, py1)
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
            svg.text((PLOT_X0 + PLOT_X1) / 2, (py0 + py1) / 2, "no samples of this node", 11, anchor="middle",
                     cls="empty", extra=' fill="#999999"')
        # timeout: step line
        d: list[str] = []
        pen_down = False
        for p in pts:
            if p.timeout is None:
                pen_down = False
                continue
            x0, x1, yv = sc.x(p.t), sc.x(seg_end(p.t)), gy(p.timeout)
            d.append(f"{'L' if pen_down else 'M'}{_n(x0)} {_n(yv)} L{_n(x1)} {_n(yv)}")
            pen_down = True
        timeouts = sorted({p.timeout for p in pts if p.timeout is not None})
        if d:
            svg.add(f'<path class="timeout" d="{" ".join(d)}" fill="none" stroke="{TIMEOUT_COLOUR}" '
                    f'stroke-width="1.2" stroke-dasharray="6 4"><title>{_esc(x_node)} effective timeout '
                    f'{_esc(", ".join(f"{v:g}" for v in timeouts))} s</title></path>')
            label_ys: list[float] = []
            for v in reversed(timeouts):  # largest first; skip labels that would overlap
                yv = gy(v)
                ly_ = yv - 3 if yv - 3 >= py0 + 8 else yv + 9
                if all(abs(ly_ - other) >= 10 for other in label_ys):
                    svg.text(PLOT_X1 - 2, ly_, f"timeout {v:g} s", 9, anchor="end", cls="timeout-label",
                             extra=f' fill="{TIMEOUT_COLOUR}"')
                    label_ys.append(ly_)
        # gap: polylines broken where no observer has a gap, the node is missing from a round, or
        # no round was taken for more than 1.5 sampling intervals
        runs: list[list[NodePoint]] = [[]]
        previous_round, previous_t = -2, -math.inf
        for p in pts:
            this_round = round_index[p.t]
            missing = this_round != previous_round + 1 or p.t - previous_t > 1.5 * typical
            if (p.gap is None or missing) and runs[-1]:
                runs.append([])
            if p.gap is not None:
                runs[-1].append(p)
            previous_round, previous_t = this_round, p.t
        for run in runs:
            if not run:
                continue
            points = " ".join(f"{_n(sc.x(p.t))},{_n(gy(p.gap))}" for p in run)  # type: ignore[arg-type]
            if len(run) == 1:
                svg.add(f'<circle class="gap" cx="{_n(sc.x(run[0].t))}" cy="{_n(gy(run[0].gap))}" r="2" '  # type: ignore[arg-type]
                        f'fill="{GAP_COLOUR}"/>')
            else:
                svg.add(f'<polyline class="gap" points="{points}" fill="none" stroke="{GAP_COLOUR}" '
                        f'stroke-width="1.5"/>')
        for p in pts:
            if p.gap is not None and p.timeout is not None and p.gap >= p.timeout:
                svg.add(f'<circle class="over-timeout" cx="{_n(sc.x(p.t))}" cy="{_n(gy(p.gap))}" r="3.5" '
                        f'fill="none" stroke="{TIMEOUT_COLOUR}" stroke-width="1.5"><title>gap {p.gap:g} s ≥ '
                        f'timeout {p.timeout:g} s</title></circle>')
        gapped = [p for p in pts if p.gap is not None]
        if gapped:
            worst = max(gapped, key=lambda p: (p.gap, -p.t))  # type: ignore[arg-type, return-value]
            svg.text(PLOT_X0 + 4, py0 + 11, f"max gap {worst.gap:.1f} s at t {_secs(worst.t - t_first)} s", 9,
                     cls="maxgap-label", extra=f' fill="{GAP_COLOUR}"')
        svg.add("</g>")

    # ---- time axis
    ay = lanes_bottom
    svg.line(PLOT_X0, ay, PLOT_X1, ay, "#333333", cls="axis")
    for rel in ticks:
        x = sc.x(t_first + rel)
        svg.line(x, ay, x, ay + 5, "#333333", cls="tick")
        label = f"{rel:g}" if step >= 1 else f"{rel:.{max(0, -math.floor(math.log10(step)) + 1)}f}".rstrip("0").rstrip(".")
        svg.text(x, ay + 17, label or "0", 10, anchor="middle", cls="tick-label")
    svg.text((PLOT_X0 + PLOT_X1) / 2, ay + 34, "emulated seconds since the first journal entry", 11,
             anchor="middle", cls="axis-label")
    if not times:
        svg.text((PLOT_X0 + PLOT_X1) / 2, lanes_top + 20, "the journal has no timed entries yet", 12,
                 anchor="middle", cls="empty", extra=' fill="#999999"')

    # ---- legend
    ly = ay + AXIS_H
    svg.add('<g class="legend">')
    x = 12.0

    def swatch(label: str, colour: str, cls: str = "legend-item", kind: str = "box") -> None:
        nonlocal x, ly
        width = 16 + len(label) * 5.8 + 14
        if x + width > WIDTH - 10:
            x, ly = 12.0, ly + 18
        if kind == "box":
            svg.rect(x, ly - 9, 12, 10, colour, cls=cls)
        elif kind == "label":
            width = len(label) * 5.8 + 6
            svg.text(x, ly, label, 10, extra=' font-weight="bold"')
            x += width
            return
        elif kind == "line":
            svg.line(x, ly - 4, x + 12, ly - 4, colour, cls=cls, extra=' stroke-width="1.5"')
        else:
            svg.line(x, ly - 4, x + 12, ly - 4, colour, cls=cls, extra=' stroke-width="1.2" stroke-dasharray="4 2"')
        svg.text(x + 16, ly, label, 10)
        x += width

    swatch("steps:", "none", kind="label")
    for s, c in STEP_COLOURS.items():
        swatch(s, c)
    swatch("phases:", "none", kind="label")
    for s, c in PHASE_COLOURS.items():
        swatch(s, c)
    x, ly = 12.0, ly + 18
    swatch("guest suspended", SUSPEND_FILL)
    swatch("heartbeat gap (max over observers)", GAP_COLOUR, kind="line")
    swatch("effective timeout (min over observers)", TIMEOUT_COLOUR, kind="dash")
    x, ly = 12.0, ly + 18
    swatch("CF state:", "none", kind="label")
    for s, c in STATE_COLOURS.items():
        swatch(s, c)
    swatch("other", OTHER_STATE_COLOUR)
    swatch("SF:", "none", kind="label")
    for s, c in SF_COLOURS.items():
        swatch(s, c)
    svg.add("</g>")
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n"


def write_svg(path: StrPath, journal: Mapping[str, Any]) -> None:
    """Write :func:`render_svg` of ``journal`` to ``path`` atomically (mode 0644)."""
    atomic_write(path, render_svg(journal), mode=0o644)


# ------------------------------------------------------------------------------------ text summary
_SUMMARY_WIDTH = 100
_MAX_NOTES = 4


def _cut(text: str, width: int = _SUMMARY_WIDTH) -> str:
    text = re.sub(r"\s", " ", _clean(text))
    return text if len(text) <= width else text[: width - 1] + "…"


def render_text_summary(journal: Mapping[str, Any]) -> str:
    """A one-screen plain-text report of the journal (ends with a newline): route, steps with
    their times (emulated seconds since the first entry), migration phases and suspend, CF gaps,
    notes, proof checks (``ok`` / ``FAILED`` with detail) and the result."""
    if not isinstance(journal, Mapping):
        journal = {}
    events = _timed(journal.get("events"))
    progress = _timed(journal.get("progress"))
    times = _all_times(journal)
    t_first = min(times) if times else 0.0
    t_last = max(times) if times else 0.0
    lines: list[str] = []
    domain = _str(journal.get("domain"), "?")
    node = _str(journal.get("node"))
    scoped = journal.get("scoped") is True
    lines.append(_cut(f"clovm migrate {domain}" + (f" (CF node {node})" if node else "")
                      + f": {_str(journal.get('source'), '?')} -> {_str(journal.get('target'), '?')}"
                      + (" [scoped window]" if scoped else " [manual window]")))
    result = journal.get("result")
    outcome = journal.get("outcome")
    status = f"step: {_str(journal.get('step'), '?')}   outcome: {outcome if isinstance(outcome, str) else '-'}"
    if isinstance(journal.get("complete_to"), str):
        status += f"   SF completed to: {journal['complete_to']}"
    lines.append(_cut(status))
    bars = _step_bars(events, t_last)
    if bars:
        lines.append("steps (emulated s since the first entry):")
        for b in bars:
            end = f"{b.t1 - t_first:8.1f}" if b.state != "running" else "       …"
            dur = f"{b.t1 - b.t0:7.1f} s" if b.state != "running" else f"{b.t1 - b.t0:7.1f} s+"
            lines.append(_cut(f"  {b.step:<10} {b.t0 - t_first:8.1f} -> {end}  {dur}  {b.state}"))
    else:
        lines.append("steps: none recorded yet")
    if progress:
        segs = _phase_segments(progress, events, t_last)
        parts = []
        for seg in segs:
            if seg.phase in _TERMINAL_PHASES:
                parts.append(f"{seg.phase} at {seg.t0 - t_first:.1f}")
            else:
                parts.append(f"{seg.phase} {seg.t1 - seg.t0:.1f} s")
        lines.append(_cut("migration: " + ", ".join(parts)))
    for s0, s1 in suspend_intervals(journal):
        lines.append(f"guest suspended {s1 - s0:.1f} s (t {s0 - t_first:.1f} -> {s1 - t_first:.1f})")
    merged = merge_samples(journal)
    cf_parts = []
    trouble = []
    for x_node, pts in merged.items():
        gapped = [p for p in pts if p.gap is not None]
        if gapped:
            worst = max(gapped, key=lambda p: (p.gap, -p.t))  # type: ignore[arg-type, return-value]
            to = f"{worst.timeout:g}" if worst.timeout is not None else "?"
            cf_parts.append(f"{x_node} {worst.gap:.1f}/{to}")
        bad = sorted({p.state for p in pts if p.state not in (None, "UP")})  # type: ignore[type-var]
        if bad:
            trouble.append(f"{x_node} {'/'.join(bad)}")  # type: ignore[arg-type]
    if cf_parts:
        lines.append(_cut("CF max gap / timeout then (s): " + ", ".join(cf_parts)))
        lines.append(_cut("CF not UP: " + (", ".join(trouble) if trouble else "none")))
    notes = [e for e in events if e.get("what") == "note"]
    if notes:
        lines.append("notes:" + (f" ({len(notes) - _MAX_NOTES} earlier not shown)" if len(notes) > _MAX_NOTES else ""))
        for e in notes[-_MAX_NOTES:]:
            t = _num(e["t"])
            lines.append(_cut(f"  {t - t_first:8.1f} {_str(e.get('step'), '?')}: {_str(e.get('text'))}"))  # type: ignore[operator]
    proof = _dicts(journal.get("proof"))
    if proof:
        failed = sum(1 for p in proof if p.get("ok") is not True)
        lines.append(f"proof: {len(proof) - failed}/{len(proof)} checks ok")
        for p in proof:
            mark = "ok    " if p.get("ok") is True else "FAILED"
            detail = _str(p.get("detail"))
            lines.append(_cut(f"  {mark} {_str(p.get('name'), '?')}" + (f": {detail}" if detail else "")))
    else:
        lines.append("proof: not run yet")
    lines.append(f"result: {result}" if isinstance(result, str) else "result: none yet (unfinished; "
                 "`clovm migrate --resume` continues it)")
    return "\n".join(lines) + "\n"
