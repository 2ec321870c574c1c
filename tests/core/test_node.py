"""Tests for clovm.core.node: one cluster node (CF + SF + RMS, its disk, its operations), driven by
hand — no World, no daemons. :class:`Driver` plays the peers (join answers, heartbeats) and the
XSCFs (agent answers); every test reads the effects the node returns."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from typing import Any, TypeVar

import msgspec
import pytest

from clovm import topology
from clovm.core import codes, messages
from clovm.core import fencing as fen
from clovm.core import membership as mem
from clovm.core import rms as rmsmod
from clovm.core._state import XSCF_AGENTS, NodeState, SpDomainStatus
from clovm.core.base import Effect, Event, Ticked
from clovm.core.node import (
    LOCAL,
    OPERATIONS,
    REMOTE,
    Answer,
    AppState,
    AskDomainStatus,
    Broadcast,
    CheckXscf,
    ClockOffsetsObserved,
    DomainStatusAnswered,
    Elimination,
    Heartbeat,
    JoinAnswer,
    JoinRequest,
    MessageReceived,
    Node,
    NodeDisk,
    NodeSpec,
    NodeStarted,
    NodeTuning,
    OperationRequested,
    PlacementObserved,
    RunShutdownAgent,
    Send,
    Store,
    Trace,
    WriteLog,
    XscfAnswered,
    XscfChecked,
    XscfHostKeyUnknown,
    XscfRequestFailed,
    agent_result,
    file_read,
)
from clovm.core.sfconfig import AgentRef, SfConfig, SfHost, XscfEntry

TOPO = topology.load()  # figure-17-1: guest cluster cfguest1/cfguest2, control cluster cfprimary1..3
GEN3 = topology.generate(guests=3, servers=3)  # a three-node guest cluster cfguest1..3
G1, G2, G3 = "cfguest1", "cfguest2", "cfguest3"
CP1, CP2, CP3 = "cfprimary1", "cfprimary2", "cfprimary3"
G0P, G1P, G0R, G1R = XSCF_AGENTS
UP, DOWN, LEFT = NodeState.UP, NodeState.DOWN, NodeState.LEFTCLUSTER
EPOCH = NodeTuning().epoch
PEER_INC = 7  # the incarnation every played peer runs with
CD = "primary1"  # a control domain: may use the remote channel
RUNNING, STOPPED = str(SpDomainStatus.RUNNING), str(SpDomainStatus.STOPPED)
TICK = Ticked()

E = TypeVar("E", bound=Effect)


# ---- helpers ------------------------------------------------------------------------------------
def of(effects: Iterable[Effect], cls: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, cls)]


def runs(effects: Iterable[Effect], action: str | None = None, host: str | None = None) -> list[fen.RunAgent]:
    return [
        e.run
        for e in of(effects, RunShutdownAgent)
        if (action is None or e.run.action == action) and (host is None or e.run.host == host)
    ]


def logs(effects: Iterable[Effect], tag: str | None = None, dest: str | None = None) -> list[WriteLog]:
    return [e for e in of(effects, WriteLog) if (tag is None or e.tag == tag) and (dest is None or e.dest == dest)]


def texts(effects: Iterable[Effect], **kw: Any) -> list[str]:
    return [e.text for e in logs(effects, **kw)]


def index(effects: list[Effect], pred: type[Effect] | Effect) -> int:
    """Position of the first effect that is an instance of ``pred`` (a class) or equals it."""
    for i, e in enumerate(effects):
        if (isinstance(pred, type) and isinstance(e, pred)) or e == pred:
            return i
    raise AssertionError(f"{pred!r} not in {effects!r}")


def states(effects: Iterable[Effect]) -> list[tuple[str, NodeState]]:
    return [(e.node, e.state) for e in of(effects, mem.AnnounceNodeState)]


def make(
    host: str = "guest1",
    *,
    topo: topology.Topology = TOPO,
    spec: NodeSpec | None = None,
    disk: NodeDisk | None = None,
    incarnation: int = 1,
    server: str | None = None,
    offsets: Mapping[str, float] | None = None,
    tuning: NodeTuning | None = None,
) -> Node:
    if server is None:
        h = next(x for x in topo.hosts() if x.name == host)
        cd = topo.control_domain(h.control_domain) if isinstance(h, topology.Guest) else h
        server = cd.server
    return Node(
        spec or topo.node_spec(host),
        disk or topo.initial_disk(host),
        incarnation=incarnation,
        server=server,
        offsets=offsets,
        tuning=tuning,
    )


class Driver:
    """Drives one :class:`Node`: feeds events at an advancing emulated time, plays its peers and
    the XSCFs, and keeps every effect the node returned."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.now = 0.0
        self.peer_inc = dict.fromkeys(node.spec.peers, PEER_INC)
        self.effects: list[Effect] = []
        self._op_id = 0

    # -- events
    def feed(self, event: Event, at: float | None = None) -> list[Effect]:
        if at is not None:
            assert at >= self.now, (at, self.now)
            self.now = at
        out = self.node.handle(self.now, event)
        self.effects += out
        return out

    def join(self, at: float = 0.1, *, peers: Iterable[str] | None = None) -> list[Effect]:
        """NodeStarted at 0, then every peer (or those named) accepts the join request at ``at``."""
        out = self.feed(NodeStarted(), at=0.0)
        for p in self.node.spec.peers if peers is None else peers:
            out += self.feed(MessageReceived(p, JoinAnswer(True, "", self.peer_inc[p])), at=at)
        return out

    def beat(self, peer: str, diff: float = 0.0, *, lag: float = 0.0, inc: int | None = None) -> list[Effect]:
        """``peer``'s heartbeat, sent ``lag`` s ago, its wall clock ``diff`` s ahead of ours."""
        sent = self.now - lag
        hb = Heartbeat(self.peer_inc[peer] if inc is None else inc, self.node.wall(sent) + diff, sent)
        return self.feed(MessageReceived(peer, hb))

    def tick(self) -> list[Effect]:
        due = self.node.next_deadline()
        assert due is not None
        return self.feed(TICK, at=max(due, self.now))

    def run_until(self, t: float, *, beats: Iterable[str] = ()) -> list[Effect]:
        """Tick every deadline up to ``t``; the peers in ``beats`` send a heartbeat every whole second."""
        beating = tuple(beats)
        out: list[Effect] = []
        for _ in range(10_000):
            due = self.node.next_deadline()
            due = math.inf if due is None else max(due, self.now)
            nb = math.floor(self.now) + 1.0 if beating else math.inf
            if min(due, nb) > t:
                break
            if nb < due:
                self.now = nb
                for p in beating:
                    out += self.beat(p)
            else:
                out += self.feed(TICK, at=due)
        else:
            raise AssertionError("the node never stops being due")
        self.now = max(self.now, t)
        return out

    # -- operations
    def request(self, op: str, caller: str | None = None, **args: Any) -> tuple[int, list[Effect]]:
        self._op_id += 1
        return self._op_id, self.feed(OperationRequested(self._op_id, op, args, caller))

    def ask(self, op: str, caller: str | None = None, **args: Any) -> Answer:
        """An operation that is answered at once: exactly one Answer, for this op id."""
        op_id, out = self.request(op, caller, **args)
        answers = of(out, Answer)
        assert [a.op_id for a in answers] == [op_id], out
        return answers[0]

    def value(self, op: str, caller: str | None = None, **args: Any) -> Any:
        a = self.ask(op, caller, **args)
        assert a.ok, a
        return a.value

    def answers(self, op_id: int) -> list[Answer]:
        return [a for a in of(self.effects, Answer) if a.op_id == op_id]

    # -- the XSCFs
    def xscf(
        self, todo: Iterable[fen.RunAgent], status: str = RUNNING, ok: bool = True, text: str = ""
    ) -> list[Effect]:
        out: list[Effect] = []
        for r in list(todo):
            out += self.feed(XscfAnswered(r, ok, status, text))
        return out

    def settle_sf(self, effects: list[Effect]) -> list[Effect]:
        """Answer the init runs in ``effects`` and then the test runs they lead to: every row tested."""
        tests = self.xscf(runs(effects, "init"))
        return tests + self.xscf(runs(tests, "test"))


def joined(host: str = "guest1", **kw: Any) -> tuple[Driver, list[Effect]]:
    d = Driver(make(host, **kw))
    return d, d.join()


def settled(host: str = "guest1", **kw: Any) -> Driver:
    """Joined, every agent row InitWorked/TestWorked, RMS settled."""
    d, out = joined(host, **kw)
    d.settle_sf(out)
    d.run_until(3.5, beats=d.node.spec.peers)
    return d


def entry_args(e: XscfEntry) -> dict[str, Any]:
    """An entry as the remote channel carries it (set_sf_entry's ``entry``)."""
    return asdict(e)


M10_3 = XscfEntry(G2, 1, "guest2", "127.20.30.73", "127.20.40.73")  # guest2 migrated to m10-3


# ==== 1. boot and join ===========================================================================
@pytest.mark.parametrize(("host", "peers"), [("guest1", (G2,)), ("guest2", (G1,)), ("primary2", (CP1, CP3))])
def test_node_started_sends_a_join_request_to_each_peer(host: str, peers: tuple[str, ...]) -> None:
    d = Driver(make(host, incarnation=4))
    out = d.feed(NodeStarted())
    assert of(out, Send) == [Send(p, JoinRequest(4)) for p in peers]
    assert texts(out, tag="CF", dest="messages") == [
        f"CF: {d.node.spec.cf}: COMINGUP: join request sent to {', '.join(peers)}"
    ]
    assert d.node.cf.local_state is NodeState.COMINGUP
    assert d.node.next_deadline() == NodeTuning().join_timeout
    assert d.node.services == "none"


@pytest.mark.parametrize("sf_disabled", [False, True])
def test_join_answers_make_the_node_up_and_start_its_services(sf_disabled: bool) -> None:
    disk = replace(TOPO.initial_disk("guest1"), sf_disabled=sf_disabled)
    d = Driver(make("guest1", disk=disk))
    d.feed(NodeStarted())
    out = d.feed(MessageReceived(G2, JoinAnswer(True, "", PEER_INC)), at=0.1)
    assert d.node.cf.local_state is UP and d.node.services == "started"
    assert states(out) == [(G2, UP), (G1, UP)]
    assert Trace("CF", "joined: starting SF, CRM, RMS") in out
    # RMS starts in any case
    assert texts(out, tag="RMS", dest="switchlog") == [
        "(BM, 1) RMS started on cfguest1; waiting 3s for the cluster state to settle"
    ]
    assert d.node.rms is not None and d.node.rms.running
    inits = runs(out, "init")
    if sf_disabled:
        assert inits == [] and not d.node.sf_running and d.node.sf_generation == 0
        assert texts(out, tag="SMAWsf") == []
    else:
        assert d.node.sf_running and d.node.sf_generation == 1
        assert texts(out, tag="SMAWsf", dest="rcsd") == ["rcsd started on cfguest1"]
        assert [(r.host, r.agent) for r in inits] == [(h, a) for h in (G1, G2) for a in XSCF_AGENTS]
        assert {e.generation for e in of(out, RunShutdownAgent)} == {1}
        assert {r.entry for r in inits if r.host == G2} == {TOPO.initial_disk("guest1").sf_config.entry(G2)}
    # the first heartbeat goes out at once, carrying the wall clock and the send time
    assert of(out, Broadcast) == [Broadcast(Heartbeat(1, EPOCH + 0.1, 0.1))]


def test_join_window_closes_without_answers() -> None:
    d = Driver(make("guest1"))
    d.feed(NodeStarted())
    assert d.run_until(2.9) == []
    out = d.tick()
    assert d.now == 3.0 and d.node.cf.local_state is UP
    assert "CF: cfguest1: UP, cluster members: cfguest1 (no answer from cfguest2)" in texts(out, tag="CF")
    assert d.node.cf.view()[G2] is DOWN and d.node.services == "started"


def test_control_domain_node_runs_cf_only() -> None:
    d, out = joined("primary1")
    assert d.node.cf.local_state is UP and d.node.services == "started"
    assert d.node.sf is None and d.node.rms is None
    assert runs(out) == [] and logs(out, tag="SMAWsf") == [] and logs(out, tag="RMS") == []
    assert d.node.rows() == [] and d.node.hvdisp_rows() == []
    assert d.value("cftool_n") == [[CP1, 1, "UP"], [CP2, 2, "UP"], [CP3, 3, "UP"]]


@pytest.mark.parametrize("before_join", [True, False])
def test_join_answer_carries_the_answering_nodes_incarnation(before_join: bool) -> None:
    d = Driver(make("guest1", incarnation=5, disk=replace(TOPO.initial_disk("guest1"), sf_disabled=True)))
    d.feed(NodeStarted())
    if not before_join:  # UP, cfguest2 went LEFTCLUSTER and was marked DOWN: it may join again
        d.feed(MessageReceived(G2, JoinAnswer(True, "", 9)), at=0.1)
        d.run_until(20.0)
        d.ask("cftool_k", node=G2)
        assert d.node.cf.view()[G2] is DOWN
    out = d.feed(MessageReceived(G2, JoinRequest(11)), at=d.now + 0.5)
    assert of(out, Send) == [Send(G2, JoinAnswer(True, "", 5))]
    assert (G2, UP) in states(out)


def test_late_join_request_of_the_incarnation_held_up_is_accepted_again() -> None:
    """Two nodes booting at once: cfguest2 accepted our request and its answer overtook its own
    request. That request is of the incarnation we already hold UP: accept it again."""
    d = Driver(make("guest1"))
    d.feed(NodeStarted())
    d.feed(MessageReceived(G2, JoinAnswer(True, "", PEER_INC)), at=0.1)  # the answer first ...
    assert d.node.cf.local_state is UP
    out = d.feed(MessageReceived(G2, JoinRequest(PEER_INC)), at=0.2)  # ... then the request
    assert out == [Send(G2, JoinAnswer(True, "", 1))]
    assert d.node.cf.view()[G2] is UP
    # and it counts as heard: its heartbeats of that incarnation keep it UP
    d.run_until(30.0, beats=[G2])
    assert d.node.cf.view()[G2] is UP


@pytest.mark.parametrize(
    ("hold", "inc", "reason"),
    [
        ("up", PEER_INC + 1, "cfguest1 still holds cfguest2 UP"),  # restarted while we hold it UP
        ("left", PEER_INC, "cfguest1 still holds cfguest2 LEFTCLUSTER"),  # even the same incarnation
        ("left", PEER_INC + 1, "cfguest1 still holds cfguest2 LEFTCLUSTER"),
    ],
)
def test_join_request_of_a_node_still_held_is_refused(hold: str, inc: int, reason: str) -> None:
    disk = replace(TOPO.initial_disk("guest1"), sf_disabled=True)  # no kill: LEFTCLUSTER stays
    d = Driver(make("guest1", disk=disk))
    d.join()
    if hold == "left":
        d.run_until(10.5)
        assert d.node.cf.view()[G2] is LEFT
    out = d.feed(MessageReceived(G2, JoinRequest(inc)), at=d.now + 0.1)
    assert of(out, Send) == [Send(G2, JoinAnswer(False, reason, 1))]
    assert logs(out) == [WriteLog("CF", "messages", f"CF: cfguest2: join request refused: {reason}")]
    assert states(out) == []


def test_refused_node_does_not_start_its_services() -> None:
    reason = "cfguest1 still holds cfguest2 UP"
    d = Driver(make("guest2"))
    d.feed(NodeStarted())
    out = d.feed(MessageReceived(G1, JoinAnswer(False, reason, PEER_INC)), at=0.1)
    assert d.node.cf.local_state is NodeState.INVALID
    assert d.node.services == "refused" and d.node.refusal == reason and d.node.sf_state() == "refused"
    assert Trace("CF", "join refused by cfguest1: SF, CRM, RMS not started") in out
    assert [(w.tag, w.dest, w.text) for w in logs(out) if "failed to start" in w.text] == [
        ("SMAWsf", "messages", f"SF failed to start: {reason}"),
        ("CF", "messages", f"CRM failed to start: {reason}"),
        ("RMS", "messages", f"RMS failed to start: {reason}"),
    ]
    assert runs(out) == [] and not d.node.sf_running and d.node.rms is not None and not d.node.rms.running
    assert d.node.next_deadline() is None
    a = d.ask("sdtool", flag="-b")
    assert (a.ok, a.code, a.error) == (False, codes.SF_REFUSED, messages.sf_cannot_start(G2, reason))
    status = d.value("status")
    assert (status["sf"], status["services"], status["local_state"]) == ("refused", "refused", "INVALID")
    # the remote sf_start records the flag, but SF does not start either
    op_id, out = d.request("sf_start", CD)
    assert out == [Store("sf_disabled", False), Answer(op_id, True)]
    assert not d.node.sf_running


def test_two_nodes_wired_by_hand_restart_is_refused() -> None:
    """Both sides of a refusal with two real nodes: cfguest2 restarts (new incarnation) while
    cfguest1 still holds its old incarnation UP."""
    a, b = Driver(make("guest1")), Driver(make("guest2", incarnation=1))

    def deliver(src: Driver, dst: Driver, out: list[Effect], at: float) -> list[Effect]:
        got: list[Effect] = []
        for e in of(out, Send):
            if e.to == dst.node.spec.cf:
                got += dst.feed(MessageReceived(src.node.spec.cf, e.message), at=at)
        for e in of(out, Broadcast):
            got += dst.feed(MessageReceived(src.node.spec.cf, e.message), at=at)
        return got

    a_boot = a.feed(NodeStarted())
    b_boot = b.feed(NodeStarted())
    back = deliver(a, b, a_boot, 0.1)  # b accepts a's request ...
    deliver(b, a, back, 0.2)  # ... a takes b UP from the answer and is UP
    deliver(a, b, deliver(b, a, b_boot, 0.3), 0.4)  # b's own request: same incarnation, accepted again
    assert a.node.cf.local_state is UP and b.node.cf.local_state is UP
    assert a.node.cf.view()[G2] is UP and b.node.cf.view()[G1] is UP
    assert a.node.services == b.node.services == "started"
    # guest2 restarts: a new Node with the next incarnation
    b2 = Driver(make("guest2", incarnation=2))
    b2.now = 1.0
    refusal = deliver(b2, a, b2.feed(NodeStarted(), at=1.0), 1.1)
    assert of(refusal, Send) == [Send(G2, JoinAnswer(False, "cfguest1 still holds cfguest2 UP", 1))]
    out = deliver(a, b2, refusal, 1.2)
    assert b2.node.services == "refused"
    assert [w.tag for w in logs(out) if "failed to start: cfguest1 still holds cfguest2 UP" in w.text] == [
        "SMAWsf",
        "CF",
        "RMS",
    ]


# ==== 2. routing ================================================================================
def test_leftcluster_reaches_sf_which_kills_when_its_side_wins() -> None:
    d, _ = joined("guest1")  # cfguest1 wins the tie: alphabetically first
    out = d.run_until(10.1)  # cfguest2 never beats: questionable at 5.1, LEFTCLUSTER at 10.1
    assert "CF: cfguest2: node is questionable: no heartbeat for 5.0 s" in texts(out, tag="CF")
    i = index(out, mem.AnnounceNodeState(G2, LEFT))
    kills = runs(out[i:], "kill")
    assert [(k.host, k.agent) for k in kills] == [(G2, G0P)]
    assert "split-brain: my side cfguest1 priority 1, other side cfguest2 priority 1: my side survives" in texts(
        out, tag="SMAWsf", dest="rcsd"
    )
    assert of(out, RunShutdownAgent)[-1].generation == d.node.sf_generation == 1
    # and RMS: cfguest2 is Faulted in hvdisp
    assert ["cfguest2RMS", "SysNode", "", "Faulted"] in d.node.hvdisp_rows()


def test_elimination_takes_the_node_down_here_and_is_broadcast() -> None:
    d, _ = joined("guest1")
    # cfguest2 said at its start that it runs app1: after the elimination RMS fails it over here
    d.feed(MessageReceived(G2, AppState("app1", G2, True)), at=0.2)
    d.run_until(3.2, beats=[G2])
    assert d.node.rms is not None and d.node.rms.placement() == {"app1": G2}
    out = d.run_until(14.0)
    kill = runs(out, "kill")
    assert len(kill) == 1
    out = d.feed(XscfAnswered(kill[0], True, "", "panic accepted"))
    assert d.node.cf.view()[G2] is DOWN
    i_trace = index(out, Trace("SF", "cfguest2 eliminated"))
    i_down = index(out, mem.AnnounceNodeState(G2, DOWN))
    i_bcast = index(out, Broadcast(Elimination(G2)))
    assert i_trace < i_down < i_bcast
    assert "CF: cfguest2: DOWN (eliminated by the Shutdown Facility)" in texts(out, tag="CF")
    assert of(out, rmsmod.BringAppOnline) == [rmsmod.BringAppOnline("app1")]
    assert Broadcast(AppState("app1", G1, True)) in out and d.node.online == {"app1"}
    assert ["cfguest2", "SA_xscfsnmpg0p", "Init-ing", "KillWorked", "Unknown", "Init-ing"] in d.node.rows()


@pytest.mark.parametrize("held", [UP, LEFT])
def test_elimination_message_from_a_peer(held: NodeState) -> None:
    disk = replace(GEN3.initial_disk("guest1"), sf_disabled=True)
    d = Driver(make("guest1", topo=GEN3, disk=disk))
    d.join()
    beats = [G3] if held is LEFT else [G2, G3]
    d.run_until(10.5, beats=beats)
    assert d.node.cf.view()[G2] is held
    out = d.feed(MessageReceived(G3, Elimination(G2)))
    assert states(out) == [(G2, DOWN)]
    assert of(out, Broadcast) == []  # only the node whose SF killed it tells the others


def _split_brain_on_guest2(apps: tuple[rmsmod.AppSpec, ...], report: AppState | None) -> list[Effect]:
    spec = replace(TOPO.node_spec("guest2"), apps=apps)
    d = Driver(make("guest2", spec=spec))
    d.join()
    if report is not None:
        d.feed(MessageReceived(G1, report), at=0.5)
    d.run_until(4.0, beats=[G1])  # RMS settles at 3.1 and places the application
    return d.run_until(14.5)  # cfguest1 silent: LEFTCLUSTER at 14.0


@pytest.mark.parametrize(
    ("apps", "report", "verdict", "kill_now"),
    [
        # cfguest2 loses a tie (cfguest1 is alphabetically first) ...
        ((), None, "my side cfguest2 priority 1, other side cfguest1 priority 1: other side survives", False),
        ((rmsmod.AppSpec("app1", (G2, G1), 0),), None, "other side survives", False),
        # ... but wins with an application of ShutdownPriority 5 online on it
        (
            (rmsmod.AppSpec("app1", (G2, G1), 5),),
            None,
            "my side cfguest2 priority 6, other side cfguest1 priority 1: my side survives",
            True,
        ),
        # online on cfguest1 instead (its priority list), the weight goes to the other side
        (
            (rmsmod.AppSpec("app1", (G1, G2), 5),),
            None,
            "my side cfguest2 priority 1, other side cfguest1 priority 6: other side survives",
            False,
        ),
        # cfguest1 announces it runs it (an AppState message): the same
        ((rmsmod.AppSpec("app1", (G2, G1), 5),), AppState("app1", G1, True), "other side survives", False),
    ],
)
def test_app_priorities_reach_sf_and_decide_the_split_brain(
    apps: tuple[rmsmod.AppSpec, ...], report: AppState | None, verdict: str, kill_now: bool
) -> None:
    out = _split_brain_on_guest2(apps, report)
    assert (G1, LEFT) in states(out)
    assert any(verdict in t for t in texts(out, tag="SMAWsf", dest="rcsd")), texts(out)
    assert bool(runs(out, "kill")) is kill_now
    if not kill_now:
        assert any(
            t.startswith("After the delay of ") and t.endswith("cfguest2 would kill: cfguest1")
            for t in texts(out, tag="SMAWsf")
        )


def test_app_placement_is_routed_to_effects_and_peers() -> None:
    d, _ = joined("guest1")
    out = d.run_until(3.5, beats=[G2])
    assert of(out, rmsmod.BringAppOnline) == [rmsmod.BringAppOnline("app1")]
    assert Broadcast(AppState("app1", G1, True)) in out
    assert "(SWT, 10) app1: online on cfguest1 (first UP node of its priority list)" in texts(out, tag="RMS")
    assert d.node.online == {"app1"}
    assert ["app1", "userApplication", "cfguest1RMS", "Online"] in d.node.hvdisp_rows()


def test_a_node_outside_an_apps_priority_list_still_knows_where_it_runs() -> None:
    """RMS's configuration is cluster-wide: cfguest3, not in app1's list, shows app1 Offline
    here and Online on cfguest1, and hands SF the same priorities as cfguest1 does (a split
    brain is then weighed alike on every node)."""
    topo = msgspec.structs.replace(GEN3, apps=[msgspec.structs.replace(GEN3.apps[0], shutdown_priority=5)])
    assert G3 not in topo.apps[0].nodes
    d, _ = joined("guest3", topo=topo)
    d.feed(MessageReceived(G1, AppState("app1", G1, True)), at=0.2)
    out = d.run_until(3.5, beats=[G1, G2])
    assert not of(out, rmsmod.BringAppOnline)
    assert d.node.rms is not None and d.node.rms.placement() == {"app1": G1}
    assert d.node.rms.priorities() == {G1: 5, G2: 0, G3: 0}
    assert ["app1", "userApplication", "cfguest3RMS", "Offline"] in d.node.hvdisp_rows()
    assert d.value("status")["apps"] == {"app1": G1}


@pytest.mark.parametrize(
    ("step", "tag", "dest", "text"),
    [
        ("boot", "CF", "messages", "CF: cfguest1: COMINGUP: join request sent to cfguest2"),
        ("join", "CF", "messages", "CF: cfguest1: UP, cluster members: cfguest1 cfguest2"),
        ("join", "SMAWsf", "rcsd", "rcsd started on cfguest1"),
        ("join", "RMS", "switchlog", "(BM, 1) RMS started on cfguest1; waiting 3s for the cluster state to settle"),
        ("agents", "SMAWsf", "SA_xscfsnmpg0p", "init cfguest1: worked: Solaris running"),
        ("agents", "SMAWsf", "SA_xscfsnmpg1r", "test cfguest2: worked: Solaris running"),
        ("settle", "RMS", "switchlog", "(SWT, 10) app1: online on cfguest1 (first UP node of its priority list)"),
        ("clock", "RMS", "messages", messages.WRP_34.format(host=G2)),
        ("clock", "RMS", "switchlog", messages.WRP_FURTHER),
        ("silence", "CF", "messages", "CF: cfguest2: LEFTCLUSTER (no heartbeat for 10.0 s)"),
        ("silence", "SMAWsf", "rcsd", "killing cfguest2"),
    ],
)
def test_write_log_tags_name_the_machine(step: str, tag: str, dest: str, text: str) -> None:
    d = Driver(make("guest1"))
    by_step: dict[str, list[Effect]] = {"boot": d.feed(NodeStarted())}
    by_step["join"] = d.feed(MessageReceived(G2, JoinAnswer(True, "", PEER_INC)), at=0.1)
    by_step["agents"] = d.settle_sf(by_step["join"])
    by_step["settle"] = d.run_until(3.5, beats=[G2])
    by_step["clock"] = d.beat(G2, 30.0)
    by_step["silence"] = d.run_until(14.0)
    matching = [w for w in logs(by_step[step], dest=dest) if w.text == text]
    assert matching and {w.tag for w in matching} == {tag}, logs(by_step[step])
    # and no line is ever written without one of the three tags
    assert {w.tag for w in logs(d.effects)} <= {"CF", "SMAWsf", "RMS"}


# ==== 3. agent results ==========================================================================
ENTRY1 = TOPO.initial_disk("guest1").sf_config.entry(G1)
LAN0, LAN1 = ENTRY1.lan0, ENTRY1.lan1


def _run(action: str, agent: str = G0P) -> fen.RunAgent:
    return fen.RunAgent(1, G1, agent, action, 20.0, ENTRY1)


def _answered(ok: bool, status: str, text: str = "") -> Any:
    return lambda run: XscfAnswered(run, ok, status, text)


@pytest.mark.parametrize(
    ("action", "agent", "event", "expected"),
    [
        ("init", G0P, _answered(True, RUNNING), (True, RUNNING)),
        ("test", G1P, _answered(True, STOPPED), (True, STOPPED)),
        ("test", G0R, _answered(True, "Unknown"), (False, messages.xscf_status_unknown("guest1"))),
        ("init", G1R, _answered(True, "Solaris panic"), (False, "XSCF reports guest1 as Solaris panic")),
        ("test", G0P, _answered(False, "", "  no such\n  domain "), (False, "no such domain")),
        ("test", G0P, _answered(False, ""), (False, f"XSCF {LAN0} does not know guest1")),
        ("init", G1P, _answered(False, ""), (False, f"XSCF {LAN1} does not know guest1")),
        ("test", G0P, XscfHostKeyUnknown, (False, messages.first_ssh_connection(LAN0, "xuser", "guest1"))),
        ("init", G1R, XscfHostKeyUnknown, (False, messages.first_ssh_connection(LAN1, "xuser", "guest1"))),
        ("kill", G0R, XscfHostKeyUnknown, (False, messages.first_ssh_connection(LAN0, "xuser", "guest1"))),
        (
            "test",
            G0P,
            lambda run: XscfRequestFailed(run, "no answer from 127.0.0.9"),
            (False, "no answer from 127.0.0.9"),
        ),
        ("kill", G0P, lambda run: XscfRequestFailed(run, "connection refused"), (False, "connection refused")),
        ("kill", G0P, _answered(True, "", "panic requested"), (True, "panic requested")),
        ("kill", G1P, _answered(True, "Solaris panic"), (True, "Solaris panic")),
        ("kill", G0R, _answered(False, "Solaris running", ""), (False, "Solaris running")),
        ("kill", G1R, _answered(False, "", "reset refused"), (False, "reset refused")),
    ],
)
def test_agent_result(action: str, agent: str, event: Any, expected: tuple[bool, str]) -> None:
    run = _run(action, agent)
    assert agent_result(run, event(run), "guest1") == expected


def test_unknown_status_names_add_spconfig() -> None:
    ok, detail = agent_result(_run("init"), XscfAnswered(_run("init"), True, "Unknown", ""), "guest1")
    assert not ok and "ldm add-spconfig" in detail


@pytest.mark.parametrize(
    ("reply", "init", "test", "messages_line"),
    [
        (lambda r: XscfAnswered(r, True, RUNNING, ""), "InitWorked", "TestWorked", None),
        (lambda r: XscfAnswered(r, True, STOPPED, ""), "InitWorked", "TestWorked", None),
        (
            lambda r: XscfAnswered(r, True, "Unknown", ""),
            "InitFailed",
            "TestFailed",
            (f"SF: init of SA_xscfsnmpg0p for cfguest2 failed: {messages.xscf_status_unknown('guest2')}", ""),
        ),
        (
            XscfHostKeyUnknown,
            "InitFailed",
            "TestFailed",
            (messages.first_ssh_connection("127.20.30.72", "xuser", "guest1"), messages.MSG_7245),
        ),
        (
            lambda r: XscfRequestFailed(r, "timed out"),
            "InitFailed",
            "TestFailed",
            ("SF: init of SA_xscfsnmpg0p for cfguest2 failed: timed out", ""),
        ),
    ],
)
def test_xscf_events_become_agent_results(
    reply: Any, init: str, test: str, messages_line: tuple[str, str] | None
) -> None:
    d, out = joined("guest1")
    g0p = next(r for r in runs(out, "init", G2) if r.agent == G0P)
    after_init = d.feed(reply(g0p))
    assert d.node.rows()[4] == [G2, G0P, "Testing", "Unknown", "Testing", init]
    test_run = runs(after_init, "test")
    assert [(r.host, r.agent) for r in test_run] == [(G2, G0P)]
    d.feed(reply(test_run[0]))
    assert d.node.rows()[4] == [G2, G0P, "Idle", "Unknown", test, init]
    lines = [(w.text, w.msgid) for w in logs(after_init, tag="SMAWsf", dest="messages")]
    assert lines == ([] if messages_line is None else [messages_line])
    if messages_line is not None and messages_line[1] == messages.MSG_7245:
        sa = texts(after_init, tag="SMAWsf", dest=G0P)
        assert sa == [f"init cfguest2: failed: {messages_line[0]}"]


def test_a_stale_agent_answer_is_ignored() -> None:
    d, out = joined("guest1")
    first = runs(out, "init")[0]
    d.ask("sf_stop", CD)
    assert d.feed(XscfAnswered(first, True, RUNNING, "")) == []


def test_kill_failure_moves_on_to_the_next_agent_until_all_failed() -> None:
    d, _ = joined("guest1")
    out = d.run_until(10.1)
    kill = runs(out, "kill")
    tried = []
    for _ in XSCF_AGENTS:
        assert len(kill) == 1
        tried.append(kill[0].agent)
        out = d.feed(XscfAnswered(kill[0], False, "", "refused"))
        kill = runs(out, "kill")
    assert tried == list(XSCF_AGENTS)
    assert kill == [] and d.node.cf.view()[G2] is LEFT and of(out, Broadcast) == []
    line = "failed to kill cfguest2: all shutdown agents failed; cfguest2 stays LEFTCLUSTER"
    assert WriteLog("SMAWsf", "messages", line) in out
    assert [r[3] for r in d.node.rows() if r[0] == G2] == ["KillFailed"] * 4


def test_host_key_unknown_on_a_kill_logs_7245_and_tries_the_next_agent() -> None:
    d, _ = joined("guest1")
    kill = runs(d.run_until(10.1), "kill")
    out = d.feed(XscfHostKeyUnknown(kill[0]))
    text = messages.first_ssh_connection("127.20.30.72", "xuser", "guest1")
    assert WriteLog("SMAWsf", "messages", text, "7245") in out
    assert [(r.agent, r.action) for r in runs(out)] == [(G1P, "kill")]


# ==== 4. clock ==================================================================================
@pytest.mark.parametrize(
    ("server", "offsets", "now", "wall"),
    [
        ("m10-1", {}, 0.0, EPOCH),
        ("m10-1", {}, 12.5, EPOCH + 12.5),
        ("m10-3", {"m10-3": 7.0}, 12.5, EPOCH + 19.5),
        ("m10-3", {"m10-1": 7.0}, 12.5, EPOCH + 12.5),  # an unlisted server: offset 0
        ("m10-2", {"m10-2": -3.25}, 100.0, EPOCH + 96.75),
    ],
)
def test_wall_clock(server: str, offsets: dict[str, float], now: float, wall: float) -> None:
    n = make("guest1", server=server, offsets=offsets)
    assert n.wall(now) == pytest.approx(wall)


def test_wall_clock_uses_the_tuned_epoch() -> None:
    n = make("guest1", tuning=NodeTuning(epoch=1000.0), offsets={"m10-1": 2.0})
    assert n.wall(5.0) == 1007.0


OFFSETS = {"m10-1": 0.0, "m10-2": 2.0, "m10-3": 7.0}


@pytest.mark.parametrize(
    ("arm", "moves", "step", "traces"),
    [
        (False, ["m10-3"], 0.0, 0),  # not armed: the clock jumps with the server
        (True, ["m10-3"], -7.0, 1),  # armed: step by offset(old) - offset(new), the clock goes on
        (True, ["m10-3", "m10-1"], -7.0, 1),  # one-shot: the second move does not step
        (True, ["m10-1", "m10-3"], -7.0, 1),  # the same server is no move: still armed
        (True, ["m10-2", "m10-3"], -2.0, 1),
    ],
)
@pytest.mark.parametrize("caller", [None, CD])
def test_clock_align_steps_once_at_the_next_move(
    arm: bool, moves: list[str], step: float, traces: int, caller: str | None
) -> None:
    d = Driver(make("guest1", offsets=OFFSETS))
    if arm:
        assert d.value("clock_align", caller) is None
    out: list[Effect] = []
    for i, server in enumerate(moves, 1):
        out += d.feed(PlacementObserved(server), at=float(i))
    assert d.node.clock_step == step and d.node.server == moves[-1]
    assert len([t for t in of(out, Trace) if t.what == "clock"]) == traces
    assert d.node.wall(10.0) == EPOCH + 10.0 + OFFSETS[moves[-1]] + step


def test_clock_align_keeps_the_clock_going_on() -> None:
    d = Driver(make("guest1", offsets=OFFSETS))
    before = d.node.wall(5.0)
    d.ask("clock_align", CD)
    out = d.feed(PlacementObserved("m10-3"), at=5.0)
    assert d.node.wall(5.0) == before
    assert out == [Trace("clock", "moved from m10-1 to m10-3: clock stepped by -7 s (step now -7 s)")]


def test_clock_offsets_observed_change_the_wall_clock() -> None:
    d = Driver(make("guest1", offsets=OFFSETS))
    assert d.feed(ClockOffsetsObserved((("m10-1", 3.0), ("m10-3", 1.0))), at=1.0) == []
    assert d.node.wall(2.0) == EPOCH + 5.0
    d.feed(ClockOffsetsObserved((("m10-2", 1.0),)))
    assert d.node.wall(2.0) == EPOCH + 2.0  # m10-1 not listed: 0
    # an armed step uses the offsets known at the move
    d.feed(ClockOffsetsObserved((("m10-1", 4.0), ("m10-3", 1.0))))
    d.ask("clock_align")
    d.feed(PlacementObserved("m10-3"), at=3.0)
    assert d.node.clock_step == 3.0 and d.node.wall(3.0) == EPOCH + 7.0


def test_heartbeats_carry_the_wall_clock() -> None:
    d = Driver(make("guest1", server="m10-3", offsets=OFFSETS))
    d.join()
    d.ask("clock_align")
    d.feed(PlacementObserved("m10-1"), at=0.5)  # step +7
    out = d.run_until(1.1)
    assert of(out, Broadcast) == [Broadcast(Heartbeat(1, EPOCH + 1.1 + 7.0, 1.1))]


WRP34 = messages.WRP_34.format(host=G2)


@pytest.mark.parametrize(
    ("samples", "diffs", "estimate", "wrp34"),
    [
        (5, [6.0], 6.0, True),
        (5, [4.0], 4.0, False),
        (5, [-6.0], 6.0, True),  # a peer behind by 6 s
        (5, [0.0, -6.0], 0.0, False),  # transit delay only makes a peer look behind: the largest counts
        (5, [-1.0, -3.0, -2.0], 1.0, False),
        (5, [-9.0, -7.0, -8.0], 7.0, True),
        (5, [0.0, 6.0], 6.0, True),
        (5, [6.0, 0.0, 0.0, 0.0, 0.0], 6.0, True),  # the 6 is still one of the last five
        (5, [6.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0, True),  # now it is not
        (2, [6.0, 0.0], 6.0, True),
        (2, [6.0, 0.0, 0.0], 0.0, True),
        (1, [0.0, -6.0], 6.0, True),  # one sample: no filtering
    ],
)
def test_clock_estimate_is_the_largest_of_the_last_samples(
    samples: int, diffs: list[float], estimate: float, wrp34: bool
) -> None:
    d = Driver(make("guest1", tuning=NodeTuning(clock_samples=samples)))
    d.join()
    out: list[Effect] = []
    for i, diff in enumerate(diffs, 1):
        d.run_until(float(i))
        out += d.beat(G2, diff)
        assert d.node.cf.view()[G2] is UP
    sample = d.value("cf_sample", CD)
    assert sample["clock_diff"] == {G2: pytest.approx(estimate)}
    wrp = logs(out, tag="RMS")
    if wrp34:
        assert [(w.dest, w.text, w.msgid) for w in wrp] == [
            ("switchlog", WRP34, "WRP 34"),
            ("switchlog", messages.WRP_FURTHER, "WRP 34"),
            ("messages", WRP34, "WRP 34"),
            ("messages", messages.WRP_FURTHER, "WRP 34"),
        ]
    else:
        assert wrp == []


@pytest.mark.parametrize(("lag", "for_clock"), [(0.0, True), (1.5, True), (2.0, True), (2.01, False), (30.0, False)])
def test_stale_heartbeat_counts_for_cf_but_not_for_the_clock(lag: float, for_clock: bool) -> None:
    d = Driver(make("guest1"))
    d.join()
    d.run_until(8.0)  # silent for 7.9 s: questionable
    assert d.value("cf_sample", CD)["peers"][G2]["gap"] == pytest.approx(7.9)
    out = d.beat(G2, 50.0, lag=lag)  # far ahead: WRP 34 if it counted for the clock
    sample = d.value("cf_sample", CD)
    assert sample["peers"][G2]["gap"] == 0.0  # CF heard it: LEFTCLUSTER at 18.0 now, not at 10.1
    d.run_until(17.9)
    assert d.node.cf.view()[G2] is UP
    if for_clock:
        assert sample["clock_diff"] == {G2: pytest.approx(50.0 - lag)}
        assert WriteLog("RMS", "messages", WRP34, "WRP 34") in out
    else:
        assert sample["clock_diff"] == {G2: None}
        assert logs(out, tag="RMS") == []


def test_stale_threshold_is_tunable() -> None:
    d = Driver(make("guest1", tuning=NodeTuning(stale_heartbeat=10.0)))
    d.join()
    d.run_until(8.0)
    d.beat(G2, 50.0, lag=5.0)
    assert d.value("cf_sample", CD)["clock_diff"] == {G2: pytest.approx(45.0)}


def test_clock_samples_of_an_earlier_incarnation_are_forgotten() -> None:
    d, _ = joined("guest1", disk=replace(TOPO.initial_disk("guest1"), sf_disabled=True))
    for t in (1.0, 2.0, 3.0):
        d.run_until(t)
        d.beat(G2, 30.0)  # cfguest2's clock is 30 s ahead: WRP 34
    d.run_until(16.0)  # it goes silent (LEFTCLUSTER); the operator marks it DOWN, fixes its clock, restarts it
    d.ask("cftool_k", node=G2)
    d.peer_inc[G2] = PEER_INC + 1
    d.feed(MessageReceived(G2, JoinRequest(PEER_INC + 1)), at=16.5)
    assert d.node.cf.view()[G2] is UP
    d.run_until(17.0)
    out = d.beat(G2, 0.0)
    assert logs(out, tag="RMS") == []
    assert d.value("cf_sample", CD)["clock_diff"] == {G2: pytest.approx(0.0)}


def test_heartbeat_of_another_incarnation_does_not_count_for_cf() -> None:
    d = Driver(make("guest1"))
    d.join()
    for t in range(1, 11):
        d.run_until(float(t))
        d.beat(G2, inc=PEER_INC + 1)  # a restarted cfguest2: must join first
    d.run_until(10.2)
    assert d.node.cf.view()[G2] is LEFT


def test_a_rejoined_peers_heartbeats_of_its_new_incarnation_count() -> None:
    d, _ = joined("guest1", disk=replace(TOPO.initial_disk("guest1"), sf_disabled=True))
    d.run_until(5.0, beats=[G2])
    d.run_until(16.0)  # cfguest2 went silent: LEFTCLUSTER, then the operator marks it down
    d.ask("cftool_k", node=G2)
    d.peer_inc[G2] = PEER_INC + 1  # it restarts and joins again
    out = d.feed(MessageReceived(G2, JoinRequest(PEER_INC + 1)), at=16.5)
    assert of(out, Send) == [Send(G2, JoinAnswer(True, "", 1))]
    d.run_until(40.0, beats=[G2])
    assert d.node.cf.view()[G2] is UP


# ==== 5. disk and operations ===================================================================
@pytest.mark.parametrize(
    ("record", "timeout", "value", "stores"),
    [
        (None, 10, 10, [Store("record", 10)]),
        (None, 25, 25, [Store("record", 25)]),
        (10, 600, 10, []),  # a second -p never records 600
        (0, 600, 0, []),
    ],
)
def test_record_timeout_keeps_an_existing_record(
    record: int | None, timeout: int, value: int, stores: list[Store]
) -> None:
    disk = replace(TOPO.initial_disk("guest1"), record=record, timeout=timeout)
    d = Driver(make("guest1", disk=disk))
    op_id, out = d.request("record_timeout", CD)
    assert out == [*stores, Answer(op_id, True, value)]
    assert d.node.disk.record == value
    assert d.value("node_status", CD) == {"timeout": timeout, "sf": "stopped", "record": value, "window": False}


@pytest.mark.parametrize(("record", "stores"), [(10, [Store("record", None)]), (None, [])])
def test_clear_record(record: int | None, stores: list[Store]) -> None:
    d = Driver(make("guest1", disk=replace(TOPO.initial_disk("guest1"), record=record)))
    op_id, out = d.request("clear_record", CD)
    assert out == [*stores, Answer(op_id, True)]
    assert d.node.disk.record is None


@pytest.mark.parametrize("seconds", [600, 600.0, 1, 10])
def test_set_timeout_stores_before_it_answers_and_changes_cf(seconds: float) -> None:
    d, _ = joined("guest1")
    op_id, out = d.request("set_timeout", CD, seconds=seconds)
    assert out[0] == Store("timeout", int(seconds)) and type(out[0].value) is int
    assert out[-1] == Answer(op_id, True)
    assert d.node.cf.timeout == seconds and d.node.disk.timeout == seconds
    if seconds != 10:
        assert texts(out, tag="CF") == [f"CF: cfguest1: CLUSTER_TIMEOUT changed from 10 to {seconds:g} seconds"]
    assert d.value("cfset_a")["CLUSTER_TIMEOUT"] == str(int(seconds))
    assert d.value("cf_sample", CD)["peers"][G2]["timeout"] == seconds


@pytest.mark.parametrize("seconds", [0, -5, 1.5, "600", True, None, math.inf, math.nan, [600]])
def test_set_timeout_refuses_bad_seconds(seconds: Any) -> None:
    d, _ = joined("guest1")
    a = d.ask("set_timeout", CD, seconds=seconds)
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST)
    assert d.node.disk.timeout == 10 and d.node.cf.timeout == 10
    assert of(d.effects[-1:], Store) == []


def test_set_timeout_without_seconds_is_a_bad_request() -> None:
    a = Driver(make("guest1")).ask("set_timeout", CD)
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST) and "bad arguments" in a.error


def test_window_stores_and_reaches_cf_and_rms() -> None:
    d = settled("guest1")
    op_id, out = d.request("window", CD, open=True)
    assert out[0] == Store("window", True) and out[-1] == Answer(op_id, True)
    assert d.node.disk.window and d.node.cf.window_open
    assert d.node.rms is not None and d.node.rms.held
    assert "(SWT, 30) switchovers are held (clovmmigrate -p)" in texts(out, tag="RMS")
    assert d.value("node_status", CD)["window"] is True and d.value("status")["window"] is True
    # with the window open (and SF stopped), a LEFTCLUSTER peer is asked about at the hypervisor
    d.ask("sf_stop", CD)
    out = d.run_until(15.0)
    asks = of(out, AskDomainStatus)
    assert asks == [AskDomainStatus(G2, d.node.disk.sf_config.entry(G2))]
    assert d.feed(DomainStatusAnswered(G2, RUNNING)) == [] and d.node.cf.view()[G2] is LEFT
    out = d.feed(DomainStatusAnswered(G2, STOPPED))
    assert states(out) == [(G2, DOWN)]
    assert "CF: cfguest2: DOWN (domain stopped while the migration window is open)" in texts(out, tag="CF")
    # closing it: stored, CF and RMS released
    op_id, out = d.request("window", CD, open=False)
    assert out[0] == Store("window", False) and out[-1] == Answer(op_id, True)
    assert not d.node.cf.window_open and not d.node.rms.held
    assert "(SWT, 31) switchover hold released (clovmmigrate -u)" in texts(out, tag="RMS")


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_window_refuses_a_non_boolean(value: Any) -> None:
    d = Driver(make("guest1"))
    a = d.ask("window", CD, open=value)
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST) and not d.node.disk.window


def test_window_query_on_a_node_without_sf_config_is_a_trace() -> None:
    d, _ = joined("primary1")
    d.ask("window", CD, open=True)
    out = d.run_until(10.5, beats=[CP3])
    assert (CP2, LEFT) in states(out)
    assert Trace("CF", "domain status of cfprimary2: no SA_xscfsnmp.cfg entry to ask") in out
    assert of(out, AskDomainStatus) == []


def test_window_on_disk_is_applied_at_start() -> None:
    d = Driver(make("guest1", disk=replace(TOPO.initial_disk("guest1"), window=True)))
    out = d.feed(NodeStarted())
    assert d.node.cf.window_open and d.node.rms is not None and d.node.rms.held
    assert "(SWT, 30) switchovers are held (clovmmigrate -p)" in texts(out, tag="RMS")
    d.feed(MessageReceived(G2, JoinAnswer(True, "", PEER_INC)), at=0.1)
    out = d.run_until(3.5, beats=[G2])
    assert of(out, rmsmod.BringAppOnline) == []  # held: the initial placement waits
    _, out = d.request("window", CD, open=False)
    assert of(out, rmsmod.BringAppOnline) == [rmsmod.BringAppOnline("app1")]


def test_sf_stop_and_sf_start_store_the_flag() -> None:
    caller = CD
    d, boot = joined("guest1")
    op_id, out = d.request("sf_stop", caller)
    assert out == [
        Store("sf_disabled", True),
        WriteLog("SMAWsf", "rcsd", "rcsd stopped on cfguest1"),
        Answer(op_id, True),
    ]
    assert not d.node.sf_running and d.node.disk.sf_disabled
    assert d.value("node_status", caller)["sf"] == "stopped"
    gen = d.node.sf_generation
    op_id, out = d.request("sf_start", caller)
    assert out[0] == Store("sf_disabled", False) and out[-1] == Answer(op_id, True)
    assert d.node.sf_running and d.node.sf_generation == gen + 1
    assert len(runs(out, "init")) == 8 and {e.generation for e in of(out, RunShutdownAgent)} == {gen + 1}
    # the old runs are stale now
    assert d.feed(XscfAnswered(runs(boot, "init")[0], True, RUNNING, "")) == []


def test_sf_disabled_on_disk_keeps_sf_stopped_until_sf_start() -> None:
    d = Driver(make("guest1", disk=replace(TOPO.initial_disk("guest1"), sf_disabled=True)))
    d.join()
    assert not d.node.sf_running
    out = d.feed(OperationRequested(1, "sdtool", {"flag": "-b"}))
    assert out[0] == Store("sf_disabled", False) and d.node.sf_running and len(runs(out, "init")) == 8


def test_sf_start_before_the_join_only_stores_the_flag() -> None:
    d = Driver(make("guest1", disk=replace(TOPO.initial_disk("guest1"), sf_disabled=True)))
    op_id, out = d.request("sf_start", CD)
    assert out == [Store("sf_disabled", False), Answer(op_id, True)] and not d.node.sf_running
    out = d.join()
    assert d.node.sf_running and len(runs(out, "init")) == 8


def test_sf_learns_leftcluster_while_stopped_and_decides_on_start() -> None:
    d, _ = joined("guest1")
    d.ask("sf_stop", CD)
    out = d.run_until(12.0)
    assert (G2, LEFT) in states(out) and runs(out) == []
    out = d.feed(OperationRequested(50, "sf_start", {}, CD))
    assert "LEFTCLUSTER while SF was stopped: cfguest2" in texts(out, tag="SMAWsf")
    assert [(r.host, r.agent) for r in runs(out, "kill")] == [(G2, G0P)]


def test_set_sf_entry_stores_the_config_and_reconfigures_sf() -> None:
    d = settled("guest1")
    gen = d.node.sf_generation
    op_id, out = d.request("set_sf_entry", CD, entry=entry_args(M10_3), weight=2)
    stored = of(out, Store)
    assert len(stored) == 1 and stored[0].key == "sf_config"
    cfg: SfConfig = stored[0].value
    assert cfg.entry(G2) == M10_3 and cfg.weight(G2) == 2
    assert cfg.entry(G1) == TOPO.initial_disk("guest1").sf_config.entry(G1) and cfg.weight(G1) == 1
    assert d.node.disk.sf_config == cfg and d.node.sf is not None and d.node.sf.config == cfg
    assert index(out, Store) < index(out, RunShutdownAgent) < index(out, Answer) == len(out) - 1
    assert out[-1] == Answer(op_id, True)
    assert "reconfig: configuration reloaded, re-initialising all agents" in texts(out, tag="SMAWsf")
    assert d.node.sf_generation == gen + 1
    assert {e.generation for e in of(out, RunShutdownAgent)} == {gen + 1}
    assert {r.entry for r in runs(out, "init", G2)} == {M10_3}
    assert d.value("sf_entry", CD, node=G2) == {k: v for k, v in asdict(M10_3).items() if k != "device"}


def test_set_sf_entry_applies_the_agent_timeout_floor_to_sf_only() -> None:
    d, _ = joined("guest1", tuning=NodeTuning(min_agent_timeout=30.5))
    assert {r.timeout for r in runs(d.effects)} == {31.0}
    _, out = d.request("set_sf_entry", CD, entry=entry_args(M10_3), weight=2)
    assert {r.timeout for r in runs(out)} == {31.0}
    assert {a.timeout for h in d.node.disk.sf_config.hosts for a in h.agents} == {20}


def test_set_sf_entry_while_sf_stopped_replaces_the_config_only() -> None:
    d, _ = joined("guest1")
    d.ask("sf_stop", CD)
    _, out = d.request("set_sf_entry", CD, entry=entry_args(M10_3), weight=2)
    assert of(out, Store)[0].value.entry(G2) == M10_3 and runs(out) == []
    _, out = d.request("sf_start", CD)
    assert {r.entry for r in runs(out, "init", G2)} == {M10_3}


@pytest.mark.parametrize(
    ("entry", "weight", "why"),
    [
        (
            {**entry_args(M10_3), "lan0": "not-an-address"},
            2,
            "XSCF-LAN#0 address 'not-an-address' is not an IP address",
        ),
        ({**entry_args(M10_3), "lan1": "127.20.40"}, 2, "XSCF-LAN#1 address"),
        ({**entry_args(M10_3), "ppar_id": 32}, 2, "PPAR-ID must be an integer 0..31"),
        ({**entry_args(M10_3), "ppar_id": "1"}, 2, "PPAR-ID"),
        ({**entry_args(M10_3), "connection": "rsh"}, 2, "connection must be ssh or telnet"),
        ({**entry_args(M10_3), "domain": "bad domain"}, 2, "bad domain name"),
        ({**entry_args(M10_3), "cf_name": ""}, 2, "bad CF node name"),
        (entry_args(M10_3), -1, "weight must be a non-negative integer, not -1"),
        (entry_args(M10_3), True, "weight must be a non-negative integer, not True"),
        (entry_args(M10_3), "2", "weight must be a non-negative integer"),
        (entry_args(M10_3), 2.0, "weight must be a non-negative integer"),
        (entry_args(M10_3), None, "weight must be a non-negative integer"),
        ({"cf_name": G2, "ppar_id": 1, "domain": "guest2", "lan0": "127.0.0.1"}, 2, "set_sf_entry:"),  # no lan1
        ({**entry_args(M10_3), "colour": "red"}, 2, "set_sf_entry:"),
        ("cfguest2 1 guest2", 2, "set_sf_entry:"),
    ],
)
def test_set_sf_entry_validates(entry: Any, weight: Any, why: str) -> None:
    d = settled("guest1")
    before = d.node.disk.sf_config
    gen = d.node.sf_generation
    _, out = d.request("set_sf_entry", CD, entry=entry, weight=weight)
    assert len(out) == 1 and out[0].ok is False and out[0].code == codes.BAD_REQUEST
    assert why in out[0].error and out[0].error.startswith("set_sf_entry")
    assert d.node.disk.sf_config == before and d.node.sf_generation == gen


def test_set_sf_entry_without_weight_is_a_bad_request() -> None:
    a = settled("guest1").ask("set_sf_entry", CD, entry=entry_args(M10_3))
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST)


def test_sf_wait_answers_when_the_named_nodes_rows_have_settled() -> None:
    d, out = joined("guest1")
    op_id, now = d.request("sf_wait", CD, seconds=30, node=G2)
    assert of(now, Answer) == []
    tests = d.xscf(runs(out, "init", G2))  # cfguest2's rows: InitWorked, then Testing
    assert d.answers(op_id) == []
    test_runs = runs(tests, "test")
    assert len(test_runs) == 4
    d.xscf(test_runs[:3])
    assert d.answers(op_id) == []
    last = d.xscf(test_runs[3:])
    rows = [[G2, a, "Idle", "Unknown", "TestWorked", "InitWorked"] for a in XSCF_AGENTS]
    assert of(last, Answer) == [Answer(op_id, True, rows)]
    # cfguest1's rows are still initialising: they were not waited for
    assert {r[2] for r in d.node.rows() if r[0] == G1} == {"Init-ing"}
    d.run_until(40.0, beats=[G2])
    assert len(d.answers(op_id)) == 1


def test_sf_wait_answers_at_its_deadline() -> None:
    d, _ = joined("guest1")
    op_id, _ = d.request("sf_wait", CD, seconds=5, node=G1)  # deadline 5.1
    d.run_until(5.0)
    assert d.answers(op_id) == []
    assert d.node.next_deadline() == pytest.approx(5.1)  # earlier than every machine's deadline
    out = d.tick()
    assert d.now == pytest.approx(5.1)
    rows = [[G1, a, "Init-ing", "Unknown", "Unknown", "Init-ing"] for a in XSCF_AGENTS]
    assert of(out, Answer) == [Answer(op_id, True, rows)]
    assert d.run_until(30.0) and len(d.answers(op_id)) == 1


def test_sf_wait_deadline_is_the_only_deadline_of_an_idle_node() -> None:
    d = Driver(make("guest1"))
    assert d.node.next_deadline() is None
    op_id, _ = d.request("sf_wait", CD, seconds=5)
    assert d.node.next_deadline() == 5.0
    assert d.feed(TICK, at=4.0) == []
    out = d.feed(TICK, at=5.0)
    assert [a.op_id for a in of(out, Answer)] == [op_id] and of(out, Answer)[0].ok
    assert d.node.next_deadline() is None


def test_sf_wait_answers_at_once_when_settled() -> None:
    d = settled("guest1")
    assert len(d.value("sf_wait", CD, seconds=5)) == 8
    assert d.value("sf_wait", CD, seconds=5, node=G1) == [
        [G1, a, "Idle", "Unknown", "TestWorked", "InitWorked"] for a in XSCF_AGENTS
    ]


def test_sf_wait_for_every_row_waits_for_all_of_them() -> None:
    d, out = joined("guest1")
    op_id, _ = d.request("sf_wait", CD, seconds=30)
    tests = d.xscf(runs(out, "init", G2))
    d.xscf(runs(tests, "test"))
    assert d.answers(op_id) == []
    tests = d.xscf(runs(out, "init", G1))
    d.xscf(runs(tests, "test"))
    assert [len(a.value) for a in d.answers(op_id)] == [8]


@pytest.mark.parametrize(
    "args",
    [{"seconds": 0}, {"seconds": -1}, {"seconds": "5"}, {"seconds": True}, {"seconds": 5, "node": 2}, {"node": G2}],
)
def test_sf_wait_refuses_bad_arguments(args: dict[str, Any]) -> None:
    d = Driver(make("guest1"))
    a = d.ask("sf_wait", CD, **args)
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST) and d.node.next_deadline() is None


def test_widen_stores_widen_json_and_changes_the_effective_timeout() -> None:
    disk = replace(GEN3.initial_disk("guest1"), widen={G3: {"seconds": 60.0, "until": 500.0, "hypervisor": True}})
    d = Driver(make("guest1", topo=GEN3, disk=disk))
    d.join()
    d.run_until(2.0, beats=[G2, G3])
    op_id, out = d.request("widen", CD, peers=[G1, G2, "cfnobody"], seconds=600, lease=100)
    assert out[0] == Store(
        "widen",
        {
            G2: {"seconds": 600.0, "until": 102.0, "hypervisor": False},
            G3: {"seconds": 60.0, "until": 500.0, "hypervisor": True},
        },
    )
    assert out[-1] == Answer(op_id, True)
    assert "CF: cfguest1: failure detection of cfguest2 widened to 600 s for 100 s" in texts(out, tag="CF")
    peers = d.value("cf_sample", CD)["peers"]
    assert (peers[G2]["timeout"], peers[G2]["widened"]) == (600.0, True)
    assert (peers[G3]["timeout"], peers[G3]["widened"]) == (60.0, True)
    # cfguest2 can now be silent for a long time
    d.run_until(90.0, beats=[G3])
    assert d.node.cf.view()[G2] is UP
    # narrow one: widen.json keeps the other, cfguest2 is back to CLUSTER_TIMEOUT from now
    op_id, out = d.request("narrow", CD, peers=[G2])
    assert out[0] == Store("widen", {G3: {"seconds": 60.0, "until": 500.0, "hypervisor": True}})
    peers = d.value("cf_sample", CD)["peers"]
    assert (peers[G2]["timeout"], peers[G2]["widened"]) == (10.0, False)
    d.run_until(99.9, beats=[G3])
    assert d.node.cf.view()[G2] is UP
    d.run_until(100.1, beats=[G3])
    assert d.node.cf.view()[G2] is LEFT
    # narrow every one
    op_id, out = d.request("narrow", CD)
    assert out[0] == Store("widen", {}) and d.node.disk.widen == {}
    assert d.value("cf_sample", CD)["peers"][G3]["timeout"] == 10.0


@pytest.mark.parametrize("peers", [None, []])
def test_narrow_without_peers_narrows_all(peers: list[str] | None) -> None:
    d, _ = joined("guest1")
    d.ask("widen", CD, peers=[G2], seconds=600, lease=100, hypervisor=True)
    args = {} if peers is None else {"peers": peers}
    _, out = d.request("narrow", CD, **args)
    assert out[0] == Store("widen", {}) and d.node.cf.widened() == {}


@pytest.mark.parametrize(
    "args",
    [
        {"peers": G2, "seconds": 600, "lease": 100},
        {"peers": [G2, 3], "seconds": 600, "lease": 100},
        {"seconds": 600, "lease": 100},
        {"peers": [G2], "seconds": 0, "lease": 100},
        {"peers": [G2], "seconds": 600, "lease": -1},
        {"peers": [G2], "seconds": 600},
        {"peers": [G2], "seconds": 600, "lease": math.inf},
        {"peers": [G2], "seconds": 600, "lease": 100, "hypervisor": "yes"},
    ],
)
def test_widen_refuses_bad_arguments(args: dict[str, Any]) -> None:
    d, _ = joined("guest1")
    a = d.ask("widen", CD, **args)
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST)
    assert d.node.disk.widen == {} and d.node.cf.widened() == {}


def test_narrow_refuses_a_string() -> None:
    a = joined("guest1")[0].ask("narrow", CD, peers=G2)
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST)


@pytest.mark.parametrize(
    ("saved", "kept", "timeout", "widened"),
    [
        ({G2: {"seconds": 60.0, "until": 100.0, "hypervisor": False}}, True, 60.0, (60.0, 100.0, False)),
        ({G2: {"seconds": 60.0, "until": 100.0, "hypervisor": True}}, True, 60.0, (60.0, 100.0, True)),
        ({G2: {"seconds": 60.0, "until": 40.0, "hypervisor": True}}, True, 10.0, (60.0, None, True)),
        ({G2: {"seconds": 60.0, "until": 40.0, "hypervisor": False}}, False, 10.0, None),
        ({G2: {"seconds": 60.0, "until": 50.0, "hypervisor": False}}, False, 10.0, None),  # ends at the start
        ({"cfnobody": {"seconds": 60.0, "until": 100.0, "hypervisor": True}}, False, 10.0, None),
        ({G1: {"seconds": 60.0, "until": 100.0, "hypervisor": True}}, False, 10.0, None),  # the node itself
    ],
)
def test_widen_json_is_reapplied_at_start(
    saved: dict[str, dict[str, Any]], kept: bool, timeout: float, widened: tuple[float, float | None, bool] | None
) -> None:
    disk = replace(TOPO.initial_disk("guest1"), widen=saved)
    d = Driver(make("guest1", disk=disk))
    out = d.feed(NodeStarted(), at=50.0)
    assert of(out, Store) == ([] if kept else [Store("widen", {})])
    assert d.node.disk.widen == (saved if kept else {})
    assert d.node.cf.effective_timeout(G2, 50.0) == timeout
    assert d.node.cf.widened() == ({} if widened is None else {G2: widened})
    assert of(out, Send) == [Send(G2, JoinRequest(1))]  # and it boots after re-applying


def test_widen_json_keeps_the_running_and_drops_the_rest() -> None:
    saved = {
        G2: {"seconds": 600.0, "until": 100.0, "hypervisor": False},
        G3: {"seconds": 600.0, "until": 10.0, "hypervisor": False},
    }
    disk = replace(GEN3.initial_disk("guest1"), widen=saved)
    d = Driver(make("guest1", topo=GEN3, disk=disk))
    out = d.feed(NodeStarted(), at=50.0)
    assert of(out, Store) == [Store("widen", {G2: saved[G2]})]


@pytest.mark.parametrize(
    ("op", "args", "file"),
    [
        ("cfset_r", {}, "timeout"),
        ("clsnmpsetup_l", {}, "sf"),
        ("sf_entry", {"node": G1}, "sf"),
        ("set_sf_entry", {}, "sf"),
        ("resolve", {"name": "x"}, "hosts"),
        ("sdtool", {"flag": "-r"}, "sf"),
        ("sdtool", {"flag": "r"}, "sf"),
        ("sdtool", {"flag": "-s"}, None),
        ("sdtool", {"flag": "-b"}, None),
        ("sdtool", {}, None),
        ("cfset_a", {}, None),
        ("cftool_n", {}, None),
        ("set_timeout", {"seconds": 5}, None),
        ("status", {}, None),
        ("bogus", {}, None),
    ],
)
def test_file_read(op: str, args: dict[str, Any], file: str | None) -> None:
    assert file_read(op, args) == file


def test_cfset_r_applies_the_timeout_read_from_the_file() -> None:
    d, _ = joined("guest1")
    op_id, out = d.request("cfset_r", file_timeout=20)
    assert out[-1] == Answer(op_id, True, 20)
    assert "CF: cfguest1: CLUSTER_TIMEOUT changed from 10 to 20 seconds" in texts(out, tag="CF")
    assert d.node.cf.timeout == 20 and d.value("cfset_a") == {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": "20"}
    # without a file value (or the same one) nothing changes
    assert d.ask("cfset_r").value == 20
    assert logs(d.effects[-1:]) == []
    assert d.value("cfset_r", file_timeout=20) == 20


@pytest.mark.parametrize("seconds", [0, -10])
def test_cfset_r_with_an_invalid_file_timeout_changes_nothing(seconds: int) -> None:
    d, _ = joined("guest1")
    a = d.ask("cfset_r", file_timeout=seconds)
    assert not a.ok
    assert d.node.cf.timeout == 10
    assert d.node.disk.timeout == 10
    assert d.value("cfset_a")["CLUSTER_TIMEOUT"] == "10"


FILE_SF = SfConfig(
    hosts=(SfHost(G1, 3), SfHost(G2, 4)),
    xscf=(
        XscfEntry(G1, 2, "guest1", "10.0.0.1", "10.0.1.1"),
        XscfEntry(G2, 3, "guest2", "10.0.0.2", "10.0.1.2", device="dev2"),
    ),
)


def test_operations_use_the_sf_files_the_driver_read() -> None:
    d = settled("guest1")
    assert d.value("clsnmpsetup_l", file_sf=FILE_SF) == [asdict(e) for e in FILE_SF.xscf]
    assert d.value("clsnmpsetup_l") == [asdict(e) for e in TOPO.initial_disk("guest1").sf_config.xscf]
    assert d.value("sf_entry", CD, node=G2, file_sf=FILE_SF) == {
        "cf_name": G2,
        "ppar_id": 3,
        "domain": "guest2",
        "lan0": "10.0.0.2",
        "lan1": "10.0.1.2",
        "user": "xuser",
        "connection": "ssh",
    }
    assert d.value("sf_entry", node="cfnobody") is None
    # set_sf_entry changes the file's configuration, not the one in memory
    d.value("set_sf_entry", CD, entry=entry_args(M10_3), weight=5, file_sf=FILE_SF)
    assert d.node.disk.sf_config == FILE_SF.with_entry(M10_3, weight=5)
    # sdtool -r reloads SF from the files
    gen = d.node.sf_generation
    op_id, out = d.request("sdtool", flag="-r", file_sf=FILE_SF)
    assert out[-1] == Answer(op_id, True) and d.node.sf_generation == gen + 1
    assert d.node.disk.sf_config == FILE_SF and d.node.sf is not None and d.node.sf.config == FILE_SF
    assert {r.entry for r in runs(out, "init", G1)} == {FILE_SF.entry(G1)}


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("cfset_r", {}),
        ("clsnmpsetup_l", {}),
        ("sdtool", {"flag": "-r"}),
        ("resolve", {"name": "guest1"}),
        ("sf_entry", {"node": G1}),
        ("set_sf_entry", {"entry": entry_args(M10_3), "weight": 1}),
    ],
)
def test_a_file_that_does_not_parse_is_bad_config(op: str, args: dict[str, Any]) -> None:
    host = "primary1" if op == "resolve" else "guest1"
    d = settled(host)
    caller = CD if OPERATIONS[op] == frozenset({REMOTE}) else None
    before = d.node.disk.snapshot()
    op_id, out = d.request(op, caller, **args, file_error="rcsd.cfg line 2: bad weight")
    assert out == [Answer(op_id, False, None, codes.BAD_CONFIG, "rcsd.cfg line 2: bad weight")]
    assert d.node.disk == before


@pytest.mark.parametrize(
    ("held", "node", "code", "value"),
    [
        (LEFT, G2, "", "DOWN"),
        (UP, G2, "", "UP"),  # only a LEFTCLUSTER node can be marked down
        (UP, G1, codes.BAD_REQUEST, None),  # the node itself
        (UP, "cfnobody", codes.BAD_REQUEST, None),
    ],
)
def test_cftool_k(held: NodeState, node: str, code: str, value: str | None) -> None:
    d, _ = joined("guest1", disk=replace(TOPO.initial_disk("guest1"), sf_disabled=True))
    d.run_until(12.0, beats=[G2] if held is UP else [])
    assert d.node.cf.view()[G2] is held
    _, out = d.request("cftool_k", node=node)
    assert out[-1].code == code and out[-1].value == value
    if value == "DOWN":
        assert states(out) == [(G2, DOWN)]
        assert "CF: cfguest2: DOWN (marked down with cftool -k)" in texts(out, tag="CF")
        assert d.value("cftool_n") == [[G1, 1, "UP"], [G2, 2, "DOWN"]]
    else:
        assert states(out) == []


def test_local_queries() -> None:
    d = settled("guest1")
    assert d.value("cftool_n") == [[G1, 1, "UP"], [G2, 2, "UP"]]
    assert d.value("cfset_a") == {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": "10"}
    s = d.value("sdtool", flag="-s")
    assert s["running"] is True and len(s["rows"]) == 8
    assert d.value("hvdisp") == [
        ["app1", "userApplication", "cfguest1RMS", "Online"],
        ["cfguest1RMS", "SysNode", "", "Online"],
        ["cfguest2RMS", "SysNode", "", "Online"],
    ]
    assert d.value("status") == {
        "host": "guest1",
        "cf": G1,
        "local_state": "UP",
        "view": {G1: "UP", G2: "UP"},
        "timeout": 10,
        "sf": "running",
        "services": "started",
        "apps": {"app1": G1},
        "server": "m10-1",
        "window": False,
    }
    assert d.value("node_status", CD) == {"timeout": 10, "sf": "running", "record": None, "window": False}
    sample = d.value("cf_sample")
    assert sample["state"] == "UP" and sample["sf"] == "running" and sample["rms_busy"] is False
    assert sample["peers"] == {G2: {"state": "UP", "gap": 0.5, "timeout": 10.0, "widened": False}}
    a = d.ask("sdtool", flag="-x")
    assert (a.ok, a.code) == (False, codes.BAD_REQUEST)


def test_sdtool_e_and_b_on_the_local_channel() -> None:
    d = settled("guest1")
    op_id, out = d.request("sdtool", flag="-e")
    assert out[0] == Store("sf_disabled", True) and out[-1] == Answer(op_id, True) and not d.node.sf_running
    assert d.value("sdtool", flag="s") == {
        "running": False,
        "rows": [[h, a, "Idle", "Unknown", "Unknown", "Unknown"] for h in (G1, G2) for a in XSCF_AGENTS],
    }
    op_id, out = d.request("sdtool", flag="b")
    assert out[0] == Store("sf_disabled", False) and d.node.sf_running


def test_sf_test_begins_a_generation() -> None:
    d = settled("guest1")
    gen = d.node.sf_generation
    op_id, out = d.request("sf_test", CD)
    assert out[-1] == Answer(op_id, True) and d.node.sf_generation == gen + 1
    assert len(runs(out, "test")) == 8 and {e.generation for e in of(out, RunShutdownAgent)} == {gen + 1}


def test_min_detection_floors_the_effective_timeout() -> None:
    d, _ = joined("guest1", tuning=NodeTuning(min_detection=30.0))
    assert d.value("cf_sample", CD)["peers"][G2]["timeout"] == 30.0
    d.run_until(29.0)
    assert d.node.cf.view()[G2] is UP
    d.run_until(30.2)
    assert d.node.cf.view()[G2] is LEFT


def test_xscf_check_is_answered_when_checked() -> None:
    d = Driver(make("guest2"))
    op_id, out = d.request("xscf_check", CD, lan0="127.20.30.73", lan1="127.20.40.73", ppar=1)
    assert out == [CheckXscf(op_id, "127.20.30.73", "127.20.40.73", 1, "guest2")]
    assert d.feed(XscfChecked(op_id + 1, True, ())) == []  # not asked
    out = d.feed(XscfChecked(op_id, False, (("lan0", True), ("lan1", False))))
    assert out == [Answer(op_id, True, {"known_host": False, "snmp": {"lan0": True, "lan1": False}})]
    assert d.feed(XscfChecked(op_id, True, ())) == []  # answered once


@pytest.mark.parametrize(
    "args",
    [
        {"lan0": "1.2.3.4"},
        {"lan0": 1, "lan1": "1.2.3.4"},
        {"lan0": "1.2.3.4", "lan1": "1.2.3.5", "ppar": "0"},
        {"lan0": "1.2.3.4", "lan1": "1.2.3.5", "ppar": True},
    ],
)
def test_xscf_check_refuses_bad_arguments(args: dict[str, Any]) -> None:
    d = Driver(make("guest2"))
    op_id, out = d.request("xscf_check", CD, **args)
    assert [(a.op_id, a.code) for a in of(out, Answer)] == [(op_id, codes.BAD_REQUEST)] and len(out) == 1


@pytest.mark.parametrize("caller", [None, CD])
def test_control_domain_operations(caller: str | None) -> None:
    d = Driver(make("primary3"))
    assert d.value("cd_info", caller) == {
        "host": "primary3",
        "server": "m10-3",
        "ppar": 1,
        "lan0": "127.20.30.73",
        "lan1": "127.20.40.73",
        "sf_weight": 2,
        "user": "xuser",
        "connection": "ssh",
    }
    assert d.value("guest_nodes", caller, domain="guest2") == {
        "node": G2,
        "nodes": [G1, G2],
        "domains": {G1: "guest1", G2: "guest2"},
    }
    a = d.ask("guest_nodes", caller, domain="primary1")
    assert (a.ok, a.code, a.error) == (False, codes.NOT_A_CLUSTER_DOMAIN, messages.not_a_cluster_domain("primary1"))


@pytest.mark.parametrize(
    ("name", "file_hosts", "address"),
    [
        ("guest2", None, "127.40.0.2"),
        ("primary3", None, "127.30.0.3"),
        ("10.9.8.7", None, "10.9.8.7"),
        ("::1", None, "::1"),
        ("nowhere", None, None),
        ("target", {"target": "127.1.1.1"}, "127.1.1.1"),
        ("guest2", {"target": "127.1.1.1"}, None),  # the file is what counts
        ("10.9.8.7", {}, "10.9.8.7"),
    ],
)
def test_resolve(name: str, file_hosts: dict[str, str] | None, address: str | None) -> None:
    d = Driver(make("primary1"))
    args: dict[str, Any] = {"name": name} if file_hosts is None else {"name": name, "file_hosts": file_hosts}
    assert d.value("resolve", CD, **args) == address


@pytest.mark.parametrize(
    ("op", "args"), [("guest_nodes", {"domain": "guest1"}), ("resolve", {"name": "guest1"}), ("cd_info", {})]
)
@pytest.mark.parametrize("caller", [None, CD])
def test_control_domain_operations_are_not_available_on_a_guest(
    op: str, args: dict[str, Any], caller: str | None
) -> None:
    a = Driver(make("guest1")).ask(op, caller, **args)
    assert (a.ok, a.code, a.error) == (False, codes.NOT_AVAILABLE, "guest1 is not a control domain")


@pytest.mark.parametrize(
    ("op", "caller", "args"),
    [
        ("sdtool", None, {"flag": "-s"}),
        ("clsnmpsetup_l", None, {}),
        ("hvdisp", None, {}),
        ("sf_stop", CD, {}),
        ("sf_start", CD, {}),
        ("sf_test", CD, {}),
        ("sf_entry", CD, {"node": CP1}),
        ("sf_wait", CD, {"seconds": 5}),
        ("set_sf_entry", CD, {"entry": entry_args(M10_3), "weight": 1}),
    ],
)
def test_sf_operations_are_not_available_on_a_control_domain(op: str, caller: str | None, args: dict[str, Any]) -> None:
    d, _ = joined("primary1")
    a = d.ask(op, caller, **args)
    assert (a.ok, a.code, a.error) == (False, codes.NOT_AVAILABLE, messages.no_sf_here("primary1"))
    assert d.node.disk.sf_disabled is False


# the channels of every operation (node_ops.OPERATIONS), written out
LOCAL_ONLY = {"cftool_n", "cftool_k", "cfset_a", "cfset_r", "sdtool", "clsnmpsetup_l", "hvdisp", "status"}
REMOTE_ONLY = {
    "node_status",
    "record_timeout",
    "set_timeout",
    "window",
    "sf_stop",
    "sf_start",
    "set_sf_entry",
    "sf_wait",
    "clear_record",
}
BOTH = {
    "guest_nodes",
    "resolve",
    "cd_info",
    "cf_sample",
    "widen",
    "narrow",
    "clock_align",
    "xscf_check",
    "sf_test",
    "sf_entry",
}


def test_operation_channels() -> None:
    assert OPERATIONS == {
        **dict.fromkeys(LOCAL_ONLY, frozenset({LOCAL})),
        **dict.fromkeys(REMOTE_ONLY, frozenset({REMOTE})),
        **dict.fromkeys(BOTH, frozenset({LOCAL, REMOTE})),
    }


@pytest.mark.parametrize(
    ("op", "caller"),
    [
        *((op, CD) for op in sorted(LOCAL_ONLY)),
        *((op, None) for op in sorted(REMOTE_ONLY)),
        ("bogus", None),
        ("bogus", CD),
        ("_operation", None),
        ("", CD),
    ],
)
def test_an_operation_on_the_wrong_channel_is_unknown(op: str, caller: str | None) -> None:
    d, _ = joined("guest1")
    before = d.node.disk.snapshot()
    op_id, out = d.request(op, caller)
    assert out == [Answer(op_id, False, None, codes.UNKNOWN_OP, f"nodeagent guest1: unknown operation {op!r}")]
    assert d.node.disk == before


@pytest.mark.parametrize("caller", ["guest2", "cfprimary1", "m10-1", ""])
@pytest.mark.parametrize("op", ["cd_info", "set_timeout", "sf_stop", "cftool_n", "bogus"])
def test_a_remote_caller_that_is_not_a_control_domain_is_forbidden(caller: str, op: str) -> None:
    d, _ = joined("primary2")
    op_id, out = d.request(op, caller, seconds=600)
    assert len(out) == 1 and out[0].op_id == op_id and out[0].code == codes.FORBIDDEN
    assert out[0].error.startswith(f"{caller or 'a client without a name'} is not a control domain")
    assert d.node.disk.timeout == 10 and not d.node.disk.sf_disabled


def _good_args(host: str) -> dict[str, dict[str, Any]]:
    me = TOPO.node_spec(host)
    return {
        "cftool_k": {"node": me.peers[0]},
        "sdtool": {"flag": "-s"},
        "set_timeout": {"seconds": 600},
        "window": {"open": True},
        "set_sf_entry": {"entry": entry_args(M10_3), "weight": 1},
        "sf_wait": {"seconds": 5, "node": G2},
        "guest_nodes": {"domain": "guest1"},
        "resolve": {"name": "guest1"},
        "widen": {"peers": list(me.peers), "seconds": 600, "lease": 60},
        "xscf_check": {"lan0": "127.0.0.1", "lan1": "127.0.0.2"},
        "sf_entry": {"node": G2},
    }


@pytest.mark.parametrize("host", ["guest1", "primary1"])
@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_every_operation_request_gets_exactly_one_answer(host: str, op: str) -> None:
    for caller in (None, CD, "guest2"):
        for args in ({}, _good_args(host).get(op, {})):
            d, _ = joined(host)
            op_id, _ = d.request(op, caller, **args)
            # whatever is still to come: deadlines, and the XSCF check
            for check in of(d.effects, CheckXscf):
                d.feed(XscfChecked(check.op_id, True, (("lan0", True), ("lan1", True))))
            d.run_until(30.0, beats=d.node.spec.peers)
            assert len(d.answers(op_id)) == 1, (op, caller, args, d.answers(op_id))
            assert sum(1 for a in of(d.effects, Answer)) == 1


# ==== 6. what is ignored ========================================================================
@pytest.mark.parametrize("sender", ["cfprimary1", G1, "stranger", ""])
@pytest.mark.parametrize(
    "message",
    [
        JoinRequest(3),
        JoinAnswer(True, "", 3),
        JoinAnswer(False, "no", 3),
        Heartbeat(PEER_INC, EPOCH + 99.0, 1.0),
        Elimination(G2),
        AppState("app1", G2, True),
    ],
)
def test_messages_from_a_non_peer_are_ignored(sender: str, message: Any) -> None:
    d = Driver(make("guest1"))
    d.feed(NodeStarted())
    assert d.feed(MessageReceived(sender, message), at=1.0) == []
    d.feed(MessageReceived(G2, JoinAnswer(True, "", PEER_INC)), at=1.5)
    d.run_until(5.0, beats=[G2])
    assert d.feed(MessageReceived(sender, message)) == []
    assert d.node.cf.view() == {G1: UP, G2: UP}
    assert d.node.rms is not None and d.node.rms.placement() == {"app1": G1}
    assert d.value("cf_sample", CD)["clock_diff"] == {G2: pytest.approx(0.0)}


def test_a_spurious_tick_produces_nothing() -> None:
    d = Driver(make("guest1"))
    assert d.feed(TICK, at=1.0) == []  # not started: nothing is due
    d.feed(NodeStarted())
    assert d.feed(TICK, at=2.9) == []  # the join window closes at 4.0
    assert d.node.cf.local_state is NodeState.COMINGUP
    d.feed(MessageReceived(G2, JoinAnswer(True, "", PEER_INC)), at=3.0)
    due = d.node.next_deadline()
    assert due == 4.0
    assert d.feed(TICK, at=3.5) == []
    assert d.feed(TICK, at=due) != []
    assert d.feed(TICK) == []  # the same time again: nothing is due any more


def test_a_tick_wakes_only_the_machines_that_are_due() -> None:
    d, _ = joined("guest1")  # CF beats at 1.1, 2.1, ...; RMS settles at 3.1; SF agent timeouts at 20.1
    out = d.feed(TICK, at=1.1)
    assert out == [Broadcast(Heartbeat(1, EPOCH + 1.1, 1.1))]
    d.run_until(3.0, beats=[G2])
    out = d.feed(TICK, at=3.1)  # CF and RMS are due, SF is not
    assert of(out, rmsmod.BringAppOnline) == [rmsmod.BringAppOnline("app1")] and of(out, Broadcast)
    assert logs(out, tag="SMAWsf") == [] and runs(out) == []
    out = d.run_until(20.0, beats=[G2])
    assert logs(out, tag="SMAWsf") == []
    out = d.feed(TICK, at=20.1)  # the init runs time out
    assert "init cfguest1: failed: timeout after 20 s" in texts(out, tag="SMAWsf", dest=G0P)
    assert len(runs(out, "test")) == 8


class _TickSpy:
    """Stands in for one machine of the node and records the times it was ticked."""

    def __init__(self, machine: Any) -> None:
        self._machine = machine
        self.ticked: list[float] = []

    def handle(self, now: float, event: Event) -> Any:
        if type(event) is Ticked:
            self.ticked.append(now)
        return self._machine.handle(now, event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._machine, name)


def test_a_tick_is_passed_only_to_the_machines_that_are_due() -> None:
    d, _ = joined("guest1")
    n = d.node
    cf, sf, rms = _TickSpy(n.cf), _TickSpy(n.sf), _TickSpy(n.rms)
    n.cf, n.sf, n.rms = cf, sf, rms  # type: ignore[assignment]
    d.feed(TICK, at=0.5)  # nothing due
    d.feed(TICK, at=1.1)  # CF (heartbeat)
    d.run_until(3.0, beats=[G2])
    d.feed(TICK, at=3.1)  # CF and RMS (settle)
    d.run_until(20.0, beats=[G2])
    d.feed(TICK, at=20.1)  # CF and SF (agent timeouts)
    assert cf.ticked == pytest.approx([float(t) + 0.1 for t in range(1, 21)])
    assert rms.ticked == pytest.approx([3.1])
    assert sf.ticked == pytest.approx([20.1])


def test_next_deadline_is_the_earliest_of_the_machines() -> None:
    d, _ = joined("guest1")
    assert d.node.next_deadline() == pytest.approx(1.1)  # the CF heartbeat
    d.ask("sf_stop", CD)
    assert d.node.next_deadline() == pytest.approx(1.1)
    d.run_until(100.0, beats=[G2])
    assert d.node.next_deadline() == pytest.approx(100.1)


def test_an_unknown_event_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        make("guest1").handle(0.0, Event())


def test_an_agent_the_node_does_not_have_fails_at_once_instead_of_reaching_a_driver() -> None:
    """rcsd.cfg may name any agent; the drivers only know the four XSCF agents."""
    cfg = TOPO.initial_disk("guest1").sf_config
    odd = SfConfig(tuple(replace(h, agents=(AgentRef("SA_nosuch"), *h.agents[1:])) for h in cfg.hosts), cfg.xscf)
    d, out = joined("guest1", disk=replace(TOPO.initial_disk("guest1"), sf_config=odd))
    assert all(r.run.agent != "SA_nosuch" for r in of(out, RunShutdownAgent))
    rows = {(r[0], r[1]): r for r in d.node.rows()}
    assert rows[(G1, "SA_nosuch")][5] == "InitFailed"
    assert any("SA_nosuch is not a shutdown agent" in w.text for w in of(out, WriteLog))


def test_set_sf_entry_for_a_host_not_in_the_files_is_refused() -> None:
    d = settled("guest1")
    e = {"cf_name": "cfnobody", "ppar_id": 0, "domain": "nobody", "lan0": "127.0.0.9", "lan1": "127.0.0.10"}
    a = d.ask("set_sf_entry", CD, entry=e, weight=1)
    assert (a.ok, a.code) == (False, "BAD_REQUEST") and "cfnobody" in a.error
    assert not of(d.effects[-1:], Store)
