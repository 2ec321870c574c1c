"""Tests for clovm.core.fencing (SF / rcsd)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from clovm.core._state import XSCF_AGENTS, InitState, NodeState, SaState, SfDaemonState, ShutState, TestState
from clovm.core.base import Effect, Log, Ticked
from clovm.core.fencing import (
    AgentFinished,
    AnnounceEliminated,
    AppPrioritiesChanged,
    NodeStateChanged,
    RunAgent,
    SfReconfigRequested,
    SfRow,
    SfStartRequested,
    SfStopRequested,
    SfTestRequested,
    ShutdownFacility,
)
from clovm.core.sfconfig import SfConfig, SfHost, XscfEntry

G1, G2, G3, G4 = "cfguest1", "cfguest2", "cfguest3", "cfguest4"
G0P, G1P, G0R, G1R = XSCF_AGENTS
LEFT, UP, DOWN = NodeState.LEFTCLUSTER, NodeState.UP, NodeState.DOWN


def entry(node: str, i: int) -> XscfEntry:
    return XscfEntry(node, ppar_id=0, domain=f"guest{i}", lan0=f"10.0.{i}.1", lan1=f"10.1.{i}.1")


def config(*nodes: str, weights: dict[str, int] | None = None) -> SfConfig:
    w = weights or {}
    return SfConfig(
        hosts=tuple(SfHost(n, weight=w.get(n, 1)) for n in nodes),
        xscf=tuple(entry(n, i) for i, n in enumerate(nodes, 1)),
    )


CFG2 = config(G1, G2)


def runs(effects: list[Effect], action: str | None = None) -> list[RunAgent]:
    return [e for e in effects if isinstance(e, RunAgent) and (action is None or e.action == action)]


def logs(effects: list[Effect], dest: str) -> list[Log]:
    return [e for e in effects if isinstance(e, Log) and e.dest == dest]


def answer(sf: ShutdownFacility, now: float, reqs: list[RunAgent], ok: bool = True, detail: str = "") -> list[Effect]:
    out: list[Effect] = []
    for r in reqs:
        out += sf.handle(now, AgentFinished(r.req_id, ok, detail))
    return out


def col(sf: ShutdownFacility) -> list[tuple[str, str, str, str, str, str]]:
    return [
        (r.host, r.agent, str(r.sa_state), str(r.shut_state), str(r.test_state), str(r.init_state)) for r in sf.rows()
    ]


def steady(me: str = G1, cfg: SfConfig = CFG2, peers_up: tuple[str, ...] = (G2,)) -> ShutdownFacility:
    """A running SF at t=1 with all rows InitWorked/TestWorked and the given peers UP."""
    sf = ShutdownFacility(me, cfg)
    inits = runs(sf.handle(0.0, SfStartRequested()))
    tests = runs(answer(sf, 0.5, inits))
    assert not runs(answer(sf, 1.0, tests))
    for p in peers_up:
        assert sf.handle(1.0, NodeStateChanged(p, UP)) == []
    return sf


# ------------------------------------------------------------------------------------ start
def test_start_inits_then_tests_every_row() -> None:
    sf = ShutdownFacility(G1, CFG2)
    assert sf.daemon is SfDaemonState.STOPPED and sf.next_deadline() is None
    eff = sf.handle(0.0, SfStartRequested())
    inits = runs(eff)
    assert [(r.req_id, r.host, r.agent, r.action) for r in inits] == [
        (i, h, a, "init") for i, (h, a) in enumerate([(h, a) for h in (G1, G2) for a in XSCF_AGENTS], 1)
    ]
    assert all(r.entry == CFG2.entry(r.host) and r.timeout == 20.0 for r in inits)
    assert logs(eff, "rcsd")
    assert set(col(sf)) == {(h, a, "Init-ing", "Unknown", "Unknown", "Init-ing") for h in (G1, G2) for a in XSCF_AGENTS}

    tests = runs(answer(sf, 1.0, inits))
    assert [(r.host, r.agent, r.action) for r in tests] == [(r.host, r.agent, "test") for r in inits]
    assert [r.req_id for r in tests] == list(range(9, 17))
    assert {row[2:] for row in col(sf)} == {("Testing", "Unknown", "Testing", "InitWorked")}

    assert runs(answer(sf, 2.0, tests)) == []
    expected = [
        SfRow(h, a, SaState.IDLE, ShutState.UNKNOWN, TestState.TEST_WORKED, InitState.INIT_WORKED)
        for h in (G1, G2)
        for a in XSCF_AGENTS
    ]
    assert sf.rows() == expected
    assert sf.next_deadline() == 600.0


def test_start_while_running_and_stop_while_stopped_are_noops() -> None:
    sf = ShutdownFacility(G1, CFG2)
    assert sf.handle(0.0, SfStopRequested()) == []
    sf.handle(0.0, SfStartRequested())
    assert sf.handle(1.0, SfStartRequested()) == []
    assert sf.daemon is SfDaemonState.RUNNING


def test_spurious_tick_does_nothing() -> None:
    sf = ShutdownFacility(G1, CFG2)
    assert sf.handle(5.0, Ticked()) == []
    sf = steady()
    before = sf.rows()
    assert sf.handle(2.0, Ticked()) == [] and sf.rows() == before


def test_periodic_test_at_exactly_600s() -> None:
    sf = steady()
    assert sf.next_deadline() == 600.0
    assert sf.handle(599.999, Ticked()) == []
    tests = runs(sf.handle(600.0, Ticked()))
    assert [(r.host, r.agent, r.action) for r in tests] == [(h, a, "test") for h in (G1, G2) for a in XSCF_AGENTS]
    assert sf.next_deadline() == 620.0  # the agents' timeouts
    answer(sf, 601.0, tests)
    assert sf.next_deadline() == 1200.0


# ------------------------------------------------------------------------------------ failures
@pytest.mark.parametrize(
    ("fail_phase", "detail", "init_state", "test_state", "msgid"),
    [
        ("init", "snmp: no response", "InitFailed", "TestWorked", ""),
        ("test", "snmp: no response", "InitWorked", "TestFailed", ""),
        ("init", "7245 host key of 10.0.2.1 not known", "InitFailed", "TestWorked", "7245"),
        ("test", "7245 host key of 10.0.2.1 not known", "InitWorked", "TestFailed", "7245"),
    ],
)
def test_failed_init_or_test(fail_phase: str, detail: str, init_state: str, test_state: str, msgid: str) -> None:
    sf = ShutdownFacility(G1, CFG2)
    inits = runs(sf.handle(0.0, SfStartRequested()))
    bad = inits[5]  # cfguest2 / g1p
    eff: list[Effect] = []
    good_inits = [r for r in inits if r is not bad]
    tests = runs(answer(sf, 1.0, good_inits))
    if fail_phase == "init":
        eff = sf.handle(1.0, AgentFinished(bad.req_id, False, detail))
        tests += runs(eff)
        answer(sf, 2.0, tests)
    else:
        tests += runs(answer(sf, 1.0, [bad]))
        bad_test = next(r for r in tests if (r.host, r.agent) == (bad.host, bad.agent))
        answer(sf, 2.0, [r for r in tests if r is not bad_test])
        eff = sf.handle(2.0, AgentFinished(bad_test.req_id, False, detail))
    rows = {(r.host, r.agent): r for r in sf.rows()}
    assert (str(rows[(G2, G1P)].init_state), str(rows[(G2, G1P)].test_state)) == (init_state, test_state)
    assert all(
        r.init_state is InitState.INIT_WORKED and r.test_state is TestState.TEST_WORKED
        for k, r in rows.items()
        if k != (G2, G1P)
    )
    msgs = logs(eff, "messages")
    assert len(msgs) == 1 and msgs[0].msgid == msgid
    if msgid:
        assert msgs[0].text == detail
    assert logs(eff, G1P) and detail in logs(eff, G1P)[0].text


def test_agent_timeout_counts_as_failure_and_late_answer_is_ignored() -> None:
    sf = ShutdownFacility(G1, CFG2)
    inits = runs(sf.handle(0.0, SfStartRequested()))
    answer(sf, 1.0, runs(answer(sf, 1.0, inits[1:])))
    assert sf.next_deadline() == 20.0
    assert runs(sf.handle(19.9, Ticked())) == []
    eff = sf.handle(20.0, Ticked())
    assert [(r.host, r.agent, r.action) for r in runs(eff)] == [(G1, G0P, "test")]
    assert any("timeout after 20 s" in line.text for line in logs(eff, G0P))
    assert logs(eff, "messages")
    assert sf.rows()[0].init_state is InitState.INIT_FAILED
    assert sf.handle(20.5, AgentFinished(inits[0].req_id, True, "")) == []
    assert sf.rows()[0].init_state is InitState.INIT_FAILED


def test_answer_after_missed_deadline_is_a_timeout() -> None:
    sf = ShutdownFacility(G1, CFG2)
    inits = runs(sf.handle(0.0, SfStartRequested()))
    eff = sf.handle(25.0, AgentFinished(inits[0].req_id, True, ""))  # no tick came at 20
    assert all(r.init_state is InitState.INIT_FAILED for r in sf.rows())
    assert len(runs(eff, "test")) == 8


# ------------------------------------------------------------------------------------ stop / reconfig
def test_stop_resets_rows_and_ignores_stale_results() -> None:
    sf = ShutdownFacility(G1, CFG2)
    inits = runs(sf.handle(0.0, SfStartRequested()))
    answer(sf, 1.0, inits[:4])
    eff = sf.handle(2.0, SfStopRequested())
    assert sf.daemon is SfDaemonState.STOPPED and logs(eff, "rcsd") and not runs(eff)
    assert {row[2:] for row in col(sf)} == {("Idle", "Unknown", "Unknown", "Unknown")}
    assert sf.next_deadline() is None
    assert answer(sf, 3.0, inits[4:]) == []
    assert {row[2:] for row in col(sf)} == {("Idle", "Unknown", "Unknown", "Unknown")}
    again = runs(sf.handle(4.0, SfStartRequested()))
    assert [r.req_id for r in again] == list(range(13, 21))  # 8 inits + 4 tests were issued before


def test_reconfig_reinits_with_new_entry() -> None:
    sf = steady()
    new_entry = replace(CFG2.entry(G2), lan0="10.9.9.9")
    new_cfg = CFG2.with_entry(new_entry, weight=3)
    eff = sf.handle(100.0, SfReconfigRequested(new_cfg))
    inits = runs(eff)
    assert sf.config == new_cfg and sf.daemon is SfDaemonState.RUNNING and logs(eff, "rcsd")
    assert [(r.host, r.agent, r.action) for r in inits] == [(h, a, "init") for h in (G1, G2) for a in XSCF_AGENTS]
    assert [r.entry.lan0 for r in inits] == ["10.0.1.1"] * 4 + ["10.9.9.9"] * 4
    assert {row[3:] for row in col(sf)} == {("Unknown", "Unknown", "Init-ing")}
    assert sf.next_deadline() == 120.0
    tests = runs(answer(sf, 101.0, inits))
    assert all(r.entry == new_entry for r in tests if r.host == G2)
    answer(sf, 102.0, tests)
    assert sf.next_deadline() == 700.0


def test_reconfig_makes_outstanding_results_stale() -> None:
    sf = ShutdownFacility(G1, CFG2)
    inits = runs(sf.handle(0.0, SfStartRequested()))
    new_inits = runs(sf.handle(1.0, SfReconfigRequested(CFG2)))
    assert answer(sf, 2.0, inits) == []
    assert all(r.init_state is InitState.INIT_ING for r in sf.rows())
    assert len(runs(answer(sf, 2.0, new_inits), "test")) == 8


def test_reconfig_while_stopped_only_replaces_config() -> None:
    sf = ShutdownFacility(G1, CFG2)
    new_cfg = config(G1, G2, G3)
    eff = sf.handle(0.0, SfReconfigRequested(new_cfg))
    assert not runs(eff) and sf.config == new_cfg and sf.daemon is SfDaemonState.STOPPED
    assert len(sf.rows()) == 12
    assert len(runs(sf.handle(1.0, SfStartRequested()))) == 12


def test_reconfig_during_shutdown_cycle_is_ignored() -> None:
    sf = steady()
    kill = runs(sf.handle(10.0, NodeStateChanged(G2, LEFT)), "kill")
    assert len(kill) == 1
    new_cfg = CFG2.with_entry(replace(CFG2.entry(G2), lan0="10.9.9.9"))
    eff = sf.handle(11.0, SfReconfigRequested(new_cfg))
    assert not runs(eff) and sf.config == CFG2
    assert "shutdown cycle" in logs(eff, "rcsd")[0].text


# ------------------------------------------------------------------------------------ kills
@pytest.mark.parametrize("failures", [0, 1, 2, 3])
def test_kill_tries_agents_in_config_order(failures: int) -> None:
    sf = steady()
    req = runs(sf.handle(10.0, NodeStateChanged(G2, LEFT)))
    tried = []
    t = 10.0
    for _ in range(failures):
        assert len(req) == 1 and req[0].action == "kill" and req[0].host == G2
        assert req[0].entry == CFG2.entry(G2)
        tried.append(req[0].agent)
        assert col(sf)[4 + len(tried) - 1][2:4] == ("Killing", "Killing")
        t += 1
        eff = sf.handle(t, AgentFinished(req[0].req_id, False, "snmp: no response"))
        assert not [e for e in eff if isinstance(e, AnnounceEliminated)]
        req = runs(eff)
    tried.append(req[0].agent)
    eff = sf.handle(t + 1, AgentFinished(req[0].req_id, True, "panicked"))
    assert tried == list(XSCF_AGENTS[: failures + 1])
    assert [e for e in eff if isinstance(e, AnnounceEliminated)] == [AnnounceEliminated(G2)]
    assert logs(eff, "rcsd") and logs(eff, tried[-1])
    shut = [r.shut_state for r in sf.rows() if r.host == G2]
    assert shut == [ShutState.KILL_FAILED] * failures + [ShutState.KILL_WORKED] + [ShutState.UNKNOWN] * (3 - failures)
    assert all(r.shut_state is ShutState.UNKNOWN and r.sa_state is SaState.IDLE for r in sf.rows() if r.host == G1)


def test_all_kill_agents_fail() -> None:
    sf = steady()
    req = runs(sf.handle(10.0, NodeStateChanged(G2, LEFT)))
    tried, t, all_eff = [], 10.0, []
    while req:
        tried.append(req[0].agent)
        if req[0].agent == G0R:  # one of them times out instead of answering
            assert sf.next_deadline() == t + 20
            t += 20
            eff = sf.handle(t, Ticked())
        else:
            t += 1
            eff = sf.handle(t, AgentFinished(req[0].req_id, False, "snmp: no response"))
        all_eff += eff
        req = runs(eff)
    assert tried == list(XSCF_AGENTS)
    assert not [e for e in all_eff if isinstance(e, AnnounceEliminated)]
    assert [r.shut_state for r in sf.rows() if r.host == G2] == [ShutState.KILL_FAILED] * 4
    assert any("timeout after 20 s" in line.text for line in logs(all_eff, G0R))
    assert len(logs(all_eff, "messages")) == 1 and G2 in logs(all_eff, "messages")[0].text
    # the node stays LEFTCLUSTER: a repeated report does not start a second kill in this episode
    assert runs(sf.handle(t + 1, NodeStateChanged(G2, LEFT))) == []


def test_kill_started_once_per_episode() -> None:
    sf = steady()
    first = runs(sf.handle(10.0, NodeStateChanged(G2, LEFT)))
    assert runs(sf.handle(11.0, NodeStateChanged(G2, LEFT))) == []
    sf.handle(12.0, AgentFinished(first[0].req_id, True, ""))
    assert runs(sf.handle(13.0, SfStopRequested())) == []
    assert runs(sf.handle(14.0, SfStartRequested()), "kill") == []  # same episode
    sf.handle(15.0, NodeStateChanged(G2, DOWN))
    sf.handle(16.0, NodeStateChanged(G2, UP))
    assert [(r.host, r.agent) for r in runs(sf.handle(17.0, NodeStateChanged(G2, LEFT)), "kill")] == [(G2, G0P)]


def test_down_cancels_ongoing_kill() -> None:
    sf = steady()
    req = runs(sf.handle(10.0, NodeStateChanged(G2, LEFT)))
    eff = sf.handle(11.0, NodeStateChanged(G2, DOWN))
    assert "cancelled" in logs(eff, "rcsd")[0].text
    eff = sf.handle(12.0, AgentFinished(req[0].req_id, False, "no response"))
    assert not runs(eff) and not [e for e in eff if isinstance(e, AnnounceEliminated)]
    assert sf.rows()[4].shut_state is ShutState.KILL_FAILED and sf.rows()[4].sa_state is SaState.IDLE
    # a new episode starts afresh
    sf.handle(13.0, NodeStateChanged(G2, UP))
    assert [r.agent for r in runs(sf.handle(14.0, NodeStateChanged(G2, LEFT)))] == [G0P]


def test_node_unknown_to_sf_cannot_be_killed() -> None:
    sf = steady()
    eff = sf.handle(10.0, NodeStateChanged(G3, LEFT))  # my side 2 vs 0
    assert not runs(eff) and logs(eff, "messages")


# ------------------------------------------------------------------------------------ split brain
@pytest.mark.parametrize(
    ("me", "weights", "apps", "peers_up", "left", "delay"),
    [
        # heavier side kills at once even though the other holds the alphabetically first node
        (G2, {G1: 1, G2: 2}, {}, (), (G1,), None),
        # lighter side (1 of 3) waits 30 × (1 − 1/3) = 20 s
        (G1, {G1: 1, G2: 2}, {}, (), (G2,), 20.0),
        # ties: the side with the alphabetically first node survives
        (G1, {}, {}, (), (G2,), None),
        (G2, {}, {}, (), (G1,), 15.0),
        # tie 2:2 across four nodes: my side holds cfguest1 although I am cfguest2
        (G2, {}, {}, (G1,), (G3, G4), None),
        (G3, {}, {}, (G4,), (G1, G2), 15.0),
        # a larger sub-cluster wins without the first node
        (G3, {}, {}, (G4, G2), (G1,), None),
        # app priority changes the outcome
        (G2, {}, {G2: 5}, (), (G1,), None),
        (G1, {}, {G2: 5}, (), (G2,), 30.0 * (1 - 1 / 7)),
        (G1, {G1: 3}, {G2: 1}, (), (G2,), None),
        (G1, {G1: 3}, {G2: 2}, (), (G2,), None),  # 3:3 tie, cfguest1 first
        (G2, {G1: 3}, {G2: 2}, (), (G1,), 15.0),
    ],
)
def test_split_brain_decision(
    me: str,
    weights: dict[str, int],
    apps: dict[str, int],
    peers_up: tuple[str, ...],
    left: tuple[str, ...],
    delay: float | None,
) -> None:
    nodes = sorted({me, *peers_up, *left})
    if len(left) == 1:  # running: the LEFTCLUSTER report itself triggers the decision
        sf = steady(me, config(*nodes, weights=weights), peers_up=tuple(peers_up) + tuple(left))
        sf.handle(1.0, AppPrioritiesChanged(tuple(apps.items())))
        eff = sf.handle(10.0, NodeStateChanged(left[0], LEFT))
    else:  # several nodes at once: report them while stopped, decide on start
        sf = ShutdownFacility(me, config(*nodes, weights=weights))
        sf.handle(1.0, AppPrioritiesChanged(tuple(apps.items())))
        for n in peers_up:
            sf.handle(1.0, NodeStateChanged(n, UP))
        for n in left:
            sf.handle(1.0, NodeStateChanged(n, LEFT))
        eff = sf.handle(10.0, SfStartRequested())
    decision = [line.text for line in logs(eff, "rcsd") if "split-brain" in line.text]
    assert decision and "priority" in decision[0]
    kills = runs(eff, "kill")
    if delay is None:
        assert sorted(r.host for r in kills) == sorted(left)
        assert all(r.agent == G0P for r in kills)
        return
    assert kills == []
    deadline = sf.next_deadline()
    assert deadline == pytest.approx(10.0 + delay)
    assert runs(sf.handle(deadline - 0.01, Ticked()), "kill") == []
    kills = runs(sf.handle(deadline, Ticked()), "kill")
    assert sorted(r.host for r in kills) == sorted(left)


def test_lighter_side_does_not_kill_node_that_went_down() -> None:
    sf = steady(G1, config(G1, G2, weights={G2: 2}))
    assert runs(sf.handle(10.0, NodeStateChanged(G2, LEFT))) == []
    deadline = sf.next_deadline()
    assert deadline == pytest.approx(30.0)
    eff = sf.handle(12.0, NodeStateChanged(G2, DOWN))  # e.g. the operator marked it down (cftool -k)
    assert [line.text for line in logs(eff, "rcsd")] == [f"{G2} is DOWN: kill cancelled"]
    assert sf.handle(deadline, Ticked()) == []
    assert sf.next_deadline() == 600.0


def test_lighter_side_kill_skipped_when_daemon_stopped_meanwhile() -> None:
    sf = steady(G1, config(G1, G2, weights={G2: 2}))
    sf.handle(10.0, NodeStateChanged(G2, LEFT))
    sf.handle(15.0, SfStopRequested())
    assert sf.next_deadline() is None and sf.handle(30.0, Ticked()) == []


def test_leftcluster_while_stopped_is_handled_on_start() -> None:
    sf = ShutdownFacility(G1, CFG2)
    assert sf.handle(0.0, NodeStateChanged(G2, UP)) == []
    assert sf.handle(1.0, NodeStateChanged(G2, LEFT)) == []
    eff = sf.handle(2.0, SfStartRequested())
    assert len(runs(eff, "init")) == 8
    assert [(r.host, r.agent) for r in runs(eff, "kill")] == [(G2, G0P)]
    assert any("stopped" in line.text for line in logs(eff, "rcsd"))


def test_leftcluster_then_down_while_stopped_is_forgotten() -> None:
    sf = ShutdownFacility(G1, CFG2)
    sf.handle(1.0, NodeStateChanged(G2, LEFT))
    sf.handle(2.0, NodeStateChanged(G2, DOWN))
    assert runs(sf.handle(3.0, SfStartRequested()), "kill") == []


def test_reports_about_me_are_ignored() -> None:
    sf = steady()
    assert sf.handle(10.0, NodeStateChanged(G1, LEFT)) == []


# ------------------------------------------------------------------------------------ state machine
NODES = (G1, G2, G3)
CONFIGS = (
    config(*NODES),
    config(*NODES, weights={G2: 3}),
    SfConfig(hosts=config(*NODES).hosts, xscf=config(*NODES).xscf[:2]),  # cfguest3 has no XSCF entry
)


class FencingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.me = G1
        self.sf = ShutdownFacility(self.me, CONFIGS[0])
        self.now = 0.0
        self.states: dict[str, NodeState] = {}
        self.issued: list[int] = []
        self.eliminated: set[str] = set()  # announced in the current episode

    def send(self, event: object, at: float | None = None) -> None:
        if at is not None:
            self.now = at
        eff = self.sf.handle(self.now, event)  # type: ignore[arg-type]
        for e in eff:
            if isinstance(e, RunAgent):
                assert e.req_id == len(self.issued) + 1
                self.issued.append(e.req_id)
                assert self.sf.daemon is SfDaemonState.RUNNING
                assert e.entry.cf_name == e.host
                if e.action == "kill":
                    assert e.host != self.me
                    assert self.states.get(e.host) is LEFT, (e, self.states)
            elif isinstance(e, AnnounceEliminated):
                assert self.states.get(e.node) is LEFT
                assert e.node not in self.eliminated
                self.eliminated.add(e.node)
            else:
                assert isinstance(e, Log)

    @rule()
    def start(self) -> None:
        self.send(SfStartRequested())
        assert self.sf.daemon is SfDaemonState.RUNNING

    @rule()
    def stop(self) -> None:
        self.send(SfStopRequested())
        assert self.sf.daemon is SfDaemonState.STOPPED
        assert all(r.shut_state is ShutState.UNKNOWN and r.init_state is InitState.UNKNOWN for r in self.sf.rows())

    @rule(cfg=st.sampled_from(CONFIGS))
    def reconfig(self, cfg: SfConfig) -> None:
        self.send(SfReconfigRequested(cfg))

    @rule()
    def test_requested(self) -> None:
        before = len(self.issued)
        self.send(SfTestRequested())
        assert all(r.sa_state is not SaState.KILLING for r in self.sf.rows()) or len(self.issued) == before

    @precondition(lambda self: self.issued)
    @rule(pick=st.integers(min_value=0), ok=st.booleans(), detail=st.sampled_from(["", "no response", "7245 key"]))
    def agent_finished(self, pick: int, ok: bool, detail: str) -> None:
        recent = self.issued[-12:]
        self.send(AgentFinished(recent[pick % len(recent)], ok, detail))

    @rule(node=st.sampled_from(NODES), state=st.sampled_from([UP, LEFT, DOWN]))
    def node_state(self, node: str, state: NodeState) -> None:
        if node == self.me:
            return
        if state is not LEFT:
            self.eliminated.discard(node)
        self.states[node] = state
        self.send(NodeStateChanged(node, state))

    @rule(prio=st.integers(min_value=0, max_value=3), node=st.sampled_from(NODES))
    def app_priorities(self, prio: int, node: str) -> None:
        self.send(AppPrioritiesChanged(((node, prio),)))

    @rule(dt=st.sampled_from([0.5, 5.0, 20.0, 600.0]), to_deadline=st.booleans())
    def tick(self, dt: float, to_deadline: bool) -> None:
        deadline = self.sf.next_deadline()
        at = deadline if to_deadline and deadline is not None else self.now + dt
        self.send(Ticked(), at)

    @invariant()
    def rows_cover_config(self) -> None:
        assert len(self.sf.rows()) == sum(len(h.agents) for h in self.sf.config.hosts)

    @invariant()
    def deadline_in_future(self) -> None:
        d = self.sf.next_deadline()
        assert d is None or d > self.now
        if self.sf.daemon is SfDaemonState.STOPPED:
            assert d is None


FencingMachine.TestCase.settings = settings(max_examples=100, deadline=None, stateful_step_count=40)
TestFencingMachine = FencingMachine.TestCase


# ------------------------------------------------------------------------------------ test on request
def test_test_requested_tests_every_idle_row_now_without_moving_the_periodic_test() -> None:
    sf = steady()
    eff = sf.handle(100.0, SfTestRequested())
    tests = runs(eff, "test")
    assert [(r.host, r.agent) for r in tests] == [(h, a) for h in (G1, G2) for a in XSCF_AGENTS]
    assert [x.text for x in logs(eff, "rcsd")] == ["testing every shutdown agent on request"]
    assert {row[2] for row in col(sf)} == {"Testing"}
    assert sf.next_deadline() == 100.0 + 20.0  # the agents' timeouts
    # a second request while they run starts nothing more
    assert runs(sf.handle(101.0, SfTestRequested())) == []
    answer(sf, 102.0, tests[:4], ok=False, detail="no answer")
    assert [row[4] for row in col(sf)] == ["TestFailed"] * 4 + ["Testing"] * 4
    answer(sf, 102.0, tests[4:])
    assert sf.next_deadline() == 600.0  # the periodic schedule is unchanged
    assert len(runs(sf.handle(600.0, Ticked()), "test")) == 8


def test_test_requested_is_ignored_when_stopped_or_in_a_shutdown_cycle() -> None:
    sf = ShutdownFacility(G1, CFG2)
    eff = sf.handle(0.0, SfTestRequested())
    assert runs(eff) == [] and [x.text for x in logs(eff, "rcsd")] == ["test request ignored: rcsd is stopped"]
    sf = steady()
    assert runs(sf.handle(5.0, NodeStateChanged(G2, LEFT)), "kill")  # cfguest1 wins: kills at once
    eff = sf.handle(6.0, SfTestRequested())
    assert runs(eff) == [] and "shutdown cycle" in logs(eff, "rcsd")[0].text
