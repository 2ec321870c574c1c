"""clovm migrate as a machine (core.safemigrate), against a fake datacenter that answers its calls.

The fake has three guest nodes (cfguest1 on primary1, cfguest2 on primary2, cfguest3 on primary3),
a migration that advances one phase per ``sleep`` call, and knobs for every preflight problem and
every outcome (migrated, cancelled, stopped).
"""

from __future__ import annotations

import copy

import pytest

from clovm.core import migration as mig
from clovm.core import safemigrate as sm

NODES = ("cfguest1", "cfguest2", "cfguest3")
CDS = {
    "primary1": ("127.30.0.1", "m10-1", 0, 1),
    "primary2": ("127.30.0.2", "m10-2", 0, 1),
    "primary3": ("127.30.0.3", "m10-3", 1, 2),
}
LANS = {
    "m10-1": ("127.20.30.71", "127.20.40.71"),
    "m10-2": ("127.20.30.72", "127.20.40.72"),
    "m10-3": ("127.20.30.73", "127.20.40.73"),
}
PHASES = ["pre-copy", "pre-copy", "suspend", "hand-off"]


class FakeDC:
    def __init__(self, outcome: str = "migrated") -> None:
        self.outcome = outcome
        self.now = 0.0
        self.where = {
            "primary1": {"guest1": "active"},
            "primary2": {"guest2": "active"},
            "primary3": {"guest3": "active"},
        }
        self.nodes = {
            cf: {
                "timeout": 10,
                "sf": "running",
                "record": None,
                "window": False,
                "widened": {},
                "entry": self.cd_entry("primary" + cf[-1]),
                "state": "UP",
            }
            for cf in NODES
        }
        self.spconfigs = {h: ["factory-default", "config1"] for h in CDS}
        self.current = {h: "config1" for h in CDS}
        self.migration: dict | None = None  # {"step": i, "started": bool}
        self.result: dict | None = None
        self.known_host = True
        self.snmp = True
        self.room = True
        self.clock_diff = 0.0
        self.journals: dict[str, list[str]] = {h: [] for h in CDS}
        self.down_seen = False
        self.aligned: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.changes: list[tuple] = []

    @staticmethod
    def cd_entry(host: str) -> dict:
        _addr, server, ppar, _w = CDS[host]
        return {"lan0": LANS[server][0], "lan1": LANS[server][1], "ppar_id": ppar}

    def cd_info(self, host: str) -> dict:
        _addr, server, ppar, w = CDS[host]
        return {
            "host": host,
            "server": server,
            "ppar": ppar,
            "lan0": LANS[server][0],
            "lan1": LANS[server][1],
            "sf_weight": w,
        }

    def domain_where(self, host: str, domain: str = "guest2") -> dict | None:
        st = self.where[host].get(domain)
        if st is None:
            return None
        prog = None
        if self.migration is not None and host in ("primary2", "primary3"):
            prog = {"phase": PHASES[self.migration["step"]], "percent": 25 * self.migration["step"]}
        return {"state": st, "flags": "-n----", "migration": prog}

    def advance(self) -> None:
        """One sleep: the migration moves one phase; at the end the outcome happens."""
        if self.migration is None:
            if self.outcome == "stopped" and self.where["primary2"].get("guest2") != "active":
                self.down_seen = True  # the peers' CF takes the stopped node DOWN
            return
        self.migration["step"] += 1
        if self.migration["step"] < len(PHASES):
            return
        self.migration = None
        if self.outcome == "migrated":
            del self.where["primary2"]["guest2"]
            self.where["primary3"]["guest2"] = "active"
            self.result = {"rc": 0, "stdout": "", "stderr": ""}
        elif self.outcome == "cancelled":
            self.result = {"rc": 1, "stdout": "", "stderr": "Migration of domain guest2 was cancelled\n"}
        else:
            self.where["primary2"]["guest2"] = "bound"
            self.nodes["cfguest2"]["state"] = "DOWN"
            self.result = {"rc": 1, "stdout": "", "stderr": "Domain Migration of LDom guest2 failed\n"}

    def ldm(self, host: str, argv: list[str]) -> dict:
        ok = {"rc": 0, "stdout": "", "stderr": ""}
        cmd = argv[0]
        if cmd == "list":
            st = self.where[host].get(argv[1])
            if st is None:
                return {"rc": 1, "stdout": "", "stderr": f"Error: Domain {argv[1]} not found\n"}
            return {"rc": 0, "stdout": f"NAME STATE FLAGS\n{argv[1]} {st} -n----\n", "stderr": ""}
        if cmd == "list-spconfig":
            names = self.spconfigs[host]
            return {
                "rc": 0,
                "stdout": "".join(f"{n} [current]\n" if n == self.current[host] else f"{n}\n" for n in names),
                "stderr": "",
            }
        if cmd == "migrate-domain":
            assert "-n" in argv
            return ok if self.room else {"rc": 1, "stdout": "", "stderr": "Insufficient memory on target\n"}
        self.changes.append((host, *argv))
        if cmd == "add-spconfig":
            self.spconfigs[host].append(argv[1])
            self.current[host] = argv[1]
        elif cmd == "remove-spconfig":
            self.spconfigs[host].remove(argv[1])
        elif cmd == "start-domain":
            self.where[host][argv[1]] = "active"
            self.nodes["cfguest2"]["state"] = "UP"
        return ok

    def sample(self, cf: str) -> dict:
        n = self.nodes[cf]
        peers = {}
        for p in NODES:
            if p == cf:
                continue
            state = "DOWN" if (self.nodes[p]["state"] == "DOWN" and self.down_seen) else "UP"
            t = n["widened"].get(p, n["timeout"])
            peers[p] = {"state": state, "gap": 0.5, "timeout": t, "widened": p in n["widened"]}
        return {
            "t": self.now,
            "state": n["state"],
            "sf": n["sf"],
            "peers": peers,
            "clock_diff": {p: self.clock_diff for p in peers},
            "rms_busy": False,
        }

    def answer(self, c: mig.Call) -> mig.CallReturned:
        self.calls.append((c.target, c.op))
        ok = lambda v=None: mig.CallReturned(c.call_id, True, v)
        a, t = c.args, c.target
        if t in self.nodes and self.nodes[t]["state"] == "DOWN" and c.op != "x":
            return mig.CallReturned(c.call_id, False, None, "timeout")
        match c.op:
            case "ldm":
                return ok(self.ldm(t, a["argv"]))
            case "where":
                return ok(self.domain_where(t, a["domain"]))
            case "resolve":
                return ok(CDS[a["name"]][0] if a["name"] in CDS else None)
            case "cd_info":
                host = next((h for h, v in CDS.items() if t in (h, v[0])), None)
                return ok(self.cd_info(host))
            case "guest_nodes":
                return ok(
                    {
                        "node": "cfguest2",
                        "nodes": list(NODES),
                        "domains": {"cfguest1": "guest1", "cfguest2": "guest2", "cfguest3": "guest3"},
                    }
                )
            case "control_domains":
                return ok([{"host": h, "address": v[0]} for h, v in CDS.items()])
            case "activity":
                mig_now = ["guest2"] if self.migration and t in ("primary2", "primary3") else []
                return ok({"journals": list(self.journals[t]), "migrating": mig_now})
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
            case "node_status":
                n = self.nodes[t]
                return ok({k: n[k] for k in ("timeout", "sf", "record", "window")})
            case "cf_sample":
                return ok(self.sample(t))
            case "xscf_check":
                return ok({"known_host": self.known_host, "snmp": {"lan0": self.snmp, "lan1": True}})
            case "clock_align":
                self.aligned.append(t)
                return ok()
            case "sf_entry":
                return ok(self.nodes[t]["entry"])
            case "sf_test":
                return ok()
            case "sf_wait":
                rows = [
                    [h, ag, "Idle", "Unknown", "TestWorked", "InitWorked"]
                    for h in NODES
                    for ag in ("SA_xscfsnmpg0p", "SA_xscfsnmpg1p", "SA_xscfsnmpg0r", "SA_xscfsnmpg1r")
                ]
                return ok(rows)
        n = self.nodes[t]
        self.changes.append((t, c.op, tuple(sorted((k, str(v)) for k, v in a.items()))))
        match c.op:
            case "record_timeout":
                if n["record"] is None:
                    n["record"] = n["timeout"]
                return ok(n["record"])
            case "set_timeout":
                n["timeout"] = a["seconds"]
            case "window":
                n["window"] = a["open"]
            case "sf_stop":
                n["sf"] = "stopped"
            case "sf_start":
                n["sf"] = "running"
            case "set_sf_entry":
                n["entry"] = {k: a["entry"][k] for k in ("lan0", "lan1", "ppar_id")}
            case "clear_record":
                n["record"] = None
            case "widen":
                for p in a["peers"]:
                    n["widened"][p] = a["seconds"]
            case "narrow":
                n["widened"].clear()
            case _:
                raise AssertionError(f"unexpected call {c}")
        return ok()


def run(dc: FakeDC, req: sm.MigrateRequest, journal: dict | None = None, kill_at_persist: int | None = None):
    """Drive a run; returns (finished, prints, last journal, persists) or stops at the Nth Persist."""
    m = sm.SafeMigrationRun(req, journal)
    effects = m.handle(dc.now, mig.RunStarted())
    prints: list[str] = []
    persists = 0
    last = journal
    while True:
        calls = []
        for e in effects:
            if isinstance(e, mig.Print):
                prints.append(e.text)
            elif isinstance(e, mig.Persist) and e.domain == sm.journal_key("guest2"):
                persists += 1
                last = copy.deepcopy(e.journal)
                if kill_at_persist is not None and persists == kill_at_persist:
                    return None, prints, last, persists
            elif isinstance(e, mig.Finished):
                return e, prints, last, persists
            elif isinstance(e, mig.Call):
                calls.append(e)
        assert calls
        effects = []  # a batch (several calls) is answered call by call; the last answer continues
        for call in calls:
            effects += m.handle(dc.now, dc.answer(call))


REQ = sm.MigrateRequest("guest2", "primary2", "primary3")


def test_happy_path_prepares_migrates_completes_and_proves():
    dc = FakeDC()
    fin, prints, j, _ = run(dc, REQ)
    assert fin.rc == 0, prints
    assert dc.where["primary3"]["guest2"] == "active" and "guest2" not in dc.where["primary2"]
    assert all(n["timeout"] == 10 and n["sf"] == "running" and n["record"] is None for n in dc.nodes.values())
    assert all(n["entry"]["lan0"] == "127.20.30.73" and n["entry"]["ppar_id"] == 1 for n in dc.nodes.values())
    # the manual procedure ran: 600 s everywhere and SF stopped, then restored
    assert ("cfguest1", "set_timeout", (("seconds", "600"),)) in dc.changes
    assert ("cfguest3", "sf_stop", ()) in dc.changes
    assert dc.aligned == ["cfguest2"]
    assert j["step"] == "done" and j["result"] == "ok" and j["outcome"] == "migrated"
    assert [c["name"] for c in j["proof"]] == [
        "one running instance",
        "SF entries",
        "fresh SF test",
        "timeouts",
        "cluster",
        "configuration saved",
    ]
    assert all(c["ok"] for c in j["proof"])
    assert [p["phase"] for p in j["progress"]] == ["pre-copy", "pre-copy", "suspend", "hand-off", "done"]
    assert {s["node"] for s in j["samples"]} == set(NODES)
    assert [(e["step"], e["what"]) for e in j["events"] if e["what"] != "note"] == [
        ("prepare", "begin"),
        ("prepare", "done"),
        ("migrate", "begin"),
        ("migrate", "done"),
        ("complete", "begin"),
        ("complete", "done"),
        ("prove", "begin"),
        ("prove", "done"),
    ]
    assert any("preflight passed" in p for p in prints)
    assert "primary2 # ldm migrate-domain -c guest2 primary3" in prints


def test_suspended_node_is_not_sampled_while_suspended():
    dc = FakeDC()
    _, _, j, _ = run(dc, REQ)
    during = [s for s in j["samples"] if s["node"] == "cfguest2"]
    times = {p["t"]: p["phase"] for p in j["progress"]}
    assert during and all(times.get(s["t"]) not in ("suspend", "hand-off") for s in during)


@pytest.mark.parametrize(
    "knob, needle",
    [
        (lambda dc: setattr(dc, "known_host", False), "first SSH connection to the XSCF of m10-3"),
        (lambda dc: setattr(dc, "snmp", False), "does not answer SNMP on LAN#0"),
        (lambda dc: setattr(dc, "room", False), "primary3 cannot take guest2: Insufficient memory"),
        (lambda dc: setattr(dc, "clock_diff", 9.0), "differ by 9.0 s"),
        (lambda dc: dc.spconfigs["primary3"].extend(["a", "b", "c", "d", "e", "f"]), "ldm remove-spconfig NAME"),
        (lambda dc: dc.spconfigs["primary2"].append("config_tmp"), "ldm remove-spconfig config_tmp"),
        (lambda dc: dc.nodes["cfguest3"].update(sf="stopped"), "sdtool -b"),
        (lambda dc: dc.nodes["cfguest1"].update(record=10), "clovmmigrate -p is in force on cfguest1"),
        (
            lambda dc: dc.journals["primary1"].append("guest1"),
            "a migration of guest1 is in progress or recorded on primary1",
        ),
        (
            lambda dc: dc.journals["primary3"].append("other"),
            "a migration of other is in progress or recorded on primary3",
        ),
    ],
)
def test_preflight_refuses_each_problem_with_remedy_and_changes_nothing(knob, needle):
    dc = FakeDC()
    knob(dc)
    fin, _prints, j, persists = run(dc, REQ)
    assert fin.rc == sm.RC_REFUSED and fin.code == "PREFLIGHT_FAILED"
    assert needle in fin.message and "nothing was changed" in fin.message
    assert dc.changes == [] and persists == 0 and j is None


def test_preflight_lists_every_problem_one_line_each():
    dc = FakeDC()
    dc.known_host = False
    dc.room = False
    fin, *_ = run(dc, REQ)
    lines = fin.message.splitlines()
    assert lines[0].startswith("clovm migrate: the preflight found 4 problem(s)")  # 3 nodes lack the key + room
    assert all(ln.startswith("  - ") for ln in lines[1:]) and len(lines) == 5


def test_an_unrelated_journal_elsewhere_does_not_block():
    dc = FakeDC()
    dc.journals["primary1"].append("someotherguest")
    fin, *_ = run(dc, REQ)
    assert fin.rc == 0


@pytest.mark.parametrize(
    "req, code",
    [
        (sm.MigrateRequest("guest9", "primary2", "primary3"), "DOMAIN_NOT_HOSTED"),
        (sm.MigrateRequest("guest2", "primary2", "nowhere"), "TARGET_UNRESOLVED"),
        (sm.MigrateRequest("guest2", "primary2", "primary2"), "SAME_HOST"),
    ],
)
def test_refusals_before_the_checks(req, code):
    dc = FakeDC()
    fin, *_ = run(dc, req)
    assert (fin.rc, fin.code) == (sm.RC_REFUSED, code) and dc.changes == []


def test_stopped_domain_is_refused():
    dc = FakeDC()
    dc.where["primary2"]["guest2"] = "bound"
    fin, *_ = run(dc, REQ)
    assert fin.code == "DOMAIN_STOPPED" and "cold migration" in fin.message and dc.changes == []


def test_dry_run_prints_the_plan_and_changes_nothing():
    dc = FakeDC()
    fin, prints, _j, persists = run(dc, sm.MigrateRequest("guest2", "primary2", "primary3", dry_run=True))
    assert fin.rc == 0 and "dry run" in fin.message
    assert any(p.startswith("  1 prepare") for p in prints) and any("2 migrate" in p for p in prints)
    assert dc.changes == [] and persists == 0


def test_cancelled_migration_completes_back_to_the_source_rc5():
    dc = FakeDC("cancelled")
    fin, prints, j, _ = run(dc, REQ)
    assert fin.rc == sm.RC_RESTORED, prints
    assert j["outcome"] == "cancelled" and j["complete_to"] == "primary2" and j["result"] == "restored"
    assert all(n["entry"]["lan0"] == "127.20.30.72" for n in dc.nodes.values())
    assert all(n["timeout"] == 10 and n["sf"] == "running" for n in dc.nodes.values())
    assert all(c["ok"] for c in j["proof"])


def test_stopped_guest_waits_until_down_starts_it_and_completes_to_source():
    dc = FakeDC("stopped")
    fin, prints, j, _ = run(dc, REQ)
    assert fin.rc == sm.RC_RESTORED, prints
    assert ("primary2", "start-domain", "guest2") in dc.changes
    start = dc.changes.index(("primary2", "start-domain", "guest2"))
    assert dc.down_seen  # it was DOWN before it was started
    assert [e["step"] for e in j["events"] if e["what"] == "begin"] == [
        "prepare",
        "migrate",
        "recover",
        "complete",
        "prove",
    ]
    assert start < len(dc.changes) and j["complete_to"] == "primary2"


def test_scoped_widens_only_the_migrating_node_and_keeps_sf_and_timeouts():
    dc = FakeDC()
    fin, prints, _j, _ = run(dc, sm.MigrateRequest("guest2", "primary2", "primary3", scoped=True))
    assert fin.rc == 0, prints
    ops = [c for c in dc.changes if c[0] in NODES]
    assert not any(c[1] in ("set_timeout", "window") for c in ops)
    assert [c[0] for c in ops if c[1] == "sf_stop"] == ["cfguest2"]
    widen = {c[0]: dict(c[2]) for c in ops if c[1] == "widen"}
    assert widen["cfguest1"]["peers"] == "['cfguest2']" and widen["cfguest1"]["hypervisor"] == "True"
    assert widen["cfguest2"]["peers"] == "['cfguest1', 'cfguest3']"
    # narrowed right after the hand-off, before the complete step
    narrow_at = [i for i, c in enumerate(dc.changes) if len(c) > 1 and c[1] == "narrow"]
    entry_at = [i for i, c in enumerate(dc.changes) if len(c) > 1 and c[1] == "set_sf_entry"]
    assert narrow_at and min(narrow_at) < min(entry_at)
    assert all(not n["widened"] for n in dc.nodes.values())


def test_every_journal_step_survives_a_kill_and_resume_finishes():
    total = run(FakeDC(), REQ)[3]
    assert total >= 10
    for k in range(1, total + 1):
        dc = FakeDC()
        fin, _, j, _ = run(dc, REQ, kill_at_persist=k)
        assert fin is None
        fin2, prints, j2, _ = run(dc, sm.MigrateRequest("guest2", "primary2", "", resume=True), journal=j)
        assert fin2 is not None and fin2.rc == 0, (k, j["step"], prints)
        assert dc.where["primary3"].get("guest2") == "active" and "guest2" not in dc.where["primary2"]
        assert all(n["timeout"] == 10 and n["record"] is None for n in dc.nodes.values()), k
        assert j2["result"] == "ok"


def test_resume_without_journal_and_mismatching_target_are_refused():
    fin, *_ = run(FakeDC(), sm.MigrateRequest("guest2", "primary2", "", resume=True))
    assert fin.code == "NO_JOURNAL"
    dc = FakeDC()
    _, _, j, _ = run(dc, REQ, kill_at_persist=2)
    fin, *_ = run(dc, sm.MigrateRequest("guest2", "primary2", "primary1"), journal=j)
    assert fin.code == "OTHER_TARGET" and "--resume" in fin.message


def test_proof_failure_exits_4_and_keeps_the_journal_at_prove():
    dc = FakeDC()

    orig = dc.answer

    def answer(c):  # cfguest3's SF entry was never updated (someone edited it back)
        r = orig(c)
        if c.op == "sf_entry" and c.target == "cfguest3":
            return mig.CallReturned(c.call_id, True, FakeDC.cd_entry("primary2"))
        return r

    dc.answer = answer
    fin, _prints, j, _ = run(dc, REQ)
    assert fin.rc == mig.RC_FAILED and fin.code == "PROOF_FAILED" and "SF entries" in fin.message
    assert j["step"] == "prove" and j["result"] == "failed"


def test_proof_fails_on_a_widening_left_behind_not_on_an_effective_timeout_above_the_recorded():
    # The runtime's real-time floor (60 s at --time-scale 60) makes the effective timeout exceed the
    # recorded 10 s on every node: that is not a widening, and the proof holds ...
    dc = FakeDC()
    orig_sample = dc.sample

    def floored(cf: str) -> dict:
        s = orig_sample(cf)
        for v in s["peers"].values():
            v["timeout"] = max(v["timeout"], 60)
        return s

    dc.sample = floored
    fin, prints, _, _ = run(dc, REQ)
    assert fin.rc == 0, prints
    # ... while a lease still running on one node (its narrow was lost) fails it.
    dc = FakeDC()
    orig = dc.answer

    def answer(c):
        if c.op == "narrow" and c.target == "cfguest1":
            return mig.CallReturned(c.call_id, True, None)  # says yes, narrows nothing
        return orig(c)

    dc.answer = answer
    fin, prints, _j, _ = run(dc, sm.MigrateRequest("guest2", "primary2", "primary3", scoped=True))
    assert fin.rc == mig.RC_FAILED and fin.code == "PROOF_FAILED", prints
    assert any("cfguest1: 10 s, widened for cfguest2" in p for p in prints), prints


def test_scoped_narrowing_after_the_hand_off_is_best_effort_and_complete_narrows_again():
    dc = FakeDC()
    orig = dc.answer
    calls = {"n": 0}

    def answer(c):  # cfguest1 does not answer the first narrow (it is restarting)
        if c.op == "narrow" and c.target == "cfguest1" and calls["n"] == 0:
            calls["n"] += 1
            return mig.CallReturned(c.call_id, False, None, "timeout")
        return orig(c)

    dc.answer = answer
    fin, prints, _j, _ = run(dc, sm.MigrateRequest("guest2", "primary2", "primary3", scoped=True))
    assert fin.rc == 0, prints
    assert any("cfguest1 did not answer" in p for p in prints)
    assert all(not n["widened"] for n in dc.nodes.values())


def test_a_node_lost_during_the_run_stops_it_resumably_with_rc4_not_3():
    dc = FakeDC()
    orig = dc.answer

    def answer(c):  # cfguest1 is gone once the migration is over
        if c.target == "cfguest1" and dc.where["primary3"].get("guest2") == "active":
            return mig.CallReturned(c.call_id, False, None, "connection refused")
        return orig(c)

    dc.answer = answer
    fin, prints, j, _ = run(dc, REQ)
    assert fin.rc == mig.RC_FAILED and "clovm migrate --resume guest2" in fin.message
    assert "Nothing was changed" not in fin.message and j["step"] == "complete"
    dc.answer = orig
    fin, prints, j, _ = run(dc, sm.MigrateRequest("guest2", "primary2", "", resume=True), journal=j)
    assert fin.rc == 0, prints


@pytest.mark.parametrize("outcome", ["cancelled", "stopped"])
def test_every_journal_write_of_the_recovery_paths_survives_a_kill(outcome):
    total = run(FakeDC(outcome), REQ)[3]
    for k in range(1, total + 1):
        dc = FakeDC(outcome)
        fin, _, j, _ = run(dc, REQ, kill_at_persist=k)
        assert fin is None
        fin2, prints, _j2, _ = run(dc, sm.MigrateRequest("guest2", "primary2", "", resume=True), journal=j)
        assert fin2 is not None and fin2.rc == sm.RC_RESTORED, (outcome, k, j["step"], prints)
        assert dc.where["primary2"].get("guest2") == "active" and "guest2" not in dc.where["primary3"]
        assert all(n["timeout"] == 10 and n["record"] is None for n in dc.nodes.values())
