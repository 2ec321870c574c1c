"""End to end: daemons that come back (issue 12 part 2) and a ``clovm status`` that tells the truth.

One datacenter (figure-17-1 with the small guest2 of crash_matrix.py) goes through every kind of
kill ``clovm fault kill`` injects, as SMF would see them on the real machines:

* an ldmd SIGKILLed in the middle of a manual ``ldm migrate-domain`` (the user's report: guest2
  was left ``bound -----t`` on primary3, nothing restarted the ldmd, and ``clovm status`` still said
  ``ldmd running`` followed by a raw dict): the supervisor restarts it, the migration ends
  consistently on both sides (guest2 resumed on the source, no copy left on the target), and
  ``clovm status`` shows the ldmd restarting, as a table, then running again;
* an xscfd: restarted, and the shutdown agents reach it again at once (same SNMP engine);
* a control domain's node agent: restarted, and back in the control-domain cluster with a new
  incarnation (the supervisor declares the old one DOWN once its peers let it go);
* a guest domain's node agent: that process *is* the domain, so the domain crashed; it stays down
  (``bound``) until ``ldm start-domain``, and comes back with it;
* a daemon that keeps dying goes to maintenance: no longer restarted, ``clovm status`` says so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from crash_matrix import small_topology
from test_procedure import DC, GUESTS, all_worked, cf_states, ok, proc_state, sd_rows

from conftest import Datacenter, poll


def status(d: DC) -> dict:
    r = d.dc.run("status", "--json")
    return json.loads(r.stdout)


def daemon(st: dict, kind: str, name: str) -> dict:
    return next(x for x in st["daemons"] if (x["daemon"], x["name"]) == (kind, name))


def ldm_rows(d: DC, cd: str) -> dict[str, list[str]]:
    r = ok(d.x(cd, "ldm", "list"))
    return {row[0]: row for row in (ln.split() for ln in r.stdout.splitlines()[1:]) if row}


def incarnations(d: DC, host: str) -> list[int]:
    text = (d.home / "log" / f"nodeagent-{host}.log").read_text()
    return [int(m.group(1)) for m in re.finditer(r'"incarnation": (\d+)', text)]


@pytest.mark.timeout(240)
def test_killed_daemons_come_back_and_status_tells_the_truth(
    datacenter: Callable[..., Datacenter], tmp_path: Path
) -> None:
    dc = datacenter("dc", small_topology(tmp_path))
    assert dc.up.returncode == 0, dc.up.stdout + dc.up.stderr
    d = DC(dc, 10.0)
    st = status(d)
    assert st["ok"] and st["supervisor"]["state"] == "running", st["problems"]
    assert set(st["supervisor"]["daemons"]) == {
        f"{k}-{n}"
        for k, ns in (
            ("xscfd", ("m10-1", "m10-2", "m10-3")),
            ("ldmd", ("primary1", "primary2", "primary3")),
            ("nodeagent", ("primary1", "primary2", "primary3")),
        )
        for n in ns
    }
    configs = {cd: ok(d.x(cd, "ldm", "list-spconfig")).stdout for cd in ("primary2", "primary3")}
    pid = d.pid("guest2")

    # 1. the ldmd of the source, SIGKILLed during a manual migrate-domain (in its pre-copy)
    old = daemon(st, "ldmd", "primary2")["pid"]
    ok(dc.run("fault", "kill", "ldmd", "primary2", "--at", "pre-copy"))
    r = d.x("primary2", "ldm", "migrate-domain", "-c", "guest2", "primary3")
    assert r.returncode != 0  # the command's ldmd died under it
    text = dc.run("status")
    assert text.returncode == 0 and "{" not in text.stdout, text.stdout  # a table, no raw data
    row = next(ln.split() for ln in text.stdout.splitlines() if ln.split()[:2] == ["ldmd", "primary2"])
    # never "running" for the dead one (by the time the status is read it may run again, restarted)
    assert row[3] in ("restarting", "down") or (row[3] == "running" and row[2] != str(old)), text.stdout
    assert poll(lambda: status(d)["ok"], 30, every=0.2), dc.run("status").stdout
    st = status(d)
    assert st["supervisor"]["daemons"]["ldmd-primary2"]["restarts"] == 1
    assert daemon(st, "ldmd", "primary2")["state"] == "running"
    # consistent on both sides: guest2 resumed on the source, nothing left on the target
    assert poll(lambda: "guest2" not in ldm_rows(d, "primary3"), 10), ldm_rows(d, "primary3")
    assert ldm_rows(d, "primary2")["guest2"][1:3] == ["active", "-n----"]
    assert d.pid("guest2") == pid and proc_state(pid) in ("S", "R")  # the same domain, running
    assert {cd: ok(d.x(cd, "ldm", "list-spconfig")).stdout for cd in configs} == configs
    assert "ldmd-primary2: pid" in (d.home / "log" / "supervisor-datacenter.log").read_text()

    # 2. an xscfd: back, and its SNMP agent answers the shutdown agents that knew it before
    ok(dc.run("fault", "kill", "xscfd", "m10-1"))
    assert poll(lambda: status(d)["ok"], 20, every=0.2), dc.run("status").stdout
    ok(d.x("guest2", "/opt/SMAW/bin/sdtool", "-r"))
    assert poll(lambda: all_worked(sd_rows(d, "guest2")), 20, every=0.25), sd_rows(d, "guest2")

    # 3. a control domain's node agent: back in its cluster, as a new incarnation
    before = incarnations(d, "primary1")
    ok(dc.run("fault", "kill", "nodeagent", "primary1"))
    assert poll(lambda: status(d)["ok"], 40, every=0.3), dc.run("status").stdout
    assert poll(lambda: all(cf_states(d, h).get("cfprimary1") == "UP" for h in ("primary2", "primary3")), 20)
    assert set(cf_states(d, "primary1").values()) == {"UP"}
    after = incarnations(d, "primary1")
    assert len(after) == len(before) + 1 and after[-1] != before[-1], (before, after)

    # 4. a guest domain's node agent is the domain: a crash, down until ldm start-domain
    g1 = d.pid("guest1")
    r = ok(dc.run("fault", "kill", "nodeagent", "guest1"))
    assert "stays down until ldm start-domain guest1 on primary1" in r.stdout
    assert poll(lambda: ldm_rows(d, "primary1")["guest1"][1] == "bound", 10)
    assert poll(lambda: cf_states(d, "guest2").get("cfguest1") == "DOWN", 30, every=0.3), cf_states(d, "guest2")
    time.sleep(1.0)  # nobody restarts it
    st = status(d)
    assert daemon(st, "domain", "guest1")["state"] == "down" and not st["ok"]
    assert "ldm start-domain guest1" in daemon(st, "domain", "guest1")["message"]
    ok(d.x("primary1", "ldm", "start-domain", "guest1"))
    assert d.pid("guest1") != g1
    assert poll(lambda: all(cf_states(d, g) == {"cfguest1": "UP", "cfguest2": "UP"} for g in GUESTS), 30)
    assert poll(lambda: status(d)["ok"], 30, every=0.3), dc.run("status").stdout

    # 5. a daemon that keeps dying: maintenance after 5 restarts within a minute
    for i in range(6):
        assert poll(lambda: daemon(status(d), "xscfd", "m10-3")["state"] == "running", 20, every=0.1), i
        ok(dc.run("fault", "kill", "xscfd", "m10-3"))
    assert poll(lambda: daemon(status(d), "xscfd", "m10-3")["state"] == "maintenance", 10, every=0.2)
    st = status(d)
    x = daemon(st, "xscfd", "m10-3")
    assert x["code"] == "MAINTENANCE" and st["code"] == "DEGRADED", x
    assert st["supervisor"]["daemons"]["xscfd-m10-3"]["state"] == "maintenance"
    text = dc.run("status").stdout
    assert "maintenance" in text and "problem(s)" in text and "{" not in text, text
    assert "maintenance" in (d.home / "log" / "supervisor-datacenter.log").read_text()


def test_status_of_a_running_home_without_a_supervisor_says_so(
    datacenter: Callable[..., Datacenter], tmp_path: Path
) -> None:
    dc = datacenter("dc", small_topology(tmp_path))
    assert dc.up.returncode == 0, dc.up.stdout + dc.up.stderr
    sup = json.loads(dc.run("status", "--json").stdout)["supervisor"]["pid"]
    subprocess.run([sys.executable, "-c", f"import os, signal; os.kill({sup}, signal.SIGKILL)"], check=True)
    d = DC(dc, 10.0)
    assert poll(lambda: status(d)["supervisor"]["state"] == "down", 10)
    st = status(d)
    assert not st["ok"] and any(p["daemon"] == "supervisor" for p in st["problems"]), st["problems"]
    assert "daemons that die are not restarted" in dc.run("status").stdout
