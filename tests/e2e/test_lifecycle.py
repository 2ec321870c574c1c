"""End to end: a lifecycle that loses nothing (issue 12 part 3).

* ``clovm down`` then ``clovm up`` on the same home is a power cycle of servers with saved
  configurations: guest2, migrated to primary3, comes back on primary3; the saved configurations,
  SF configuration and timeouts are as they were; and a SIGSTOPped guest2 is fenced through the
  XSCF of the server it runs on. ``clovm up --fresh`` starts over from the topology, with one
  warning line saying what it discards.
* ``clovm up`` returns once the cluster is ready (CF joined everywhere, RMS settled with app1
  Online, SF tested everywhere), saying so as it goes; at time scale 1 a ``clovm migrate`` right
  after it passes its preflight (RMS's settle is over: it used to be refused as "a switchover is
  in progress").
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from crash_matrix import small_topology
from test_migrate import cmigrate
from test_procedure import (
    CFGUEST2_HOME,
    CFGUEST2_MIGRATED,
    DC,
    GUESTS,
    all_worked,
    cf_states,
    domains,
    ok,
    proc_state,
    sd_rows,
    set_timeout_by_hand,
    snmp_line,
    spconfigs,
    timeout_of,
)

from conftest import Datacenter, clovm, poll, worker_topology

STAGES = ("daemons started", "CF: all nodes UP", "RMS: app1 Online on cfguest1", "SF: every agent tested")


def progress_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in r.stdout.splitlines() if ln.startswith("clovm up: ")]


def assert_ready_output(r: subprocess.CompletedProcess[str]) -> None:
    """The stages in order, each on one line of its own, before the summary."""
    lines = progress_lines(r)
    found = [next((i for i, ln in enumerate(lines) if stage in ln), -1) for stage in STAGES]
    assert -1 not in found and found == sorted(found), lines
    assert r.stdout.index(lines[-1]) < r.stdout.index("datacenter up:"), r.stdout


@pytest.mark.timeout(200)
def test_down_and_up_bring_the_datacenter_back_as_it_was_and_fresh_starts_over(
    datacenter: Callable[..., Datacenter], tmp_path: Path
) -> None:
    topo = small_topology(tmp_path)
    dc = datacenter("dc", topo)
    assert dc.up.returncode == 0, dc.up.stderr
    assert_ready_output(dc.up)
    assert "restoring" not in dc.up.stdout  # a new home
    d = DC(dc, 10.0)
    set_timeout_by_hand(d, 15)
    r = cmigrate(d, "primary2", "guest2", "primary3")
    assert r.returncode == 0, r.stdout + r.stderr
    ok(d.x("primary3", "ldm", "add-spconfig", "keep-me"))
    before = {cd: spconfigs(d, cd) for cd in ("primary1", "primary2", "primary3")}
    assert before["primary3"][-1] == "keep-me [current]", before

    ok(dc.run("down"))
    again = clovm(
        "up",
        "--home",
        str(dc.home),
        "--time-scale",
        "10",
        "--topology",
        str(worker_topology(tmp_path, topo)),
        timeout=150,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert_ready_output(again)
    assert "restoring the datacenter kept in" in again.stdout and "guest2 on primary3" in again.stdout
    assert re.search(r"guest2 +on primary3 \(m10-3\)", again.stdout), again.stdout
    # as it was: where guest2 runs, saved configurations, SF configuration, timeouts
    assert domains(d, "primary3").get("guest2") == "active" and "guest2" not in domains(d, "primary2")
    assert {cd: spconfigs(d, cd) for cd in before} == before
    for g in GUESTS:
        assert snmp_line(d, g, "cfguest2") == CFGUEST2_MIGRATED, g
        assert timeout_of(d, g) == 15, g
        assert all_worked(sd_rows(d, g)), (g, sd_rows(d, g))
    # and the shutdown facility really works: a hung guest2 is fenced through m10-3's XSCF
    pid = d.pid("guest2")
    os.kill(pid, signal.SIGSTOP)
    try:
        assert poll(lambda: proc_state(pid) is None, 40, every=0.2), f"guest2 ({pid}) was not fenced"
        assert poll(lambda: cf_states(d, "guest1").get("cfguest2") == "DOWN", 20, every=0.3), cf_states(d, "guest1")
    finally:
        if proc_state(pid) is not None:
            os.kill(pid, signal.SIGCONT)
    assert "cfguest2: DOWN (eliminated by the Shutdown Facility)" in d.messages("guest1")
    assert "KillFailed" not in d.x("guest1", "/opt/SMAW/bin/sdtool", "-s").stdout

    # --fresh: one warning line, and the topology as it is written
    ok(dc.run("down"))
    fresh = clovm(
        "up",
        "--home",
        str(dc.home),
        "--time-scale",
        "10",
        "--fresh",
        "--topology",
        str(worker_topology(tmp_path, topo)),
        timeout=150,
    )
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    warning = [ln for ln in fresh.stderr.splitlines() if ln.strip()]
    assert len(warning) == 1 and warning[0].startswith("clovm up: warning: --fresh: discarding"), fresh.stderr
    for what in ("guest2 on primary3", "saved configurations", "hosts/"):
        assert what in warning[0], warning[0]
    assert domains(d, "primary2").get("guest2") == "active" and "guest2" not in domains(d, "primary3")
    assert spconfigs(d, "primary3") == ["factory-default", "config1 [current]"]
    for g in GUESTS:
        assert snmp_line(d, g, "cfguest2") == CFGUEST2_HOME, g
        assert timeout_of(d, g) == 10, g


@pytest.mark.timeout(200)
def test_up_returns_when_the_cluster_is_ready_and_migrate_is_accepted_at_once(
    datacenter: Callable[..., Datacenter], tmp_path: Path
) -> None:
    t0 = time.monotonic()
    dc = datacenter("dc", small_topology(tmp_path), "--time-scale", "1")
    took = time.monotonic() - t0
    assert dc.up.returncode == 0, dc.up.stdout + dc.up.stderr
    assert_ready_output(dc.up)
    d = DC(dc, 1.0)
    # right away: every node UP everywhere, app1 placed, every agent tested ...
    assert all(cf_states(d, g) == {"cfguest1": "UP", "cfguest2": "UP"} for g in GUESTS)
    assert all(all_worked(sd_rows(d, g)) for g in GUESTS)
    # ... and clovm migrate's preflight passes (RMS has settled)
    r = cmigrate(d, "primary2", "guest2", "primary3", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "preflight passed" in r.stdout and "switchover" not in r.stdout + r.stderr
    print(f"clovm up at time scale 1: ready after {took:.1f} s")  # (docs/reliability.md)
