"""The simulator answers every call of docs/safe-migration.md, and runs any command machine.

A scripted command machine (:class:`Script`) makes calls one after another through
``World.run_machine`` on the figure-17-1 topology, exactly as ``clovm migrate`` will.
"""

from __future__ import annotations

from typing import Any

import pytest

from clovm import topology
from clovm.core import sp as spmod
from clovm.core.base import Effect, Event
from clovm.core.migration import Call, CallReturned, Finished, Persist, Print, RunStarted
from clovm.sim.scenarios import healthy
from clovm.sim.world import EPOCH, World

TOPO = topology.load()


class Script:
    """Makes ``calls`` ((target, op, args) or a callable returning one) in turn; records answers."""

    def __init__(self, calls: list[Any], persist: list[tuple[str, dict | None]] = ()) -> None:
        self.calls, self.persist = list(calls), list(persist)
        self.answers: list[tuple[bool, Any, str]] = []
        self.times: list[float] = []

    def handle(self, now: float, event: Event) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(event, RunStarted):
            out += [Print("script started"), *(Persist(d, j) for d, j in self.persist)]
        elif isinstance(event, CallReturned):
            self.answers.append((event.ok, event.value, event.error))
            self.times.append(now)
        i = len(self.answers)
        if i < len(self.calls):
            c = self.calls[i]
            target, op, args = c() if callable(c) else c
            return out + [Call(i + 1, target, op, args)]
        return out + [Finished(0, "", "script done")]


def world() -> World:
    w = World(TOPO, 0)
    w.run(60.0)
    assert healthy(w)
    return w


def run(w: World, host: str, calls: list[Any], *, limit: float = 300.0, **kw: Any) -> Script:
    s = Script(calls, **kw)
    p = w.run_machine(host, s, "script")
    w.sched.run_until(w.sched.now + limit, stop=lambda: p.done)
    assert p.done and p.value == Finished(0, "", "script done")
    return s


def values(s: Script) -> list[Any]:
    assert all(ok for ok, _, _ in s.answers), s.answers
    return [v for _, v, _ in s.answers]


# ---- control-domain side -------------------------------------------------------------------------
def test_run_machine_prints_persists_and_finishes() -> None:
    w = world()
    journal = {"version": 1, "step": "prepare"}
    s = run(
        w,
        "primary2",
        [("primary2", "activity", {})],
        persist=[("guest2.migrate", journal), ("guest2", {"clovmmigrate": 1})],
    )
    assert w.journals[("primary2", "guest2.migrate")] == journal
    assert any("primary2" in ln and "cmd" in ln and "script started" in ln for ln in w.trace.lines)
    assert values(s) == [{"journals": ["guest2"], "migrating": []}]
    s = run(w, "primary2", [("primary2", "activity", {})], persist=[("guest2.migrate", None)])
    assert values(s) == [{"journals": ["guest2"], "migrating": []}]  # the clovmmigrate journal is left
    assert ("primary2", "guest2.migrate") not in w.journals


def test_sleep_and_control_domains() -> None:
    w = world()
    t0 = w.sched.now
    s = run(w, "primary1", [("primary1", "sleep", {"seconds": 42.0}), ("primary1", "control_domains", {})])
    assert s.times[0] == pytest.approx(t0 + 42.0)
    assert values(s) == [
        None,
        [
            {"host": "primary1", "address": "127.30.0.1"},
            {"host": "primary2", "address": "127.30.0.2"},
            {"host": "primary3", "address": "127.30.0.3"},
        ],
    ]


def test_where_by_name_and_address() -> None:
    w = world()
    s = run(
        w,
        "primary1",
        [
            ("primary2", "where", {"domain": "guest2"}),
            ("127.30.0.1", "where", {"domain": "guest2"}),
            ("primary1", "where", {"domain": "guest1"}),
        ],
    )
    assert values(s) == [
        {"state": "active", "flags": "-n----", "migration": None},
        None,
        {"state": "active", "flags": "-n----", "migration": None},
    ]
    s = run(w, "primary1", [("nowhere", "where", {"domain": "guest1"})])
    assert s.answers[0][0] is False and "nowhere" in s.answers[0][2]


def test_background_migration_activity_where_and_result() -> None:
    w = world()
    s = run(
        w,
        "primary1",
        [
            ("primary1", "migrate_result", {"domain": "guest1"}),  # nothing started yet
            ("primary1", "migrate_start", {"domain": "guest1", "target": "127.30.0.3"}),
            ("primary1", "migrate_result", {"domain": "guest1"}),
            ("primary1", "activity", {}),
            ("primary3", "activity", {}),
            ("primary1", "sleep", {"seconds": 3.0}),
            ("primary1", "where", {"domain": "guest1"}),
            ("primary3", "where", {"domain": "guest1"}),
            ("primary1", "sleep", {"seconds": 60.0}),
            ("primary1", "migrate_result", {"domain": "guest1"}),
            ("primary1", "activity", {}),
            ("primary1", "where", {"domain": "guest1"}),
            ("primary3", "where", {"domain": "guest1"}),
        ],
    )
    v = values(s)
    assert v[:3] == [None, None, None]
    assert v[3] == {"journals": [], "migrating": ["guest1"]}
    assert v[4] == {"journals": [], "migrating": ["guest1"]}  # the target's incoming copy
    assert v[6]["state"] == "active" and v[6]["flags"] == "-n---s"
    assert v[6]["migration"]["phase"] == "pre-copy" and 0 <= v[6]["migration"]["percent"] < 100
    assert v[7] == {"state": "bound", "flags": "-----t", "migration": None}
    assert v[9] == {"rc": 0, "stdout": "", "stderr": ""}
    assert v[10] == {"journals": [], "migrating": []}
    assert v[11] is None and v[12] == {"state": "active", "flags": "-n----", "migration": None}
    assert w.where("guest1") == [("primary3", "active")]


# ---- guest-node side -----------------------------------------------------------------------------
def test_cf_sample() -> None:
    w = world()
    [v] = values(run(w, "primary1", [("cfguest1", "cf_sample", {})]))
    assert v["state"] == "UP" and v["sf"] == "running" and v["rms_busy"] is False
    assert 55.0 < v["t"] <= w.sched.now
    peer = v["peers"]["cfguest2"]
    assert peer["state"] == "UP" and peer["timeout"] == 10.0 and 0.0 <= peer["gap"] < 1.5
    assert set(v["peers"]) == {"cfguest2"} and 0.0 <= v["clock_diff"]["cfguest2"] < 0.1
    # a peer not UP has no gap; SF stopped shows
    w.kill(w.nodes["cfguest2"], "test")
    w.run(w.sched.now + 15.0)
    [_, v] = values(run(w, "primary1", [("cfguest1", "sf_stop", {}), ("cfguest1", "cf_sample", {})]))
    assert v["peers"]["cfguest2"]["state"] in ("LEFTCLUSTER", "DOWN") and v["peers"]["cfguest2"]["gap"] is None
    assert v["sf"] == "stopped"


def test_widen_narrow_and_widen_json_across_a_restart() -> None:
    w = world()
    n1 = w.nodes["cfguest1"]
    s = run(
        w,
        "primary1",
        [
            (
                "cfguest1",
                "widen",
                {"peers": ["cfguest1", "cfguest2"], "seconds": 600, "lease": 100, "hypervisor": True},
            ),
            ("cfguest1", "cf_sample", {}),
        ],
    )
    _, sample = values(s)
    until = s.times[0] - 0.0  # the reply comes back after the network latency: until is earlier
    assert sample["peers"]["cfguest2"]["timeout"] == 600.0
    [(peer, rec)] = n1.files.widen.items()
    assert peer == "cfguest2" and rec["seconds"] == 600.0 and rec["hypervisor"] is True
    assert until - 100.0 - 1.0 < rec["until"] - 100.0 <= until
    assert any("failure detection of cfguest2 widened to 600 s" in x for x in n1.files.logs["messages"])
    # re-applied at boot while the lease runs (hypervisor: also after it)
    w.kill(n1, "test")
    w.boot(n1)
    assert n1.machines["cf"].widened() == {"cfguest2": (600.0, rec["until"], True)}
    [_, v] = values(run(w, "primary1", [("cfguest1", "narrow", {}), ("cfguest1", "cf_sample", {})]))
    assert n1.files.widen == {} and n1.machines["cf"].widened() == {}
    assert v["peers"]["cfguest2"]["timeout"] == 10.0


def test_expired_widening_is_dropped_at_boot() -> None:
    w = world()
    n2 = w.nodes["cfguest2"]
    run(w, "primary1", [("cfguest2", "widen", {"peers": ["cfguest1"], "seconds": 60, "lease": 5, "hypervisor": False})])
    assert n2.machines["cf"].widened() != {}
    w.run(w.sched.now + 10.0)
    assert n2.machines["cf"].widened() == {}  # the lease ended in the machine
    w.kill(n2, "test")
    w.boot(n2)
    assert n2.files.widen == {} and n2.machines["cf"].widened() == {}


@pytest.mark.parametrize("align", [True, False])
def test_clock_align_keeps_the_wall_clock_continuous_across_a_migration(align: bool) -> None:
    w = world()
    w.set_clock_offset("m10-3", 30.0)
    n1 = w.nodes["cfguest1"]
    calls = [("cfguest1", "clock_align", {})] if align else []
    calls += [
        ("primary1", "migrate_start", {"domain": "guest1", "target": "primary3"}),
        ("primary1", "sleep", {"seconds": 60.0}),
        ("primary1", "migrate_result", {"domain": "guest1"}),
        ("cfguest2", "cf_sample", {}),
    ]
    v = values(run(w, "primary1", calls))
    assert v[-2]["rc"] == 0 and n1.hosted_by == "primary3"
    if align:
        assert n1.clock_step == -30.0 and w.wallclock(n1) == EPOCH + w.sched.now
        assert v[-1]["clock_diff"]["cfguest1"] < 0.1
        assert any("clock stepped by -30 s" in ln for ln in w.trace.lines)
    else:
        assert n1.clock_step == 0.0 and w.wallclock(n1) == EPOCH + w.sched.now + 30.0
        assert v[-1]["clock_diff"]["cfguest1"] > 29.0
    # a restart forgets the step (the node's clock is its server's again)
    w.kill(n1, "test")
    w.boot(n1)
    assert n1.clock_step == 0.0


def test_xscf_check() -> None:
    w = world()
    lans = {"lan0": "127.20.30.73", "lan1": "127.20.40.73"}
    assert values(run(w, "primary1", [("cfguest1", "xscf_check", lans)])) == [
        {"known_host": True, "snmp": {"lan0": True, "lan1": True}}
    ]
    w._xscf_feed("m10-3", spmod.LanStateChanged("127.20.40.73", False))
    w.nodes["cfguest1"].files.known_xscf.discard("m10-3")
    assert values(run(w, "primary1", [("cfguest1", "xscf_check", lans)])) == [
        {"known_host": False, "snmp": {"lan0": True, "lan1": False}}
    ]
    assert values(run(w, "primary1", [("cfguest1", "xscf_check", {"lan0": "127.0.0.99", "lan1": "127.20.30.71"})])) == [
        {"known_host": False, "snmp": {"lan0": False, "lan1": True}}
    ]


def test_sf_test_starts_a_fresh_test_of_every_agent() -> None:
    w = world()
    w.nodes["cfguest1"]
    s = Script([("cfguest1", "sf_test", {})])
    p = w.run_machine("primary1", s, "script")
    testing: list[set[str]] = []

    def watch() -> None:
        testing.append({str(r.sa_state) for r in w.sf_rows("cfguest1")})

    orig = w._node_op

    def node_op(n, c, reply, caller=""):  # sample the rows right after the node handled the call
        orig(n, c, reply, caller)
        if c.op == "sf_test":
            watch()

    w._node_op = node_op  # type: ignore[method-assign]
    w.sched.run_until(w.sched.now + 60.0, stop=lambda: p.done)
    assert p.done and values(s) == [None]
    assert testing == [{"Testing"}]
    assert "testing every shutdown agent on request" in w.log_texts("cfguest1", "rcsd")
    w.run(w.sched.now + 30.0)
    assert healthy(w)


def test_sf_entry_and_guest_nodes() -> None:
    w = world()
    v = values(
        run(
            w,
            "primary2",
            [
                ("cfguest1", "sf_entry", {"node": "cfguest2"}),
                ("cfguest1", "sf_entry", {"node": "cfnobody"}),
                ("primary2", "guest_nodes", {"domain": "guest2"}),
            ],
        )
    )
    assert v == [
        {
            "cf_name": "cfguest2",
            "ppar_id": 0,
            "domain": "guest2",
            "lan0": "127.20.30.72",
            "lan1": "127.20.40.72",
            "user": "xuser",
            "connection": "ssh",
        },
        None,
        {
            "node": "cfguest2",
            "nodes": ["cfguest1", "cfguest2"],
            "domains": {"cfguest1": "guest1", "cfguest2": "guest2"},
        },
    ]


def test_unknown_node_op_is_an_error() -> None:
    w = world()
    s = run(w, "primary1", [("cfguest1", "no_such_op", {})])
    assert s.answers == [(False, None, "nodeagent guest1: unknown operation 'no_such_op'")]


def test_rms_busy_while_a_switchover_is_held() -> None:
    w = world()
    owner = next(iter(w.online["app1"]))
    other = "cfguest2" if owner == "cfguest1" else "cfguest1"
    run(w, "primary1", [(other, "window", {"open": True})])
    w.kill(w.nodes[owner], "test")
    w.run(w.sched.now + 15.0)
    assert w.ask(other, "cftool_k", {"node": owner}) == "DOWN"  # cftool -k: DOWN, but switchovers are held
    [v] = values(run(w, "primary1", [(other, "cf_sample", {})]))
    assert v["rms_busy"] is True  # app1's failover is deferred by the hold
    [_, v] = values(run(w, "primary1", [(other, "window", {"open": False}), (other, "cf_sample", {})]))
    assert v["rms_busy"] is False and w.online["app1"] == {other}
