"""`make demo` runs `clovm demo`: the seed's procedure on a fresh datacenter, every outcome checked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import worker_topology
from xdist_net import net


@pytest.mark.timeout(240)
def test_demo_runs_the_seed_procedure_and_every_check_holds(tmp_path):
    topo = worker_topology(tmp_path, "figure-17-1")  # figure-17-1 on this xdist worker's addresses
    r = subprocess.run(
        [sys.executable, "-m", "clovm.cli.main", "demo", "--topology", str(topo)],
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    out = r.stdout
    for prompt in (
        "primary2 # /etc/opt/FJSVcluster/bin/clovmmigrate -p guest2",
        "primary2 # ldm migrate-domain -c guest2 primary3",
        "primary2 # /etc/opt/FJSVcluster/bin/clovmmigrate -u guest2 primary3",
        "guest2 # /etc/opt/FJSVcluster/bin/clsnmpsetup -l",
        "guest2 # /opt/SMAW/bin/sdtool -s",
    ):
        assert prompt in out
    assert (
        net("xscf        cfguest2           1        guest2       127.20.30.73    127.20.40.73    xuser          ssh")
        in out
    )
    last = out.strip().splitlines()[-1]
    assert last.startswith("clovm demo: ") and "checks held" in last
    held, total = last.split("clovm demo: ")[1].split(" checks")[0].split(" of ")
    assert held == total and int(total) >= 20
