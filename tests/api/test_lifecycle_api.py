"""The use cases of issue 12 without daemons: ``clovm fault kill``'s arguments and armed kills, what
``clovm status`` says of supervised daemons, when a datacenter is ready (api.readiness), and what a
stopped home keeps (api.provision)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_status_api import FakeProbe

from clovm import topology
from clovm.api import datacenter, faults, provision, readiness
from clovm.api.errors import ClovmError
from clovm.core import codes
from clovm.runtime import proc
from clovm.runtime.home import Home

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    "daemon, host, at, code",
    [
        ("sshd", "primary2", None, codes.BAD_ARGUMENT),
        ("ldmd", "guest1", None, codes.BAD_ARGUMENT),  # ldmd runs on control domains
        ("xscfd", "primary2", None, codes.UNKNOWN_SERVER),
        ("nodeagent", "nosuch", None, codes.UNKNOWN_HOST),
        ("ldmd", "primary2", None, codes.NOT_RUNNING),  # nothing runs in this home
    ],
)
def test_kill_refuses_what_it_cannot_kill(home: Home, daemon: str, host: str, at: str | None, code: str) -> None:
    with pytest.raises(ClovmError) as e:
        faults.kill(home, daemon, host, at)
    assert e.value.code == code


def test_an_armed_kill_is_written_once_and_fires_once(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "require_running", lambda _home: {"x": 1})
    with pytest.raises(ClovmError) as e:
        faults.kill(home, "ldmd", "primary2", "somewhen")
    assert e.value.code == codes.BAD_ARGUMENT and "pre-copy" in e.value.message
    assert faults.kill(home, "ldmd", "primary2", "pre-copy") == (
        "armed: ldmd primary2 is killed (SIGKILL) when a live migration reaches pre-copy"
    )
    faults.kill(home, "xscfd", "m10-3", "hand-off")
    assert json.loads(home.armed_kills_file.read_text()) == [
        {"point": "pre-copy", "daemon": "ldmd-primary2"},
        {"point": "hand-off", "daemon": "xscfd-m10-3"},
    ]
    killed: list[int] = []
    monkeypatch.setattr(proc.os, "kill", lambda pid, sig: killed.append(pid))
    home.pid_file("ldmd-primary2").parent.mkdir(parents=True, exist_ok=True)
    home.pid_file("ldmd-primary2").write_text("4242\n")
    assert proc.fire_armed_kills(home, ["suspend"], "ldmd-primary3") == []
    fired = proc.fire_armed_kills(home, ["pre-copy", "checks"], "ldmd-primary3")
    assert fired == [{"point": "pre-copy", "daemon": "ldmd-primary2"}] and killed == [4242]
    assert proc.fire_armed_kills(home, ["pre-copy"], "ldmd-primary3") == []  # disarmed
    assert json.loads(home.armed_kills_file.read_text()) == [{"point": "hand-off", "daemon": "xscfd-m10-3"}]


class SupervisedProbe(FakeProbe):
    def __init__(self, home: Home, topo: topology.Topology, watched: dict[str, Any], alive: bool = True) -> None:
        super().__init__(home, topo)
        self.watched, self.alive = watched, alive

    def supervision(self) -> dict[str, Any]:
        return {"pid": 77 if self.alive else None, "alive": self.alive, "daemons": self.watched}


def test_status_shows_a_daemon_the_supervisor_restarts_or_gave_up_on(home: Home, topo: topology.Topology) -> None:
    probe = SupervisedProbe(
        home,
        topo,
        {
            "ldmd-primary2": {"state": "restarting", "pid": None, "restarts": 1, "last_exit": "pid 5 exited"},
            "xscfd-m10-3": {"state": "maintenance", "pid": None, "restarts": 5, "last_exit": "pid 6 exited"},
        },
    )
    del probe.procs["ldmd-primary2"], probe.procs["xscfd-m10-3"]
    st = datacenter.status(home, probe)
    by = {(d["daemon"], d["name"]): d for d in st["daemons"]}
    assert by[("ldmd", "primary2")]["state"] == "restarting" and by[("ldmd", "primary2")]["code"] == codes.RESTARTING
    assert by[("xscfd", "m10-3")]["state"] == "maintenance" and by[("xscfd", "m10-3")]["code"] == codes.MAINTENANCE
    assert st["control_domains"][1]["ldmd"] == "restarting" and st["control_domains"][1]["domains"] is None
    assert st["servers"][2]["xscfd"] == "maintenance"
    assert st["supervisor"]["state"] == "running" and st["code"] == codes.DEGRADED
    json.dumps(st)


def test_status_reports_a_dead_supervisor(home: Home, topo: topology.Topology) -> None:
    st = datacenter.status(home, SupervisedProbe(home, topo, {}, alive=False))
    assert not st["ok"] and [p["daemon"] for p in st["problems"]] == ["supervisor"]
    assert [d["daemon"] for d in st["daemons"]].count("supervisor") == 0  # (the daemons' list is as it was)


def _answers(topo: topology.Topology, **over: Any) -> dict[str, dict[str, Any]]:
    rows = [
        [n, f"SA_xscfsnmpg{i}{x}.so", "Idle", "Unknown", "TestWorked", "InitWorked"]
        for n in ("cfguest1", "cfguest2")
        for i in "01"
        for x in "pr"
    ]
    out: dict[str, dict[str, Any]] = {}
    for h in topo.hosts():
        peers = topo.node_spec(h.name).peers
        out[h.name] = {
            "status": {
                "local_state": "UP",
                "view": dict.fromkeys(peers, "UP"),
                "apps": {"app1": "cfguest1"} if h.name.startswith("guest") else {},
            },
            "sample": {"rms_busy": False, "rms_activity": None},
            "sd": {"running": True, "rows": rows},
        }
    for key, value in over.items():
        host, part = key.split("__")
        out[host][part] = value
    return out


def test_readiness_names_the_first_thing_not_ready(topo: topology.Topology) -> None:
    assert readiness._cf(topo, _answers(topo)) is None
    assert readiness._rms(topo, _answers(topo)) == (None, ["app1 Online on cfguest1"])
    assert readiness._sf(topo, _answers(topo)) == (None, ["8 on cfguest1", "8 on cfguest2"])
    bad = _answers(topo, guest2__status={"local_state": "UP", "view": {"cfguest1": "LEFTCLUSTER"}, "apps": {}})
    assert readiness._cf(topo, bad) == "CF: cfguest2 sees cfguest1 LEFTCLUSTER"
    settling = _answers(topo, guest1__sample={"rms_busy": True, "rms_activity": "settling"})
    assert readiness._rms(topo, settling)[0] == "RMS: cfguest1 is settling"
    failed = _answers(topo)
    failed["guest1"]["sd"]["rows"][0] = ["cfguest1", "SA_xscfsnmpg0p.so", "Idle", "Unknown", "TestFailed", "InitWorked"]
    assert readiness._sf(topo, failed)[0] == "SF: on cfguest1, SA_xscfsnmpg0p.so for cfguest1 is TestFailed/InitWorked"


def test_a_stopped_home_keeps_its_state_and_fresh_forgets_it(home: Home) -> None:
    assert provision.saved_state(home) == []
    home.placement_file("guest2").parent.mkdir(parents=True, exist_ok=True)
    home.placement_file("guest2").write_text(json.dumps({"pid": 1, "host": "primary3", "server": "m10-3"}))
    home.sp_file("m10-3", 1).parent.mkdir(parents=True, exist_ok=True)
    home.sp_file("m10-3", 1).write_text("{}")
    home.cluster_config("guest1").parent.mkdir(parents=True, exist_ok=True)
    home.cluster_config("guest1").write_text("CLUSTER_TIMEOUT 15\n")
    (home.server_dir("m10-3") / "ssh_host_key").write_text("key")
    kept = provision.saved_state(home)
    assert kept[0] == "where the guest domains run (guest2 on primary3)" and len(kept) == 3
    provision.discard_state(home)
    assert provision.saved_state(home) == []
    assert (home.server_dir("m10-3") / "ssh_host_key").read_text() == "key"  # host keys stay


def test_the_clock_goes_on_where_down_stopped_it(home: Home) -> None:
    home.clock_file.write_text(json.dumps({"epoch": 1.0, "start": 0.0, "time_scale": 10.0, "stopped_at": 1234.5}))
    assert provision.resume_at(home) == 1234.5
    provision.record_stop(home)  # already stopped: kept
    assert json.loads(home.clock_file.read_text())["stopped_at"] == 1234.5
    Path(home.clock_file).unlink()
    assert provision.resume_at(home) == 0.0
