"""clovmmigrate -p / -u as a machine, against a fake environment that answers its calls."""

from __future__ import annotations

import pytest

from clovm.core import migration as mig


class FakeEnv:
    """Answers Calls like a two-node guest cluster on primary2, with primary3 as a target."""

    def __init__(self) -> None:
        self.nodes = {
            cf: {"timeout": 10, "sf": "running", "record": None, "window": False, "entry": None, "weight": None}
            for cf in ("cfguest1", "cfguest2")
        }
        self.domains = {"primary2": {"guest2": "active"}, "primary3": {}}
        self.spconfigs = {"primary2": ["factory-default", "config1"], "primary3": ["factory-default", "config1"]}
        self.current = {"primary2": "config1", "primary3": "config1"}
        self.changes: list[tuple] = []
        self.unreachable: set[str] = set()
        self.sf_rows_bad = False

    def ldm(self, host: str, argv: list[str]) -> dict:
        cmd = argv[0]
        if cmd == "list":
            st = self.domains[host].get(argv[1])
            if st is None:
                return {"rc": 1, "stdout": "", "stderr": f"Error: Domain {argv[1]} not found\n"}
            return {"rc": 0, "stdout": f"NAME STATE FLAGS\n{argv[1]} {st} -n----\n", "stderr": ""}
        names = self.spconfigs[host]
        if cmd == "list-spconfig":
            out = "".join(f"{n} [current]\n" if n == self.current[host] else f"{n}\n" for n in names)
            return {"rc": 0, "stdout": out, "stderr": ""}
        self.changes.append((host, *argv))
        if cmd == "add-spconfig":
            assert argv[1] not in names and len(names) < 8, (host, argv, names)
            names.append(argv[1])
            self.current[host] = argv[1]
        elif cmd == "remove-spconfig":
            names.remove(argv[1])
        return {"rc": 0, "stdout": "", "stderr": ""}

    def answer(self, c: mig.Call) -> mig.CallReturned:
        ok = lambda v=None: mig.CallReturned(c.call_id, True, v)
        if c.target in self.unreachable:
            return mig.CallReturned(c.call_id, False, None, "timeout")
        if c.op == "ldm":
            return ok(self.ldm(c.target, c.args["argv"]))
        if c.op == "guest_nodes":
            if c.args["domain"] != "guest2":
                return mig.CallReturned(c.call_id, False, None, "not a cluster domain")
            return ok({"node": "cfguest2", "nodes": ["cfguest2", "cfguest1"]})
        if c.op == "resolve":
            return ok({"primary3": "127.30.0.3", "primary2": "127.30.0.2"}.get(c.args["name"]))
        if c.op == "cd_info":
            host = {"127.30.0.3": "primary3", "127.30.0.2": "primary2", "primary2": "primary2"}[c.target]
            lan = {
                "primary3": ("127.20.30.73", "127.20.40.73", 1, 2),
                "primary2": ("127.20.30.72", "127.20.40.72", 0, 1),
            }
            l0, l1, ppar, w = lan[host]
            return ok({"host": host, "server": "x", "ppar": ppar, "lan0": l0, "lan1": l1, "sf_weight": w})
        n = self.nodes[c.target]
        if c.op == "node_status":
            return ok({k: n[k] for k in ("timeout", "sf", "record", "window")})
        self.changes.append((c.target, c.op, tuple(sorted(c.args.items())) if c.op != "set_sf_entry" else ()))
        if c.op == "record_timeout":
            if n["record"] is None:
                n["record"] = n["timeout"]
            return ok(n["record"])
        if c.op == "set_timeout":
            n["timeout"] = c.args["seconds"]
        elif c.op == "window":
            n["window"] = c.args["open"]
        elif c.op == "sf_stop":
            n["sf"] = "stopped"
        elif c.op == "sf_start":
            n["sf"] = "running"
        elif c.op == "set_sf_entry":
            n["entry"], n["weight"] = c.args["entry"], c.args["weight"]
        elif c.op == "sf_wait":
            st = "TestFailed" if self.sf_rows_bad else "TestWorked"
            return ok([["cfguest2", "SA_xscfsnmpg0p", "Idle", "Unknown", st, "InitWorked"]])
        elif c.op == "clear_record":
            n["record"] = None
        return ok()


def run(env: FakeEnv, req: mig.Request, journal: dict | None = None, kill_after: int | None = None):
    """Drive a run to its end (or stop it after ``kill_after`` calls, like SIGKILL)."""
    r = mig.ClovmmigrateRun(req, journal)
    effects = r.handle(0.0, mig.RunStarted())
    printed, calls = [], 0
    while True:
        batch = []
        for e in effects:
            if isinstance(e, mig.Print):
                printed.append(e.text)
            elif isinstance(e, mig.Persist):
                journal = e.journal
            elif isinstance(e, mig.Finished):
                return e, printed, journal
            elif isinstance(e, mig.Call):
                batch.append(e)
        assert batch
        effects = []
        for call in batch:  # (a batch, every node at once: a kill may fall between two of its calls)
            if kill_after is not None and calls >= kill_after:
                return None, printed, journal
            calls += 1
            effects += r.handle(0.0, env.answer(call))


P = mig.Request("prepare", "guest2", "primary2")
U3 = mig.Request("update", "guest2", "primary2", "primary3")


def test_prepare_sets_600_and_stops_sf_on_every_node_and_records_timeout():
    env = FakeEnv()
    env.nodes["cfguest1"]["timeout"] = 30
    fin, printed, journal = run(env, P)
    assert fin.rc == 0, fin.message
    for n in env.nodes.values():
        assert (n["timeout"], n["sf"], n["window"]) == (600, "stopped", True)
    assert env.nodes["cfguest1"]["record"] == 30 and env.nodes["cfguest2"]["record"] == 10
    assert journal["timeouts"] == {"cfguest1": 30, "cfguest2": 10}
    assert "cfguest1: CF cluster interconnect timeout 30 -> 600 s" in printed


def test_prepare_twice_never_records_600():
    env = FakeEnv()
    _, _, journal = run(env, P)
    fin, _, journal = run(env, P, journal)
    assert fin.rc == 0
    assert env.nodes["cfguest1"]["record"] == 10 and journal["timeouts"]["cfguest1"] == 10


def test_prepare_on_stopped_guest_exits_1_and_changes_nothing():
    env = FakeEnv()
    env.domains["primary2"]["guest2"] = "bound"
    fin, _, _ = run(env, P)
    assert (fin.rc, fin.code) == (1, "DOMAIN_STOPPED")
    assert env.changes == []


@pytest.mark.parametrize(
    "req,code",
    [
        (mig.Request("prepare", "guest2", "primary3"), "DOMAIN_NOT_HOSTED"),
        (mig.Request("prepare", "guest9", "primary2"), "DOMAIN_NOT_HOSTED"),
    ],
)
def test_prepare_refuses_wrong_host_or_unknown_domain(req, code):
    env = FakeEnv()
    fin, _, _ = run(env, req)
    assert (fin.rc, fin.code) == (3, code) and env.changes == []


def test_prepare_refuses_when_sf_already_stopped_by_someone_else():
    env = FakeEnv()
    env.nodes["cfguest1"]["sf"] = "stopped"
    fin, _, _ = run(env, P)
    assert (fin.rc, fin.code) == (3, "SF_ALREADY_STOPPED") and "sdtool -b" in fin.message
    assert env.changes == []


def test_update_restores_recorded_timeout_repoints_sf_and_saves_config_on_both():
    env = FakeEnv()
    env.nodes["cfguest2"]["timeout"] = 45
    run(env, P)
    env.domains["primary2"].pop("guest2")
    env.domains["primary3"]["guest2"] = "active"
    fin, _printed, journal = run(env, U3)
    assert fin.rc == 0, fin.message
    assert env.nodes["cfguest1"]["timeout"] == 10 and env.nodes["cfguest2"]["timeout"] == 45
    for n in env.nodes.values():
        assert n["sf"] == "running" and not n["window"] and n["record"] is None
        assert (n["entry"]["lan0"], n["entry"]["lan1"], n["entry"]["ppar_id"], n["weight"]) == (
            "127.20.30.73",
            "127.20.40.73",
            1,
            2,
        )
    assert journal is None
    for h in ("primary2", "primary3"):
        seq = [c[1:] for c in env.changes if c[0] == h]
        assert seq == [
            ("add-spconfig", "config_tmp"),
            ("remove-spconfig", "config1"),
            ("add-spconfig", "config1"),
            ("remove-spconfig", "config_tmp"),
        ]
        assert "config_tmp" not in env.spconfigs[h]


@pytest.mark.parametrize(
    "host,extra,needle",
    [
        ("primary3", ["c1", "c2", "c3", "c4", "c5", "c6"], "7 saved configurations"),
        ("primary2", ["config_tmp"], "ldm remove-spconfig config_tmp"),
    ],
)
def test_update_refuses_spconfig_limit_before_any_change(host, extra, needle):
    env = FakeEnv()
    run(env, P)
    env.domains["primary2"].pop("guest2")
    env.domains["primary3"]["guest2"] = "active"
    env.spconfigs[host] += extra
    before = len(env.changes)
    fin, _, _ = run(env, U3, {"mode": "prepared", "timeouts": {}})
    assert (fin.rc, fin.code) == (3, "SPCONFIG_LIMIT") and needle in fin.message and host in fin.message
    assert len(env.changes) == before and env.nodes["cfguest1"]["timeout"] == 600


def test_six_saved_is_allowed():
    env = FakeEnv()
    run(env, P)
    env.spconfigs["primary2"] += ["c2", "c3", "c4", "c5", "c6"]  # config1 + 5 = 6 saved + factory-default
    fin, _, _ = run(env, mig.Request("update", "guest2", "primary2", "primary2"))
    assert fin.rc == 0, fin.message
    assert len(env.spconfigs["primary2"]) == 7


def test_update_without_prepare_is_refused():
    env = FakeEnv()
    fin, _, _ = run(env, mig.Request("update", "guest2", "primary2", "primary2"))
    assert (fin.rc, fin.code) == (3, "NOT_PREPARED") and env.changes == []


@pytest.mark.parametrize("target,code", [("nosuchhost", "TARGET_UNRESOLVED"), ("primary3", "DOMAIN_NOT_ON_TARGET")])
def test_update_target_errors(target, code):
    env = FakeEnv()
    run(env, P)
    n = len(env.changes)
    fin, _, _ = run(env, mig.Request("update", "guest2", "primary2", target))
    assert (fin.rc, fin.code) == (3, code) and len(env.changes) == n


def test_update_sf_test_failure_keeps_records_so_it_can_be_rerun():
    env = FakeEnv()
    _, _, journal = run(env, P)
    env.sf_rows_bad = True
    fin, _, journal = run(env, mig.Request("update", "guest2", "primary2", "primary2"), journal)
    assert (fin.rc, fin.code) == (4, "SF_TEST_FAILED") and "7245" in fin.message
    assert env.nodes["cfguest1"]["record"] == 10 and journal is not None
    env.sf_rows_bad = False
    fin, _, journal = run(env, mig.Request("update", "guest2", "primary2", "primary2"), journal)
    assert fin.rc == 0 and env.nodes["cfguest1"]["record"] is None and journal is None


@pytest.mark.parametrize("kill_after", range(1, 40))
def test_sigkill_at_any_step_then_rerun_completes_and_keeps_the_timeout(kill_after):
    env = FakeEnv()
    env.nodes["cfguest1"]["timeout"] = 20
    fin, _, journal = run(env, P, kill_after=kill_after)
    if fin is None:
        fin, _, journal = run(env, P, journal)
    assert fin.rc == 0
    req = mig.Request("update", "guest2", "primary2", "primary2")
    fin, _, journal = run(env, req, journal, kill_after=kill_after)
    if fin is None:
        fin, _, journal = run(env, req, journal)
    assert fin.rc == 0, fin.message
    assert env.nodes["cfguest1"]["timeout"] == 20 and env.nodes["cfguest2"]["timeout"] == 10
    assert all(n["sf"] == "running" and n["record"] is None for n in env.nodes.values())
    assert "config_tmp" not in env.spconfigs["primary2"] and "config1" in env.spconfigs["primary2"]


def test_unreachable_node_during_prepare_is_refused_before_changes():
    env = FakeEnv()
    env.unreachable.add("cfguest1")
    fin, _, _ = run(env, P)
    assert (fin.rc, fin.code) == (3, "NODE_UNREACHABLE") and env.changes == []


def test_six_saved_none_current_saves_new_name_without_config_tmp():
    """Found end to end: the operator removed the [current] configuration to get down to 6; the
    new name replaces nothing, so it is saved directly (config_tmp + new would need 9 slots)."""
    env = FakeEnv()
    _, _, journal = run(env, P)
    env.spconfigs["primary2"] = ["factory-default", "c1", "c2", "c3", "c4", "c5", "c6"]
    env.current["primary2"] = None
    fin, _, _ = run(env, mig.Request("update", "guest2", "primary2", "primary2"), journal)
    assert fin.rc == 0, fin.message
    assert [c[1:] for c in env.changes if c[0] == "primary2"] == [("add-spconfig", "clovm-config")]
    assert len(env.spconfigs["primary2"]) == 8


def test_node_calls_go_out_as_one_batch_per_kind_and_answers_may_come_in_any_order():
    # -u asks every node at once (a driver may carry the calls of one handle() result out
    # concurrently): that is what keeps a 16-node -u near a 2-node one.
    env = FakeEnv()
    _, _, journal = run(env, P)
    r = mig.ClovmmigrateRun(mig.Request("update", "guest2", "primary2", "primary2"), journal)
    effects = r.handle(0.0, mig.RunStarted())
    batches: list[list[tuple[str, str]]] = []
    while not any(isinstance(e, mig.Finished) for e in effects):
        calls = [e for e in effects if isinstance(e, mig.Call)]
        assert calls
        batches.append([(c.target, c.op) for c in calls])
        answers = [env.answer(c) for c in calls]
        effects = []
        for a in reversed(answers):  # the last call answers first
            effects += r.handle(0.0, a)
        if len(calls) > 1:
            assert r.handle(0.0, answers[0]) == []  # a late duplicate changes nothing
    fin = next(e for e in effects if isinstance(e, mig.Finished))
    assert fin.rc == 0, fin.message
    nodes = ["cfguest1", "cfguest2"]
    for op in ("node_status", "set_sf_entry", "window", "sf_start", "sf_wait", "clear_record"):
        assert [(n, op) for n in nodes] in batches, (op, batches)
