"""The crash matrix (issue 12): SIGKILL of each daemon kind in each phase of a live migration, then
the documented or automatic recovery, then nothing may be lost. Shared by test_crash_matrix_a.py
and test_crash_matrix_b.py (two files, so that two pytest-xdist workers can each take a share).

One datacenter per row (daemon kind), on figure-17-1 with a small guest2 (1 GiB dirtied at
400 MB/s over a 500 MB/s link: five pre-copy rounds of 6.9 emulated s, then 0.8 s suspended, so a
whole ``clovm migrate`` takes about 2 real s at time scale 10). guest2 moves back and forth between
primary2 and primary3, one cell per phase:

=============  ===========================================================================
phase          how the kill is placed (``clovm fault kill DAEMON HOST --at POINT``, else
               ``CLOVM_MIGRATE_KILL_AT`` for the ``clovm migrate`` process itself)
=============  ===========================================================================
prepare        ``prepare``: clovm migrate recorded its prepare step, before clovmmigrate -p
pre-copy       ``pre-copy``: the source ldmd entered the pre-copy (round 1)
suspend        ``suspend``: the source ldmd froze the guest for its last copy
hand-off       ``hand-off``: the source ldmd queued the Handoff (not sent yet); for the target's
               ldmd ``taken-over``: it runs the guest, its acknowledgement not sent yet; for
               ``clovm migrate`` ``handed-off``: the first journal write after the hand-off
complete       ``complete``: clovm migrate recorded its complete step, before clovmmigrate -u
=============  ===========================================================================

Recovery, as an operator would do it: a killed ``clovm migrate`` is resumed (``--resume``); one
that stopped part way (rc 4, e.g. a call to a daemon that was being restarted) is resumed once
``clovm status`` shows every daemon running again; the supervisor restarts every daemon by itself.
Then every cell checks the same invariants: exactly one instance of guest2 (active on one control
domain, no copy bound in transition or marked migrating anywhere), every daemon running, both CF
clusters UP everywhere, timeouts 10 s, cfguest2's SF entry on every node pointing at the XSCF of
the server guest2 runs on, every agent tested, the saved configurations as they were (no
config_tmp). The outcome of each cell is returned for docs/reliability.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from test_migrate import cmigrate
from test_procedure import DC, GUESTS

from conftest import Datacenter, poll
from xdist_net import net

PHASES = ("prepare", "pre-copy", "suspend", "hand-off", "complete")
SERVER = {"primary2": "m10-2", "primary3": "m10-3"}
LAN0 = {"primary2": "127.20.30.72", "primary3": "127.20.30.73"}


def small_topology(root: Path) -> str:
    """figure-17-1 with a small, quickly migrated guest2 (see the module docstring)."""
    text = (resources.files("clovm.topologies") / "figure-17-1.toml").read_text()
    head, sep, tail = text.partition('name = "guest2"')
    tail = tail.replace("memory_mb = 8192", "memory_mb = 1024", 1).replace(
        "dirty_rate_mb_s = 2000", "dirty_rate_mb_s = 400", 1
    )
    path = root / "figure-17-1-small.toml"
    path.write_text(head + sep + tail)
    return str(path)


def bring_up_small(datacenter: Callable[..., Datacenter], root: Path, name: str) -> DC:
    dc = datacenter(name, small_topology(root))
    assert dc.up.returncode == 0, dc.up.stdout + dc.up.stderr
    return DC(dc, 10.0)


_BATCH = """
import io, json, sys
from clovm.api import ClovmError, datacenter
from clovm.cli.admin import run_command
from clovm.runtime.home import Home
home = Home(sys.argv[1])
out = {}
try:
    out["status"] = datacenter.status(home)
except ClovmError as e:
    out["status"] = {"ok": False, "code": e.code}
res = []
for host, argv in json.loads(sys.stdin.read()):
    o, e = io.StringIO(), io.StringIO()
    rc = run_command(argv[0], argv[1:], host=host, home=home, out=o, err=e)
    res.append([rc, o.getvalue(), e.getvalue()])
out["commands"] = res
print(json.dumps(out, default=str))
"""
CDS = ("primary1", "primary2", "primary3")
SDTOOL = "/opt/SMAW/bin/sdtool"
CLSNMPSETUP = "/etc/opt/FJSVcluster/bin/clsnmpsetup"


def snapshot(d: DC) -> dict:
    """``clovm status`` and every command the checks read, run in one interpreter (an e2e check
    through ``clovm exec`` costs an interpreter start per command)."""
    cmds = (
        [[cd, ["ldm", "list"]] for cd in CDS]
        + [[cd, ["ldm", "list-spconfig"]] for cd in CDS]
        + [[h, ["cftool", "-n"]] for h in ("primary1", *GUESTS)]
        + [[g, ["cfset", "-a"]] for g in GUESTS]
        + [[g, [CLSNMPSETUP, "-l"]] for g in GUESTS]
        + [[g, [SDTOOL, "-s"]] for g in GUESTS]
    )
    r = subprocess.run(
        [sys.executable, "-c", _BATCH, str(d.home)],
        input=json.dumps(cmds),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    outs = [c[1] for c in v["commands"]]
    snap: dict = {
        "status": v["status"],
        "ldm": dict(zip(CDS, outs[0:3])),
        "spconfig": dict(zip(CDS, outs[3:6])),
        "cftool": dict(zip(("primary1", *GUESTS), outs[6:9])),
        "cfset": dict(zip(GUESTS, outs[9:11])),
        "snmp": dict(zip(GUESTS, outs[11:13])),
        "sdtool": dict(zip(GUESTS, outs[13:15])),
    }
    return snap


def ldm_rows(text: str) -> dict[str, tuple[str, str]]:
    return {row[0]: (row[1], row[2]) for row in (ln.split() for ln in text.splitlines()[1:]) if len(row) >= 3}


def where(snap: dict) -> str:
    """The control domain guest2 runs on (asserting there is exactly one)."""
    found = {cd: rows["guest2"] for cd in CDS if "guest2" in (rows := ldm_rows(snap["ldm"][cd]))}
    active = [cd for cd, (state, _) in found.items() if state == "active"]
    assert len(found) == 1 and len(active) == 1, f"guest2 must be listed once, active: {found}"
    flags = found[active[0]][1]
    assert flags[5] == "-", f"guest2 is still marked {flags} on {active[0]}"
    return active[0]


def spconfig_names(snap: dict, cd: str) -> list[str]:
    return [ln.split()[0] for ln in snap["spconfig"][cd].splitlines() if ln.strip()]


def _settled(snap: dict) -> bool:
    """Every daemon running, both clusters UP everywhere, every agent tested on both guests."""
    if not snap["status"].get("ok"):
        return False
    for text in snap["cftool"].values():
        states = [row.split()[2] for row in text.splitlines()[1:] if row.strip()]
        if not states or set(states) != {"UP"}:
            return False
    for text in snap["sdtool"].values():
        rows = [ln.split() for ln in text.splitlines()[2:] if ln.strip()]
        if len(rows) != 8 or any(r[2:] != ["Idle", "Unknown", "TestWorked", "InitWorked"] for r in rows):
            return False
    return True


def check_intact(d: DC, what: str, configs: dict[str, list[str]]) -> str:
    """Every invariant of the module docstring; returns where guest2 runs."""
    snaps: list[dict] = []
    settled = poll(lambda: _settled(snaps.append(snapshot(d)) or snaps[-1]), 40, every=0.3)
    snap = snaps[-1]
    assert settled, (what, snap["status"].get("problems"), snap["cftool"], snap["sdtool"])
    on = where(snap)
    for g in GUESTS:
        assert re.search(r"KEY: CLUSTER_TIMEOUT\s+VALUE: 10\b", snap["cfset"][g]), (what, g, snap["cfset"][g])
        line = next((ln for ln in snap["snmp"][g].splitlines() if ln.split()[1:2] == ["cfguest2"]), "")
        assert line.split()[4] == net(LAN0[on]), (what, g, line)
    for cd, names in configs.items():
        now = spconfig_names(snap, cd)
        assert "config_tmp" not in now and now == names, (what, cd, now, names)
    return on


def run_cell(d: DC, victim: tuple[str, str] | None, point: str, env_point: str | None) -> str:
    """One migration of guest2 away from where it runs with the kill armed; recover; return the
    outcome text."""
    src = where(snapshot(d))
    tgt = "primary3" if src == "primary2" else "primary2"
    env = {}
    if victim is None:
        env = {"CLOVM_MIGRATE_KILL_AT": env_point or point}
    else:
        kind, host = victim
        host = {"SOURCE": src, "TARGET": tgt, "TARGET_SERVER": SERVER[tgt]}.get(host, host)
        r = d.dc.run("fault", "kill", kind, host, "--at", point)
        assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = cmigrate(d, src, "guest2", tgt, env=env, timeout=120)
    steps = [f"rc {r.returncode}"]
    if r.returncode in (-9, 137, 4):
        if r.returncode == 4:
            assert poll(lambda: snapshot(d)["status"].get("ok"), 40, every=0.3), d.dc.run("status").stdout
        r = cmigrate(d, src, "--resume", timeout=120)
        steps.append(f"--resume rc {r.returncode}")
    assert r.returncode in (0, 5), (victim, point, steps, r.stdout[-3000:], r.stderr[-2000:])
    assert not (d.host_file(src, "var/opt/FJSVcluster/clovmmigrate/guest2.migrate.json")).exists()
    outcome = "migrated" if r.returncode == 0 else "not migrated, restored on the source"
    armed = d.home / "run" / "kill-at.json"
    assert not armed.exists(), f"the kill armed at {point} never fired: {armed.read_text()}"
    return f"{outcome} ({', '.join(steps)}; {time.monotonic() - t0:.1f} s)"


def run_row(
    datacenter: Callable[..., Datacenter], root: Path, row: str, victim: tuple[str, str] | None, points: dict[str, str]
) -> dict[str, str]:
    d = bring_up_small(datacenter, root, "".join(w[0] for w in row.split()))  # (AF_UNIX paths are short)
    first = snapshot(d)
    configs = {cd: spconfig_names(first, cd) for cd in CDS}
    outcomes: dict[str, str] = {}
    for phase in PHASES:
        point = points.get(phase, phase)
        out = run_cell(d, victim, point, point)
        on = check_intact(d, f"{row} killed at {point}", configs)
        outcomes[phase] = f"{out}; guest2 on {on}"
    print(json.dumps({row: outcomes}, indent=1))  # the outcomes, for docs/reliability.md (pytest -s)
    return outcomes
