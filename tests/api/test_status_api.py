"""``clovm status``'s use case (clovm.api.datacenter.status) over a fake probe: per-daemon state and codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clovm import topology
from clovm.api import datacenter
from clovm.api.errors import ClovmError
from clovm.core import codes
from clovm.runtime.home import Home

pytestmark = pytest.mark.timeout(30)


class FakeProbe:
    """Every daemon of figure-17-1 up and answering, unless told otherwise."""

    def __init__(self, home: Home, topo: topology.Topology) -> None:
        self.home = home
        self.procs = {f"xscfd-{s.name}": 100 + i for i, s in enumerate(topo.servers)}
        self.procs.update({f"ldmd-{c.name}": 200 + i for i, c in enumerate(topo.control_domains)})
        self.down: set[Path] = set()  # sockets nobody listens on
        self.failing: dict[Path, ClovmError] = {}
        self.dead_pids: set[int] = set()
        for c in topo.control_domains:
            sock = home.ldmd_socket(c.name)
            sock.parent.mkdir(parents=True, exist_ok=True)
            sock.touch()
        for i, g in enumerate(topo.guests):
            place = home.placement_file(g.name)
            place.parent.mkdir(parents=True, exist_ok=True)
            place.write_text(json.dumps({"host": g.control_domain, "server": "?", "pid": 300 + i}))

    def processes(self) -> dict[str, int]:
        return dict(self.procs)

    def is_ours(self, pid: int) -> bool:
        return pid not in self.dead_pids

    def ask(self, socket: Path, op: str, **args: Any) -> Any:
        if socket in self.down:
            raise ClovmError(codes.NOT_RUNNING, f"no socket {socket}")
        if socket in self.failing:
            raise self.failing[socket]
        if op == "domains":
            return [{"name": "guest1", "state": "active", "flags": "-n----"}]
        return {"state": "UP"}


def test_a_healthy_datacenter_has_no_code(home: Home, topo: topology.Topology) -> None:
    st = datacenter.status(home, FakeProbe(home, topo))
    assert st["ok"] is True and st["code"] is None and st["problems"] == []
    kinds = [(d["daemon"], d["name"]) for d in st["daemons"]]
    assert kinds == (
        [("xscfd", s.name) for s in topo.servers]
        + [("ldmd", c.name) for c in topo.control_domains]
        + [("domain", g.name) for g in topo.guests]
        + [("nodeagent", h.name) for h in topo.hosts()]
    )
    assert {d["state"] for d in st["daemons"]} == {"running"}
    assert [s["xscfd"] for s in st["servers"]] == ["running"] * 3  # the keys from before are kept
    assert st["nodes"]["cfguest1"] == {"host": "guest1", "state": "UP"}


def test_every_broken_daemon_is_a_problem_with_its_code(home: Home, topo: topology.Topology) -> None:
    probe = FakeProbe(home, topo)
    del probe.procs["xscfd-m10-2"]
    probe.down.add(home.node_socket("guest2"))
    probe.failing[home.ldmd_socket("primary3")] = ClovmError(codes.UNREACHABLE, "no answer within 10 s")
    probe.dead_pids.add(301)  # guest2's domain process
    st = datacenter.status(home, probe)
    assert st["ok"] is False and st["code"] == codes.DEGRADED
    assert sorted((p["daemon"], p["name"], p["code"]) for p in st["problems"]) == [
        ("domain", "guest2", codes.NOT_RUNNING),
        ("ldmd", "primary3", codes.UNREACHABLE),
        ("nodeagent", "guest2", codes.NOT_RUNNING),
        ("xscfd", "m10-2", codes.NOT_RUNNING),
    ]
    states = {(d["daemon"], d["name"]): d["state"] for d in st["daemons"]}
    assert states[("ldmd", "primary3")] == "not answering" and states[("xscfd", "m10-2")] == "down"
    assert st["nodes"]["cfguest2"] == {"host": "guest2", "error": "not running"}
    assert st["control_domains"][2]["domains"] == {"error": "UNREACHABLE: no answer within 10 s"}
    json.dumps(st)  # JSON-able


def test_nothing_running_is_not_running(home: Home) -> None:
    with pytest.raises(ClovmError) as e:
        datacenter.status(home)
    assert e.value.code == codes.NOT_RUNNING


def test_health_of_a_daemon_list() -> None:
    assert datacenter.health([]) == {"ok": True, "code": None, "problems": []}
    bad = {"daemon": "ldmd", "name": "p1", "pid": None, "state": "down", "code": codes.NOT_RUNNING, "message": "m"}
    assert datacenter.health([bad])["problems"] == [
        {"daemon": "ldmd", "name": "p1", "code": codes.NOT_RUNNING, "message": "m"}
    ]
