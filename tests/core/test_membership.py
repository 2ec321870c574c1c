"""Tests for clovm.core.membership (CF membership machine)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from clovm.core._state import NodeState
from clovm.core.base import Effect, Log, Ticked, TransitionError
from clovm.core.membership import (
    AnnounceNodeState,
    BroadcastHeartbeat,
    DetectionNarrowed,
    DetectionWidened,
    DomainStatusReported,
    HeartbeatReceived,
    JoinAnswerReceived,
    JoinRequestReceived,
    Membership,
    MigrationWindowChanged,
    NodeBooted,
    NodeEliminated,
    NodeMarkedDown,
    QueryDomainStatus,
    RefuseClusterServices,
    SendJoinAnswer,
    SendJoinRequest,
    StartClusterServices,
    TimeoutChanged,
)

UP, DOWN, LEFT = NodeState.UP, NodeState.DOWN, NodeState.LEFTCLUSTER
COMINGUP, INVALID = NodeState.COMINGUP, NodeState.INVALID
A, B, C = "cfguest1", "cfguest2", "cfguest3"


def joined(me: str = A, peers: tuple[str, ...] = (B,), **kw: float) -> Membership:
    """A node that booted at 0 and was accepted by every peer at 0 (peers' last heartbeat: 0).

    Its own heartbeat broadcasts are rare (every 1000 s) unless asked otherwise, to keep effects short.
    """
    m = Membership(me, peers, **{"heartbeat_interval": 1000.0, **kw})
    m.handle(0.0, NodeBooted())
    for p in peers:
        m.handle(0.0, JoinAnswerReceived(p, True, ""))
    assert m.local_state is UP
    return m


def left(window: bool = False) -> Membership:
    """cfguest1 holding cfguest2 LEFTCLUSTER since t=10."""
    m = joined()
    m.handle(0.0, MigrationWindowChanged(window))
    m.handle(10.0, Ticked())
    assert m.view()[B] is LEFT
    return m


def of(effects: list[Effect], cls: type) -> list:
    return [e for e in effects if isinstance(e, cls)]


def texts(effects: list[Effect]) -> list[str]:
    return [e.text for e in of(effects, Log)]


# ---- joining ---------------------------------------------------------------------------------
def test_boot_sends_join_requests_and_comes_up_when_all_accept() -> None:
    m = Membership(A, [C, B], incarnation=7)
    assert m.local_state is COMINGUP and m.view() == {A: COMINGUP, B: DOWN, C: DOWN}
    out = m.handle(0.0, NodeBooted())
    assert of(out, SendJoinRequest) == [SendJoinRequest(B, 7), SendJoinRequest(C, 7)]
    assert m.next_deadline() == 3.0
    out = m.handle(0.1, JoinAnswerReceived(B, True, ""))
    assert out[0] == AnnounceNodeState(B, UP) and m.local_state is COMINGUP
    assert not of(out, StartClusterServices)
    out = m.handle(0.2, JoinAnswerReceived(C, True, ""))
    assert of(out, AnnounceNodeState) == [AnnounceNodeState(C, UP), AnnounceNodeState(A, UP)]
    assert of(out, StartClusterServices) == [StartClusterServices()]
    assert of(out, BroadcastHeartbeat) == [BroadcastHeartbeat(7)]
    assert m.view() == {A: UP, B: UP, C: UP}


def test_single_node_is_up_at_once() -> None:
    m = Membership(A, [])
    out = m.handle(5.0, NodeBooted())
    assert m.local_state is UP and of(out, StartClusterServices)
    assert m.view() == {A: UP}


@pytest.mark.parametrize(
    ("answering", "view_after"),
    [
        ((), {A: UP, B: DOWN, C: DOWN}),
        ((B,), {A: UP, B: UP, C: DOWN}),
    ],
)
def test_join_deadline_with_silent_peers(answering: tuple[str, ...], view_after: dict) -> None:
    m = Membership(A, [B, C])
    m.handle(0.0, NodeBooted())
    for p in answering:
        m.handle(0.5, JoinAnswerReceived(p, True, ""))
    assert m.handle(2.999, Ticked()) == [] and m.local_state is COMINGUP
    assert m.next_deadline() == 3.0
    out = m.handle(3.0, Ticked())
    assert m.local_state is UP and of(out, StartClusterServices)
    assert m.view() == view_after
    assert any("no answer from" in t and C in t for t in texts(out))
    # a late refusal changes nothing: the silent peer stays DOWN
    assert m.handle(3.5, JoinAnswerReceived(C, False, "busy", 4)) == []
    assert m.view()[C] is DOWN


def test_an_accepting_answer_after_the_join_window_takes_the_peer_as_joined() -> None:
    # The peer accepted our request (so it holds us UP and counts our heartbeats), but its answer
    # came after our window closed: ignoring it would leave two views that never agree again.
    m = Membership(A, [B], incarnation=3)
    m.handle(0.0, NodeBooted())
    up = m.handle(3.0, Ticked())
    assert m.local_state is UP and m.view()[B] is DOWN
    assert any("no answer from cfguest2" in t for t in texts(up))
    m.handle(3.2, HeartbeatReceived(B, 9))  # a heartbeat of a peer we hold DOWN does not count
    assert m.view()[B] is DOWN
    out = m.handle(3.4, JoinAnswerReceived(B, True, "", 9))
    assert of(out, AnnounceNodeState) == [AnnounceNodeState(B, UP)] and m.view()[B] is UP
    assert any("answer after the join window" in t for t in texts(out))
    # from now on its heartbeats (of the incarnation it answered with) keep it UP ...
    for t in range(4, 30, 2):
        m.handle(float(t), HeartbeatReceived(B, 9))
    m.handle(30.0, Ticked())
    assert m.view()[B] is UP
    # ... and its silence makes it LEFTCLUSTER after CLUSTER_TIMEOUT, as for any member
    m.handle(38.1, Ticked())
    assert m.view()[B] is LEFT


def test_a_peer_joining_us_in_our_window_is_not_listed_as_silent() -> None:
    m = Membership(A, [B, C])
    m.handle(0.0, NodeBooted())
    m.handle(1.0, JoinRequestReceived(B, 5))  # B booted too: we accept it; its answer to us is lost
    out = m.handle(3.0, Ticked())
    line = next(t for t in texts(out) if "cluster members" in t)
    assert line.endswith("UP, cluster members: cfguest1 cfguest2 (no answer from cfguest3)")


def test_min_timeout_is_a_floor_under_every_effective_timeout() -> None:
    # (the runtime's real-time floor at high time scales: 60 emulated s at --time-scale 60)
    m = joined(timeout=10.0, min_timeout=60.0)
    assert m.timeout == 10.0 and m.effective_timeout(B, 0.0) == 60.0
    m.handle(29.9, Ticked())
    assert B not in m.questionable()
    m.handle(30.0, Ticked())
    assert B in m.questionable() and m.view()[B] is UP
    m.handle(59.9, Ticked())
    assert m.view()[B] is UP
    out = m.handle(60.0, Ticked())
    assert m.view()[B] is LEFT and any("no heartbeat for 60.0 s" in t for t in texts(out))
    # a CLUSTER_TIMEOUT above the floor applies as configured; a widening below it is floored
    m2 = joined(timeout=10.0, min_timeout=60.0)
    m2.handle(1.0, TimeoutChanged(600.0))
    assert m2.effective_timeout(B, 1.0) == 600.0
    m3 = joined(timeout=10.0, min_timeout=60.0)
    m3.handle(1.0, DetectionWidened((B,), 30.0, 500.0))
    assert m3.effective_timeout(B, 2.0) == 60.0
    with pytest.raises(ValueError):
        Membership(A, [B], min_timeout=-1.0)


def test_no_heartbeat_broadcast_before_join_completes() -> None:
    m = Membership(A, [B])
    out = m.handle(0.0, NodeBooted()) + m.handle(1.0, Ticked()) + m.handle(2.0, Ticked())
    assert not of(out, BroadcastHeartbeat)


def test_heartbeat_broadcast_every_interval_while_up() -> None:
    m = joined(heartbeat_interval=0.5, incarnation=3)
    sent = [t for t in (0.25, 0.5, 0.75, 1.0) if of(m.handle(t, Ticked()), BroadcastHeartbeat)]
    assert sent == [0.5, 1.0]
    assert of(m.handle(1.5, Ticked()), BroadcastHeartbeat) == [BroadcastHeartbeat(3)]


def held_up(m: Membership) -> None:
    m.handle(4.0, HeartbeatReceived(B, 1))
    assert m.view()[B] is UP


def held_left(m: Membership) -> None:
    m.handle(10.0, Ticked())
    assert m.view()[B] is LEFT


def held_down_after_elimination(m: Membership) -> None:
    m.handle(10.0, Ticked())
    m.handle(10.0, NodeEliminated(B))
    assert m.view()[B] is DOWN


@pytest.mark.parametrize(
    ("setup", "accepted", "reason"),
    [
        (held_up, False, "cfguest1 still holds cfguest2 UP"),
        (held_left, False, "cfguest1 still holds cfguest2 LEFTCLUSTER"),
        (held_down_after_elimination, True, ""),
    ],
)
def test_peer_answers_join_request(setup, accepted: bool, reason: str) -> None:
    m = joined()
    setup(m)
    before = m.view()[B]
    out = m.handle(10.0, JoinRequestReceived(B, 2))
    assert [(a.to, a.accepted, a.reason) for a in of(out, SendJoinAnswer)] == [(B, accepted, reason)]
    if accepted:
        assert AnnounceNodeState(B, UP) in out and m.view()[B] is UP
    else:
        assert m.view()[B] is before
        assert any("refused" in t and reason in t for t in texts(out))


def test_never_seen_node_is_accepted_and_request_counts_as_heartbeat() -> None:
    m = Membership(A, [B, C])
    m.handle(0.0, NodeBooted())
    m.handle(3.0, Ticked())  # nobody answered: B and C never seen
    out = m.handle(4.0, JoinRequestReceived(C, 1))
    assert [(a.to, a.accepted, a.reason) for a in of(out, SendJoinAnswer)] == [(C, True, "")]
    assert of(out, AnnounceNodeState) == [AnnounceNodeState(C, UP)]
    assert m.view() == {A: UP, B: DOWN, C: UP}
    m.handle(8.999, Ticked())
    assert m.questionable() == frozenset()
    m.handle(9.0, Ticked())  # 5 s after the request
    assert m.questionable() == {C}


@pytest.mark.parametrize("refusers", [(B,), (B, C)])
def test_refused_join_makes_local_invalid(refusers: tuple[str, ...]) -> None:
    m = Membership(A, [C, B])
    m.handle(0.0, NodeBooted())
    out: list[Effect] = []
    for p in (B, C):
        if p in refusers:
            out += m.handle(0.1, JoinAnswerReceived(p, False, f"{p} still holds {A} LEFTCLUSTER"))
        else:
            out += m.handle(0.1, JoinAnswerReceived(p, True, ""))
    assert m.local_state is INVALID and m.view()[A] is INVALID
    reason = "; ".join(f"{p} still holds {A} LEFTCLUSTER" for p in refusers)
    assert of(out, RefuseClusterServices) == [RefuseClusterServices(refusers, reason)]
    assert AnnounceNodeState(A, INVALID) in out and not of(out, StartClusterServices)
    [line] = [t for t in texts(out) if "refused" in t]
    assert "\n" not in line
    for needle in (*refusers, reason, "stop the domain", "cftool -n", f"{A} DOWN", "then start it"):
        assert needle in line
    # an INVALID node takes no further part
    assert m.next_deadline() is None
    assert m.handle(20.0, Ticked()) == []
    assert m.handle(20.0, JoinRequestReceived(B, 1)) == []
    assert not of(m.handle(20.0, HeartbeatReceived(B, 1)), Effect)


def test_refusal_with_a_silent_peer_is_decided_at_the_join_deadline() -> None:
    m = Membership(A, [B, C])
    m.handle(0.0, NodeBooted())
    m.handle(0.1, JoinAnswerReceived(B, False, "cfguest2 still holds cfguest1 UP"))
    assert m.local_state is COMINGUP
    out = m.handle(3.0, Ticked())
    assert m.local_state is INVALID and of(out, RefuseClusterServices)[0].refused_by == (B,)


# ---- heartbeats and failure detection --------------------------------------------------------
def peer_learnt_inc1(m: Membership) -> None:
    m.handle(0.0, HeartbeatReceived(B, 1))


def peer_left(m: Membership) -> None:
    m.handle(0.0, TimeoutChanged(4.0))
    m.handle(4.0, Ticked())
    assert m.view()[B] is LEFT


def peer_never_joined(m: Membership) -> None:
    m.handle(1.0, HeartbeatReceived(B, 1))
    m.handle(1.0, NodeEliminated(B))


@pytest.mark.parametrize(
    ("setup", "hb_incarnation", "refreshed", "state_after"),
    [
        (peer_learnt_inc1, 1, True, UP),
        (peer_learnt_inc1, 2, False, UP),
        (lambda m: None, 5, True, UP),  # incarnation learnt from the first heartbeat
        (peer_left, 1, False, LEFT),
        (peer_never_joined, 1, False, DOWN),
    ],
)
def test_heartbeat_refreshes_only_same_incarnation_up_peers(setup, hb_incarnation, refreshed, state_after) -> None:
    m = joined()
    setup(m)
    m.handle(4.5, HeartbeatReceived(B, hb_incarnation))
    assert m.view()[B] is state_after
    out = m.handle(5.0, Ticked())  # questionable at 5.0 unless the heartbeat at 4.5 counted
    assert (B in m.questionable()) is (state_after is UP and not refreshed)
    assert any("questionable" in t for t in texts(out)) is (state_after is UP and not refreshed)


def test_questionable_at_exactly_half_the_timeout_logged_once() -> None:
    m = joined(heartbeat_interval=100.0)
    m.handle(2.0, HeartbeatReceived(B, 1))
    assert m.next_deadline() == 7.0
    assert m.handle(6.999, Ticked()) == [] and m.questionable() == frozenset()
    out = m.handle(7.0, Ticked())
    assert texts(out) == ["CF: cfguest2: node is questionable: no heartbeat for 5.0 s"]
    assert m.questionable() == {B} and m.view()[B] is UP  # a flag, not a state
    assert m.next_deadline() == 12.0
    assert texts(m.handle(8.0, Ticked()) + m.handle(9.0, Ticked())) == []
    m.handle(9.5, HeartbeatReceived(B, 1))  # heartbeat resumes: flag cleared
    assert m.questionable() == frozenset()
    assert texts(m.handle(14.5, Ticked())) == ["CF: cfguest2: node is questionable: no heartbeat for 5.0 s"]


def test_leftcluster_at_exactly_the_timeout() -> None:
    m = joined(heartbeat_interval=100.0)
    m.handle(2.0, HeartbeatReceived(B, 1))
    m.handle(7.0, Ticked())
    assert m.handle(11.999, Ticked()) == [] and m.view()[B] is UP
    out = m.handle(12.0, Ticked())
    assert out == [
        AnnounceNodeState(B, LEFT),
        Log("messages", "CF: cfguest2: LEFTCLUSTER (no heartbeat for 10.0 s)"),
    ]
    assert m.view() == {A: UP, B: LEFT} and m.questionable() == frozenset()
    assert m.next_deadline() == 100.0  # only the next heartbeat broadcast is left
    assert m.handle(12.5, HeartbeatReceived(B, 1)) == [] and m.view()[B] is LEFT  # no LEFTCLUSTER -> UP


def test_late_tick_logs_questionable_then_leftcluster() -> None:
    m = joined(heartbeat_interval=100.0)
    out = m.handle(30.0, Ticked())
    assert texts(out) == [
        "CF: cfguest2: node is questionable: no heartbeat for 30.0 s",
        "CF: cfguest2: LEFTCLUSTER (no heartbeat for 30.0 s)",
    ]


def test_heartbeat_arriving_at_the_deadline_does_not_save_the_peer() -> None:
    m = joined()
    out = m.handle(10.0, HeartbeatReceived(B, 1))
    assert AnnounceNodeState(B, LEFT) in out and m.view()[B] is LEFT


def test_timeout_changed_to_600_moves_the_deadline() -> None:
    m = joined()
    for t in range(91):
        m.handle(float(t), HeartbeatReceived(B, 1))
    m.handle(95.0, Ticked())
    assert m.questionable() == {B}
    out = m.handle(95.0, TimeoutChanged(600))
    assert texts(out) == ["CF: cfguest1: CLUSTER_TIMEOUT changed from 10 to 600 seconds"]
    assert m.timeout == 600.0
    assert m.questionable() == frozenset()  # 5 s of silence is no longer questionable
    assert m.handle(100.0, Ticked()) == [] and m.view()[B] is UP
    m.handle(390.0, Ticked())
    assert m.questionable() == {B}
    m.handle(689.999, Ticked())
    assert m.view()[B] is UP
    assert m.next_deadline() == 690.0
    out = m.handle(690.0, Ticked())
    assert AnnounceNodeState(B, LEFT) in out
    assert "CF: cfguest2: LEFTCLUSTER (no heartbeat for 600.0 s)" in texts(out)


def test_shorter_timeout_takes_effect_in_the_same_call_counted_from_the_change() -> None:
    m = joined()
    m.handle(6.0, Ticked())
    out = m.handle(6.0, TimeoutChanged(5.0))
    assert not of(out, AnnounceNodeState) and m.view()[B] is UP
    assert m.next_deadline() == 6.0 + 2.5  # questionable at half the new timeout
    m.handle(8.5, Ticked())
    out = m.handle(11.0, Ticked())
    assert AnnounceNodeState(B, LEFT) in out and m.view()[B] is LEFT


# ---- leaving ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "event", "state_after", "why"),
    [
        (False, NodeEliminated(B), DOWN, "eliminated by the Shutdown Facility"),
        (True, NodeEliminated(B), DOWN, "eliminated by the Shutdown Facility"),
        (False, NodeMarkedDown(B), DOWN, "marked down with cftool -k"),
        (True, DomainStatusReported(B, stopped=True), DOWN, "domain stopped while the migration window is open"),
        (False, DomainStatusReported(B, stopped=True), LEFT, None),  # window closed: ignored
        (True, DomainStatusReported(B, stopped=False), LEFT, None),  # running domain
    ],
)
def test_leftcluster_to_down(window: bool, event, state_after: NodeState, why: str | None) -> None:
    m = left(window)
    out = m.handle(11.0, event)
    assert m.view()[B] is state_after
    if why is None:
        assert out == []
    else:
        assert out == [AnnounceNodeState(B, DOWN), Log("messages", f"CF: cfguest2: DOWN ({why})")]


@pytest.mark.parametrize(
    ("event", "state_after"),
    [
        (NodeEliminated(B), DOWN),  # another node's SF killed it first
        (NodeMarkedDown(B), UP),  # cftool -k only clears LEFTCLUSTER
        (DomainStatusReported(B, stopped=True), UP),
    ],
)
def test_events_about_an_up_peer(event, state_after: NodeState) -> None:
    m = joined()
    m.handle(0.0, MigrationWindowChanged(True))
    m.handle(1.0, event)
    assert m.view()[B] is state_after


def test_already_down_peer_eliminated_again_announces_nothing() -> None:
    m = left()
    m.handle(11.0, NodeEliminated(B))
    assert m.handle(12.0, NodeEliminated(B)) == [] and m.view()[B] is DOWN


def test_domain_status_queried_periodically_while_window_open() -> None:
    m = joined(heartbeat_interval=1000.0)
    m.handle(0.0, MigrationWindowChanged(True))
    assert m.window_open
    out = m.handle(10.0, Ticked())
    assert out[-1] == QueryDomainStatus(B)
    assert m.next_deadline() == 20.0
    assert m.handle(19.999, Ticked()) == []
    assert m.handle(20.0, Ticked()) == [QueryDomainStatus(B)]
    assert m.handle(20.5, DomainStatusReported(B, stopped=False)) == []  # running: stays LEFTCLUSTER
    assert m.view()[B] is LEFT
    assert m.handle(30.0, Ticked()) == [QueryDomainStatus(B)]
    m.handle(31.0, MigrationWindowChanged(False))
    assert m.next_deadline() == 1000.0
    assert m.handle(40.0, Ticked()) == []
    # reopening the window with a LEFTCLUSTER peer queries at once
    assert m.handle(41.0, MigrationWindowChanged(True)) == [QueryDomainStatus(B)]
    m.handle(41.5, DomainStatusReported(B, stopped=True))
    assert m.view()[B] is DOWN and m.handle(51.0, Ticked()) == []


def test_no_query_while_window_closed() -> None:
    m = left(window=False)
    assert not of(m.handle(10.0, Ticked()) + m.handle(30.0, Ticked()), QueryDomainStatus)


def test_rejoin_after_down_is_accepted_with_the_new_incarnation() -> None:
    m = left()
    m.handle(11.0, NodeEliminated(B))
    assert m.handle(12.0, HeartbeatReceived(B, 1)) == [] and m.view()[B] is DOWN  # must join first
    out = m.handle(20.0, JoinRequestReceived(B, 2))
    assert out[:2] == [SendJoinAnswer(B, True, "", m_incarnation(m)), AnnounceNodeState(B, UP)]
    m.handle(24.0, HeartbeatReceived(B, 1))  # the old incarnation: ignored
    m.handle(25.0, Ticked())
    assert m.questionable() == {B}
    m.handle(26.0, HeartbeatReceived(B, 2))
    assert m.questionable() == frozenset()


# ---- robustness ------------------------------------------------------------------------------
def test_spurious_ticks_do_nothing() -> None:
    m = Membership(A, [B])
    assert m.handle(0.0, Ticked()) == [] and m.next_deadline() is None
    m = joined()
    m.handle(0.5, Ticked())
    assert m.handle(0.5, Ticked()) == []


def test_unknown_nodes_are_ignored_and_bad_input_fails_loudly() -> None:
    m = joined()
    for ev in (HeartbeatReceived("x", 1), JoinRequestReceived("x", 1), NodeEliminated("x"), NodeEliminated(A)):
        assert m.handle(0.5, ev) == []
    with pytest.raises(TransitionError):
        m.handle(1.0, NodeBooted())
    with pytest.raises(TypeError):
        m.handle(1.0, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.handle(1.0, TimeoutChanged(0))


def test_effects_come_out_in_sorted_peer_order() -> None:
    m = joined(peers=(C, B), heartbeat_interval=100.0)
    out = m.handle(10.0, Ticked())
    assert of(out, AnnounceNodeState) == [AnnounceNodeState(B, LEFT), AnnounceNodeState(C, LEFT)]


# ---- property-based --------------------------------------------------------------------------
PEERS = ("b", "c")


class MembershipModel(RuleBasedStateMachine):
    """Drive node "a" with random events and compare it with a minimal model of the rules."""

    @initialize()
    def boot(self) -> None:
        self.m = joined("a", PEERS, heartbeat_interval=1.0)
        self.now = 0.0
        self.timeout = 10.0
        self.window = False
        self.state = {p: UP for p in PEERS}
        self.last = {p: 0.0 for p in PEERS}
        self.known_inc: dict[str, int | None] = {p: None for p in PEERS}
        self.peer_inc = {p: 1 for p in PEERS}  # the incarnation the peer is running
        self.wid: dict[str, list] = {}  # peer -> [seconds, lease end or None, hypervisor]

    # -- the model
    def eff(self, p: str) -> float:
        w = self.wid.get(p)
        return w[0] if w is not None and w[1] is not None else self.timeout

    def hyp(self, p: str) -> bool:
        return self.window or (p in self.wid and self.wid[p][2])

    def _expire(self) -> None:
        for p in PEERS:
            w = self.wid.get(p)
            if w is not None and w[1] is not None and self.now >= w[1]:  # the lease ended at w[1]
                seconds, until = w[0], w[1]
                w[1] = None
                if not w[2]:
                    del self.wid[p]
                if self.state[p] is UP:
                    if self.last[p] + seconds <= until:
                        self.state[p] = LEFT  # went LEFTCLUSTER during the lease
                    elif self.timeout < seconds:
                        self.last[p] = max(self.last[p], until)
            if self.state[p] is UP and self.now >= self.last[p] + self.eff(p):
                self.state[p] = LEFT

    def _set_eff(self, p: str, change) -> None:
        old = self.eff(p)
        change()
        if self.state[p] is UP and self.eff(p) < old:
            self.last[p] = max(self.last[p], self.now)

    def _do(self, event) -> list[Effect]:
        before = self.m.view()
        out = self.m.handle(self.now, event)
        after = self.m.view()
        self._expire()
        assert after == {"a": UP, **self.state}
        changed = [AnnounceNodeState(n, after[n]) for n in sorted(after) if after[n] is not before[n]]
        assert of(out, AnnounceNodeState) == changed
        for n in after:
            assert not (before[n] is LEFT and after[n] is UP), "LEFTCLUSTER -> UP"
        for q in of(out, QueryDomainStatus):
            assert self.hyp(q.node) and after[q.node] is LEFT
        assert all(h == BroadcastHeartbeat(1) for h in of(out, BroadcastHeartbeat))
        return out

    # -- rules
    @rule(dt=st.sampled_from([0.25, 1.0, 2.5, 4.0, 5.0, 7.5, 10.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self._do(Ticked())

    @rule()
    def advance_to_deadline(self) -> None:
        deadline = self.m.next_deadline()
        assert deadline is not None  # heartbeats are always scheduled while UP
        self.now = deadline
        self._do(Ticked())

    @rule(peer=st.sampled_from(PEERS), stale=st.booleans())
    def heartbeat(self, peer: str, stale: bool) -> None:
        inc = self.peer_inc[peer] - 1 if stale else self.peer_inc[peer]
        if self.state[peer] is UP and self.known_inc[peer] in (None, inc):
            self.known_inc[peer], self.last[peer] = inc, self.now
        self._do(HeartbeatReceived(peer, inc))

    @rule(seconds=st.sampled_from([2.0, 4.0, 10.0, 30.0]))
    def change_timeout(self, seconds: float) -> None:
        self._expire()  # silence already past the old timeout counts under the old timeout
        if seconds < self.timeout:  # lowering: silence counts from the change
            for p in PEERS:
                if self.state[p] is UP:
                    self.last[p] = max(self.last[p], self.now)
        self.timeout = seconds
        self._do(TimeoutChanged(seconds))

    @rule(peer=st.sampled_from(PEERS))
    def eliminate(self, peer: str) -> None:
        self.state[peer] = DOWN
        self._do(NodeEliminated(peer))

    @rule(peer=st.sampled_from(PEERS))
    def mark_down(self, peer: str) -> None:
        if self.state[peer] is LEFT:
            self.state[peer] = DOWN
        self._do(NodeMarkedDown(peer))

    @rule(is_open=st.booleans())
    def toggle_window(self, is_open: bool) -> None:
        self.window = is_open
        self._do(MigrationWindowChanged(is_open))

    @rule(
        peers=st.sampled_from([("b",), ("c",), ("a", "b", "c")]),
        seconds=st.sampled_from([4.0, 30.0, 600.0]),
        lease=st.sampled_from([5.0, 20.0, 60.0]),
        hypervisor=st.booleans(),
    )
    def widen(self, peers: tuple[str, ...], seconds: float, lease: float, hypervisor: bool) -> None:
        self._expire()
        for p in peers:
            if p in PEERS:
                self._set_eff(p, lambda p=p: self.wid.__setitem__(p, [seconds, self.now + lease, hypervisor]))
        self._do(DetectionWidened(peers, seconds, self.now + lease, hypervisor))

    @rule(peers=st.sampled_from([(), ("b",), ("c",)]))
    def narrow(self, peers: tuple[str, ...]) -> None:
        self._expire()
        for p in peers or tuple(self.wid):
            if p in self.wid:
                self._set_eff(p, lambda p=p: self.wid.pop(p))
        self._do(DetectionNarrowed(peers))

    @rule(peer=st.sampled_from(PEERS), stopped=st.booleans())
    def domain_status(self, peer: str, stopped: bool) -> None:
        if self.hyp(peer) and stopped and self.state[peer] is LEFT:
            self.state[peer] = DOWN
        self._do(DomainStatusReported(peer, stopped))

    @rule(peer=st.sampled_from(PEERS))
    def reboot_and_join(self, peer: str) -> None:
        self.peer_inc[peer] += 1
        accept = self.state[peer] is DOWN
        if accept:
            self.state[peer], self.last[peer], self.known_inc[peer] = UP, self.now, self.peer_inc[peer]
        out = self._do(JoinRequestReceived(peer, self.peer_inc[peer]))
        assert of(out, SendJoinAnswer)[0].accepted is accept

    # -- invariants
    @invariant()
    def deadline_in_the_future(self) -> None:
        deadline = self.m.next_deadline()
        assert deadline is not None and deadline > self.now

    @invariant()
    def silence_decides_membership(self) -> None:
        # an UP peer has been silent for less than the timeout, and is questionable iff >= timeout/2
        for p in PEERS:
            assert self.m.effective_timeout(p, self.now) == self.eff(p)
            if self.state[p] is UP:
                assert self.now < self.last[p] + self.eff(p)
                assert self.m.next_deadline() <= self.last[p] + self.eff(p)
                assert self.m.last_heard(p) == self.last[p]
            else:
                assert self.m.last_heard(p) is None
            if p in self.wid and self.wid[p][1] is not None:
                assert self.m.next_deadline() <= self.wid[p][1]  # the lease end is a deadline
        expected = {p for p in PEERS if self.state[p] is UP and self.now >= self.last[p] + self.eff(p) / 2}
        assert self.m.questionable() == expected

    @invariant()
    def local_node_is_up(self) -> None:
        assert self.m.local_state is UP


MembershipModel.TestCase.settings = settings(max_examples=200, deadline=None, stateful_step_count=40)
TestMembershipModel = MembershipModel.TestCase


def test_lowering_the_timeout_counts_silence_from_the_change():
    """-u restores 600 -> 10 s on a node that heard nobody while it was suspended for 17 s: its
    healthy peers must not go LEFTCLUSTER at once; a really dead peer goes 10 s after the change."""
    m = Membership("cfguest2", ["cfguest1"], timeout=600.0)
    m.handle(0.0, NodeBooted())
    m.handle(0.5, JoinAnswerReceived("cfguest1", True, ""))
    m.handle(1.0, HeartbeatReceived("cfguest1", 1))
    effects = m.handle(18.0, TimeoutChanged(10.0))  # silent (suspended) since t=1
    assert m.view()["cfguest1"] is NodeState.UP
    assert not [e for e in effects if isinstance(e, AnnounceNodeState)]
    assert m.next_deadline() is not None and m.next_deadline() <= 18.0 + 10.0
    out = m.handle(28.0, Ticked())
    assert m.view()["cfguest1"] is NodeState.LEFTCLUSTER
    assert AnnounceNodeState("cfguest1", NodeState.LEFTCLUSTER) in out


def test_raising_the_timeout_keeps_the_silence_already_counted():
    m = Membership("cfguest2", ["cfguest1"], timeout=10.0)
    m.handle(0.0, NodeBooted())
    m.handle(0.5, JoinAnswerReceived("cfguest1", True, ""))
    m.handle(1.0, HeartbeatReceived("cfguest1", 1))
    m.handle(8.0, TimeoutChanged(600.0))
    m.handle(600.9, Ticked())
    assert m.view()["cfguest1"] is NodeState.UP
    m.handle(601.0, Ticked())
    assert m.view()["cfguest1"] is NodeState.LEFTCLUSTER


def test_nodes_booting_together_do_not_refuse_each_other():
    """Found by a 1,000-seed campaign: b accepts a's join, then a receives b's own join request
    while it already holds b UP (learnt from b's accept). Same incarnation: not a restart."""
    a = Membership("a", ["b"], incarnation=7)
    b = Membership("b", ["a"], incarnation=9)
    ra = a.handle(0.0, NodeBooted())
    rb = b.handle(0.0, NodeBooted())
    [ans_b] = [e for e in b.handle(0.001, JoinRequestReceived("a", 7)) if isinstance(e, SendJoinAnswer)]
    assert ans_b.accepted and ans_b.incarnation == 9
    a.handle(0.002, JoinAnswerReceived("b", True, "", ans_b.incarnation))  # a holds b UP now
    [ans_a] = [e for e in a.handle(0.003, JoinRequestReceived("b", 9)) if isinstance(e, SendJoinAnswer)]
    assert ans_a.accepted, ans_a.reason
    b.handle(0.004, JoinAnswerReceived("a", True, "", 7))
    assert a.local_state is NodeState.UP and b.local_state is NodeState.UP
    assert ra and rb


def test_a_restarted_node_is_still_refused_while_held_up():
    a = Membership("a", ["b"], incarnation=1)
    a.handle(0.0, NodeBooted())
    a.handle(0.1, JoinAnswerReceived("b", True, "", 5))
    [ans] = [e for e in a.handle(1.0, JoinRequestReceived("b", 6)) if isinstance(e, SendJoinAnswer)]
    assert not ans.accepted and "a still holds b UP" == ans.reason


def m_incarnation(m: Membership) -> int:
    """The incarnation a machine puts in its join answers (what it was booted with)."""
    return m._incarnation


# ---- widened failure detection (clovm migrate --scoped) -------------------------------------
def test_widened_peer_uses_its_own_timeout_until_the_lease_ends() -> None:
    m = joined(peers=(B, C), heartbeat_interval=1000.0)
    out = m.handle(2.0, DetectionWidened((A, B), 600.0, 100.0, False))  # A (myself) is ignored
    assert texts(out) == ["CF: cfguest1: failure detection of cfguest2 widened to 600 s for 98 s"]
    assert m.effective_timeout(B, 2.0) == 600.0 and m.effective_timeout(C, 2.0) == 10.0
    assert m.widened() == {B: (600.0, 100.0, False)}
    m.handle(9.0, HeartbeatReceived(C, 1))
    out = m.handle(10.0, Ticked())  # B silent since 0: only questionable at 300 now
    assert m.view() == {A: UP, B: UP, C: UP} and m.questionable() == frozenset()
    assert m.next_deadline() == 14.0  # C questionable at 9 + 5
    assert m.last_heard(B) == 0.0 and m.last_heard(C) == 9.0
    m.handle(50.0, HeartbeatReceived(B, 1))
    m.handle(50.0, NodeEliminated(C))
    assert m.next_deadline() == 100.0  # the lease end (B questionable only at 350)
    out = m.handle(100.0, Ticked())
    assert texts(out) == [
        ("CF: cfguest1: widened failure detection of cfguest2 ended (lease over); CLUSTER_TIMEOUT 10 s applies again")
    ]
    assert m.effective_timeout(B, 100.0) == 10.0 and m.widened() == {}
    assert m.last_heard(B) == 100.0  # silent for 50 s, but the silence counts from the lease end
    assert m.view()[B] is UP and m.next_deadline() == 105.0
    m.handle(105.0, Ticked())
    assert m.questionable() == {B}
    out = m.handle(110.0, Ticked())
    assert AnnounceNodeState(B, LEFT) in out


def test_widened_peer_goes_leftcluster_at_the_widened_timeout() -> None:
    m = joined(heartbeat_interval=1000.0)
    m.handle(0.0, DetectionWidened((B,), 30.0, 500.0, False))
    m.handle(14.999, Ticked())
    assert m.questionable() == frozenset()
    assert m.handle(15.0, Ticked()) and m.questionable() == {B}
    assert m.next_deadline() == 30.0
    out = m.handle(30.0, Ticked())
    assert AnnounceNodeState(B, LEFT) in out and m.view()[B] is LEFT


def test_late_tick_after_the_lease_applies_the_widened_timeout_first() -> None:
    m = joined(heartbeat_interval=1000.0)
    m.handle(0.0, DetectionWidened((B,), 30.0, 40.0, False))
    out = m.handle(45.0, Ticked())  # B was LEFTCLUSTER at 30, during the lease
    assert AnnounceNodeState(B, LEFT) in out
    m2 = joined(heartbeat_interval=1000.0)
    m2.handle(0.0, DetectionWidened((B,), 30.0, 20.0, False))
    m2.handle(25.0, Ticked())  # the lease ended at 20 before the widened deadline: silence from 20
    assert m2.view()[B] is UP and m2.last_heard(B) == 20.0


def test_narrowing_counts_silence_from_the_narrowing() -> None:
    m = joined(peers=(B, C), heartbeat_interval=1000.0)
    m.handle(0.0, DetectionWidened((B, C), 600.0, 1000.0, True))
    m.handle(200.0, Ticked())
    out = m.handle(200.0, DetectionNarrowed((B,)))
    assert texts(out) == ["CF: cfguest1: failure detection of cfguest2 narrowed back to CLUSTER_TIMEOUT 10 s"]
    assert m.view()[B] is UP and m.last_heard(B) == 200.0 and m.effective_timeout(B, 200.0) == 10.0
    assert m.widened() == {C: (600.0, 1000.0, True)}
    m.handle(210.0, Ticked())
    assert m.view() == {A: UP, B: LEFT, C: UP}
    assert m.handle(211.0, DetectionNarrowed()) and m.widened() == {}  # () = every widened peer
    assert m.handle(212.0, DetectionNarrowed()) == []
    m.handle(221.0, Ticked())
    assert m.view()[C] is LEFT


def test_hypervisor_permission_outlives_the_lease_until_narrowed() -> None:
    m = joined(heartbeat_interval=1000.0, recheck_interval=10.0)
    m.handle(0.0, DetectionWidened((B,), 20.0, 30.0, True))
    out = m.handle(20.0, Ticked())
    assert AnnounceNodeState(B, LEFT) in out and out[-1] == QueryDomainStatus(B)  # queried on entry
    assert m.handle(20.5, DomainStatusReported(B, stopped=False)) == [] and m.view()[B] is LEFT
    m.handle(30.0, Ticked())  # the lease ends (and a recheck is due)
    assert m.widened() == {B: (20.0, None, True)} and m.effective_timeout(B, 30.0) == 10.0
    assert m.handle(40.0, Ticked()) == [QueryDomainStatus(B)]  # still asked about after the lease
    out = m.handle(40.5, DomainStatusReported(B, stopped=True))
    assert out == [
        AnnounceNodeState(B, DOWN),
        Log("messages", "CF: cfguest2: DOWN (domain stopped while its failure detection is widened)"),
    ]
    # narrowed: the hypervisor's word no longer counts, and nobody is asked any more
    m2 = joined(heartbeat_interval=1000.0)
    m2.handle(0.0, DetectionWidened((B,), 20.0, 30.0, True))
    m2.handle(20.0, Ticked())
    m2.handle(35.0, DetectionNarrowed((B,)))
    assert m2.handle(100.0, Ticked()) == []
    assert m2.handle(100.0, DomainStatusReported(B, stopped=True)) == [] and m2.view()[B] is LEFT


def test_widening_a_leftcluster_peer_with_the_hypervisor_queries_at_once() -> None:
    m = left()
    out = m.handle(11.0, DetectionWidened((B,), 600.0, 500.0, True))
    assert out[-1] == QueryDomainStatus(B)
    assert "(the hypervisor may declare it DOWN when its domain is stopped)" in texts(out)[0]
    # without it (and with the window closed) nothing is asked
    m2 = left()
    assert not of(m2.handle(11.0, DetectionWidened((B,), 600.0, 500.0, False)), QueryDomainStatus)
    # closing the window keeps asking about a peer the widening lets the hypervisor decide on
    m3 = left(window=True)
    m3.handle(11.0, DetectionWidened((B,), 600.0, 500.0, True))
    m3.handle(12.0, MigrationWindowChanged(False))
    assert m3.handle(21.0, Ticked()) == [QueryDomainStatus(B)]


def test_shorter_widening_counts_silence_from_the_change_and_bad_values_fail() -> None:
    m = joined(heartbeat_interval=1000.0)
    m.handle(8.0, Ticked())
    m.handle(8.0, DetectionWidened((B,), 4.0, 100.0, False))
    assert m.view()[B] is UP and m.last_heard(B) == 8.0 and m.next_deadline() == 10.0
    with pytest.raises(ValueError):
        m.handle(9.0, DetectionWidened((B,), 0.0, 100.0, False))
    assert m.handle(9.0, DetectionWidened(("nobody",), 600.0, 100.0, False)) == []
    assert m.handle(9.0, DetectionWidened((B,), 600.0, 9.0, False)) == []  # lease already over
    assert m.widened() == {B: (4.0, 100.0, False)}


def test_widening_before_boot_applies_once_up() -> None:
    m = Membership(A, [B], heartbeat_interval=1000.0)
    m.handle(0.0, DetectionWidened((B,), 600.0, 1000.0, False))
    assert m.next_deadline() is None
    m.handle(1.0, NodeBooted())
    m.handle(1.0, JoinAnswerReceived(B, True, ""))
    m.handle(20.0, Ticked())
    assert m.view()[B] is UP and m.next_deadline() == 301.0
