"""Tests for clovm.core.rms (RMS placement, failover, hold, time-sync warnings)."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clovm.core._state import AppState, NodeState, SyncState
from clovm.core.base import Log, Ticked
from clovm.core.rms import (
    AnnounceAppState,
    AppSpec,
    AppStateReported,
    BringAppOnline,
    PeerClockObserved,
    PeerNodeStateChanged,
    Rms,
    RmsStarted,
    RmsStopped,
    SwitchoverHoldChanged,
    TakeAppOffline,
)

UP, DOWN, LEFT = NodeState.UP, NodeState.DOWN, NodeState.LEFTCLUSTER
NODES = ("a", "b", "c")
SETTLE = 3.0
WRP34 = "(WRP, 34) Cluster host b is no longer in time sync with local node. Sane operation of RMS can no longer be guaranteed."
WRP35 = "(WRP, 35) Cluster host b is no longer in time sync with local node. Sane operation of RMS can no longer be guaranteed."
FURTHER = "Further out-of-sync messages will appear in the syslog."


APP1 = (AppSpec("app1", NODES),)


def mk(me: str, apps=APP1, up=(), **kw) -> Rms:
    r = Rms(me, NODES, apps, settle=SETTLE, **kw)
    for n in up:
        assert r.handle(0.0, PeerNodeStateChanged(n, UP)) == []
    return r


def started(me: str, apps=APP1, up=(), **kw) -> Rms:
    """An Rms that has started and settled at t=SETTLE (effects discarded)."""
    r = mk(me, apps, up, **kw)
    r.handle(0.0, RmsStarted())
    r.handle(SETTLE, Ticked())
    return r


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def logs(effects, dest):
    return [e.text for e in effects if isinstance(e, Log) and e.dest == dest]


# ------------------------------------------------------------------------------------ placement
@pytest.mark.parametrize(
    "me, up, app_nodes, expect_online, expect_owner",
    [
        ("a", ("b", "c"), NODES, True, "a"),  # first of the list
        ("b", ("a", "c"), NODES, False, "a"),  # a is first and UP: standby
        ("b", ("c",), NODES, True, "b"),  # a DOWN: b is the first UP node
        ("c", ("a", "b"), ("c", "a"), True, "c"),  # list order, not node order
        ("c", ("a", "b"), ("a", "b"), False, "a"),  # not in the list: never
        ("a", (), ("b", "c"), False, None),  # no list node is UP
    ],
)
def test_initial_placement_after_settle(me, up, app_nodes, expect_online, expect_owner):
    r = mk(me, (AppSpec("app1", app_nodes),), up)
    eff = r.handle(0.0, RmsStarted())
    assert r.running and r.next_deadline() == SETTLE
    assert of(eff, BringAppOnline) == []
    assert of(r.handle(SETTLE - 0.01, Ticked()), BringAppOnline) == []  # not before the settle
    eff = r.handle(SETTLE, Ticked())
    assert of(eff, BringAppOnline) == ([BringAppOnline("app1")] if expect_online else [])
    assert of(eff, AnnounceAppState) == ([AnnounceAppState("app1", me, True)] if expect_online else [])
    assert bool(logs(eff, "switchlog")) == expect_online
    assert r.placement() == {"app1": expect_owner}
    assert r.next_deadline() is None
    assert r.handle(SETTLE + 100, Ticked()) == []  # nothing more happens


@pytest.mark.parametrize(
    "reporter_state, expect_online",
    [(UP, False), (LEFT, False), (DOWN, True)],  # a report from a DOWN node is stale
)
def test_standby_when_a_peer_reports_online(reporter_state, expect_online):
    r = mk("a", up=("b",))
    r.handle(0.0, PeerNodeStateChanged("b", reporter_state))
    r.handle(0.0, RmsStarted())
    assert r.handle(1.0, AppStateReported("app1", "b", True)) == []
    eff = r.handle(SETTLE, Ticked())
    assert (BringAppOnline("app1") in eff) == expect_online
    assert r.placement()["app1"] == ("a" if expect_online else "b")
    assert r.app_state("app1") == (AppState.ONLINE if expect_online else AppState.STANDBY)


def test_report_offline_clears_belief_without_takeover():
    r = started("b", up=("a", "c"))
    assert r.placement()["app1"] == "a"
    assert r.handle(5.0, AppStateReported("app1", "a", False)) == []
    assert r.placement()["app1"] is None
    assert r.handle(9.0, PeerNodeStateChanged("a", DOWN)) == []  # a held nothing any more


# ------------------------------------------------------------------------------------ failover
@pytest.mark.parametrize(
    "states, expect_failover",
    [
        ((LEFT,), False),  # LEFTCLUSTER: SF has not eliminated it yet
        ((LEFT, DOWN), True),
        ((DOWN,), True),
    ],
)
def test_failover_only_on_down(states, expect_failover):
    r = started("b", up=("a", "c"))
    eff = []
    for s in states:
        eff = r.handle(10.0, PeerNodeStateChanged("a", s))
    if expect_failover:
        assert eff == [
            BringAppOnline("app1"),
            AnnounceAppState("app1", "b", True),
            Log("switchlog", "(SWT, 1) app1: failover to b because a is DOWN"),
        ]
        assert r.placement()["app1"] == "b"
    else:
        assert eff == []
        assert r.placement()["app1"] == "a"


def test_failover_while_settling_happens_at_settle_end():
    r = mk("b", up=("a", "c"))
    r.handle(0.0, RmsStarted())
    r.handle(0.5, AppStateReported("app1", "a", True))
    assert r.handle(1.0, PeerNodeStateChanged("a", DOWN)) == []
    eff = r.handle(SETTLE, Ticked())
    assert BringAppOnline("app1") in eff
    assert "(SWT, 1) app1: failover to b because a is DOWN" in logs(eff, "switchlog")


def test_failover_deferred_while_held_and_done_on_release():
    r = started("b", up=("a", "c"))
    assert logs(r.handle(5.0, SwitchoverHoldChanged(True)), "switchlog")
    assert r.held
    eff = r.handle(10.0, PeerNodeStateChanged("a", DOWN))
    assert of(eff, BringAppOnline) == [] and of(eff, AnnounceAppState) == []
    [line] = logs(eff, "switchlog")
    assert "app1" in line and "deferred" in line and "a is DOWN" in line
    assert r.handle(20.0, Ticked()) == []
    assert r.handle(20.0, SwitchoverHoldChanged(True)) == []  # repeated hold: no-op
    eff = r.handle(30.0, SwitchoverHoldChanged(False))
    assert not r.held
    assert BringAppOnline("app1") in eff and AnnounceAppState("app1", "b", True) in eff
    assert "(SWT, 1) app1: failover to b because a is DOWN" in logs(eff, "switchlog")
    assert r.placement()["app1"] == "b"


def test_release_uses_the_view_at_release_time():
    r = started("c", up=("a", "b"))
    r.handle(5.0, SwitchoverHoldChanged(True))
    r.handle(10.0, PeerNodeStateChanged("a", DOWN))
    r.handle(11.0, PeerNodeStateChanged("b", LEFT))
    r.handle(12.0, PeerNodeStateChanged("b", DOWN))
    eff = r.handle(30.0, SwitchoverHoldChanged(False))
    assert BringAppOnline("app1") in eff  # b died while held: c is the first UP node now


def test_no_failback_when_higher_priority_node_rejoins():
    r = started("b", up=("a", "c"))
    r.handle(10.0, PeerNodeStateChanged("a", DOWN))
    assert r.placement()["app1"] == "b"
    eff = r.handle(20.0, PeerNodeStateChanged("a", UP))
    assert eff == [AnnounceAppState("app1", "b", True)]  # tell the newcomer, nothing else
    assert r.handle(100.0, Ticked()) == []
    assert r.placement()["app1"] == "b"


def test_no_successor_logs_and_leaves_app_offline():
    r = started("c", apps=(AppSpec("app1", ("a", "b")),), up=("a", "b"))
    r.handle(5.0, PeerNodeStateChanged("b", DOWN))
    eff = r.handle(6.0, PeerNodeStateChanged("a", DOWN))
    assert of(eff, BringAppOnline) == []
    assert any("cannot fail over" in t for t in logs(eff, "switchlog"))
    assert r.placement()["app1"] is None


class Cluster:
    """Several Rms instances; announcements are delivered to every other live node."""

    def __init__(self, apps, nodes=NODES):
        self.apps = apps
        self.rms: dict[str, Rms] = {}
        self.now = 0.0
        self.held = False
        self.brought: list[tuple[str, str]] = []

    def _run(self, queue: deque) -> None:
        while queue:
            node, event = queue.popleft()
            if node not in self.rms:
                continue
            for e in self.rms[node].handle(self.now, event):
                if isinstance(e, BringAppOnline):
                    self.brought.append((node, e.app))
                if isinstance(e, AnnounceAppState):
                    queue.extend((p, AppStateReported(e.app, e.node, e.online)) for p in self.rms if p != node)

    def up(self, n: str) -> None:
        if n in self.rms:
            return
        r = self.rms[n] = Rms(n, NODES, self.apps, settle=SETTLE)
        q = deque((n, PeerNodeStateChanged(p, UP)) for p in self.rms if p != n)
        q.append((n, SwitchoverHoldChanged(self.held)))
        q.append((n, RmsStarted()))
        q.extend((p, PeerNodeStateChanged(n, UP)) for p in self.rms if p != n)
        self._run(q)
        assert r.running

    def down(self, n: str) -> None:
        if self.rms.pop(n, None) is None:
            return
        self._run(deque((p, PeerNodeStateChanged(n, DOWN)) for p in self.rms))

    def hold(self, held: bool) -> None:
        self.held = held
        self._run(deque((p, SwitchoverHoldChanged(held)) for p in self.rms))

    def advance(self, dt: float) -> None:
        self.now += dt
        self._run(deque((p, Ticked()) for p in self.rms))

    def owners(self, app: str) -> list[str]:
        return [n for n, r in self.rms.items() if r.placement()[app] == n]


@pytest.mark.parametrize(
    "order, already_down, successor",
    [
        (("a", "b", "c"), (), "b"),
        (("a", "c", "b"), (), "c"),
        (("a", "b", "c"), ("b",), "c"),
    ],
)
def test_exactly_one_successor_among_three(order, already_down, successor):
    c = Cluster((AppSpec("app1", order),))
    for n in NODES:
        c.up(n)
    c.advance(SETTLE)
    assert c.brought == [("a", "app1")] and c.owners("app1") == ["a"]
    for n in already_down:
        c.down(n)
    c.brought.clear()
    c.down("a")
    assert c.brought == [(successor, "app1")]
    assert c.owners("app1") == [successor]
    assert all(r.placement()["app1"] == successor for r in c.rms.values())  # everyone agrees


OPS = st.one_of(
    st.tuples(st.just("down"), st.sampled_from(NODES)),
    st.tuples(st.just("up"), st.sampled_from(NODES)),
    st.tuples(st.just("hold"), st.booleans()),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
)
APPS = (AppSpec("app1", ("a", "b", "c")), AppSpec("app2", ("c", "a")), AppSpec("app3", ("b", "c", "a")))


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=30))
def test_random_down_up_sequences_never_give_two_owners(ops):
    c = Cluster(APPS)
    for n in NODES:
        c.up(n)
    for op, arg in ops:
        getattr(c, op)(arg)
        for app in APPS:
            assert len(c.owners(app.name)) <= 1, (app.name, c.owners(app.name))
    # liveness: once released and settled, an app is online wherever one of its nodes is up
    c.hold(False)
    c.advance(SETTLE)
    for app in APPS:
        assert len(c.owners(app.name)) == (1 if set(app.nodes) & set(c.rms) else 0)


# ------------------------------------------------------------------------------------ stop, priorities
def test_stop_takes_my_apps_offline():
    apps = (AppSpec("app1", ("a", "b")), AppSpec("app2", ("b", "a")))
    r = started("a", apps=apps, up=("b",))
    assert r.placement() == {"app1": "a", "app2": "b"}
    eff = r.handle(10.0, RmsStopped())
    assert of(eff, TakeAppOffline) == [TakeAppOffline("app1")]
    assert of(eff, AnnounceAppState) == [AnnounceAppState("app1", "a", False)]
    assert not r.running and r.placement() == {"app1": None, "app2": "b"}
    assert r.handle(11.0, RmsStopped()) == []  # already stopped
    assert r.handle(12.0, PeerNodeStateChanged("b", DOWN)) == []  # stopped RMS takes nothing over


def test_priorities_follow_placement():
    apps = (AppSpec("app1", ("a", "b"), 5), AppSpec("app2", ("b", "a"), 3), AppSpec("app3", ("a",), 1))
    r = started("a", apps=apps, up=("b",))
    assert r.priorities() == {"a": 6, "b": 3, "c": 0}
    r.handle(10.0, PeerNodeStateChanged("b", DOWN))
    assert r.priorities() == {"a": 9, "b": 0, "c": 0}


def test_spurious_tick_does_nothing():
    r = mk("a")
    assert r.handle(0.0, Ticked()) == [] and r.next_deadline() is None
    assert r.placement() == {"app1": None}


# ------------------------------------------------------------------------------------ time sync
def clock(r: Rms, t: float, offset: float):
    return r.handle(t, PeerClockObserved("b", 1_700_000_000.0 + offset, 1_700_000_000.0))


def test_wrp34_exact_text_once_to_both_logs():
    r = started("a", up=("b",), sync_threshold=5.0, sync_period=60.0)
    eff = clock(r, 10.0, 7.0)
    assert eff == [
        Log("switchlog", WRP34, "WRP 34"),
        Log("switchlog", FURTHER, "WRP 34"),
        Log("messages", WRP34, "WRP 34"),
        Log("messages", FURTHER, "WRP 34"),
    ]
    assert r.sync_state("b") is SyncState.OUT_OF_SYNC
    assert clock(r, 11.0, 7.0) == [] and clock(r, 12.0, -9.0) == []  # same episode


def test_wrp35_every_period_to_messages_only_then_silence():
    r = started("a", up=("b",), sync_threshold=5.0, sync_period=60.0)
    clock(r, 10.0, 7.0)
    assert r.next_deadline() == 70.0
    assert r.handle(69.9, Ticked()) == []
    for k, t in enumerate((70.0, 130.0, 190.0)):
        clock(r, t - 1, 8.0)  # heartbeats keep arriving
        assert r.handle(t, Ticked()) == [Log("messages", WRP35, "WRP 35")], k
        assert r.next_deadline() == t + 60.0
    clock(r, 200.0, 1.0)  # back in sync
    assert r.sync_state("b") is SyncState.IN_SYNC and r.next_deadline() is None
    assert r.handle(250.0, Ticked()) == [] and r.handle(400.0, Ticked()) == []
    # a new episode starts with WRP 34 again
    assert len(logs(clock(r, 500.0, 6.0), "switchlog")) == 2


def test_late_tick_emits_once_and_reschedules_from_now():
    r = started("a", up=("b",), sync_period=60.0)
    clock(r, 10.0, 7.0)
    assert r.handle(500.0, Ticked()) == [Log("messages", WRP35, "WRP 35")]
    assert r.next_deadline() == 560.0


@pytest.mark.parametrize(
    "offset, out_of_sync", [(5.0, False), (-5.0, False), (5.001, True), (-5.001, True), (0.0, False)]
)
def test_threshold_boundary(offset, out_of_sync):
    r = started("a", up=("b",), sync_threshold=5.0)
    assert bool(clock(r, 10.0, offset)) == out_of_sync
    assert r.sync_state("b") is (SyncState.OUT_OF_SYNC if out_of_sync else SyncState.IN_SYNC)


def test_peer_down_or_rms_stop_ends_the_episode():
    r = started("a", up=("b", "c"))
    clock(r, 10.0, 7.0)
    r.handle(20.0, PeerNodeStateChanged("b", DOWN))
    assert r.next_deadline() is None and r.handle(70.0, Ticked()) == []
    r.handle(80.0, PeerNodeStateChanged("b", UP))
    clock(r, 90.0, 7.0)
    r.handle(95.0, RmsStopped())
    assert r.next_deadline() is None and r.handle(150.0, Ticked()) == []
    assert clock(r, 160.0, 7.0) == []  # RMS not running: no comparison


def test_a_report_that_overtakes_the_join_counts_while_settling():
    """A peer's re-announcement may arrive before the CF join answer makes it UP here: while RMS
    settles it still counts, so the joiner does not bring the application online a second time."""
    r = mk("a", up=())
    r.handle(0.0, RmsStarted())
    assert r.handle(0.5, AppStateReported("app1", "b", True)) == []  # b still DOWN in our view
    r.handle(0.6, PeerNodeStateChanged("b", UP))
    eff = r.handle(SETTLE, Ticked())
    assert BringAppOnline("app1") not in eff and r.placement()["app1"] == "b"


def test_a_settling_report_from_a_node_that_stays_down_is_dropped_at_the_end():
    r = mk("a", up=())
    r.handle(0.0, RmsStarted())
    r.handle(0.5, AppStateReported("app1", "b", True))
    eff = r.handle(SETTLE, Ticked())
    assert BringAppOnline("app1") in eff


def test_busy_while_settling_without_placement_or_with_a_held_switchover():
    r = mk("a", up=("b",))
    assert not r.busy()  # not running
    r.handle(0.0, RmsStarted())
    assert r.busy()  # settling, app1 not placed yet
    r.handle(SETTLE, Ticked())
    assert not r.busy() and r.placement()["app1"] == "a"
    r.handle(SETTLE + 1, SwitchoverHoldChanged(True))
    r.handle(SETTLE + 2, PeerNodeStateChanged("b", DOWN))
    assert not r.busy()  # b owned nothing


def test_busy_while_a_failover_is_held():
    r = started("b", up=("a",))
    assert r.placement()["app1"] == "a" and not r.busy()
    r.handle(SETTLE + 1, SwitchoverHoldChanged(True))
    r.handle(SETTLE + 2, PeerNodeStateChanged("a", DOWN))
    assert r.busy()
    r.handle(SETTLE + 3, SwitchoverHoldChanged(False))
    assert not r.busy() and r.placement()["app1"] == "b"
