"""Pacemaker-stack benchmarks (issue 13): medians of real runs on this machine (root).

Usage: .venv/bin/python bench/pacemaker.py [--runs-up 3] [--runs-migrate 5] [--runs-fence 3]
                                           [--time-scale 1] [--json FILE]

Measures, on the pacemaker topology (hosts kvm1-3, the cluster vm1/vm2, fence_virsh), each in a
fresh temporary home under /tmp:

  (a) wall time of ``clovm up --topology pacemaker`` as a user runs it (interpreter start to both
      nodes online, both fence devices started and monitored), median of --runs-up;
  (b) ``clovm migrate --host SRC vm2 DST`` (alternately kvm2 -> kvm3 and back, on one cluster):
      the whole command's wall time and each step's (from the journal's begin/done events,
      emulated seconds / time scale = real seconds), median of --runs-migrate;
  (c) without protection, ``clovm fault pause vm2`` for three token periods: how long after the
      freeze began fence_virsh destroyed vm2 (the hypervisor's ``killed`` event), as a ratio to
      the token, median of --runs-fence (each waits for vm2 to reboot and the cluster to be ready).

Prints a table. Every topology is torn down with ``clovm down`` in a ``finally``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from clovm.pacemaker import api, migrate_env
from clovm.pacemaker import layout as L

CLOVM = [sys.executable, "-m", "clovm.cli.main"]
STEPS = ("prepare", "migrate", "recover", "complete", "prove")


def clovm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLOVM, *args], capture_output=True, text=True, timeout=timeout, check=False)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_up(runs: int, scale: float) -> list[float]:
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="clovm-bench-pcmk-") as tmp:
            home = str(Path(tmp) / "h")
            t0 = time.monotonic()
            r = clovm("up", "--home", home, "--topology", "pacemaker", "--time-scale", f"{scale:g}")
            took = time.monotonic() - t0
            try:
                if r.returncode != 0:
                    print(f"up failed: {r.stderr.strip()}", file=sys.stderr)
                    continue
                out.append(took)
                print(f"  up {took:.2f} s", flush=True)
            finally:
                clovm("down", "--home", home)
    return out


def step_times(j: dict, scale: float) -> dict[str, float]:
    begin: dict[str, float] = {}
    took: dict[str, float] = {}
    for e in j.get("events", []):
        if e["what"] == "begin":
            begin[e["step"]] = e["t"]
        elif e["what"] == "done" and e["step"] in begin:
            took[e["step"]] = (e["t"] - begin[e["step"]]) / scale
    return took


def bench_migrate(home: str, runs: int, scale: float) -> tuple[list[float], dict[str, list[float]], list[float]]:
    walls: list[float] = []
    steps: dict[str, list[float]] = {s: [] for s in STEPS}
    frozen: list[float] = []
    src, dst = "kvm2", "kvm3"
    lay = L.layout_for(home)
    for _ in range(runs):
        api.wait_ready(home, timeout=120)
        t0 = time.monotonic()
        r = clovm("migrate", "--home", home, "--host", src, "vm2", dst)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            print(f"migrate failed (rc {r.returncode}): {r.stderr.strip()[-400:]}", file=sys.stderr)
            break
        path = migrate_env.last_journal_path(migrate_env.Dirs(lay), src, "vm2")
        j = json.loads(path.read_text())
        walls.append(wall)
        for s, v in step_times(j, scale).items():
            steps[s].append(v)
        if j.get("suspend_s") is not None:
            frozen.append(j["suspend_s"] / scale)
        print(
            f"  migrate {src} -> {dst}: {wall:.2f} s "
            + " ".join(f"{s} {v:.2f}" for s, v in step_times(j, scale).items()),
            flush=True,
        )
        src, dst = dst, src
    return walls, steps, frozen


def _killed(lay: L.Layout, host: str, since: float) -> float | None:
    try:
        lines = lay.host_events(host).read_text().splitlines()
    except OSError:
        return None
    for ln in lines:
        parts = ln.split()
        if parts[1:3] == ["killed", "vm2"] and float(parts[0]) > since:
            return float(parts[0])
    return None


def bench_fence(home: str, runs: int, token_s: float) -> list[float]:
    lay = L.layout_for(home)
    ratios = []
    for _ in range(runs):
        api.wait_ready(home, timeout=180)
        host = api.where(home, "vm2") or "kvm2"
        t0 = time.time()
        pause = threading.Thread(target=lambda: clovm("fault", "--home", home, "pause", "vm2", f"{3 * token_s:g}"))
        pause.start()
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and time.monotonic() < deadline:
            killed = _killed(lay, host, t0)
            time.sleep(0.05)
        pause.join()
        if killed is None:
            print("  not fenced within 60 s", file=sys.stderr)
            continue
        ratios.append((killed - t0) / token_s)
        print(f"  fenced {killed - t0:.2f} s after the freeze = {ratios[-1]:.2f} tokens", flush=True)
        api.wait_ready(home, timeout=180)
        api.exec_in(home, "vm1", ["stonith_admin", "--cleanup", "--history", "*"])
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-up", type=int, default=3)
    ap.add_argument("--runs-migrate", type=int, default=5)
    ap.add_argument("--runs-fence", type=int, default=3)
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--json", default="", help="also write the results here")
    a = ap.parse_args(argv)
    scale, token_ms = a.time_scale, L.token_ms(a.time_scale)
    print(f"pacemaker benchmarks: time scale {scale:g}, token {token_ms} ms", flush=True)
    ups = bench_up(a.runs_up, scale)
    with tempfile.TemporaryDirectory(prefix="clovm-bench-pcmk-") as tmp:
        home = str(Path(tmp) / "h")
        r = clovm("up", "--home", home, "--topology", "pacemaker", "--time-scale", f"{scale:g}")
        try:
            if r.returncode != 0:
                print(f"up failed: {r.stderr.strip()}", file=sys.stderr)
                return 1
            walls, steps, frozen = bench_migrate(home, a.runs_migrate, scale)
            ratios = bench_fence(home, a.runs_fence, token_ms / 1000.0)
        finally:
            clovm("down", "--home", home)
    rows = [
        ("clovm up --topology pacemaker", f"{med(ups):.2f} s", len(ups)),
        ("clovm migrate (whole command)", f"{med(walls):.2f} s", len(walls)),
    ]
    rest = [w - sum(steps[s][i] for s in STEPS if len(steps[s]) > i) for i, w in enumerate(walls)]
    rows.append(("  start + preflight (before the journal)", f"{med(rest):.2f} s", len(rest)))
    rows += [(f"  step {s}", f"{med(v):.2f} s", len(v)) for s, v in steps.items() if v]
    rows += [
        ("  vm2 frozen (hypervisor's log)", f"{1000 * med(frozen):.0f} ms", len(frozen)),
        (
            "unprotected 3-token freeze -> fenced",
            f"{med(ratios):.2f} x token ({med(ratios) * token_ms / 1000:.2f} s)",
            len(ratios),
        ),
    ]
    print(f"\n{'measure (median)':<40} {'value':<28} runs")
    for name, value, n in rows:
        print(f"{name:<40} {value:<28} {n}")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "time_scale": scale,
                    "token_ms": token_ms,
                    "up_s": ups,
                    "migrate_s": walls,
                    "steps_s": steps,
                    "frozen_s": frozen,
                    "fence_ratio": ratios,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
