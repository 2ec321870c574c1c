"""The core rules the chaos campaign (clovm sim chaos) made necessary, one machine at a time.

Each test names the seed that found the bug; each fails without its fix.
"""

from __future__ import annotations

from clovm.core import fencing as fen
from clovm.core import ldm as ldmmod
from clovm.core import rms as rmsmod
from clovm.core import sp as spmod
from clovm.core._state import DomainState, NodeState
from clovm.core.base import Log, Ticked
from clovm.core.membership import (
    AnnounceNodeState,
    DomainStatusReported,
    HeartbeatReceived,
    JoinAnswerReceived,
    JoinRequestReceived,
    Membership,
    NodeBooted,
    QueryDomainStatus,
    SendJoinAnswer,
    SendJoinRequest,
)
from clovm.core.sfconfig import AgentRef, SfConfig, SfHost, XscfEntry

UP, LEFT, DOWN = NodeState.UP, NodeState.LEFTCLUSTER, NodeState.DOWN
A, B, C = "cfguest1", "cfguest2", "cfguest3"


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


# ---- CF: a peer that does not answer a join is not known to be down (seeds 5, 279, 1304) ----------
def booted_alone(peers=(B,)) -> tuple[Membership, list]:
    m = Membership(A, list(peers), incarnation=2)
    m.handle(0.0, NodeBooted())
    return m, m.handle(3.0, Ticked())  # the join window closes without an answer


def test_a_silent_peer_is_asked_about_and_asked_to_join_again() -> None:
    m, out = booted_alone()
    assert m.local_state is UP and m.view()[B] is DOWN  # (as before: no answer, held DOWN)
    assert QueryDomainStatus(B) in out
    again = m.handle(6.0, Ticked())
    assert SendJoinRequest(B, 2) in again


def test_a_silent_peer_whose_domain_runs_is_leftcluster_unseen_and_joins_when_it_answers() -> None:
    m, _ = booted_alone()
    out = m.handle(3.1, DomainStatusReported(B, False))
    assert m.view()[B] is LEFT and AnnounceNodeState(B, LEFT, True) in out
    # the interconnect is back: the established node accepts our retried request
    out = m.handle(9.0, JoinAnswerReceived(B, True, "", 7))
    assert m.view()[B] is UP and of(out, AnnounceNodeState) == [AnnounceNodeState(B, UP)]


def test_a_silent_leftcluster_peer_that_asks_to_join_is_accepted() -> None:
    m, _ = booted_alone()
    m.handle(3.1, DomainStatusReported(B, False))
    out = m.handle(5.0, JoinRequestReceived(B, 4))
    assert SendJoinAnswer(B, True, "", 2) in out and m.view()[B] is UP


def test_a_silent_peer_whose_domain_is_stopped_is_confirmed_down_and_left_alone() -> None:
    m, out = booted_alone()
    assert AnnounceNodeState(B, DOWN, True) in out  # held DOWN, not known to be down yet
    assert m.handle(3.1, DomainStatusReported(B, True)) == [AnnounceNodeState(B, DOWN)]
    assert m.view()[B] is DOWN
    assert not of(m.handle(30.0, Ticked()), SendJoinRequest)


def test_a_stalled_node_counts_no_silence_across_its_own_stall() -> None:
    m = Membership(A, [B], stall=2.5)
    m.handle(0.0, NodeBooted())
    m.handle(0.1, JoinAnswerReceived(B, True, "", 5))
    for t in range(1, 21):  # heartbeats and ticks every second
        m.handle(float(t), Ticked())
        m.handle(t + 0.5, HeartbeatReceived(B, 5))
    out = m.handle(30.0, Ticked())  # frozen from 20.5 to 30
    assert m.view()[B] is UP and any("did not run for" in e.text for e in of(out, Log))
    m2 = Membership(A, [B])  # the machine's default: off (a late tick is time that passed)
    m2.handle(0.0, NodeBooted())
    m2.handle(0.1, JoinAnswerReceived(B, True, "", 5))
    m2.handle(20.5, HeartbeatReceived(B, 5))
    m2.handle(30.6, Ticked())
    assert m2.view()[B] is LEFT


# ---- RMS: no initial placement while a node that may run the application is uncertain --------------
def rms(me: str = A) -> rmsmod.Rms:
    r = rmsmod.Rms(me, (A, B), (rmsmod.AppSpec("app1", (A, B)),), settle=3.0)
    r.handle(0.0, rmsmod.RmsStarted())
    return r


def test_no_initial_placement_while_a_node_of_the_list_is_leftcluster() -> None:
    r = rms()
    r.handle(0.1, rmsmod.PeerNodeStateChanged(B, LEFT))
    assert of(r.handle(3.0, Ticked()), rmsmod.BringAppOnline) == []
    # it comes UP: settle again (it announces what it runs), then place
    out = r.handle(10.0, rmsmod.PeerNodeStateChanged(B, UP))
    assert of(out, rmsmod.BringAppOnline) == [] and r.next_deadline() == 13.0
    r.handle(10.5, rmsmod.AppStateReported("app1", B, True))
    assert of(r.handle(13.0, Ticked()), rmsmod.BringAppOnline) == [] and r.placement() == {"app1": B}


def test_no_placement_while_a_silent_peer_is_not_confirmed_down() -> None:
    # seed 24239: both XSCF LANs of the other server down, a cut, a restart: the silent peer could
    # not be asked about, was held DOWN, and RMS brought app1 up a second time.
    r = rms()
    r.handle(0.1, rmsmod.PeerNodeStateChanged(B, DOWN, unseen=True))
    assert of(r.handle(3.0, Ticked()), rmsmod.BringAppOnline) == []
    assert of(r.handle(9.0, rmsmod.PeerNodeStateChanged(B, DOWN)), rmsmod.BringAppOnline) == [
        rmsmod.BringAppOnline("app1")
    ]


def test_what_an_unconfirmed_peer_says_it_runs_counts() -> None:
    # (seed 24239, after the fix above: the peer's announcement overtook its join answer, and was
    # dropped as "a report from a node we hold DOWN"; app1 came up twice when -u released the hold.)
    r = rms()
    r.handle(0.1, rmsmod.PeerNodeStateChanged(B, DOWN, unseen=True))
    r.handle(3.0, Ticked())
    r.handle(20.0, rmsmod.AppStateReported("app1", B, True))
    assert r.placement() == {"app1": B}
    assert of(r.handle(20.1, rmsmod.PeerNodeStateChanged(B, UP)), rmsmod.BringAppOnline) == []


def test_the_placement_waits_until_the_uncertain_node_is_down() -> None:
    r = rms()
    r.handle(0.1, rmsmod.PeerNodeStateChanged(B, LEFT))
    r.handle(3.0, Ticked())
    assert of(r.handle(20.0, rmsmod.PeerNodeStateChanged(B, DOWN)), rmsmod.BringAppOnline) == [
        rmsmod.BringAppOnline("app1")
    ]


# ---- SF ------------------------------------------------------------------------------------------------
def sf_config(*nodes: str) -> SfConfig:
    agents = tuple(AgentRef(a, 20) for a in ("SA_xscfsnmpg0p", "SA_xscfsnmpg1p", "SA_xscfsnmpg0r", "SA_xscfsnmpg1r"))
    hosts = tuple(SfHost(n, 1, "", agents) for n in nodes)
    xscf = tuple(XscfEntry(n, 0, n.replace("cf", ""), "10.0.0.1", "10.0.0.2") for n in nodes)
    return SfConfig(hosts, xscf)


def steady(me: str, nodes: tuple[str, ...], **kw) -> fen.ShutdownFacility:
    sf = fen.ShutdownFacility(me, sf_config(*nodes), **kw)
    todo = of(sf.handle(0.0, fen.SfStartRequested()), fen.RunAgent)
    while todo:  # every init, then the test each init starts
        todo = [t for r in todo for t in of(sf.handle(0.1, fen.AgentFinished(r.req_id, True, "")), fen.RunAgent)]
    for n in nodes:
        if n != me:
            sf.handle(1.0, fen.NodeStateChanged(n, UP))
    return sf


def kills(effects) -> list[str]:
    return [r.host for r in of(effects, fen.RunAgent) if r.action == "kill"]


def test_a_split_of_three_is_decided_with_every_node_that_left() -> None:
    # seed 279: cfguest1 alone against cfguest2+3; cfguest3 was reported LEFTCLUSTER first. Deciding
    # at once counted cfguest2 on cfguest1's side, and both sides won.
    sf = steady(A, (A, B, C), split_settle=2.0)
    assert kills(sf.handle(10.0, fen.NodeStateChanged(C, LEFT))) == []
    assert kills(sf.handle(10.2, fen.NodeStateChanged(B, LEFT))) == []
    out = sf.handle(12.0, Ticked())
    assert kills(out) == [] and any("other side survives" in e.text for e in of(out, Log))


def test_an_unseen_node_is_never_killed() -> None:
    # seeds 279, 416: a node that starts while the interconnect is cut sees the healthy cluster
    # LEFTCLUSTER (it never answered): killing it, even as the heavier side, takes out a healthy node.
    sf = steady(A, (A, B))
    assert kills(sf.handle(10.0, fen.NodeStateChanged(B, LEFT, unseen=True))) == []
    assert kills(sf.handle(100.0, Ticked())) == []


def test_a_kill_that_failed_everywhere_is_tried_again() -> None:
    # seed 3703: every agent of an SF entry naming the XSCF of the server the node had left failed;
    # the node stayed LEFTCLUSTER for good, even once -u had corrected the entry.
    sf = steady(A, (A, B), kill_retry=30.0)
    out = sf.handle(10.0, fen.NodeStateChanged(B, LEFT))
    for _ in range(4):
        (run,) = of(out, fen.RunAgent)
        out = sf.handle(11.0, fen.AgentFinished(run.req_id, False, "no longer in PPAR-ID 2"))
    assert kills(out) == [] and sf.next_deadline() == 41.0
    assert kills(sf.handle(41.0, Ticked())) == [B]


# ---- XSCF: a domain that migrated away is not "stopped" (seeds 300, 3703) --------------------------------
def test_a_domain_the_hypervisor_no_longer_holds_is_unknown_not_stopped() -> None:
    x = spmod.Xscf("m10-2", "10.0.0.1", "10.0.0.2", [0])
    x.handle(0.0, spmod.SpconfigSaved(0, frozenset({"guest2"})))
    x.handle(0.0, spmod.DomainsRunningReported(0, frozenset(), frozenset()))  # migrated away
    (status,) = x.handle(1.0, spmod.DomainStatusRequested(1, "10.0.0.1", 0, "guest2"))
    assert status.status == spmod.SpDomainStatus.UNKNOWN
    (kill,) = x.handle(1.0, spmod.DomainPanicRequested(2, "10.0.0.1", 0, "guest2"))
    assert not kill.ok  # not "already stopped": that would count as a kill while it runs elsewhere
    x.handle(2.0, spmod.DomainsRunningReported(0, frozenset(), frozenset({"guest2"})))  # bound here
    (status,) = x.handle(3.0, spmod.DomainStatusRequested(3, "10.0.0.1", 0, "guest2"))
    assert status.status == spmod.SpDomainStatus.STOPPED


# ---- ldmd: rebuilt from what persists after a restart --------------------------------------------------
def test_a_restarted_ldmd_adopts_and_resumes_running_domains_and_keeps_the_sp_store() -> None:
    old = ldmmod.Ldmd("primary2", 0, "m10-2")
    old.handle(0.0, ldmmod.CommandReceived(1, ("add-spconfig", "config1")))
    found = [
        ldmmod.FoundDomain("guest2", 8192, 8, 100.0, alive=True),
        ldmmod.FoundDomain("guest9", 8192, 8, 100.0, alive=False),
    ]
    d, out = ldmmod.Ldmd.restarted("primary2", 0, "m10-2", found, old.sp_store(), 50.0)
    assert ldmmod.ResumeDomainProcess("guest2") in out  # a suspend the crash interrupted ends
    assert d.domain("guest2").state is DomainState.ACTIVE and d.domain("guest9").state is DomainState.BOUND
    assert not of(out, ldmmod.StartDomainProcess)  # a restart never boots a domain
    assert d.spconfig_names() == ("factory-default", "config1") and d.migration("guest2") is None
    assert d.running() == frozenset({"guest2"})
