"""The CLI around the Pacemaker stack that needs its own topology: ``clovm demo --topology
pacemaker`` (the whole story, checked, in a temporary home of its own) and ``clovm fault pause``
on the SPARC stack (a guest domain is one process: SIGSTOP, then SIGCONT).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import pytest
from pcmk_helpers import leaks, snapshot

from helpers import wait_until
from xdist_net import net

CLOVM = [sys.executable, "-m", "clovm.cli.main"]


def clovm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLOVM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "CLOVM_MIGRATE_KILL_AT": ""},
    )


@pytest.mark.timeout(300)
def test_demo_runs_the_whole_story_and_checks_it(pcmk_stack: None, tmp_path: Path) -> None:
    before = snapshot(tmp_path / "none")
    t0 = time.monotonic()
    r = clovm("demo", "--topology", "pacemaker", "--time-scale", "2")
    took = time.monotonic() - t0
    print(f"\n$ clovm demo --topology pacemaker --time-scale 2   ({took:.1f} s)\n{r.stdout[-3000:]}")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "CHECK FAILED" not in out
    last = out.strip().splitlines()[-1]
    held, _of, total = last.removeprefix("clovm demo: ").split(" checks held")[0].split()[:3]
    assert held == total and int(total) >= 18, last
    for line in (
        "kvm2 # clovm migrate vm2 kvm3",
        "clovm migrate: vm2 migrated to kvm3 and proven.",
        "vm1 # crm_resource --resource fence-vm2 --get-parameter ip\nkvm3\n",
        (
            "vm1 # fence_virsh --username root --identity-file /root/.ssh/id_fence --ip kvm3 --plug vm2 -o "
            "status\nStatus: ON\n"
        ),
        "--missing-as-off -o status\nStatus: OFF\n",
    ):
        assert line in out, line
    home = Path(out.splitlines()[0].split(" in ")[1].split(" (time scale")[0])
    assert not home.exists()
    assert leaks(before, home) == []


@pytest.mark.timeout(120)
def test_fault_pause_stops_a_sparc_guest_domain_then_continues_it(tmp_path: Path) -> None:
    topo = tmp_path / "figure-17-1.worker.toml"
    topo.write_text(net((resources.files("clovm.topologies") / "figure-17-1.toml").read_text()))
    home = tmp_path / "dc"
    r = clovm("up", "--home", str(home), "--topology", str(topo), timeout=150)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        import json

        pid = json.loads((home / "run" / "domains" / "guest2.json").read_text())["pid"]

        def state() -> str:
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]

        seen: set[str] = set()
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.add(state())
                time.sleep(0.01)

        w = threading.Thread(target=watch)
        w.start()
        t0 = time.monotonic()
        r = clovm("fault", "--home", str(home), "pause", "guest2", "1.5")
        took = time.monotonic() - t0
        done.set()
        w.join()
        assert r.returncode == 0, r.stderr
        assert (
            r.stdout.strip() == f"guest2: domain process {pid} stopped for 1.50 s (SIGSTOP), then continued"
            or r.stdout.startswith(f"guest2: domain process {pid} stopped for 1.5")
        ), r.stdout
        assert 1.5 <= took < 5 and "T" in seen, (took, seen)
        assert state() != "T"
        wait_until(
            lambda: (
                "cfguest2    2      UP"
                in clovm("exec", "--home", str(home), "guest1", "--", "/opt/SMAW/bin/cftool", "-n").stdout
            ),
            20,
            every=0.2,
            what="cfguest2 UP in guest1's view",
        )  # 1.5 s is far below CLUSTER_TIMEOUT: nothing happened
        for args, text in [
            (["guest9", "1"], "unknown domain 'guest9'"),
            (["guest2", "0"], "a pause lasts (0, 3600]"),
            (["guest2"], "usage: clovm fault pause HOST SECONDS"),
        ]:
            r = clovm("fault", "--home", str(home), "pause", *args)
            assert r.returncode == 1 and text in r.stderr, r.stderr
    finally:
        clovm("down", "--home", str(home), timeout=60)
