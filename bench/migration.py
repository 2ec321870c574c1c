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

Besides the wall times, the CPU of the ``clovmmigrate`` process itself: for ``clovm exec`` the
child's user+system time (``resource.getrusage(RUSAGE_CHILDREN)``, interpreter start-up
included), in-process ``time.process_time()`` around the command (start-up excluded).

Targets (issue 11; the earlier 16/2-node ratio target is withdrawn: 16 nodes' daemons share 2
cores here, so that ratio measured the emulator, not the product): ``-p`` <= 0.5 s and ``-u`` <= 2 s
for 2 nodes, ``-u`` <= 1 s wall at 16 nodes (``clovm exec``, what an operator waits for), and at
most 5 ms of ``clovmmigrate`` CPU for each extra node ((CPU at the largest N - CPU at 2) / (N - 2),
in-process and exec alike). Prints a table (MISSED next to a missed target); exits 0 unless the
script itself breaks.
Every datacenter is stopped with ``clovm down`` in a ``finally``; no process is left behind.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from datacenter import CLOVM, LAST_SDTOOL, loadavg, new_home, teardown, up, wait_healthy, write_generated

TARGET_P = 0.5  # s, 2 nodes
TARGET_U = 2.0  # s, 2 nodes
TARGET_U16 = 1.0  # s, -u wall at 16 nodes
TARGET_CPU_PER_NODE = 0.005  # s of clovmmigrate CPU per extra node


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


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def exec_timed(home: str, host: str, *cmd: str) -> tuple[float, int, str, float]:
    """(wall, rc, output, CPU of the ``clovm exec`` process) of one command."""
    c0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(
        [CLOVM, "exec", "--home", home, host, "--", *cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return time.perf_counter() - t0, p.returncode, (p.stdout + p.stderr).strip(), _children_cpu() - c0


def inproc_timed(home: str, argv: list[str]) -> tuple[float, int, StampedOut, float, float]:
    """(wall, rc, output, t0, CPU) of ``clovmmigrate ARGV`` on primary1 run in this process."""
    from clovm.cli.admin import main_clovmmigrate

    out = StampedOut()
    c0, t0 = time.process_time(), time.perf_counter()
    rc = main_clovmmigrate(argv, host="primary1", home=home, out=out, err=out)
    return time.perf_counter() - t0, rc, out, t0, time.process_time() - c0


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


def bring_up(
    n: int, servers: int, scale: float, busy_wait: float, keep: bool, attempts: int
) -> tuple[str | None, float, float, int]:
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
                    print(
                        f"  N={n} attempt {attempt}: shutdown facility not healthy (gave up); last sdtool -s "
                        f"on guest1: {LAST_SDTOOL[0].splitlines()[-1:]}",
                        flush=True,
                    )
                else:
                    ok = True
                    return home, wall, healthy, attempt
            gone = eliminated(home)
            if gone:
                print(
                    f"  N={n} attempt {attempt}: eliminated by the shutdown facility during start-up: "
                    f"{' '.join(gone)} (load {loadavg()})",
                    flush=True,
                )
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
    res: dict[str, list] = {
        k: [] for k in ("p", "u", "p_in", "u_in", "u_set", "u_wait", "p_cpu", "u_cpu", "p_in_cpu", "u_in_cpu")
    }
    failed = True  # keep the home (logs) unless the runs complete
    try:
        print(
            f"  N={n} ({servers} servers): up {wall:.1f} s, SF healthy {healthy:.1f} s later (attempt {attempt})",
            flush=True,
        )
        for i in range(runs):
            if wait_healthy(home, "guest1", nodes, timeout=120) is None or not wait_quiet(home, n):
                print(
                    f"  N={n} run {i + 1}: SF not healthy before -p; stopping; last sdtool -s on guest1: "
                    f"{LAST_SDTOOL[0].splitlines()[-1:]}; eliminated: {eliminated(home)}",
                    flush=True,
                )
                break
            tp, rc, text, cp = exec_timed(home, "primary1", "clovmmigrate", "-p", "guest1")
            if rc != 0:
                print(f"  N={n} run {i + 1}: clovmmigrate -p rc {rc}: {text}", flush=True)
                break
            tu, rc, text, cu = exec_timed(home, "primary1", "clovmmigrate", "-u", "guest1", "primary1")
            if rc != 0:
                print(f"  N={n} run {i + 1}: clovmmigrate -u rc {rc}: {text}", flush=True)
                break
            res["p"].append(tp)
            res["u"].append(tu)
            res["p_cpu"].append(cp)
            res["u_cpu"].append(cu)
            # the same pair in-process (no interpreter start, no imports)
            wait_healthy(home, "guest1", nodes, timeout=120)
            wait_quiet(home, n)
            tpi, rc, out, _, cpi = inproc_timed(home, ["-p", "guest1"])
            if rc != 0:
                print(f"  N={n} run {i + 1}: in-process -p rc {rc}: {out.text()}", flush=True)
                break
            tui, rc, out, t0, cui = inproc_timed(home, ["-u", "guest1", "primary1"])
            if rc != 0:
                print(f"  N={n} run {i + 1}: in-process -u rc {rc}: {out.text()}", flush=True)
                break
            s, w = split_u(out, t0)
            res["p_in"].append(tpi)
            res["u_in"].append(tui)
            res["u_set"].append(s)
            res["u_wait"].append(w)
            res["p_in_cpu"].append(cpi)
            res["u_in_cpu"].append(cui)
            print(
                f"  N={n} run {i + 1}: exec -p {tp:.2f} s ({cp * 1000:.0f} ms CPU), -u {tu:.2f} s "
                f"({cu * 1000:.0f} ms CPU) | in-process -p {tpi:.2f} s ({cpi * 1000:.0f} ms), -u {tui:.2f} s "
                f"({cui * 1000:.0f} ms; settings {_s(s)}, sf_wait {_s(w)}) load {loadavg()}",
                flush=True,
            )
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
    ap.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="(at 10, 16 guests starting SF together still lose each other on 2 cores)",
    )
    ap.add_argument("--busy-wait", type=float, default=180.0, help="seconds to wait for busy addresses")
    ap.add_argument(
        "--attempts", type=int, default=3, help="fresh datacenters to try per N when one does not come up healthy"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes (logs)")
    args = ap.parse_args()
    ns = [int(x) for x in args.nodes.split(",") if x.strip()]

    print(
        f"clovmmigrate benchmark: {os.cpu_count()} cpus, load {loadavg()}, time scale {args.time_scale:g}, "
        f"{args.runs} runs per N",
        flush=True,
    )
    results: dict[int, dict | None] = {}
    try:
        for n in ns:
            results[n] = bench_n(n, args.runs, args.time_scale, args.keep, args.busy_wait, args.attempts)
    except KeyboardInterrupt:
        print("interrupted", flush=True)

    print()
    print("medians; exec = `clovm exec primary1 -- clovmmigrate ...` (what an operator sees), in-proc = the")
    print("command in this process; CPU = the clovmmigrate process's own user+system time (exec: with start-up)")
    print(
        f"{'N':>3} {'runs':>4}  {'-p exec':>8} {'-u exec':>8}  {'-p CPU':>7} {'-u CPU':>7}  {'-p in-proc':>10}"
        f" {'-u in-proc':>10}  {'-p CPU':>7} {'-u CPU':>7}  {'-u sf_wait':>10}"
    )
    for n, r in results.items():
        if r is None:
            print(f"{n:>3}  FAILED (see above)")
            continue
        print(
            f"{n:>3} {r['runs']:>4}  {_f(r['p']):>7}s {_f(r['u']):>7}s  {_ms(r['p_cpu']):>7} {_ms(r['u_cpu']):>7}"
            f"  {_f(r['p_in']):>9}s {_f(r['u_in']):>9}s  {_ms(r['p_in_cpu']):>7} {_ms(r['u_in_cpu']):>7}"
            f"  {_f(r['u_wait']):>9}s"
        )
    print()
    two = results.get(2)
    big_n = max((n for n, r in results.items() if r), default=None)
    big = results.get(big_n) if big_n else None
    if two:
        print(f"target -p (2 nodes, exec) <= {TARGET_P:g} s: {_f(two['p'])} s  {_v(two['p'], TARGET_P)}")
        print(f"target -u (2 nodes, exec) <= {TARGET_U:g} s: {_f(two['u'])} s  {_v(two['u'], TARGET_U)}")
    if results.get(16):
        u16 = results[16]["u"]
        print(f"target -u (16 nodes, exec) <= {TARGET_U16:g} s: {_f(u16)} s  {_v(u16, TARGET_U16)}")
    if two and big and big_n != 2:
        for key, what in (
            ("p_cpu", "-p exec"),
            ("u_cpu", "-u exec"),
            ("p_in_cpu", "-p in-proc"),
            ("u_in_cpu", "-u in-proc"),
        ):
            if two[key] is not None and big[key] is not None:
                per = (big[key] - two[key]) / (big_n - 2)
                print(
                    f"target clovmmigrate CPU per extra node ({what:<10}, 2 -> {big_n}) <= "
                    f"{TARGET_CPU_PER_NODE * 1000:g} ms: {per * 1000:.1f} ms  {_v(per, TARGET_CPU_PER_NODE)}"
                )
    print(f"load at the end: {loadavg()}")
    return 0


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}ms"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _v(v: float | None, target: float) -> str:
    return "FAILED" if v is None else ("met" if v <= target else "MISSED")


if __name__ == "__main__":
    sys.exit(main())
