"""clovmmigrate benchmark: wall time of ``-p`` and of ``-u`` for 2, 4, 8 and 16 guest nodes.

Usage: .venv/bin/python bench/migration.py [--nodes 2,4,8,16] [--runs 3] [--time-scale 1] [--keep]

For every N in --nodes a generated topology (``clovm.topology.generate(N, max(2, N // 2))``: N
guests, one guest cluster of N nodes) is brought up at --time-scale (default 1: real time; at 10,
16 guests starting their shutdown facilities together still lose each other on 2 cores) in a
fresh temporary home, and we wait until ``sdtool -s`` on guest1 shows TestWorked/InitWorked in
every row. Then, --runs times (default 3), each time on a quiet cluster (every guest node's SF
has tested every row: the previous ``-u`` restarted them all):

  1. ``clovm exec primary1 -- clovmmigrate -p guest1``           (timed, subprocess)
  2. ``clovm exec primary1 -- clovmmigrate -u guest1 primary1``  (timed, subprocess)
  3. the same two commands in this process (``clovm.cli.admin.main_clovmmigrate``), timed
     without interpreter start-up, with every output line time-stamped so ``-u`` can be split
     into its settings part (up to the last "shutdown facility started") and its ``sf_wait``
     part (waiting on every node for the fresh init + test of the migrated node's agents).

This is the cancelled-migration form: no ``ldm migrate-domain`` in between, so the numbers
measure the cluster-wide setting changes (CF timeout, SF stop/start, SF entry rewrite, spconfig
save) and not the memory copy. ``-u`` includes ``sf_wait``: on every node, the fresh init and
test of the migrated node's four agents (docs/decisions.md).

Targets (issue): ``-p`` <= 0.5 s and ``-u`` <= 2 s for 2 nodes; the 16-node time <= 1.5x the 2-node
time. Medians are compared with the targets using the ``clovm exec`` wall times (what an operator
sees). Prints a table (MISSED next to a missed target); exits 0 unless the script itself breaks.
Every datacenter is stopped with ``clovm down`` in a ``finally``; no process is left behind.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from datacenter import (CLOVM, LAST_SDTOOL, loadavg, new_home, teardown, up,  # noqa: E402
                        wait_healthy, write_generated)

TARGET_P = 0.5  # s, 2 nodes
TARGET_U = 2.0  # s, 2 nodes
TARGET_RATIO = 1.5  # 16-node time / 2-node time


class StampedOut(io.TextIOBase):
    """A text stream that remembers when each line was written (perf_counter)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def write(self, s: str) -> int:
        now = time.perf_counter()
        for line in s.splitlines():
            if line.strip():
                self.lines.append((now, line))
        return len(s)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def exec_timed(home: str, host: str, *cmd: str) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.run([CLOVM, "exec", "--home", home, host, "--", *cmd], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t0, p.returncode, (p.stdout + p.stderr).strip()


def inproc_timed(home: str, argv: list[str]) -> tuple[float, int, StampedOut, float]:
    """(wall, rc, output, t0) of ``clovmmigrate ARGV`` on primary1 run in this process."""
    from clovm.cli.admin import main_clovmmigrate

    out = StampedOut()
    t0 = time.perf_counter()
    rc = main_clovmmigrate(argv, host="primary1", home=home, out=out, err=out)
    return time.perf_counter() - t0, rc, out, t0


def split_u(out: StampedOut, t0: float) -> tuple[float | None, float | None]:
    """(settings part, sf_wait part) of an in-process ``-u``."""
    started = [t for t, line in out.lines if line.endswith("shutdown facility started")]
    if not started or not out.lines:
        return None, None
    return started[-1] - t0, out.lines[-1][0] - started[-1]


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def eliminated(home: str) -> list[str]:
    """Nodes the shutdown facility eliminated (from the guests' var/adm/messages)."""
    found: set[str] = set()
    for f in Path(home, "hosts").glob("*/var/adm/messages"):
        for line in f.read_text(errors="replace").splitlines():
            if "eliminated by the Shutdown Facility" in line:
                found.add(line.split("CF: [ID 0 daemon.notice] ", 1)[-1].split(":", 1)[0])
    return sorted(found, key=lambda x: (len(x), x))


def bring_up(n: int, servers: int, scale: float, busy_wait: float, keep: bool,
             attempts: int) -> tuple[str | None, float, float, int]:
    """A healthy datacenter of ``n`` guests: (home, up wall, seconds until SF healthy, attempt).
    A failed attempt (``up`` fails, or SF does not become healthy) is torn down and retried in a
    fresh home; (None, ...) if every attempt failed."""
    nodes = [f"cfguest{i + 1}" for i in range(n)]
    for attempt in range(1, attempts + 1):
        home = new_home()
        ok = False
        try:
            topo = write_generated(home, n, servers)
            wall, err = up(home, topo, time_scale=scale, busy_wait=busy_wait)
            if wall is None:
                print(f"  N={n} attempt {attempt}: clovm up FAILED: {err.splitlines()[0]}", flush=True)
            else:
                healthy = wait_healthy(home, "guest1", nodes, timeout=120)
                if healthy is None:
                    print(f"  N={n} attempt {attempt}: shutdown facility not healthy (gave up); last sdtool -s "
                          f"on guest1: {LAST_SDTOOL[0].splitlines()[-1:]}", flush=True)
                else:
                    ok = True
                    return home, wall, healthy, attempt
            gone = eliminated(home)
            if gone:
                print(f"  N={n} attempt {attempt}: eliminated by the shutdown facility during start-up: "
                      f"{' '.join(gone)} (load {loadavg()})", flush=True)
        finally:
            if not ok:
                teardown(home, keep)
    return None, 0.0, 0.0, attempts


def wait_quiet(home: str, n: int, timeout: float = 120.0) -> bool:
    """Wait until the SF of *every* guest node has initialised and tested every row: -u restarts
    SF on all N nodes, whose 4·N² agent rows go on being tested after -u returns, and a
    measurement taken meanwhile would time that background work, not the command."""
    from clovm.runtime import rpc
    from clovm.runtime.home import Home

    h, deadline = Home(Path(home)), time.monotonic() + timeout
    pending = [f"guest{i + 1}" for i in range(n)]
    while pending and time.monotonic() < deadline:
        try:
            rows = rpc.call_unix_sync(h.node_socket(pending[0]), "sdtool", flag="s")["rows"]
        except rpc.RpcError:
            rows = []
        if rows and all(r[4] == "TestWorked" and r[5] == "InitWorked" for r in rows):
            pending.pop(0)
        else:
            time.sleep(0.2)
    return not pending


def bench_n(n: int, runs: int, scale: float, keep: bool, busy_wait: float, attempts: int) -> dict | None:
    servers = max(2, n // 2)
    nodes = [f"cfguest{i + 1}" for i in range(n)]
    home, wall, healthy, attempt = bring_up(n, servers, scale, busy_wait, keep, attempts)
    if home is None:
        print(f"  N={n}: no healthy datacenter in {attempts} attempts; skipped", flush=True)
        return None
    res: dict[str, list] = {k: [] for k in ("p", "u", "p_in", "u_in", "u_set", "u_wait")}
    failed = True  # keep the home (logs) unless the runs complete
    try:
        print(f"  N={n} ({servers} servers): up {wall:.1f} s, SF healthy {healthy:.1f} s later "
              f"(attempt {attempt})", flush=True)
        for i in range(runs):
            if wait_healthy(home, "guest1", nodes, timeout=120) is None or not wait_quiet(home, n):
                print(f"  N={n} run {i + 1}: SF not healthy before -p; stopping; last sdtool -s on guest1: "
                      f"{LAST_SDTOOL[0].splitlines()[-1:]}; eliminated: {eliminated(home)}", flush=True)
                break
            tp, rc, text = exec_timed(home, "primary1", "clovmmigrate", "-p", "guest1")
            if rc != 0:
                print(f"  N={n} run {i + 1}: clovmmigrate -p rc {rc}: {text}", flush=True)
                break
            tu, rc, text = exec_timed(home, "primary1", "clovmmigrate", "-u", "guest1", "primary1")
            if rc != 0:
                print(f"  N={n} run {i + 1}: clovmmigrate -u rc {rc}: {text}", flush=True)
                break
            res["p"].append(tp)
            res["u"].append(tu)
            # the same pair in-process (no interpreter start, no imports)
            wait_healthy(home, "guest1", nodes, timeout=120)
            wait_quiet(home, n)
            tpi, rc, out, _ = inproc_timed(home, ["-p", "guest1"])
            if rc != 0:
                print(f"  N={n} run {i + 1}: in-process -p rc {rc}: {out.text()}", flush=True)
                break
            tui, rc, out, t0 = inproc_timed(home, ["-u", "guest1", "primary1"])
            if rc != 0:
                print(f"  N={n} run {i + 1}: in-process -u rc {rc}: {out.text()}", flush=True)
                break
            s, w = split_u(out, t0)
            res["p_in"].append(tpi)
            res["u_in"].append(tui)
            res["u_set"].append(s)
            res["u_wait"].append(w)
            print(f"  N={n} run {i + 1}: exec -p {tp:.2f} s, -u {tu:.2f} s | in-process -p {tpi:.2f} s, "
                  f"-u {tui:.2f} s (settings {_s(s)}, sf_wait {_s(w)}) load {loadavg()}", flush=True)
        failed = len(res["u_in"]) < runs
        return {k: med(v) for k, v in res.items()} | {"runs": len(res["p"])}
    finally:
        teardown(home, keep or failed)
        if keep or failed:
            print(f"  N={n}: home (logs) kept in {home}", flush=True)


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="2,4,8,16", help="comma-separated guest counts")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="(at 10, 16 guests starting SF together still lose each other on 2 cores)")
    ap.add_argument("--busy-wait", type=float, default=180.0, help="seconds to wait for busy addresses")
    ap.add_argument("--attempts", type=int, default=3,
                    help="fresh datacenters to try per N when one does not come up healthy")
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes (logs)")
    args = ap.parse_args()
    ns = [int(x) for x in args.nodes.split(",") if x.strip()]

    print(f"clovmmigrate benchmark: {os.cpu_count()} cpus, load {loadavg()}, time scale {args.time_scale:g}, "
          f"{args.runs} runs per N", flush=True)
    results: dict[int, dict | None] = {}
    try:
        for n in ns:
            results[n] = bench_n(n, args.runs, args.time_scale, args.keep, args.busy_wait, args.attempts)
    except KeyboardInterrupt:
        print("interrupted", flush=True)

    print()
    print("medians in seconds; exec = `clovm exec primary1 -- clovmmigrate ...` (what an operator sees),")
    print("in-proc = the command in this process; -u split = settings part + sf_wait (SF init+test on every node)")
    print(f"{'N':>3} {'runs':>4}  {'-p exec':>8} {'-u exec':>8}  {'-p in-proc':>10} {'-u in-proc':>10}"
          f"  {'-u settings':>11} {'-u sf_wait':>10}")
    for n, r in results.items():
        if r is None:
            print(f"{n:>3}  FAILED (see above)")
            continue
        print(f"{n:>3} {r['runs']:>4}  {_f(r['p']):>8} {_f(r['u']):>8}  {_f(r['p_in']):>10} {_f(r['u_in']):>10}"
              f"  {_f(r['u_set']):>11} {_f(r['u_wait']):>10}")
    print()
    two, big = results.get(2), results.get(max(ns)) if ns else None
    if two:
        print(f"target -p (2 nodes, exec) <= {TARGET_P:g} s: {_f(two['p'])} s  {_v(two['p'], TARGET_P)}")
        print(f"target -u (2 nodes, exec) <= {TARGET_U:g} s: {_f(two['u'])} s  {_v(two['u'], TARGET_U)}")
        print(f"   (in-process: -p {_f(two['p_in'])} s {_v(two['p_in'], TARGET_P)}, "
              f"-u {_f(two['u_in'])} s {_v(two['u_in'], TARGET_U)})")
    if two and big and max(ns) != 2:
        for key, what in (("p", "-p exec"), ("u", "-u exec"), ("p_in", "-p in-proc"), ("u_in", "-u in-proc"),
                          ("u_set", "-u settings"), ("u_wait", "-u sf_wait")):
            if two[key] and big[key] is not None:
                ratio = big[key] / two[key]
                mark = _v(ratio, TARGET_RATIO) if key in ("p", "u") else "(info)"
                print(f"ratio {max(ns)}/2 nodes {what:<12} <= {TARGET_RATIO:g}x: {ratio:.2f}x  {mark}")
    print(f"load at the end: {loadavg()}")
    return 0


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _v(v: float | None, target: float) -> str:
    return "FAILED" if v is None else ("met" if v <= target else "MISSED")


if __name__ == "__main__":
    sys.exit(main())
