"""The one-screen text of a ``clovm migrate`` journal (what ``clovm migrate --status`` prints)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .journal import (
    _TERMINAL_PHASES,
    _all_times,
    _clean,
    _dicts,
    _num,
    _phase_segments,
    _step_bars,
    _str,
    _timed,
    merge_samples,
    suspend_intervals,
)

__all__ = ["render_text_summary"]

_SUMMARY_WIDTH = 100
_MAX_NOTES = 4
# the words of each stack (the journal's "stack"; journals written before the seam are SPARC's)
_WORDS = {
    "sparc": {"node": "CF node", "complete_to": "SF completed to", "membership": "CF"},
    "pacemaker": {"node": "cluster node", "complete_to": "fence device completed to", "membership": "corosync"},
}


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
    words = _WORDS.get(_str(journal.get("stack"), "sparc"), _WORDS["sparc"])
    lines.append(
        _cut(
            f"clovm migrate {domain}"
            + (f" ({words['node']} {node})" if node else "")
            + f": {_str(journal.get('source'), '?')} -> {_str(journal.get('target'), '?')}"
            + (" [scoped window]" if scoped else " [manual window]")
        )
    )
    result = journal.get("result")
    outcome = journal.get("outcome")
    status = f"step: {_str(journal.get('step'), '?')}   outcome: {outcome if isinstance(outcome, str) else '-'}"
    if isinstance(journal.get("complete_to"), str):
        status += f"   {words['complete_to']}: {journal['complete_to']}"
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
            worst = max(gapped, key=lambda p: (p.gap, -p.t))
            to = f"{worst.timeout:g}" if worst.timeout is not None else "?"
            cf_parts.append(f"{x_node} {worst.gap:.1f}/{to}")
        bad = sorted({p.state for p in pts if p.state not in (None, "UP")})
        if bad:
            trouble.append(f"{x_node} {'/'.join(bad)}")
    if cf_parts:
        lines.append(_cut(f"{words['membership']} max gap / timeout then (s): " + ", ".join(cf_parts)))
        lines.append(_cut(f"{words['membership']} not UP: " + (", ".join(trouble) if trouble else "none")))
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
    lines.append(
        f"result: {result}"
        if isinstance(result, str)
        else "result: none yet (unfinished; `clovm migrate --resume` continues it)"
    )
    return "\n".join(lines) + "\n"
