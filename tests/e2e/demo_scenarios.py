"""What each ``clovm demo --scenario`` branch must show (shared by test_demo_scenarios_*.py).

Each scenario runs as an operator would run it: ``clovm demo --scenario NAME`` on a fresh
figure-17-1 datacenter (on this xdist worker's addresses), which checks every outcome itself and
exits 0 only if all held. The test also asserts the branch's characteristic lines, in order, so a
demo that silently skipped its branch cannot pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import worker_topology
from xdist_net import net

MIGRATE = "/etc/opt/FJSVcluster/bin/clovmmigrate"
SDTOOL = "/opt/SMAW/bin/sdtool"

EXPECTED: dict[str, tuple[str, ...]] = {
    "abort-recovery": (
        "(time scale 60)",
        f"primary2 # {MIGRATE} -p guest2",
        "clovm fault migration-abort guest2",
        "Domain Migration of LDom guest2 failed",
        "guest1 # /opt/SMAW/bin/cftool -n",
        "cfguest2    2      DOWN",
        "emulated seconds after clovmmigrate -p, ",
        "primary2 # ldm start-domain guest2",
        f"primary2 # {MIGRATE} -u guest2 primary2",
        "clovmmigrate: guest2 (cfguest2) now runs on primary2 (PPAR-ID 0)",
        f"guest2 # {SDTOOL} -s",
    ),
    "early-start": (
        "(time scale 60)",
        "Domain Migration of LDom guest2 failed",
        "primary2 # ldm start-domain guest2",
        "SF failed to start: cfguest1 still holds cfguest2 UP",
        "CRM failed to start: cfguest1 still holds cfguest2 UP",
        "RMS failed to start: cfguest1 still holds cfguest2 UP",
        "sdtool: The shutdown facility is not running",
        "primary2 # ldm stop-domain guest2",
        "cfguest2    2      DOWN",
        f"primary2 # {MIGRATE} -u guest2 primary2",
        "clovmmigrate: guest2 (cfguest2) now runs on primary2 (PPAR-ID 0)",
    ),
    "ssh-first-connection": (
        "clovm fault forget-xscf-key guest1 m10-3",
        f"primary2 # {MIGRATE} -u guest2 primary3",
        "clovmmigrate: the shutdown facility does not work everywhere",
        "(exit status 4)",
        "TestFailed  InitFailed",
        "7245 The first SSH connection to XSCF " + net("127.20."),  # (LAN#0 or LAN#1, whichever failed first)
        "guest1 # ssh xuser@" + net("127.20.30.73"),
        f"guest2 # {SDTOOL} -r",
        "clovmmigrate: guest2 (cfguest2) now runs on primary3 (PPAR-ID 1)",
    ),
    "spconfig-limit": (
        "primary3 # ldm add-spconfig extra6",
        "primary3 has 7 saved configurations",
        "(exit status 3)",
        "primary3 # ldm remove-spconfig extra6",
        "primary2 # ldm add-spconfig config_tmp",
        "primary2 has a configuration named config_tmp: ldm remove-spconfig config_tmp",
        "(exit status 3)",
        "primary2 # ldm remove-spconfig config_tmp",
        "clovmmigrate: guest2 (cfguest2) now runs on primary3 (PPAR-ID 1)",
    ),
    "time-sync": (
        "clovm fault clock m10-3 +30",
        "clovmmigrate: guest2 (cfguest2) now runs on primary3 (PPAR-ID 1)",
        "guest1 switchlog:",
        (
            "(WRP, 34) Cluster host cfguest2 is no longer in time sync with local node. "
            "Sane operation of RMS can no longer be guaranteed."
        ),
        "Further out-of-sync messages will appear in the syslog.",
        "(WRP, 35) Cluster host cfguest2 is no longer in time sync",
        "clovm fault clock m10-3 -30",
    ),
    "cancelled": (
        f"primary2 # {MIGRATE} -p guest2",
        f"primary2 # {MIGRATE} -u guest2 primary2",
        "clovmmigrate: guest2 (cfguest2) now runs on primary2 (PPAR-ID 0)",
        "== and 17.3.1.1 can be run again",
        f"primary2 # {MIGRATE} -p guest2",
        "clovmmigrate: guest2 (cfguest2) is ready for live migration",
    ),
}


def run_scenario(tmp_path: Path, name: str) -> str:
    """Run the scenario; assert rc 0, every check held, and its lines in order. Returns stdout."""
    topo = worker_topology(tmp_path, "figure-17-1")
    r = subprocess.run(
        [sys.executable, "-m", "clovm.cli.main", "demo", "--scenario", name, "--topology", str(topo)],
        capture_output=True,
        text=True,
        timeout=200,
        stdin=subprocess.DEVNULL,
    )
    out = r.stdout
    assert r.returncode == 0, out[-4000:] + r.stderr[-2000:]
    last = out.strip().splitlines()[-1]
    held, total = last.split("clovm demo: ")[1].split(" checks")[0].split(" of ")
    assert held == total and int(total) >= 6, last
    at = 0
    for line in EXPECTED[name]:
        found = out.find(line, at)
        assert found >= 0, f"{name}: {line!r} missing after offset {at}:\n{out[at : at + 3000]}"
        at = found + len(line)
    return out
