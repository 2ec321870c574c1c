"""clovm migrate on the Pacemaker stack as a machine (core.stacks.pacemaker behind core.safemigrate),
against a fake cluster that answers its calls — and the stack's rules, and the adapter's pure parts.

The fake: hosts kvm1-3, VMs vm1 (on kvm1) and vm2 (on kvm2), a fence_virsh device per node, a
migration that moves one phase per ``sleep``, knobs for each preflight problem and each outcome
(migrated, cancelled, stopped). Every change is recorded, so "nothing changed" is checkable.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pcmk_helpers import Pair

from clovm.core import codes
from clovm.core import migration as mig
from clovm.core import safemigrate as sm
from clovm.core.ldm import ResumeDomainProcess, SuspendDomainProcess
from clovm.core.stacks import pacemaker as ps
from clovm.pacemaker import configs, migrate_env, readiness
from clovm.pacemaker import layout as L
from clovm.pacemaker.hvcore import VirshReceived

pytestmark = pytest.mark.timeout(30)

HOSTS = {"kvm1": "192.168.122.11", "kvm2": "192.168.122.12", "kvm3": "192.168.122.13"}
NODES = ("vm1", "vm2")
PHASES = [("pre-copy", 0, 1), ("pre-copy", 87, 2), ("suspend", 98, 0)]
INFO = {
    "memory_mb": 16384,
    "free_mb": 11264,
    "bandwidth_mb_s": 500.0,
    "converge_mb": 64.0,
    "max_rounds": 5,
    "suspend_overhead_s": 0.1,
}


class FakeCluster:
    def __init__(self, outcome: str = "migrated") -> None:
        self.outcome = outcome
        self.now = 0.0
        self.vms = {"vm1": {"host": "kvm1", "state": "running"}, "vm2": {"host": "kvm2", "state": "running"}}
        self.nodes = {n: {"conf": 3000, "runtime": 3000, "record": None, "running": True} for n in NODES}
        self.props: dict[str, str] = {}
        self.devices = {
            f"fence-{n}": {
                "ip": self.vms[n]["host"],
                "plug": n,
                "username": "root",
                "identity_file": "/root/.ssh/id_fence",
                "pcmk_host_list": n,
            }
            for n in NODES
        }
        self.started = {"fence-vm1": "vm2", "fence-vm2": "vm1"}
        self.failures: list[str] = []
        self.pending: list[str] = []
        self.migration: dict | None = None
        self.result: dict | None = None
        self.free_mb = 11264
        self.journals: dict[str, list[str]] = {h: [] for h in HOSTS}
        self.lost_after: float | None = None  # vm2 is seen lost once now passes this
        self.login_ok = True
        self.calls: list[tuple[str, str]] = []
        self.changes: list[tuple] = []
        self.events: dict[str, list[dict]] = {h: [] for h in HOSTS}

    # ---- views
    def crm_mon(self, observer: str) -> dict:
        nodes = {}
        for n in NODES:
            online = n != "vm2" or self.lost_after is None or self.now < self.lost_after
            nodes[n] = {
                "online": online,
                "unclean": not online and self.props.get("maintenance-mode") == "true",
                "pending": False,
                "maintenance": False,
                "standby": False,
                "shutdown": False,
            }
        res = {
            d: {
                "agent": "stonith:fence_virsh",
                "role": "Started",
                "node": n,
                "managed": True,
                "failed": False,
                "pending": None,
            }
            for d, n in self.started.items()
        }
        return {
            "dc": "vm1",
            "quorate": True,
            "online": [n for n in NODES if nodes[n]["online"]],
            "offline": [],
            "started": dict(self.started),
            "failures": list(self.failures),
            "monitored": sorted(self.started),
            "maintenance": self.props.get("maintenance-mode") == "true",
            "stonith_enabled": self.props.get("stonith-enabled") != "false",
            "nodes": nodes,
            "resources": res,
            "pending": list(self.pending),
        }

    def where(self, host: str, domain: str) -> dict | None:
        vm = self.vms.get(domain)
        if self.migration is not None and host == "kvm3" and domain == "vm2":
            return {"state": "bound", "virsh_state": "paused", "flags": "-----t", "migration": None}
        if vm is None or vm["host"] != host:
            return None
        prog = None
        if self.migration is not None and host == "kvm2":
            ph, pct, rnd = PHASES[self.migration["step"]]
            prog = {"phase": ph, "percent": pct, **({"round": rnd, "rounds_max": 5} if rnd else {})}
        state = "active" if vm["state"] == "running" else "inactive"
        return {"state": state, "virsh_state": vm["state"], "flags": "-n----", "migration": prog}

    def advance(self) -> None:
        if self.migration is None:
            return
        self.migration["step"] += 1
        if self.migration["step"] < len(PHASES):
            return
        self.migration = None
        self.events["kvm2"].append({"t": self.now - 0.2, "what": "suspended", "detail": ""})
        self.events["kvm2"].append({"t": self.now - 0.3, "what": "migration", "detail": "suspend 98%"})
        if self.outcome == "migrated":
            self.vms["vm2"]["host"] = "kvm3"
            self.events["kvm3"].append({"t": self.now - 0.05, "what": "resumed", "detail": ""})
            self.result = {"rc": 0, "stdout": "Migration: [100 %]\n", "stderr": ""}
        elif self.outcome == "cancelled":
            self.result = {"rc": 1, "stdout": "", "stderr": "error: Migration of domain vm2 was cancelled\n"}
        else:
            self.vms["vm2"]["state"] = "shut off"
            self.nodes["vm2"]["running"] = False
            self.lost_after = self.now + 5.0
            self.events["kvm2"].append({"t": self.now - 0.05, "what": "killed", "detail": ""})
            self.result = {"rc": 1, "stdout": "", "stderr": "error: Failed to migrate domain 'vm2'\n"}

    def fence(self, params: dict, action: str) -> dict:
        host, plug = params["ip"], params.get("plug")
        if not self.login_ok:
            return {"rc": 1, "status": None, "text": "ERROR: Unable to connect/login to fencing device", "stdout": ""}
        if action == "list":
            return {"rc": 0, "status": None, "text": "", "stdout": ""}
        here = self.vms.get(plug, {}).get("host") == host
        if here:
            return {"rc": 0, "status": "ON", "text": "Status: ON", "stdout": "Status: ON\n"}
        if params.get("missing_as_off"):
            return {"rc": 2, "status": "OFF", "text": "Status: OFF", "stdout": "Status: OFF\n"}
        return {"rc": 1, "status": None, "text": "ERROR: Failed: You have to enter existing name/UUID", "stdout": ""}

    # ---- the calls
    def answer(self, c: mig.Call) -> mig.CallReturned:  # one branch per call
        self.calls.append((c.target, c.op))
        a, t = dict(c.args), c.target

        def ok(v: Any = None) -> mig.CallReturned:
            return mig.CallReturned(c.call_id, True, v)

        match c.op:
            case "cluster_nodes":
                if a["domain"] not in NODES:
                    return mig.CallReturned(c.call_id, False, None, f"{a['domain']} is not a node of the cluster")
                return ok({"node": a["domain"], "nodes": list(NODES), "time_scale": 1.0})
            case "control_domains":
                return ok([{"host": h, "address": x} for h, x in HOSTS.items()])
            case "where":
                return ok(self.where(t, a["domain"]))
            case "host_info":
                info = dict(INFO, free_mb=self.free_mb if t == "kvm3" else INFO["free_mb"])
                info["domains"] = {
                    vm: {"memory_mb": 1024, "vcpu": 2, "dirty_rate_mb_s": 64.0}
                    for vm, v in self.vms.items()
                    if v["host"] == t
                }
                return ok(info)
            case "activity":
                return ok(
                    {
                        "journals": list(self.journals[t]),
                        "migrating": ["vm2"] if self.migration and t in ("kvm2", "kvm3") else [],
                    }
                )
            case "sleep":
                self.now += a["seconds"]
                self.advance()
                return ok()
            case "migrate_start":
                self.changes.append((t, "migrate_start"))
                self.migration = {"step": 0}
                return ok()
            case "migrate_result":
                return ok(self.result)
            case "hypervisor_events":
                return ok([e for e in self.events[t] if e["t"] >= a["since"]])
            case "virsh":
                if a["argv"][0] == "start":
                    self.changes.append((t, "virsh start"))
                    self.vms["vm2"]["state"] = "running"
                    self.nodes["vm2"]["running"] = True
                    self.lost_after = None
                    return ok({"rc": 0, "stdout": "Domain 'vm2' started\n", "stderr": ""})
                if a["argv"][0] == "domstate":
                    if self.vms[a["argv"][1]]["host"] == t:
                        return ok({"rc": 0, "stdout": "running\n", "stderr": ""})
                    return ok({"rc": 1, "stdout": "", "stderr": f"error: failed to get domain '{a['argv'][1]}'\n"})
        n = self.nodes[t]
        if not n["running"]:
            return mig.CallReturned(c.call_id, False, None, f"{t} is not running")
        match c.op:
            case "crm_mon":
                return ok(self.crm_mon(t))
            case "cmap_get":
                return ok({k: n["runtime"] if k == ps.TOKEN_KEY else 120 for k in a["keys"]})
            case "token_record":
                return ok(n["record"])
            case "stonith_devices":
                return ok([{"id": d, "agent": "fence_virsh", "params": dict(p)} for d, p in self.devices.items()])
            case "stonith_list":
                return ok([d for d, p in self.devices.items() if p["pcmk_host_list"] == a["node"] and t != a["node"]])
            case "fence_agent":
                return ok(self.fence(a["params"], a["action"]))
        self.changes.append((t, c.op, tuple(sorted((k, str(v)) for k, v in a.items()))))
        match c.op:
            case "record_token":
                if n["record"] is None:
                    n["record"] = a["token"]
                return ok(n["record"])
            case "clear_token_record":
                n["record"] = None
            case "write_corosync_conf":
                n["conf"] = a["token"]
            case "cfgtool_reload":
                for x in self.nodes.values():
                    if x["running"]:
                        x["runtime"] = x["conf"]
            case "cluster_property":
                if a["value"] is None:
                    self.props.pop(a["name"], None)
                else:
                    self.props[a["name"]] = a["value"]
            case "stonith_update":
                self.devices[a["device"]].update(a["params"])
            case _:
                raise AssertionError(f"unexpected call {c}")
        return ok()


def run(fc: FakeCluster, req: sm.MigrateRequest, journal: dict | None = None, kill_at: str | None = None):
    """Drive a run; (finished or None if killed, prints, last journal). ``kill_at``: stop right
    after the first journal write at that point (migrate_env's kill points)."""
    m = sm.SafeMigrationRun(req, journal, stack=ps.PacemakerStack() if journal is None else None)
    effects = m.handle(fc.now, mig.RunStarted())
    prints: list[str] = []
    last = journal
    while True:
        calls = []
        for e in effects:
            if isinstance(e, mig.Print):
                prints.append(e.text)
            elif isinstance(e, mig.Persist) and e.domain == sm.journal_key("vm2"):
                last = copy.deepcopy(e.journal)
                if kill_at and last is not None and kill_at in migrate_env._Persist.points(last):
                    return None, prints, last
            elif isinstance(e, mig.Finished):
                return e, prints, last
            elif isinstance(e, mig.Call):
                calls.append(e)
        assert calls, prints
        effects = []
        for call in calls:
            effects += m.handle(fc.now, fc.answer(call))


REQ = sm.MigrateRequest("vm2", "kvm2", "kvm3")


def healthy(fc: FakeCluster, host: str) -> None:
    assert fc.vms["vm2"]["host"] == host and fc.vms["vm2"]["state"] == "running"
    assert all(n["runtime"] == 3000 and n["conf"] == 3000 and n["record"] is None for n in fc.nodes.values())
    assert "maintenance-mode" not in fc.props
    assert fc.devices["fence-vm2"]["ip"] == host


# ---------------------------------------------------------------------------------------------- rules
def test_expected_suspend_is_the_hypervisors_engine() -> None:
    p = Pair()
    p.send("kvm2", VirshReceived(1, ("migrate", "--live", "vm2", "kvm3")))
    while not p.replies(1) and p.step():
        pass
    ((t_susp, _),) = p.effects("kvm2", SuspendDomainProcess)
    ((t_res, _),) = p.effects("kvm3", ResumeDomainProcess)
    info = p.hv["kvm2"].info()
    assert info["domains"] == {} and p.hv["kvm3"].info()["domains"]["vm2"]["memory_mb"] == L.VM_MEMORY_MB
    est = ps.expected_suspend_s(
        L.VM_MEMORY_MB,
        L.VM_DIRTY_MB_S,
        info["bandwidth_mb_s"],
        converge_mb=info["converge_mb"],
        max_rounds=info["max_rounds"],
        overhead_s=info["suspend_overhead_s"],
    )
    assert est == pytest.approx(t_res - t_susp, abs=1e-6)
    # 8 GiB dirtied faster than the link: never converges, the whole memory in the suspend (the SPARC figure)
    assert ps.expected_suspend_s(8192, 2000, 500, converge_mb=64, max_rounds=5, overhead_s=0.1) == pytest.approx(16.484)
    with pytest.raises(ValueError):
        ps.expected_suspend_s(1, 1, 0, converge_mb=1, max_rounds=1, overhead_s=0)


def test_protective_token_is_computed_not_600_s() -> None:
    assert ps.protective_token_ms(3000, 0.134) == 4000  # the old token kept whole, 2 x the suspend on top
    assert ps.protective_token_ms(1500, 0.134, time_scale=2.0) == 2000
    assert ps.protective_token_ms(3000, 16.5) == 36000
    assert ps.protective_token_ms(3000, 0.0) == 3000  # never lower than in effect, rounded up only if needed
    assert ps.protective_token_ms(2500, 0.0) == 2500
    assert ps.runtime_token_ms(3000, 2) == 3000 and ps.runtime_token_ms(3000, 4) == 4300
    with pytest.raises(ValueError):
        ps.protective_token_ms(0, 1.0)


def test_adapter_parsers() -> None:
    conf = configs.corosync_conf(3000)
    assert configs.token_of(configs.with_token(conf, 37000)) == 37000
    assert configs.with_token(conf, 3000) == conf
    assert configs.with_token(conf, 4000).replace("token: 4000", "token: 3000") == conf
    assert configs.token_of(configs.with_token(conf.replace("    token: 3000\n", ""), 5000)) == 5000
    with pytest.raises(ValueError):
        configs.with_token("nodelist {\n}\n", 1)
    assert migrate_env.parse_cmap("runtime.config.totem.token (u32) = 3000\nx.y (str) = a b\n") == {
        "runtime.config.totem.token": 3000,
        "x.y": "a b",
    }
    assert migrate_env.fence_stdin({"ip": "kvm3", "plug": "vm2"}, "status") == "action=status\nip=kvm3\nplug=vm2\n"
    assert migrate_env.fence_status(2, "Status: OFF\n") == "OFF"
    st = {"domains": [{"name": "vm2", "state": "paused", "id": None}], "incoming": ["vm2"], "migrating": {}}
    assert migrate_env.where_of(st, "vm2")["state"] == "bound" and migrate_env.where_of(st, "vm1") is None
    st = {
        "domains": [{"name": "vm2", "state": "running", "id": 1}],
        "incoming": [],
        "migrating": {"vm2": {"phase": "pre-copy", "percent": 87, "round": 2, "rounds_max": 5}},
    }
    assert migrate_env.where_of(st, "vm2") == {
        "state": "active",
        "virsh_state": "running",
        "flags": "-n---s",
        "migration": {"phase": "pre-copy", "percent": 87, "round": 2, "rounds_max": 5},
    }


CRM_MON = """<pacemaker-result api-version="2.25" request="crm_mon">
  <summary><current_dc present="true" name="vm1" with_quorum="true"/>
    <cluster_options stonith-enabled="true" maintenance-mode="true"/></summary>
  <nodes>
    <node name="vm1" online="true" unclean="false" pending="false" maintenance="false" standby="false" shutdown="false"/>
    <node name="vm2" online="false" unclean="true" pending="false" maintenance="false" standby="false" shutdown="false"/>
  </nodes>
  <resources>
    <resource id="fence-vm2" resource_agent="stonith:fence_virsh" role="Started" active="true" managed="false"
              failed="false" pending="Monitoring"><node name="vm1"/></resource>
  </resources>
</pacemaker-result>"""

CIB = """<resources>
  <primitive id="fence-vm2" class="stonith" type="fence_virsh">
    <instance_attributes id="a"><nvpair id="b" name="ip" value="kvm2"/><nvpair id="c" name="plug" value="vm2"/>
    </instance_attributes></primitive>
  <primitive id="dummy" class="ocf" provider="pacemaker" type="Dummy"/>
</resources>"""


def test_readiness_reads_maintenance_unclean_pending_and_devices() -> None:
    v = readiness.parse_crm_mon(CRM_MON)
    d = v.to_dict()
    assert d["maintenance"] is True and d["stonith_enabled"] is True
    assert d["nodes"]["vm2"]["unclean"] and not d["nodes"]["vm2"]["online"]
    assert d["pending"] == ["fence-vm2 Monitoring on vm1"] and d["resources"]["fence-vm2"]["managed"] is False
    assert ps.PacemakerStack.view_sample("vm1", d, {ps.TOKEN_KEY: 4000, ps.SILENCE_KEY: 250}, NODES, 1.0) == {
        "state": "UP",
        "sf": "stopped",
        "peers": {"vm2": {"state": "LEFTCLUSTER", "gap": None, "timeout": 4.0}},
    }
    problems = ps.cluster_problems(d, NODES, "vm1")
    assert any("vm2 UNCLEAN" in p for p in problems) and any("in flight" in p for p in problems)
    assert readiness.parse_stonith_devices(CIB) == [
        {"id": "fence-vm2", "agent": "fence_virsh", "params": {"ip": "kvm2", "plug": "vm2"}}
    ]
    assert ps.device_for(readiness.parse_stonith_devices(CIB), "vm2")["id"] == "fence-vm2"  # named after it
    assert ps.device_for([], "vm2") is None


# ---------------------------------------------------------------------------------------------- the run
def test_happy_path_protects_migrates_repoints_restores_and_proves() -> None:
    fc = FakeCluster()
    fin, prints, j = run(fc, REQ)
    assert fin is not None and fin.rc == 0, prints
    healthy(fc, "kvm3")
    ch = [c[:2] for c in fc.changes]
    # record first, then maintenance, then the token on every node and one reload; back in reverse
    assert ch[:6] == [
        ("vm1", "record_token"),
        ("vm2", "record_token"),
        ("vm1", "cluster_property"),
        ("vm1", "write_corosync_conf"),
        ("vm2", "write_corosync_conf"),
        ("vm1", "cfgtool_reload"),
    ]
    assert ("vm1", "write_corosync_conf", (("token", "4000"),)) in fc.changes
    assert ch.count(("vm1", "cfgtool_reload")) == 2  # one per change, never one per node
    assert ("vm1", "stonith_update", (("device", "fence-vm2"), ("params", "{'ip': 'kvm3'}"))) in fc.changes
    assert j["stack"] == "pacemaker" and j["tokens"] == {"vm1": 3000, "vm2": 3000} and j["token_raised"] == 4000
    assert j["step"] == "done" and j["result"] == "ok" and j["outcome"] == "migrated" and j["complete_to"] == "kvm3"
    assert [c["name"] for c in j["proof"]] == [
        "one running instance",
        "fence_virsh status",
        "old host lets go",
        "stonith_admin",
        "cluster",
        "tokens",
    ]
    assert all(c["ok"] for c in j["proof"]), j["proof"]
    assert [p["phase"] for p in j["progress"]] == ["pre-copy", "pre-copy", "suspend", "suspend", "done"]
    assert j["suspend_s"] == pytest.approx(0.15) and j["progress"][-1]["t"] == pytest.approx(fc.now - 0.05)
    samples = [s for s in j["samples"] if s["node"] == "vm1"]
    assert samples and all(s["sf"] == "stopped" and s["peers"]["vm2"]["timeout"] == 4.0 for s in samples)
    assert "kvm2 # virsh migrate --live --verbose vm2 qemu+ssh://kvm3/system" in prints
    assert "vm1 # pcs stonith update fence-vm2 ip=kvm3" in prints
    waits = [c for c in fc.calls if c[1] == "sleep"]
    assert waits, "one old token period is waited for before migrating"


@pytest.mark.parametrize("outcome", ["cancelled", "stopped"])
def test_cancelled_or_failed_migration_is_completed_back_to_the_source(outcome: str) -> None:
    fc = FakeCluster(outcome)
    fin, prints, j = run(fc, REQ)
    assert fin is not None and fin.rc == sm.RC_RESTORED and fin.code == codes.NOT_MIGRATED, prints
    healthy(fc, "kvm2")
    assert j["result"] == "restored" and j["outcome"] == outcome and all(c["ok"] for c in j["proof"])
    assert not any(c[1] == "stonith_update" for c in fc.changes)
    if outcome == "stopped":
        steps = [e["step"] for e in j["events"] if e["what"] == "begin"]
        assert steps == ["prepare", "migrate", "recover", "complete", "prove"]
        assert ("kvm2", "virsh start") in fc.changes and "kvm2 # virsh start vm2" in prints
        lost = next(e["t"] for e in j["events"] if "lost on vm1" in e["text"])
        started = next(e["t"] for e in j["events"] if e["step"] == "recover" and e["what"] == "begin")
        assert lost - started >= 4.0, "the VM is restarted only once the others hold it lost"


@pytest.mark.parametrize("point", migrate_env.POINTS)
def test_killed_at_every_point_resumes_to_the_same_end(point: str) -> None:
    fc = FakeCluster("stopped" if point == "recover" else "migrated")
    fin, _prints, j = run(fc, REQ, kill_at=point)
    assert fin is None and j is not None and point in migrate_env._Persist.points(j)
    at = j["step"]
    fin, prints, j = run(fc, sm.MigrateRequest("vm2", "kvm2", "", resume=True), journal=j)
    assert fin is not None and fin.rc == (sm.RC_RESTORED if point == "recover" else 0), prints
    assert f"clovm migrate: resuming the migration of vm2 to kvm3 at step {at}" in prints
    healthy(fc, "kvm2" if point == "recover" else "kvm3")
    assert [c[1] for c in fc.changes].count("migrate_start") == 1, "a started migration is never started again"


def test_proof_catches_the_missing_as_off_trap() -> None:
    fc = FakeCluster()
    fin, _prints, j = run(fc, REQ, kill_at="prove")
    assert fin is None
    fc.devices["fence-vm2"].update(ip="kvm2", missing_as_off="1")  # as if the re-pointing had not happened
    fin, prints, j = run(fc, sm.MigrateRequest("vm2", "kvm2", "", resume=True), journal=j)
    assert fin is not None and fin.rc == mig.RC_FAILED and fin.code == codes.PROOF_FAILED
    bad = {c["name"]: c["detail"] for c in j["proof"] if not c["ok"]}
    assert list(bad) == ["fence_virsh status"], j["proof"]
    assert "says OFF" in bad["fence_virsh status"] and "missing-as-off trap" in bad["fence_virsh status"]
    assert j["step"] == "prove" and j["result"] == "failed"
    fc.devices["fence-vm2"].update(ip="kvm3")
    del fc.devices["fence-vm2"]["missing_as_off"]
    fin, prints, j = run(fc, sm.MigrateRequest("vm2", "kvm2", "", resume=True), journal=j)
    assert fin is not None and fin.rc == 0, prints


def _refused(fc: FakeCluster, req: sm.MigrateRequest = REQ) -> tuple[mig.Finished, str]:
    fin, prints, j = run(fc, req)
    assert fin is not None and fin.rc == mig.RC_REFUSED and j is None, prints
    assert fc.changes == [], "a refusal changes nothing"
    assert "Nothing was changed" in fin.message or "nothing was changed" in fin.message
    return fin, fin.message


@pytest.mark.parametrize(
    ("setup", "req", "code", "text"),
    [
        (None, sm.MigrateRequest("vm9", "kvm2", "kvm3"), codes.NOT_A_CLUSTER_DOMAIN, "vm9 is not a node"),
        (None, sm.MigrateRequest("vm2", "kvm1", "kvm3"), codes.DOMAIN_NOT_HOSTED, "vm2 is not a domain of kvm1"),
        (None, sm.MigrateRequest("vm2", "kvm2", "kvm9"), codes.UNKNOWN_TARGET, "'kvm9' is not a hypervisor host"),
        (None, sm.MigrateRequest("vm2", "kvm2", "kvm2"), codes.SAME_HOST, "is the source host"),
        (None, sm.MigrateRequest("vm2", "kvm2", "kvm3", scoped=True), codes.SCOPED_NOT_POSSIBLE, "cluster-wide"),
        ("stopped", REQ, codes.DOMAIN_STOPPED, "vm2 is shut off on kvm2, not running"),
    ],
)
def test_bad_input_is_refused_with_nothing_changed(
    setup: str | None, req: sm.MigrateRequest, code: str, text: str
) -> None:
    fc = FakeCluster()
    if setup == "stopped":
        fc.vms["vm2"]["state"] = "shut off"
    fin, message = _refused(fc, req)
    assert fin.code == code and text in message, message


@pytest.mark.parametrize(
    ("knob", "line"),
    [
        (
            "failure",
            (
                "the cluster shows a failed action (fence-vm2 asyncmon on vm1: Simulated failure): fix its cause, "
                "then crm_resource --cleanup."
            ),
        ),
        ("pending", "an action is in flight (fence-vm2 Monitoring on vm1): wait until it finished"),
        ("maintenance", "maintenance-mode is already true"),
        ("stonith", "stonith-enabled is false"),
        ("tokens", "the token differs between the nodes (vm1 3000 ms, vm2 5000 ms)"),
        ("record", "a token change of an earlier clovm migrate is in force on vm2"),
        ("device", "points at kvm1, but vm2 runs on kvm2"),
        ("nodevice", "no fence device covers vm2"),
        ("room", "kvm3 has 512 MB free, vm2 needs 1024 MB"),
        ("busy", "a migration of vm7 is in progress or recorded on kvm1"),
        ("login", "the fence agent on vm1 cannot log in to kvm3"),
        ("offline", "vm1 sees vm2 offline"),
    ],
)
def test_every_preflight_problem_is_one_line_with_its_remedy(knob: str, line: str) -> None:
    fc = FakeCluster()
    match knob:
        case "failure":
            fc.failures.append("fence-vm2 asyncmon on vm1: Simulated failure")
        case "pending":
            fc.pending.append("fence-vm2 Monitoring on vm1")
        case "maintenance":
            fc.props["maintenance-mode"] = "true"
        case "stonith":
            fc.props["stonith-enabled"] = "false"
        case "tokens":
            fc.nodes["vm2"]["runtime"] = 5000
        case "record":
            fc.nodes["vm2"]["record"] = 3000
        case "device":
            fc.devices["fence-vm2"]["ip"] = "kvm1"
        case "nodevice":
            del fc.devices["fence-vm2"]
        case "room":
            fc.free_mb = 512
        case "busy":
            fc.journals["kvm1"].append("vm7")
        case "login":
            fc.login_ok = False
        case "offline":
            fc.lost_after = -1.0
    fin, message = _refused(fc)
    assert fin.code == codes.PREFLIGHT_FAILED
    lines = message.splitlines()
    assert lines[0].startswith("clovm migrate: the preflight found") and "nothing was changed" in lines[0]
    assert sum(line in ln for ln in lines[1:]) == 1, message  # once, however many nodes see it
    assert all(ln.startswith("  - ") and ln.endswith(".") for ln in lines[1:])


def test_dry_run_prints_the_computed_plan_and_changes_nothing() -> None:
    fc = FakeCluster()
    fin, prints, j = run(fc, sm.MigrateRequest("vm2", "kvm2", "kvm3", dry_run=True))
    assert fin is not None and fin.rc == 0 and j is None and fc.changes == []
    plan = "\n".join(prints)
    assert "token 3000 -> 4000 ms on every node (expected suspend 0.134 s" in plan
    assert "maintenance-mode=true" in plan and "fence-vm2 ip kvm2 -> kvm3" in plan


def test_a_token_that_does_not_take_stops_the_step_resumably() -> None:
    fc = FakeCluster()
    real = fc.answer

    def deaf(c: mig.Call) -> mig.CallReturned:
        if c.op == "cfgtool_reload":  # the reload is lost: the runtime token stays
            fc.changes.append((c.target, "cfgtool_reload (lost)"))
            return mig.CallReturned(c.call_id, True, None)
        return real(c)

    fc.answer = deaf  # type: ignore[method-assign]
    fin, prints, j = run(fc, REQ)
    assert fin is not None and fin.rc == mig.RC_FAILED and fin.code == codes.NOT_APPLIED, prints
    assert "did not become 4000 ms on every node" in fin.message and j["step"] == "prepare"
    fc.answer = real  # type: ignore[method-assign]
    fin, prints, j = run(fc, sm.MigrateRequest("vm2", "kvm2", "", resume=True), journal=j)
    assert fin is not None and fin.rc == 0, prints
    healthy(fc, "kvm3")
