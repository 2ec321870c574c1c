"""End to end: ``clovm migrate`` (issue 5) on a real datacenter.

Happy path with dry run, a refused preflight, the clock step and the timeline; the automatic
recovery of a cancelled migration and of a guest that stopped; SIGKILL at every journal step
followed by ``--resume``; ``--scoped`` on a three-guest cluster with another guest killed
mid-migration. Helpers come from test_procedure.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from test_procedure import (
    CFGUEST2_HOME,
    CFGUEST2_MIGRATED,
    DC,
    GUESTS,
    RECOVERY_SCALE,
    _read,
    all_worked,
    bring_up,
    domains,
    ok,
    poll,
    sd_rows,
    snmp_line,
    spconfigs,
    timeout_of,
    wait_healthy,
)

from clovm import settings
from conftest import Datacenter, clovm
from helpers import quiet_for

JOURNAL = "var/opt/FJSVcluster/clovmmigrate/guest2.migrate.json"
LAST = "var/opt/FJSVcluster/clovmmigrate/guest2.migrate-last.json"


def cmigrate(
    d: DC, host: str, *args: str, env: dict | None = None, timeout: float = 200
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "clovm.cli.main", "exec", "--home", str(d.home), host, "--", "clovm", "migrate", *args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start_migrate(d: DC, host: str, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "clovm.cli.main", "exec", "--home", str(d.home), host, "--", "clovm", "migrate", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def journal(d: DC, host: str, rel: str = JOURNAL) -> dict:
    text = _read(d.host_file(host, rel))
    return json.loads(text) if text else {}


def assert_home_healthy(d: DC, where: str) -> None:
    """guest2 runs on ``where`` only, timeouts 10, SF everywhere, entries point at its server."""
    line = CFGUEST2_MIGRATED if where == "primary3" else CFGUEST2_HOME
    for cd in ("primary1", "primary2", "primary3"):
        assert (domains(d, cd).get("guest2") == "active") == (cd == where), cd
    for g in GUESTS:
        assert timeout_of(d, g) == 10, g
        assert snmp_line(d, g, "cfguest2") == line, g
    wait_healthy(d, f"guest2 on {where}", within=20)
    for cd in ("primary2", "primary3"):
        assert not any(c.split()[0] == "config_tmp" for c in spconfigs(d, cd)), cd


@pytest.mark.timeout(240)
def test_one_shot_migration_dry_run_preflight_clock_step_proof_and_timeline(
    datacenter: Callable[..., Datacenter], tmp_path: Path
) -> None:
    d = bring_up(datacenter)
    d.fault("clock", "m10-3", "+40")  # the target server's clock is 40 s ahead: a manual migration logs WRP 34

    # Dry run, directly with --host (not through clovm exec): the plan, no change.
    r = ok(d.dc.run("migrate", "--host", "primary2", "guest2", "primary3", "--dry-run"))
    assert "preflight passed" in r.stdout and "  2 migrate   ldm migrate-domain -c guest2 primary3" in r.stdout
    assert not d.host_file("primary2", JOURNAL).exists()
    assert timeout_of(d, "guest1") == 10 and all_worked(sd_rows(d, "guest1"))

    # A refused preflight names the problem and its remedy, and changes nothing.
    for name in ("a1", "a2", "a3", "a4", "a5", "a6"):
        ok(d.x("primary3", "ldm", "add-spconfig", name))
    r = cmigrate(d, "primary2", "guest2", "primary3")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "preflight found 1 problem(s); nothing was changed" in r.stderr
    assert re.search(r"primary3 has 7 saved configurations .* ldm remove-spconfig NAME", r.stderr), r.stderr
    assert not d.host_file("primary2", JOURNAL).exists() and timeout_of(d, "guest2") == 10
    for name in ("a1", "a2"):
        ok(d.x("primary3", "ldm", "remove-spconfig", name))

    # The real run.
    svg = tmp_path / "timeline.svg"
    r = cmigrate(d, "primary2", "guest2", "primary3", "--timeline", str(svg))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "primary2 # ldm migrate-domain -c guest2 primary3" in out
    assert re.search(r"migrate: guest2: suspend \d+%", out), out
    for check in ("one running instance", "SF entries", "fresh SF test", "timeouts", "cluster", "configuration saved"):
        assert re.search(rf"proof: ok +{check}:", out), (check, out)
    assert "guest2 migrated to primary3 and proven" in out
    assert_home_healthy(d, "primary3")
    j = journal(d, "primary2", LAST)
    assert j["result"] == "ok" and j["outcome"] == "migrated" and j["step"] == "done"
    assert not d.host_file("primary2", JOURNAL).exists()
    assert not d.host_file("primary2", "var/opt/FJSVcluster/clovmmigrate/guest2.journal.json").exists()
    # The clock was stepped: no (WRP, 34) anywhere, although the server's clock differs by 40 s.
    # An unstepped clock 40 s off shows in a peer's estimate over its last CLOCK_SAMPLES heartbeats
    # (one per emulated s) and is reported as soon as it exceeds RMS_SYNC_THRESHOLD.
    waited = quiet_for(
        3,
        f"{3 * d.scale:g} emulated s = {3 * d.scale / settings.CLOCK_SAMPLES:g} x the "
        f"{settings.CLOCK_SAMPLES}-heartbeat clock estimate that would show a 40 s step",
    )
    for g in GUESTS:
        assert "(WRP, 34)" not in d.messages(g) and "(WRP, 34)" not in d.switchlog(g), (g, f"WRP 34 within {waited}")
    # The picture and the status.
    root = ET.fromstring(svg.read_text())
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "cfguest1" in texts and "cfguest2" in texts and "guest2" in texts
    st = ok(cmigrate(d, "primary2", "--status")).stdout
    assert "guest2.migrate-last.json" in st and "ok" in st
    ok(clovm("timeline", str(d.host_file("primary2", LAST)), "-o", str(tmp_path / "again.svg")))
    assert (tmp_path / "again.svg").read_text() == svg.read_text()


@pytest.mark.timeout(240)
def test_one_shot_cancelled_migration_completes_back_to_the_source(datacenter: Callable[..., Datacenter]) -> None:
    d = bring_up(datacenter)
    p = start_migrate(d, "primary2", "guest2", "primary3")
    try:
        assert poll(
            lambda: any(x["phase"] == "pre-copy" for x in journal(d, "primary2").get("progress", [])), 60, every=0.1
        ), "no pre-copy seen"
        ok(d.x("primary2", "ldm", "cancel-operation", "migration", "guest2"))
        out, err = p.communicate(timeout=150)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 5, out + err
    assert "was not migrated (cancelled); the cluster was restored on primary2 and proven there" in out + err
    assert_home_healthy(d, "primary2")
    assert journal(d, "primary2", LAST)["result"] == "restored"
    assert "LEFTCLUSTER" not in d.messages("guest1")


@pytest.mark.timeout(240)
def test_one_shot_stopped_guest_killed_in_recover_resumes_waits_for_down_restarts_and_completes(
    datacenter: Callable[..., Datacenter],
) -> None:
    d = bring_up(datacenter, RECOVERY_SCALE)
    old_pid = d.pid("guest2")
    d.fault("migration-abort", "guest2")
    t0 = time.monotonic()
    # killed as soon as the recover step is recorded, then resumed: the journal step of this path
    r = cmigrate(d, "primary2", "guest2", "primary3", env={"CLOVM_MIGRATE_KILL_AT": "recover"}, timeout=200)
    assert r.returncode in (-9, 137), r.stdout + r.stderr
    assert journal(d, "primary2")["step"] == "recover"
    r = cmigrate(d, "primary2", "--resume", timeout=200)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "resuming the migration of guest2 to primary3 at step recover" in r.stdout
    assert "recover: waiting until cfguest1 hold cfguest2 DOWN" in r.stdout
    assert "primary2 # ldm start-domain guest2" in r.stdout
    assert d.pid("guest2") != old_pid
    j = journal(d, "primary2", LAST)
    assert j["outcome"] == "stopped" and j["result"] == "restored"
    begun = {e["step"]: e["t"] for e in j["events"] if e["what"] == "begin"}
    # the seed's recovery: DOWN only after the 600 s timeout, then the domain was started
    down_note = next(e["t"] for e in j["events"] if e["what"] == "note" and "DOWN on" in e["text"])
    assert down_note - begun["migrate"] >= 590, (down_note, begun)
    assert d.emulated(time.monotonic() - t0) >= 600
    assert_home_healthy(d, "primary2")
