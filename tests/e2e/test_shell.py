"""`clovm shell HOST`: an interactive shell on an emulated host, prompt `HOST # `, as in the seed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xdist_net import net


@pytest.mark.timeout(180)
def test_shell_prompt_runs_admin_commands_and_refuses_what_the_host_lacks(datacenter):
    dc = datacenter()
    assert dc.up.returncode == 0, dc.up.stderr
    script = "frobnicate\nldm list\n/etc/opt/FJSVcluster/bin/clsnmpsetup -l\ncftool -n\nexit\n"
    r = subprocess.run(
        [sys.executable, "-m", "clovm.cli.main", "shell", "--home", str(dc.home), "guest2"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr  # like sh: exit returns the last command's status
    assert r.stdout.count("guest2 # ") >= 5
    assert "cfguest1    1      UP" in r.stdout and "cfguest2    2      UP" in r.stdout
    assert net("xscf        cfguest2           0        guest2       127.20.30.72    127.20.40.72") in r.stdout
    assert "ldm: command not available on guest2" in r.stderr
    assert "frobnicate: command not found" in r.stderr


@pytest.mark.timeout(180)
def test_exec_passes_exit_status_and_refuses_unknown_host(datacenter):
    dc = datacenter()
    assert dc.up.returncode == 0, dc.up.stderr
    r = dc.exec("guest9", "cftool", "-n")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "guest9" in r.stderr
    r = dc.exec("guest1", "sdtool", "-x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = dc.exec("primary1", "ldm", "list-domain", "nosuch")
    assert r.returncode == 1 and "nosuch" in r.stderr
