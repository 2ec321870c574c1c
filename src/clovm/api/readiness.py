"""When is a datacenter that ``clovm up`` started *ready*: its clusters formed and settled.

Three stages, in the order a cluster reaches them, each judged from every node's own answers on
its admin socket (``status``, ``cf_sample``, ``sdtool -s``):

1. **CF**: every node is UP and holds every peer of its cluster UP;
2. **RMS**: on every node of a guest cluster RMS has settled (nothing pending, no application
   unplaced: ``cf_sample``'s ``rms_busy``) and every node agrees where each userApplication is
   Online;
3. **SF**: on every guest node the shutdown facility runs and each of its 4·N agents has been
   initialised and tested successfully (``TestWorked`` / ``InitWorked``).

:func:`await_ready` reports each stage once it holds (a progress line) and returns None, or, at
the deadline, one line naming what is not ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .. import settings, topology
from ..runtime import rpc
from ..runtime.home import Home

Progress = Callable[[str], None]
POLL = 0.2  # real seconds between two looks


async def _ask(home: Home, host: str, op: str, **args: Any) -> Any:
    try:
        return await rpc.call_unix(home.node_socket(host), op, timeout=2.0, **args)
    except rpc.RpcError as e:
        return e


async def _look(home: Home, t: topology.Topology) -> dict[str, dict[str, Any]]:
    """Every node's answers: ``{host: {"status", "sample", "sd"}}`` (an answer may be an RpcError)."""
    guests = {g.name for g in t.guests}
    hosts = [h.name for h in t.hosts()]
    calls = [_ask(home, h, "status") for h in hosts]
    calls += [_ask(home, h, "cf_sample") for h in hosts if h in guests]
    calls += [_ask(home, h, "sdtool", flag="s") for h in hosts if h in guests]
    answers = iter(await asyncio.gather(*calls))
    out: dict[str, dict[str, Any]] = {h: {"status": next(answers)} for h in hosts}
    for key in ("sample", "sd"):
        for h in hosts:
            if h in guests:
                out[h][key] = next(answers)
    return out


def _cf(t: topology.Topology, seen: dict[str, dict[str, Any]]) -> str | None:
    for h in t.hosts():
        st = seen[h.name]["status"]
        if isinstance(st, Exception):
            return f"CF: {h.cf_name} does not answer ({st})"
        if st.get("local_state") != "UP":
            return f"CF: {h.cf_name} is {st.get('local_state')}"
        for peer, state in sorted((st.get("view") or {}).items()):
            if state != "UP":
                return f"CF: {h.cf_name} sees {peer} {state}"
    return None


def _rms(t: topology.Topology, seen: dict[str, dict[str, Any]]) -> tuple[str | None, list[str]]:
    placed: list[str] = []
    for cl in t.clusters:
        if cl.kind != "guest":
            continue
        hosts = [next(h for h in t.hosts() if h.cf_name == cf) for cf in cl.nodes]
        views = []
        sample: Any  # (every guest node was sampled)
        for h in hosts:
            sample, st = seen[h.name].get("sample"), seen[h.name]["status"]
            if isinstance(sample, Exception) or isinstance(st, Exception):
                return f"RMS: {h.cf_name} does not answer", []
            if sample.get("rms_busy"):
                why = sample.get("rms_activity") or "busy"
                return f"RMS: {h.cf_name} is {why}", []
            views.append((h.cf_name, st.get("apps") or {}))
        apps = views[0][1] if views else {}
        for cf, v in views:
            if v != apps:
                return f"RMS: {cf} does not agree where the applications run ({v} / {apps})", []
        for app, node in apps.items():
            if node is None:
                return f"RMS: {app} is Online nowhere", []
            placed.append(f"{app} Online on {node}")
    return None, placed


def _sf(t: topology.Topology, seen: dict[str, dict[str, Any]]) -> tuple[str | None, list[str]]:
    counts: list[str] = []
    for g in t.guests:
        sd = seen[g.name].get("sd")
        if isinstance(sd, Exception) or not isinstance(sd, dict):
            return f"SF: {g.cf_name} does not answer", []
        if not sd.get("running"):
            return f"SF: the shutdown facility is not running on {g.cf_name}", []
        rows = sd.get("rows") or []
        want = 4 * len(t.node_spec(g.name).nodes)
        if len(rows) != want:
            return f"SF: {g.cf_name} has {len(rows)} of its {want} agents", []
        for r in rows:
            if r[4:6] != ["TestWorked", "InitWorked"]:
                return f"SF: on {g.cf_name}, {r[1]} for {r[0]} is {r[4]}/{r[5]}", []
        counts.append(f"{len(rows)} on {g.cf_name}")
    return None, counts


def await_ready(
    home: Home,
    t: topology.Topology,
    timeout: float = settings.UP_READY_TIMEOUT,
    progress: Progress | None = None,
    since: float | None = None,
) -> str | None:
    """Wait until every stage holds (None) or ``timeout`` real seconds passed (the first thing
    not ready, one line). ``progress`` gets one line per stage as it comes to hold, with the real
    seconds since ``since`` (a ``time.monotonic()``; default: now)."""
    say = progress or (lambda _text: None)
    deadline = time.monotonic() + timeout
    start = time.monotonic() if since is None else since
    done: set[str] = set()
    while True:
        seen = asyncio.run(_look(home, t))
        missing = _cf(t, seen)
        if missing is None and "cf" not in done:
            done.add("cf")
            clusters = "; ".join(f"{cl.name}: {' '.join(cl.nodes)}" for cl in t.clusters)
            say(f"CF: all nodes UP ({clusters}) [{time.monotonic() - start:.1f} s]")
        if missing is None:
            missing, placed = _rms(t, seen)
            if missing is None and "rms" not in done:
                done.add("rms")
                say(f"RMS: {', '.join(placed) or 'settled (no userApplication)'} [{time.monotonic() - start:.1f} s]")
        if missing is None:
            missing, counts = _sf(t, seen)
            if missing is None and "sf" not in done:
                done.add("sf")
                say(
                    f"SF: every agent tested ({', '.join(counts) or 'no guest cluster'}) "
                    f"[{time.monotonic() - start:.1f} s]"
                )
        if missing is None:
            return None
        if time.monotonic() > deadline:
            return missing
        time.sleep(POLL)
