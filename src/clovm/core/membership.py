"""CF cluster membership as a sans-IO machine (one :class:`Membership` per cluster node).

This module holds the machine: the view, heartbeats and failure detection, the
dispatch of events and the deadlines. :class:`~clovm.core.membership_join.JoinProtocol`
(``core/membership_join.py``: booting, answering join requests, closing the join window) and
:class:`~clovm.core.membership_tuning.DetectionTuning` (``core/membership_tuning.py``:
CLUSTER_TIMEOUT changes, the migration window, widening leases, stalls) are mixed into it; its
events and effects are in ``core/membership_io.py``, and every one of them is importable from here.

Theory of operation
-------------------
The machine keeps the node's *view*: the CF state of every peer (UP, LEFTCLUSTER, DOWN; a peer
never seen counts as DOWN) plus the local state (COMINGUP, UP, INVALID). Every state change goes
through ``step(MEMBERSHIP, ...)`` and is announced with :class:`AnnounceNodeState`.

Joining. ``NodeBooted`` sends a join request to every peer and opens a join window of
``join_timeout`` seconds. A peer accepts iff the ``joined`` transition is allowed from the state it
holds the joiner in (only DOWN), marks the joiner UP and counts the request as its first
heartbeat; a peer that still holds the joiner UP or LEFTCLUSTER refuses and says so. Answers are
counted until every peer has answered or the window closes; then any refusal makes the local node
INVALID (:class:`RefuseClusterServices`, and a syslog line naming the refusers and the documented
recovery), otherwise it is UP (:class:`StartClusterServices`). Peers that did not answer stay DOWN.
An INVALID node takes no further part: it ignores everything and has no deadline.

Silent peers. A peer that did not answer is *silent*: no answer is no proof that it is down (the
interconnect may be cut while it runs, with the applications). So the node asks the hypervisor
side about it (:class:`QueryDomainStatus`, at once and every ``recheck_interval``) and asks it to
join again every ``join_timeout`` seconds. A stopped domain confirms DOWN (no more questions); a
running one makes the peer LEFTCLUSTER, announced as *unseen* (its state is uncertain: RMS places
no application it could be running, and SF does not kill it — it may be the surviving cluster,
which does not see this node at all); a silent LEFTCLUSTER peer whose domain is found stopped
later is DOWN. Until the hypervisor has answered, a silent peer is held DOWN but announced as
DOWN *unseen* (RMS treats it as uncertain too); a confirmation announces it DOWN again. A silent peer that accepts one of our join requests, or asks to join itself, is UP
(a silent LEFTCLUSTER one too: we never heard from it, so it cannot be a restart of a node we
held).

Monitoring. While UP the node broadcasts a heartbeat every ``heartbeat_interval``. A heartbeat
counts only from a peer that is UP in the view with the incarnation it joined with (a peer marked
UP by accepting *our* join has its incarnation learnt from its first heartbeat); anyone else must
join first. A peer silent for ``timeout / 2`` is *questionable* (a flag on UP, logged once per
silence); silent for ``timeout`` it becomes LEFTCLUSTER. Deadlines are always computed from the
current timeout, so ``TimeoutChanged`` (cfset -r) takes effect at once.

Widened detection (``clovm migrate --scoped``: some peers get their own timeout under a lease) and
stalls (this node did not run for a while) are described in ``core/membership_tuning.py``.

Leaving. LEFTCLUSTER ends in DOWN when the Shutdown Facility eliminates the node
(``NodeEliminated``) or the operator marks it down (``NodeMarkedDown``, cftool -k). While the
live-migration window is open (between clovmmigrate -p and -u, SF is stopped) the machine also
asks the hypervisor side about every LEFTCLUSTER peer (:class:`QueryDomainStatus`) on entry and
every ``recheck_interval``; a stopped domain makes it DOWN, a running one keeps it LEFTCLUSTER.
The same holds outside the window for a peer widened with ``hypervisor=True``.

Time floors. ``min_timeout`` is a lower bound of every effective timeout (CLUSTER_TIMEOUT and
widenings alike); ``timeout`` and the log lines keep the configured values. The simulator leaves it
at 0. The runtime sets it to one real second's worth of emulated time, so that a sped-up clock
(``--time-scale 60``: 10 s are 0.17 real s) does not turn a scheduling hiccup of a loaded machine
into a LEFTCLUSTER; at time scale 10 or less it changes nothing.

Time. ``handle`` first catches up on every deadline that is due at ``now`` (in case the driver
ticked late), then applies the event, then runs whatever the event made due. So after every call
``next_deadline()`` is strictly later than ``now`` (or None), and a heartbeat arriving at or after
a peer's LEFTCLUSTER deadline no longer saves it. Peers are visited in sorted order, so the
effects of one call come out in a stable order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

from ._state import MEMBERSHIP, NodeState, allowed, step
from .base import Effect, Event, Log, Ticked
from .defaults import (
    DEFAULT_CLUSTER_TIMEOUT,
    DOMAIN_RECHECK_INTERVAL,
    HEARTBEAT_INTERVAL,
    JOIN_TIMEOUT,
)
from .membership_io import (
    AnnounceNodeState,
    BroadcastHeartbeat,
    DetectionNarrowed,
    DetectionWidened,
    DomainStatusReported,
    HeartbeatReceived,
    JoinAnswerReceived,
    JoinRequestReceived,
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
from .membership_join import JoinProtocol
from .membership_tuning import DetectionTuning, _Widening

__all__ = [
    "AnnounceNodeState",
    "BroadcastHeartbeat",
    "DetectionNarrowed",
    "DetectionWidened",
    "DomainStatusReported",
    "HeartbeatReceived",
    "JoinAnswerReceived",
    "JoinRequestReceived",
    "Membership",
    "MigrationWindowChanged",
    "NodeBooted",
    "NodeEliminated",
    "NodeMarkedDown",
    "QueryDomainStatus",
    "RefuseClusterServices",
    "SendJoinAnswer",
    "SendJoinRequest",
    "StartClusterServices",
    "TimeoutChanged",
]

UP, LEFTCLUSTER = NodeState.UP, NodeState.LEFTCLUSTER


class Membership(JoinProtocol, DetectionTuning):
    def __init__(
        self,
        me: str,
        peers: Iterable[str],
        *,
        timeout: float = DEFAULT_CLUSTER_TIMEOUT,
        incarnation: int = 1,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        join_timeout: float = JOIN_TIMEOUT,
        recheck_interval: float = DOMAIN_RECHECK_INTERVAL,
        min_timeout: float = 0.0,
        stall: float = math.inf,
    ) -> None:
        if min(timeout, heartbeat_interval, join_timeout, recheck_interval) <= 0:
            raise ValueError("timeouts and intervals must be positive")
        if min_timeout < 0:
            raise ValueError("min_timeout must not be negative")
        self._me = me
        self._peers = tuple(sorted(set(peers) - {me}))
        self._timeout = float(timeout)
        self._min_timeout = float(min_timeout)
        if stall <= 0:
            raise ValueError("stall must be positive")
        self._stall = stall
        self._last_handled: float | None = None
        self._incarnation = incarnation
        self._heartbeat = BroadcastHeartbeat(incarnation)  # immutable: one instance serves every beat
        self._due: float | None = None  # cached next_deadline(), recomputed after every handle
        # A lower bound of every deadline but the next heartbeat (exact when last computed; only
        # heartbeats, which postpone deadlines, happen before it is computed again).
        self._other: float | None = None
        # Until when a heartbeat cannot change next_deadline(): the local node is UP, nothing is
        # due before the next heartbeat (the deadline), and every other deadline is later still.
        self._calm_until = -math.inf
        self._hb_interval = heartbeat_interval
        self._join_timeout = join_timeout
        self._recheck = recheck_interval
        self._local = NodeState.COMINGUP
        self._booted = False
        self._window_open = False
        self._view = dict.fromkeys(self._peers, NodeState.DOWN)
        # UP peers only: incarnation (None until its first heartbeat) and last heartbeat time.
        self._peer_inc: dict[str, int | None] = {}
        self._last_hb: dict[str, float] = {}
        self._questionable: set[str] = set()
        self._next_query: dict[str, float] = {}  # LEFTCLUSTER peers the hypervisor is asked about
        self._widened: dict[str, _Widening] = {}
        self._next_hb: float | None = None  # only while local UP
        self._join_deadline: float | None = None  # only while joining
        self._unanswered: set[str] = set()
        self._refusals: dict[str, str] = {}
        self._silent: set[str] = set()  # did not answer our join, not heard from since
        self._next_join: float | None = None  # next join request to the silent peers

    # ---- queries -----------------------------------------------------------------------------
    @property
    def local_state(self) -> NodeState:
        return self._local

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def window_open(self) -> bool:
        return self._window_open

    def view(self) -> dict[str, NodeState]:
        return {n: self._local if n == self._me else self._view[n] for n in sorted([self._me, *self._peers])}

    def questionable(self) -> frozenset[str]:
        return frozenset(self._questionable)

    def effective_timeout(self, peer: str, now: float) -> float:
        """The timeout that decides about ``peer`` at ``now``: widened while its lease runs."""
        w = self._widened.get(peer)
        if w is not None and w.until is not None and now < w.until:
            return max(w.seconds, self._min_timeout)
        return self._base()

    def is_widened(self, peer: str, now: float) -> bool:
        """Whether a widening lease of ``peer`` runs at ``now``."""
        w = self._widened.get(peer)
        return w is not None and w.until is not None and now < w.until

    def last_heard(self, peer: str) -> float | None:
        """When ``peer`` last counted as heard (its silence starts there); None unless it is UP."""
        return self._last_hb.get(peer)

    def widened(self) -> dict[str, tuple[float, float | None, bool]]:
        """peer -> (seconds, lease end or None once over, hypervisor) of every widened peer."""
        return {p: (w.seconds, w.until, w.hypervisor) for p, w in sorted(self._widened.items())}

    def next_deadline(self) -> float | None:
        return self._due

    def _base(self) -> float:
        """CLUSTER_TIMEOUT as failure detection applies it (never below ``min_timeout``)."""
        return max(self._timeout, self._min_timeout)

    def _eff(self, peer: str) -> float:
        """Effective timeout of ``peer`` once every lease due so far has been ended."""
        w = self._widened.get(peer)
        return max(w.seconds, self._min_timeout) if w is not None and w.until is not None else self._base()

    def _compute_deadline(self) -> float | None:
        """The next deadline (also refreshes ``_other``: every deadline but the next heartbeat)."""
        if not self._active:
            self._other = None
            return None
        times = [] if self._join_deadline is None else [self._join_deadline]
        if self._next_join is not None:
            times.append(self._next_join)
        for peer, last in self._last_hb.items():
            eff = self._eff(peer)
            times.append(last + (eff if peer in self._questionable else eff / 2))
        times.extend(self._next_query.values())
        times.extend(w.until for w in self._widened.values() if w.until is not None)
        other = self._other = min(times, default=None)
        nhb = self._next_hb
        if nhb is None:  # (not UP: UP sets the next heartbeat)
            self._calm_until = -math.inf
            return other
        calm = self._local is UP and other is not None and nhb < other
        self._calm_until = nhb if calm else -math.inf
        return nhb if other is None or nhb <= other else other

    @property
    def _active(self) -> bool:
        return self._booted and self._local is not NodeState.INVALID

    # ---- events ------------------------------------------------------------------------------
    def handle(self, now: float, event: Event) -> list[Effect]:
        last, self._last_handled = self._last_handled, now
        if last is not None and now - last > self._stall and self._last_hb:
            return self._stalled(now, now - last) + self._handle(now, event)
        return self._handle(now, event)

    def _handle(self, now: float, event: Event) -> list[Effect]:
        # Nothing can be due before the cached deadline, and a heartbeat only postpones
        # deadlines: skipping those passes keeps the common case (a heartbeat) cheap.
        due = self._due
        cls = type(event)
        if cls is HeartbeatReceived:
            event = cast(HeartbeatReceived, event)
            sender = event.sender
            if now < self._calm_until and self._view.get(sender) is UP:
                # The common case. Nothing is due (now < the next heartbeat = due), and the
                # sender's deadline is at or after ``other`` > ``due``: counting the heartbeat
                # only postpones it, so ``_due`` stays as it is.
                inc, known = event.incarnation, self._peer_inc[sender]
                if known is None or known == inc:
                    self._peer_inc[sender] = inc
                    self._last_hb[sender] = now
                    self._questionable.discard(sender)
                return []
            return self._heartbeat_received(now, due, event)
        if cls is Ticked:
            nhb, other = self._next_hb, self._other
            if self._local is UP and nhb is not None and now >= nhb and (other is None or now < other):
                # (local UP: booted, joined, the next heartbeat set.) Only the heartbeat is due
                # (what _expire would find), and nothing else can be: every other deadline is at
                # or after ``other``.
                nhb = self._next_hb = now + self._hb_interval
                if other is not None and nhb < other:
                    self._due = self._calm_until = nhb
                else:
                    self._due = self._compute_deadline()
                return [self._heartbeat]
            out = self._expire(now) if due is not None and now >= due else []
            out += self._expire(now)  # (a tick changes nothing by itself)
            self._due = self._compute_deadline()
            return out
        out = self._expire(now) if due is not None and now >= due else []
        out += self._dispatch(now, event)
        out += self._expire(now)
        self._due = self._compute_deadline()
        return out

    def _heartbeat_received(self, now: float, due: float | None, event: HeartbeatReceived) -> list[Effect]:
        """Any other heartbeat: catch up, count it if it counts, recompute the deadline unless the
        sender's (postponed) deadline was not the earliest."""
        out = self._expire(now) if due is not None and now >= due else []
        was = self._peer_deadline(event.sender)
        out += self._dispatch(now, event)
        if out or was is None or due is None or was <= due:
            self._due = self._compute_deadline()  # the sender's deadline may have been the earliest
        return out

    def _peer_deadline(self, peer: str) -> float | None:
        last = self._last_hb.get(peer)
        if last is None:
            return None
        eff = self._eff(peer)
        return last + (eff if peer in self._questionable else eff / 2)

    def _dispatch(self, now: float, event: Event) -> list[Effect]:
        # Network and membership events count only on a running member and only about known peers.
        match event:
            case Ticked():
                return []
            case NodeBooted():
                return self._boot(now)
            case TimeoutChanged(seconds):
                return self._set_timeout(now, seconds)
            case MigrationWindowChanged(is_open):
                return self._set_window(now, is_open)
            case DetectionWidened(peers, seconds, until, hypervisor):
                return self._widen(now, peers, seconds, until, hypervisor)
            case DetectionNarrowed(peers):
                return self._narrow(now, peers)
            case HeartbeatReceived(sender, incarnation) if self._member(sender):
                if self._view[sender] is UP and self._peer_inc[sender] in (None, incarnation):
                    self._peer_inc[sender] = incarnation
                    self._last_hb[sender] = now
                    self._questionable.discard(sender)
                return []
            case JoinRequestReceived(sender, incarnation) if self._member(sender):
                return self._answer_join(now, sender, incarnation)
            case JoinAnswerReceived(sender, accepted, reason, incarnation) if sender in self._unanswered:
                self._unanswered.discard(sender)
                if not accepted:
                    self._refusals[sender] = reason
                elif allowed(MEMBERSHIP, self._view[sender], "joined"):
                    return self._move(now, sender, "joined", f"CF: {sender}: accepted our join request", incarnation)
                return []
            case JoinAnswerReceived(sender, True, _, incarnation) if (
                self._local is UP and sender in self._silent and self._view[sender] is LEFTCLUSTER
            ):
                return self._move(
                    now,
                    sender,
                    "answered",
                    f"CF: {sender}: accepted our join request (it had not answered before)",
                    incarnation,
                )
            case JoinAnswerReceived(sender, True, _, incarnation) if (
                self._local is UP and self._member(sender) and allowed(MEMBERSHIP, self._view[sender], "joined")
            ):
                # The answer came after our join window closed. The peer holds us UP since it
                # accepted, and it expects our heartbeats: holding it DOWN would leave two views
                # that never agree again (it counts us, we ignore it). Take it as joined.
                return self._move(
                    now,
                    sender,
                    "joined",
                    f"CF: {sender}: accepted our join request (answer after the join window)",
                    incarnation,
                )
            case NodeEliminated(node) if self._member(node):
                return self._down(now, node, "eliminated", "eliminated by the Shutdown Facility")
            case NodeMarkedDown(node) if self._member(node):
                return self._down(now, node, "marked_down", "marked down with cftool -k")
            case DomainStatusReported(node, stopped) if self._member(node) and node in self._silent:
                if self._view[node] is LEFTCLUSTER:
                    return (
                        self._down(now, node, "domain_stopped", "it never joined, and its domain is stopped")
                        if stopped
                        else []
                    )
                if stopped:  # confirmed: it is down indeed
                    self._silent.discard(node)
                    self._next_query.pop(node, None)
                    if not self._silent:
                        self._next_join = None
                    return [AnnounceNodeState(node, NodeState.DOWN)]
                out = self._move(
                    now,
                    node,
                    "silent_running",
                    f"CF: {node}: LEFTCLUSTER (it did not answer our join request, but its domain is running)",
                )
                self._next_query[node] = now + self._recheck  # and asked about until it is settled
                return out
            case DomainStatusReported(node, True) if self._member(node) and self._window_open:
                return self._down(now, node, "domain_stopped", "domain stopped while the migration window is open")
            case DomainStatusReported(node, True) if self._member(node) and self._hypervisor_may(node):
                return self._down(now, node, "domain_stopped", "domain stopped while its failure detection is widened")
            case (
                HeartbeatReceived()
                | JoinRequestReceived()
                | JoinAnswerReceived()
                | NodeEliminated()
                | NodeMarkedDown()
                | DomainStatusReported()
            ):
                return []  # not for us (unknown peer, not running, late answer, window closed...)
        raise TypeError(f"membership: unexpected event {event!r}")

    def _member(self, peer: str) -> bool:
        return self._active and peer in self._view

    def _down(self, now: float, node: str, trigger: str, why: str) -> list[Effect]:
        if not allowed(MEMBERSHIP, self._view[node], trigger):
            return []
        return self._move(now, node, trigger, f"CF: {node}: DOWN ({why})")

    def _move(self, now: float, peer: str, trigger: str, text: str, incarnation: int | None = None) -> list[Effect]:
        """Apply ``trigger`` to ``peer``; announce and log if its state changed."""
        old = self._view[peer]
        new = self._view[peer] = step(MEMBERSHIP, old, trigger)
        if new is old:
            return []
        self._questionable.discard(peer)
        self._next_query.pop(peer, None)
        if trigger != "silent_running":
            self._silent.discard(peer)
            if not self._silent:
                self._next_join = None
        if new is UP:
            self._peer_inc[peer] = incarnation
            self._last_hb[peer] = now
        else:
            self._peer_inc.pop(peer, None)
            self._last_hb.pop(peer, None)
        if new is LEFTCLUSTER and self._hypervisor_may(peer):
            self._next_query[peer] = now
        return [AnnounceNodeState(peer, new, trigger == "silent_running"), Log("messages", text)]

    def _expire(self, now: float) -> list[Effect]:
        """Run every deadline that is due at ``now``."""
        if not self._active:
            return []
        out: list[Effect] = []
        if self._join_deadline is not None and (not self._unanswered or now >= self._join_deadline):
            out += self._finish_join(now)
            if not self._active:
                return out
        if self._next_hb is not None and now >= self._next_hb:
            out.append(self._heartbeat)
            self._next_hb = now + self._hb_interval
        if self._next_join is not None and now >= self._next_join:
            out += [SendJoinRequest(p, self._incarnation) for p in sorted(self._silent)]
            self._next_join = now + self._join_timeout if self._silent else None
        ended = []
        for peer in self._peers:
            w = self._widened.get(peer)
            if w is not None and w.until is not None and now >= w.until:
                ended.append(peer)
                out += self._end_lease(now, peer)
            last = self._last_hb.get(peer)
            if last is not None:  # an UP peer
                eff = self._eff(peer)
                if peer not in self._questionable and now >= last + eff / 2:
                    self._questionable.add(peer)
                    text = f"CF: {peer}: node is questionable: no heartbeat for {now - last:.1f} s"
                    out.append(Log("messages", text))
                if now >= last + eff:
                    text = f"CF: {peer}: LEFTCLUSTER (no heartbeat for {now - last:.1f} s)"
                    out += self._move(now, peer, "heartbeat_lost", text)
            due = self._next_query.get(peer)
            if due is not None and now >= due:
                out.append(QueryDomainStatus(peer))
                self._next_query[peer] = now + self._recheck
        if ended:
            text = (
                f"CF: {self._me}: widened failure detection of {', '.join(ended)} ended (lease over); "
                f"CLUSTER_TIMEOUT {self._timeout:g} s applies again"
            )
            out.append(Log("messages", text))
        return out
