"""End to end: `clovm up` / `exec` / `status` / `down` on real processes over loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from clovm.cli.render import clsnmpsetup_l
from clovm.core.sfconfig import XscfEntry
from conftest import Datacenter, clovm, poll, processes_mentioning, socket_files
from xdist_net import net

pytestmark = pytest.mark.timeout(180)


def _rows(table: str, skip: int) -> list[list[str]]:
    return [line.split() for line in table.splitlines()[skip:] if line.strip()]


def test_up_exec_status_down_on_figure_17_1(datacenter: Callable[..., Datacenter]) -> None:
    dc = datacenter()
    assert dc.up.returncode == 0, dc.up.stderr
    assert net("127.20.30.71") in dc.up.stdout and "guest2" in dc.up.stdout

    ldm = dc.exec("primary2", "ldm", "list")
    assert ldm.returncode == 0, ldm.stderr
    guest2 = [r for r in _rows(ldm.stdout, 1) if r[0] == "guest2"]
    assert guest2 and guest2[0][1] == "active", ldm.stdout

    def both_up() -> bool:
        r = dc.exec("guest1", "cftool", "-n")
        states = {row[0]: row[2] for row in _rows(r.stdout, 1) if len(row) >= 3}
        return r.returncode == 0 and states.get("cfguest1") == "UP" and states.get("cfguest2") == "UP"

    assert poll(both_up, 30, every=0.5), dc.exec("guest1", "cftool", "-n").stdout

    def sf_tested() -> bool:
        r = dc.exec("guest2", "sdtool", "-s")
        rows = _rows(r.stdout, 2)
        return r.returncode == 0 and len(rows) == 8 and all(row[-2:] == ["TestWorked", "InitWorked"] for row in rows)

    assert poll(sf_tested, 30, every=0.5), dc.exec("guest2", "sdtool", "-s").stdout

    snmp = dc.exec("guest2", "/etc/opt/FJSVcluster/bin/clsnmpsetup", "-l")
    assert snmp.returncode == 0, snmp.stderr
    assert snmp.stdout == clsnmpsetup_l(
        [
            XscfEntry("cfguest1", 0, "guest1", net("127.20.30.71"), net("127.20.40.71")),
            XscfEntry("cfguest2", 0, "guest2", net("127.20.30.72"), net("127.20.40.72")),
        ]
    )

    st = dc.run("status", "--json")
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert [s["xscfd"] for s in status["servers"]] == ["running"] * 3
    assert {g["name"]: g["control_domain"] for g in status["guests"]} == {"guest1": "primary1", "guest2": "primary2"}
    assert set(status["nodes"]) == {"cfprimary1", "cfprimary2", "cfprimary3", "cfguest1", "cfguest2"}
    assert status["migrations"] == []

    down = dc.run("down")
    assert down.returncode == 0, down.stderr
    assert not processes_mentioning(str(dc.home) + "/")
    assert socket_files(dc.home) == []
    again = dc.run("down")
    assert again.returncode == 0 and "not running" in again.stdout


def test_second_up_on_a_running_home_is_refused(datacenter: Callable[..., Datacenter]) -> None:
    dc = datacenter()
    assert dc.up.returncode == 0, dc.up.stderr
    before = processes_mentioning(str(dc.home) + "/")
    second = clovm("up", "--home", str(dc.home), "--time-scale", "10", timeout=60)
    assert second.returncode != 0
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert "already up" in second.stderr
    assert set(processes_mentioning(str(dc.home) + "/")) >= set(before)
    st = dc.run("status", "--json")
    assert st.returncode == 0, st.stderr
    assert all(s["xscfd"] == "running" for s in json.loads(st.stdout)["servers"])


def test_bad_topology_names_the_field_and_starts_nothing(tmp_path: Path, datacenter: Callable[..., Datacenter]) -> None:
    bad = tmp_path / "bad.toml"
    good = (Path(__file__).parents[2] / "src/clovm/topologies/figure-17-1.toml").read_text()
    bad.write_text(good.replace('lan1 = "127.20.40.72"', 'lan1 = "10.20.40.72"'))
    dc = datacenter("badtopo", str(bad))
    assert dc.up.returncode != 0
    lines = dc.up.stderr.strip().splitlines()
    assert len(lines) == 1, dc.up.stderr
    assert "server[1].lan1" in lines[0]
    assert not processes_mentioning(str(dc.home) + "/")
    assert not (dc.home / "run" / "lock").exists()


def test_up_refuses_a_taken_address_and_starts_nothing(datacenter: Callable[..., Datacenter]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((net("127.20.30.71"), 16161))
        dc = datacenter("taken")
        assert dc.up.returncode != 0
        lines = dc.up.stderr.strip().splitlines()
        assert len(lines) == 1, dc.up.stderr
        assert net("127.20.30.71:16161") in lines[0]
        assert "pytest" in lines[0] or "pid" in lines[0]  # who holds it
        assert not processes_mentioning(str(dc.home) + "/")
        assert socket_files(dc.home) == []
