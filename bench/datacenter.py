"""Datacenter benchmarks: how long ``clovm up`` takes, and what one idle node agent costs.

Usage: .venv/bin/python bench/datacenter.py [--runs-small 5] [--runs-large 3] [--idle 20] [--keep]
                                            [--net-shift 5]

Measures (real processes on loopback, a fresh temporary home under /tmp for every datacenter):

  (a) wall time of ``clovm up`` for the figure-17-1 topology (a copy on shifted addresses,
      see --net-shift), median of 5 runs ................................................. target <= 3 s
  (b) wall time of ``clovm up`` for a generated 16-guest / 8-server topology
      (``clovm.topology.generate(16, 8)``), median of 3 runs ............ target <= 10 s
  (c) RSS (VmRSS) of the node agent of guest2 on figure-17-1 after the datacenter has
      settled (shutdown facility TestWorked/InitWorked everywhere, plus a few seconds) ... target <= 60 MB
  (d) idle CPU of that node agent over 20 s at time scale 1
      ((utime + stime) delta from /proc/PID/stat / elapsed wall time) .......... target <= 0.5 %

"wall time of clovm up" is the whole command as a user runs it (``.venv/bin/clovm up ...`` as a
subprocess: interpreter start, provisioning, every daemon READY, every guest node answering).
``clovm down`` is not timed.

figure-17-1 is brought up from a copy written next to the home with its loopback blocks
127.20./127.30./127.40. moved to 127.(20+K)./127.(30+K)./127.(40+K). (``--net-shift K``, default 5):
test suites use the built-in addresses (and per-worker copies at K = 1), and a benchmark must not
take them. The generated 16x8 topology already uses 127.51/52/61/71.x. If an address of the topology is held by someone else (another
datacenter on this machine, e.g. a test suite using figure-17-1) ``up`` is retried for up to
--busy-wait seconds; only the successful attempt is timed. A datacenter that fails to come up is reported and skipped.

Prints a table; a missed target is marked MISSED. Always exits 0 unless the script itself breaks.
Every datacenter is stopped with ``clovm down`` in a ``finally``; afterwards no process carrying
``--home`` of one of our temporary homes may be left (checked, and killed if one were).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

BIN = Path(sys.executable).parent
CLOVM = str(BIN / "clovm") if (BIN / "clovm").exists() else (shutil.which("clovm") or "clovm")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

TARGET_UP_SMALL = 3.0  # s
TARGET_UP_LARGE = 10.0  # s
TARGET_RSS_MB = 60.0
TARGET_IDLE_CPU = 0.5  # percent of one CPU


# ------------------------------------------------------------------------------------ helpers
def new_home() -> str:
    """A fresh, short temporary home (unix socket paths are limited to 107 bytes)."""
    return tempfile.mkdtemp(prefix="cb-", dir="/tmp")


def write_generated(home: str, guests: int, servers: int) -> str:
    """Write ``generate(guests, servers)`` as TOML next to the home; returns the file path."""
    from clovm import topology

    path = os.path.join(home, f"gen-{guests}x{servers}.toml")
    Path(path).write_text(topology.dumps(topology.generate(guests, servers)))
    return path


def write_shifted_figure(home: str, shift: int) -> str:
    """figure-17-1 with 127.20./127.30./127.40. moved by ``shift``, as TOML next to the home."""
    from clovm import topology

    if shift == 0:
        return topology.DEFAULT
    text = (resources.files("clovm.topologies") / f"{topology.DEFAULT}.toml").read_text()
    text = re.sub(r"\b127\.(20|30|40)\.", lambda m: f"127.{int(m.group(1)) + shift}.", text)
    path = os.path.join(home, f"gen-figure-17-1-shift{shift}.toml")
    Path(path).write_text(text)
    topology.load(path)  # still a valid topology
    return path


def up(
    home: str, topo: str | None = None, time_scale: float | None = None, busy_wait: float = 180.0
) -> tuple[float | None, str]:
    """Run ``clovm up``; returns (wall seconds, "") or (None, error text).

    An address held by another datacenter (ADDRESS_IN_USE, or a daemon's bind failing with
    EADDRINUSE) is retried until ``busy_wait`` runs out; only the last, successful attempt is timed."""
    cmd = [CLOVM, "up", "--home", home]
    if topo:
        cmd += ["--topology", topo]
    if time_scale is not None:
        cmd += ["--time-scale", f"{time_scale:g}"]
    give_up = time.monotonic() + busy_wait
    waited = False
    while True:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - t0
        if p.returncode == 0:
            return wall, ""
        err = (p.stderr or p.stdout).strip()
        # "is not free": up's own check; "Address already in use": another datacenter took an
        # address between that check and a daemon's bind (up has stopped what it started).
        if ("is not free" in err or "Address already in use" in err) and time.monotonic() < give_up:
            if not waited:
                print(f"  (addresses busy, waiting: {err.splitlines()[0][:160]})", flush=True)
                waited = True
            time.sleep(2.0)
            _wipe(home)  # the retry starts from a fresh home too (no PKI, keys... left from this one)
            continue
        return None, err


def _wipe(home: str) -> None:
    """Empty ``home`` except the generated topology files (nothing of it runs: up stopped it)."""
    down(home)
    for entry in Path(home).iterdir():
        if entry.name.startswith("gen-") and entry.name.endswith(".toml"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def down(home: str) -> None:
    """``clovm down``, then make sure nothing of the home is left (kill by pid if it were)."""
    try:
        subprocess.run(
            [CLOVM, "down", "--home", home], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        print(f"  clovm down --home {home} timed out", flush=True)
    left = leftovers(home)
    for pid in left:
        print(f"  LEFTOVER pid {pid} of {home}: killing it", flush=True)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def leftovers(home: str) -> list[int]:
    """Pids of live processes whose command line carries ``--home HOME``."""
    real = os.path.realpath(home)
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (d / "cmdline").read_bytes().split(b"\0")]
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X"):
            continue
        if any(
            a == "--home" and i + 1 < len(argv) and os.path.realpath(argv[i + 1]) == real for i, a in enumerate(argv)
        ):
            out.append(int(d.name))
    return out


def teardown(home: str, keep: bool = False) -> None:
    down(home)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)


LAST_SDTOOL = [""]  # the last sdtool -s output or error (for diagnostics)


def sdtool_rows(home: str, host: str) -> list[list[str]] | None:
    """``sdtool -s`` on ``host`` (in-process, cheaper than a ``clovm exec``); None if SF is not up."""
    from clovm.cli.admin import run_command

    out, err = io.StringIO(), io.StringIO()
    try:
        rc = run_command("sdtool", ["-s"], host=host, home=home, out=out, err=err)
    except Exception as e:  # noqa: BLE001 - a daemon still starting: not healthy yet
        LAST_SDTOOL[0] = f"exception {e!r}"
        return None
    LAST_SDTOOL[0] = (out.getvalue() + err.getvalue()).strip()
    if rc != 0:
        return None
    rows, body = [], False
    for line in out.getvalue().splitlines():
        if line.startswith("----"):
            body = True
            continue
        if body and line.strip():
            rows.append(line.split())
    return rows


def wait_healthy(home: str, host: str, cf_nodes: list[str], timeout: float) -> float | None:
    """Poll ``sdtool -s`` on ``host`` until every row of every node in ``cf_nodes`` is
    TestWorked/InitWorked. Returns seconds waited, None on timeout."""
    t0 = time.monotonic()
    unreachable = 0
    while time.monotonic() - t0 < timeout:
        rows = sdtool_rows(home, host)
        if (
            rows
            and {r[0] for r in rows} >= set(cf_nodes)
            and all(len(r) >= 6 and r[4] == "TestWorked" and r[5] == "InitWorked" for r in rows)
        ):
            return time.monotonic() - t0
        # the node agent is gone (after up it answered): e.g. eliminated by the shutdown facility
        unreachable = unreachable + 1 if "cannot reach the cluster node agent" in LAST_SDTOOL[0] else 0
        if unreachable >= 6:
            return None
        time.sleep(0.5)
    return None


def read_pid(home: str, name: str) -> int:
    return int(Path(home, "run", "pids", f"{name}.pid").read_text().split()[0])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields[0] is field 3 (state)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "FAILED"
    return "met" if value <= target else "MISSED"


# ------------------------------------------------------------------------------- measurements
def bench_up(label: str, runs: int, make_topo, busy_wait: float, keep: bool) -> list[float]:
    times = []
    for i in range(runs):
        home = new_home()
        try:
            topo = make_topo(home)
            wall, err = up(home, topo, busy_wait=busy_wait)
            if wall is None:
                print(f"  {label} run {i + 1}: clovm up FAILED: {err}", flush=True)
            else:
                times.append(wall)
                print(f"  {label} run {i + 1}: {wall:.2f} s (load {loadavg()})", flush=True)
        finally:
            teardown(home, keep)
    return times


def bench_idle_node(
    idle: float, settle: float, busy_wait: float, keep: bool, shift: int
) -> tuple[float | None, float | None, str]:
    """(RSS MB, idle CPU %, notes) of guest2's node agent on figure-17-1 at time scale 1."""
    home = new_home()
    try:
        wall, err = up(home, write_shifted_figure(home, shift), time_scale=1, busy_wait=busy_wait)
        if wall is None:
            print(f"  idle node: clovm up FAILED: {err}", flush=True)
            return None, None, "up failed"
        healthy = wait_healthy(home, "guest1", ["cfguest1", "cfguest2"], timeout=120)
        print(
            f"  idle node: SF healthy after {healthy if healthy is None else round(healthy, 1)} s; "
            f"settling {settle:g} s more",
            flush=True,
        )
        time.sleep(settle)
        pid = read_pid(home, "nodeagent-guest2")
        rss = rss_mb(pid)
        others = {}
        for f in sorted(Path(home, "run", "pids").glob("*.pid")):
            try:
                others[f.stem] = rss_mb(int(f.read_text().split()[0]))
            except (OSError, ValueError, RuntimeError):
                pass
        print(
            f"  idle node: nodeagent-guest2 pid {pid} VmRSS {rss:.1f} MB; all daemons: "
            + ", ".join(f"{k} {v:.0f}" for k, v in others.items())
            + " MB",
            flush=True,
        )
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        cpu = 100.0 * (c1 - c0) / (t1 - t0)
        print(f"  idle node: {c1 - c0:.2f} s CPU in {t1 - t0:.1f} s = {cpu:.2f} % (load {loadavg()})", flush=True)
        return rss, cpu, f"total RSS of {len(others)} daemons {sum(others.values()):.0f} MB"
    finally:
        teardown(home, keep)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs-small", type=int, default=5, help="runs of (a), figure-17-1")
    ap.add_argument("--runs-large", type=int, default=3, help="runs of (b), 16 guests / 8 servers")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of (d)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after SF is healthy before (c)")
    ap.add_argument("--busy-wait", type=float, default=180.0, help="seconds to wait for busy addresses")
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes (logs)")
    ap.add_argument(
        "--net-shift",
        type=int,
        default=5,
        metavar="K",
        help="bring figure-17-1 up on 127.(20+K)/(30+K)/(40+K).x instead of its built-in "
        "addresses (default 5; 0: the built-in topology itself)",
    )
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: a, b, idle")
    args = ap.parse_args()

    print(f"clovm datacenter benchmark: {os.cpu_count()} cpus, load {loadavg()}, clovm {CLOVM}", flush=True)
    rows: list[tuple[str, str, str, str]] = []
    try:
        skip = {p.strip() for p in args.skip.split(",") if p.strip()}
        shift = args.net_shift
        if "a" not in skip:
            print(f"(a) clovm up, figure-17-1 (net shift {shift})", flush=True)
            t = bench_up(
                "figure-17-1", args.runs_small, lambda h: write_shifted_figure(h, shift), args.busy_wait, args.keep
            )
            med = statistics.median(t) if t else None
            rows.append(
                (
                    "(a) up figure-17-1",
                    _fmt(med, "s", len(t), args.runs_small, t),
                    f"<= {TARGET_UP_SMALL:g} s",
                    verdict(med, TARGET_UP_SMALL),
                )
            )

        if "b" not in skip:
            print("(b) clovm up, generated 16 guests / 8 servers", flush=True)
            t = bench_up("16x8", args.runs_large, lambda h: write_generated(h, 16, 8), args.busy_wait, args.keep)
            med = statistics.median(t) if t else None
            rows.append(
                (
                    "(b) up 16 guests/8 servers",
                    _fmt(med, "s", len(t), args.runs_large, t),
                    f"<= {TARGET_UP_LARGE:g} s",
                    verdict(med, TARGET_UP_LARGE),
                )
            )

        if "idle" in skip:
            raise _Skipped
        print(
            f"(c)+(d) node agent of guest2, figure-17-1 (net shift {shift}), time scale 1, idle {args.idle:g} s",
            flush=True,
        )
        rss, cpu, note = bench_idle_node(args.idle, args.settle, args.busy_wait, args.keep, shift)
        rows.append(
            (
                "(c) RSS nodeagent guest2",
                "-" if rss is None else f"{rss:.1f} MB ({note})",
                f"<= {TARGET_RSS_MB:g} MB",
                verdict(rss, TARGET_RSS_MB),
            )
        )
        rows.append(
            (
                "(d) idle CPU nodeagent guest2",
                "-" if cpu is None else f"{cpu:.2f} % over {args.idle:g} s",
                f"<= {TARGET_IDLE_CPU:g} %",
                verdict(cpu, TARGET_IDLE_CPU),
            )
        )
    except _Skipped:
        pass
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    if not rows:
        return 0
    print()
    widths = [max(len(r[i]) for r in rows + [("metric", "result", "target", "")]) for i in range(3)]
    print(f"{'metric':<{widths[0]}}  {'result':<{widths[1]}}  {'target':<{widths[2]}}  status")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    print(f"load at the end: {loadavg()}")
    return 0


class _Skipped(Exception):
    """--skip idle: the rest of main's measurements is not run."""


def _fmt(med: float | None, unit: str, n: int, runs: int, values: list[float]) -> str:
    if med is None:
        return f"- (0/{runs} runs came up)"
    return f"{med:.2f} {unit} median of {n}/{runs} [{', '.join(f'{v:.2f}' for v in values)}]"


if __name__ == "__main__":
    sys.exit(main())
