"""Reading a ``clovm migrate`` journal for the pictures: tolerant reads and what is derived from them.

The journal is the dict of the "Journal" section of ``docs/safe-migration.md``. Malformed entries
(non-dict items, missing or non-numeric ``t``) are skipped, never raised on. Derived here, for
both :mod:`.svg` and :mod:`.summary`: the merged per-node view of the samples
(:func:`merge_samples`), the guest's suspend intervals (:func:`suspend_intervals`), the steps as
bars and the ldmd phases as segments, and every time in the journal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ROUND_TOLERANCE_S", "NodePoint", "merge_samples", "suspend_intervals"]

_STATE_RANK = {"UP": 0, "LEFTCLUSTER": 2, "DOWN": 3}  # anything else ranks 1
_TERMINAL_PHASES = {"done", "cancelled", "failed"}
_SUSPENDED_PHASES = {"suspend", "hand-off"}

ROUND_TOLERANCE_S = 1.0  # samples of distinct observers within this of a round's start form a round
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ------------------------------------------------------------------------------------- tolerant reads
def _num(value: Any) -> float | None:
    """A finite float, or None (bools, strings, NaN and infinities are not times)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _timed(value: Any) -> list[dict[str, Any]]:
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


def _rounds(samples: Sequence[dict[str, Any]]) -> list[tuple[float, list[dict[str, Any]]]]:
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
    rounds: list[tuple[float, list[dict[str, Any]]]] = []
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
    listed = (
        [n for n in journal.get("nodes") or [] if isinstance(n, str)] if isinstance(journal.get("nodes"), list) else []
    )
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
        views: dict[str, list[tuple[str, dict[str, Any]]]] = {}
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
        for x, points in result.items():
            vs = views.get(x, [])
            if not vs and x not in own_sf:
                continue
            gaps = [g for g in (_num(v.get("gap")) for _, v in vs) if g is not None]
            timeouts = [g for g in (_num(v.get("timeout")) for _, v in vs) if g is not None]
            states = [v["state"] for _, v in vs if isinstance(v.get("state"), str)]
            state = max(states, key=lambda s: (_STATE_RANK.get(s, 1), s)) if states else None
            points.append(
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


@dataclass(frozen=True, slots=True)
class _StepBar:
    step: str
    t0: float
    t1: float
    state: str  # done, running (unfinished, journal end), interrupted (another begin came first)
    text: str


def _step_bars(events: Sequence[dict[str, Any]], t_end: float) -> list[_StepBar]:
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


def _phase_segments(
    progress: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], t_end: float
) -> list[_PhaseSeg]:
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
    for i, (phase, t0, percent) in enumerate(runs):
        if i + 1 < len(runs):
            t1 = runs[i + 1][1]
        elif phase in _TERMINAL_PHASES:
            t1 = t0
        else:
            dones = [_num(e["t"]) for e in events if e.get("step") == "migrate" and e.get("what") == "done"]
            later = [t for t in dones if t is not None and t >= t0]
            t1 = min(later) if later else t_end
        segs.append(_PhaseSeg(phase, t0, t1, percent))
    return segs


def _all_times(journal: Mapping[str, Any]) -> list[float]:
    times: list[float] = []
    for key in ("events", "progress", "samples"):
        times += [_num(x["t"]) for x in _timed(journal.get(key))]  # type: ignore[misc]
    return times
