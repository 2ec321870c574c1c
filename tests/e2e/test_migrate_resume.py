"""End to end, ``clovm migrate`` killed at every journal step and resumed, and ``--scoped`` with
another guest node crashing mid-migration (issue 5). Helpers: test_migrate.py, test_procedure.py."""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_migrate import assert_home_healthy, cmigrate, journal, start_migrate
from test_procedure import DC, bring_up, cf_states, domains, ok, poll, sd_rows, snmp_line, timeout_of

from conftest import Datacenter
from xdist_net import net


@pytest.mark.timeout(420)
def test_one_shot_killed_at_every_journal_step_is_finished_by_resume(datacenter: Callable[..., Datacenter]) -> None:
    d = bring_up(datacenter)
    where = "primary2"
    # one kill inside each step (the kill before every single journal write is tests/core/test_safemigrate.py's)
    for point in ("prepared", "migrating", "updating", "prove"):
        to = "primary3" if where == "primary2" else "primary2"
        r = cmigrate(d, where, "guest2", to, env={"CLOVM_MIGRATE_KILL_AT": point})
        assert r.returncode == -signal.SIGKILL or r.returncode == 128 + signal.SIGKILL, (point, r.returncode, r.stderr)
        j = journal(d, where)
        assert j, point
        assert j["timeouts"] == {"cfguest1": 10, "cfguest2": 10}, point
        st = ok(cmigrate(d, where, "--status")).stdout
        assert "guest2.migrate.json" in st, point
        r = cmigrate(d, where, "--resume")
        assert r.returncode == 0, (point, r.stdout, r.stderr)
        assert "resuming the migration of guest2" in r.stdout, point
        # the resumed run proved everything itself (rc 0); check the gist from outside
        assert domains(d, to).get("guest2") == "active" and "guest2" not in domains(d, where), point
        assert timeout_of(d, "guest1") == 10, point
        where = to
    assert_home_healthy(d, where)


def emulated_wall(d: DC) -> float:
    """The emulated wall clock of a server with offset 0 (runtime.clock.EmuClock, read from outside)."""
    c = json.loads((d.home / "run" / "clock.json").read_text())
    return float(c["epoch"]) + float(c["time_scale"]) * (time.monotonic() - float(c["start"]))


def syslog_epoch(line: str, year: int) -> float:
    """The UTC time of a /var/adm/messages line (``Nov 25 06:22:01 host ...``)."""
    return float(calendar.timegm(time.strptime(f"{year} {line[:15]}", "%Y %b %d %H:%M:%S")))


@pytest.mark.timeout(240)
def test_scoped_migration_detects_another_guests_failure_within_the_normal_timeout(
    datacenter: Callable[..., Datacenter], tmp_path: Path
) -> None:
    guests = ("guest1", "guest2", "guest3")
    three_up = {"cfguest1": "UP", "cfguest2": "UP", "cfguest3": "UP"}
    for attempt in range(2):  # on a loaded machine the guests can lose each other while booting
        dc = datacenter(f"scoped{attempt}", "figure-17-1-3g")
        assert dc.up.returncode == 0 or attempt == 0, dc.up.stderr
        d = DC(dc, 10.0)
        if dc.up.returncode == 0 and poll(lambda d=d: all(cf_states(d, g) == three_up for g in guests), 40, every=0.5):
            break
        assert attempt == 0, {g: cf_states(d, g) for g in guests}
        dc.run("down")
    p = start_migrate(d, "primary2", "--scoped", "guest2", "primary3")
    try:
        assert poll(
            lambda: any(x["phase"] == "pre-copy" for x in journal(d, "primary2").get("progress", [])), 60, every=0.1
        ), "no pre-copy seen"
        # SF keeps running on the other nodes; their timeout stays 10 s.
        assert sd_rows(d, "guest3") is not None and timeout_of(d, "guest3") == 10
        t_kill = emulated_wall(d)
        os.kill(d.pid("guest1"), signal.SIGKILL)  # a real failure of another node, mid-migration
        assert poll(lambda: "cfguest1: LEFTCLUSTER" in d.messages("guest3"), 60, every=0.2), d.messages("guest3")
        out, err = p.communicate(timeout=150)
    finally:
        if p.poll() is None:
            p.kill()
    line = next(ln for ln in d.messages("guest3").splitlines() if "cfguest1: LEFTCLUSTER" in ln)
    stamp = syslog_epoch(line, time.gmtime(t_kill).tm_year)
    # detected within the normal timeout (10 s) plus one heartbeat interval (1 s), +1 s stamp resolution
    assert stamp - t_kill <= 12, (stamp - t_kill, line)
    m = re.search(r"no heartbeat for ([0-9.]+) s", line)
    assert m and float(m.group(1)) <= 11, line
    # The migration itself went through; completing needs every node, so -u waits for guest1's return.
    assert domains(d, "primary3").get("guest2") == "active", out + err
    if p.returncode != 0:
        assert p.returncode == 4, out + err
        assert poll(lambda: cf_states(d, "guest3").get("cfguest1") == "DOWN", 60, every=0.5), cf_states(d, "guest3")
        ok(d.x("primary1", "ldm", "start-domain", "guest1"))
        assert poll(lambda: all(cf_states(d, g) == three_up for g in guests), 60, every=0.5)
        r = cmigrate(d, "primary2", "--resume")
        assert r.returncode == 0, r.stdout + r.stderr
    for g in guests:
        assert timeout_of(d, g) == 10, g
        assert snmp_line(d, g, "cfguest2").split()[4] == net("127.20.30.73"), g
