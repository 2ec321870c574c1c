"""RMS (Reliant Monitor Services): userApplication placement, failover and time-sync warnings.

One :class:`Rms` runs per cluster node. It is a pure state machine: the driver feeds it events
(``handle(now, event)``) and carries out the effects it returns; it never reads a clock.

Theory of operation
-------------------
*Node states.* The machine keeps its own copy of the CF view, fed by :class:`PeerNodeStateChanged`
(peers start DOWN). The local node counts as UP while RMS is running. Events about the local node
itself are ignored: if the local node dies, its RMS dies with it.

*Placement belief.* ``placement()`` maps each userApplication to the node it is (or, for a
decision another node is making right now, is about to be) Online on. A node learns it from
peers' :class:`AnnounceAppState` (delivered to it as :class:`AppStateReported`) and from its own
decisions. Every node that changes an application's state announces it, and an owner re-announces
its applications whenever a peer becomes UP, so that a (re)starting RMS learns where they run.
A report that an application is Online on a node we hold DOWN is stale and ignored once RMS has
settled; while it is still settling (or not yet started) it counts, because a peer's
re-announcement can overtake the CF join answer that makes the peer UP here, and at the end of
the settle period a placement on a node that is still DOWN is dropped again. A report about the
local node is ignored (we know our own state).

*Initial placement.* :class:`RmsStarted` starts a settle period of ``settle`` seconds in which
the peers' announcements arrive. At its end, every application nobody reported Online becomes
*pending* and is resolved (see below): the first node of its priority list that is UP brings it
online if that is the local node; the others record that node as the owner-to-be.

*Unknown nodes.* No pending application (one nobody reported, or one whose owner is DOWN) is
placed while a node of its priority list is LEFTCLUSTER (or DOWN *unseen*: not yet confirmed): that node's state is uncertain, it may be
running it, or, cut off from us, be taking it over by itself from its own view (e.g. a node that
starts while the interconnect is cut sees the others LEFTCLUSTER: see ``core.membership``, silent
peers; or a 1:1:1 cut in a three-node cluster while the owner goes DOWN).
The placement is made when no such node is left: once it is DOWN, or ``settle`` seconds after it
became UP (it announces what it runs meanwhile, as to any newcomer).

*Failover.* When the owner of an application becomes DOWN (never on LEFTCLUSTER: a LEFTCLUSTER
node may still run it until SF has eliminated it) the application becomes pending. Every survivor
computes the same successor — the first UP node of the priority list (the dead owner is DOWN, so
it is never chosen) — from the same CF view, so exactly one node brings it online; the others
just update their belief. Only the successor writes a switchlog line.

*Hold.* Between ``clovmmigrate -p`` and ``-u`` switchovers are held
(:class:`SwitchoverHoldChanged`). Pending applications are not resolved while held; a switchlog
line says the switchover is deferred. On release every pending application is resolved against
the CF view *at that moment*. There is no failback: a higher-priority node that rejoins leaves
the application where it is.

*Stop.* :class:`RmsStopped` takes the local node's applications offline (announcing it) and stops
RMS. An application taken offline this way is not failed over (the node is not DOWN).

*Time sync.* Heartbeats carry the sender's wall clock; the driver reports each comparison as
:class:`PeerClockObserved`. Per peer, ``_state.TIME_SYNC`` decides: a difference strictly larger
than ``sync_threshold`` while in sync → (WRP, 34) plus "Further out-of-sync messages will appear
in the syslog." to both switchlog and messages, once per episode; then on every ``sync_period``
(evaluated on :class:`~clovm.core.base.Ticked`, using the latest observation) (WRP, 35) to
messages only; back within the threshold (a difference exactly equal to the threshold is in sync)
→ silence. A peer that becomes DOWN, and RMS stopping, end the episode.

``next_deadline()`` is the end of the settle period or the next (WRP, 35), whichever is first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._state import TIME_SYNC, AppState, NodeState, SyncState, step
from .base import Effect, Event, Log, Ticked
from .defaults import RMS_SETTLE, RMS_SYNC_PERIOD, RMS_SYNC_THRESHOLD
from .messages import WRP_34, WRP_35, WRP_FURTHER


# ------------------------------------------------------------------------------------ values
@dataclass(frozen=True, slots=True)
class AppSpec:
    """A userApplication: its name, its priority list of nodes (first = preferred) and its
    ShutdownPriority (added to the survival priority of the node it is Online on)."""

    name: str
    nodes: tuple[str, ...]
    shutdown_priority: int = 0


# ------------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class RmsStarted(Event):
    """hvcm / CF StartClusterServices: RMS starts on the local node."""


@dataclass(frozen=True, slots=True)
class RmsStopped(Event):
    """hvshut -l: RMS stops on the local node."""


@dataclass(frozen=True, slots=True)
class PeerNodeStateChanged(Event):
    """CF changed ``node``'s state in the local view. ``unseen``: CF never heard from it since this
    node started (LEFTCLUSTER, or DOWN not yet confirmed): it may be running applications."""

    node: str
    state: NodeState
    unseen: bool = False


@dataclass(frozen=True, slots=True)
class AppStateReported(Event):
    """A peer announced that ``app`` is (``online``) or is no longer Online on ``node``."""

    app: str
    node: str
    online: bool


@dataclass(frozen=True, slots=True)
class SwitchoverHoldChanged(Event):
    """clovmmigrate -p (held=True) / -u (held=False)."""

    held: bool


@dataclass(frozen=True, slots=True)
class PeerClockObserved(Event):
    """A heartbeat from ``peer`` carried wall clock ``peer_clock``; ours read ``local_clock``."""

    peer: str
    peer_clock: float
    local_clock: float


# ------------------------------------------------------------------------------------ effects
@dataclass(frozen=True, slots=True)
class BringAppOnline(Effect):
    app: str


@dataclass(frozen=True, slots=True)
class TakeAppOffline(Effect):
    app: str


@dataclass(frozen=True, slots=True)
class AnnounceAppState(Effect):
    """Tell every peer (as :class:`AppStateReported`) that ``app`` is / is not Online on ``node``."""

    app: str
    node: str
    online: bool


# ------------------------------------------------------------------------------------ machine
def _switchlog(text: str) -> Log:
    return Log("switchlog", text)


class Rms:
    """RMS on one cluster node. See the module docstring."""

    def __init__(
        self,
        me: str,
        nodes: Iterable[str],
        apps: Iterable[AppSpec],
        *,
        sync_threshold: float = RMS_SYNC_THRESHOLD,
        sync_period: float = RMS_SYNC_PERIOD,
        settle: float = RMS_SETTLE,
    ) -> None:
        self._me = me
        order = list(dict.fromkeys(nodes))
        if me not in order:
            order.insert(0, me)
        self._nodes: tuple[str, ...] = tuple(order)
        self._apps: dict[str, AppSpec] = {a.name: a for a in apps}
        self._threshold = sync_threshold
        self._period = sync_period
        self._settle = settle
        self._running = False
        self._held = False
        self._view: dict[str, NodeState] = {n: NodeState.DOWN for n in self._nodes if n != me}
        self._placement: dict[str, str | None] = {a: None for a in self._apps}
        # app -> owner that died (None: initial placement) ; resolved when settled and not held
        self._pending: dict[str, str | None] = {}
        self._uncertain: set[str] = set()  # held DOWN, but never heard from (CF: a silent peer)
        self._settle_at: float | None = None
        self._sync: dict[str, SyncState] = {}
        self._offset: dict[str, float] = {}  # latest |peer - local| per peer
        self._wrp35_at: dict[str, float] = {}

    # ---------------------------------------------------------------- queries
    @property
    def me(self) -> str:
        return self._me

    @property
    def running(self) -> bool:
        return self._running

    @property
    def held(self) -> bool:
        return self._held

    def placement(self) -> dict[str, str | None]:
        """app -> node it is Online on, in this node's belief (apps in configuration order)."""
        return dict(self._placement)

    def priorities(self) -> dict[str, int]:
        """node -> Σ ShutdownPriority of the apps Online there (every node listed, in order)."""
        out = {n: 0 for n in self._nodes}
        for app, node in self._placement.items():
            if node is not None:
                out[node] = out.get(node, 0) + self._apps[app].shutdown_priority
        return out

    def app_state(self, app: str) -> AppState:
        """hvdisp-style local state: Online here, Standby (could take it over), else Offline."""
        if self._placement[app] == self._me:
            return AppState.ONLINE
        if self._running and self._me in self._apps[app].nodes:
            return AppState.STANDBY
        return AppState.OFFLINE

    def sync_state(self, peer: str) -> SyncState:
        return self._sync.get(peer, SyncState.IN_SYNC)

    def node_state(self, node: str) -> NodeState:
        if node == self._me:
            return NodeState.UP if self._running else NodeState.DOWN
        return self._view.get(node, NodeState.DOWN)

    def next_deadline(self) -> float | None:
        if not self._wrp35_at:  # the common case, without building a list
            return self._settle_at
        times = list(self._wrp35_at.values())
        if self._settle_at is not None:
            times.append(self._settle_at)
        return min(times) if times else None

    # ---------------------------------------------------------------- events
    def handle(self, now: float, event: Event) -> list[Effect]:
        if type(event) is PeerClockObserved:  # every heartbeat: skip the match below
            return self._on_clock(now, event.peer, abs(event.peer_clock - event.local_clock))
        match event:
            case Ticked():
                return self._on_tick(now)
            case RmsStarted():
                return self._on_start(now)
            case RmsStopped():
                return self._on_stop()
            case PeerNodeStateChanged(node, state, unseen):
                if unseen and state is NodeState.DOWN:
                    self._uncertain.add(node)
                    return []
                was_uncertain = node in self._uncertain
                self._uncertain.discard(node)
                return self._on_node(now, node, state, was_uncertain)
            case AppStateReported(app, node, online):
                return self._on_report(app, node, online)
            case SwitchoverHoldChanged(held):
                return self._on_hold(held)
            case PeerClockObserved(peer, peer_clock, local_clock):
                return self._on_clock(now, peer, abs(peer_clock - local_clock))
        raise TypeError(f"Rms cannot handle {event!r}")

    def _on_start(self, now: float) -> list[Effect]:
        if self._running:
            return []
        self._running = True
        self._settle_at = now + self._settle
        return [
            _switchlog(f"(BM, 1) RMS started on {self._me}; waiting {self._settle:g}s for the cluster state to settle")
        ]

    def _on_stop(self) -> list[Effect]:
        if not self._running:
            return []
        out: list[Effect] = []
        for app, node in self._placement.items():
            if node == self._me:
                self._placement[app] = None
                out += [
                    TakeAppOffline(app),
                    AnnounceAppState(app, self._me, False),
                    _switchlog(f"(SWT, 20) {app}: offline on {self._me} because RMS is shutting down"),
                ]
        self._running = False
        self._settle_at = None
        self._pending.clear()
        self._sync.clear()
        self._offset.clear()
        self._wrp35_at.clear()
        out.append(_switchlog(f"(BM, 2) RMS stopped on {self._me}"))
        return out

    def _on_tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        if self._settle_at is not None and now >= self._settle_at:
            self._settle_at = None
            for app, node in self._placement.items():
                if node is not None and node != self._me and self.node_state(node) is NodeState.DOWN:
                    self._placement[app] = None  # learnt while settling from a node that is DOWN after all
                if self._placement[app] is None and app not in self._pending:
                    self._pending[app] = None
            out += self._resolve_pending()
        for peer in [p for p in self._nodes if p in self._wrp35_at]:
            due = self._wrp35_at[peer]
            if now < due:
                continue
            # evaluate the latest observation; state is OUT_OF_SYNC while a deadline exists
            self._sync[peer] = step(
                TIME_SYNC, self._sync[peer], "differ" if self._offset[peer] > self._threshold else "agree"
            )
            if self._sync[peer] is SyncState.OUT_OF_SYNC:
                out.append(Log("messages", WRP_35.format(host=peer), "WRP 35"))
                nxt = due + self._period
                self._wrp35_at[peer] = nxt if nxt > now else now + self._period
            else:
                del self._wrp35_at[peer]
        return out

    def _on_node(self, now: float, node: str, state: NodeState, was_uncertain: bool = False) -> list[Effect]:
        if node == self._me:
            return []
        old = self._view.get(node, NodeState.DOWN)
        self._view[node] = state
        out: list[Effect] = []
        if state is NodeState.UP and old is not NodeState.UP and self._running:
            # tell the newcomer where my applications run
            out += [AnnounceAppState(app, self._me, True) for app, n in self._placement.items() if n == self._me]
        if (
            (old is NodeState.LEFTCLUSTER or was_uncertain)
            and state is NodeState.UP
            and self._running
            and self._pending
            and (self._settle_at is None or self._settle_at < now + self._settle)
        ):
            # A placement waited for it: it re-announces what it runs once it holds us UP, so
            # settle again before placing (as at the start).
            self._settle_at = now + self._settle
            out.append(
                _switchlog(
                    f"(BM, 3) {node} is UP again: waiting {self._settle:g}s for the cluster state "
                    f"to settle before placing"
                )
            )
        if state is NodeState.DOWN:
            self._sync.pop(node, None)
            self._offset.pop(node, None)
            self._wrp35_at.pop(node, None)
            for app, owner in self._placement.items():
                if owner != node:
                    continue
                self._placement[app] = None
                if self._running:
                    self._pending[app] = node
                    if self._held:
                        out.append(
                            _switchlog(
                                f"(SWT, 3) {app}: switchover deferred: {node} is DOWN but switchovers are held (clovmmigrate -p)"
                            )
                        )
            out += self._resolve_pending()
        return out

    def _on_report(self, app: str, node: str, online: bool) -> list[Effect]:
        if app not in self._placement or node == self._me:
            return []
        if online:
            if self.node_state(node) is NodeState.DOWN and not self._learning() and node not in self._uncertain:
                return []  # stale: it cannot be Online on a dead node (one we know is down)
            if self._placement[app] == self._me:
                return [
                    _switchlog(f"(SWT, 40) {app}: {node} reports it Online but it is Online on {self._me}; ignored")
                ]
            self._placement[app] = node
            self._pending.pop(app, None)
        elif self._placement[app] == node:
            self._placement[app] = None
        return []

    def _on_hold(self, held: bool) -> list[Effect]:
        if held == self._held:
            return []
        self._held = held
        if held:
            return [_switchlog("(SWT, 30) switchovers are held (clovmmigrate -p)")]
        return [_switchlog("(SWT, 31) switchover hold released (clovmmigrate -u)"), *self._resolve_pending()]

    def _on_clock(self, now: float, peer: str, offset: float) -> list[Effect]:
        if not self._running or peer == self._me:
            return []
        self._offset[peer] = offset
        old = self._sync.get(peer, SyncState.IN_SYNC)
        new = self._sync[peer] = step(TIME_SYNC, old, "differ" if offset > self._threshold else "agree")
        if old is SyncState.IN_SYNC and new is SyncState.OUT_OF_SYNC:
            self._wrp35_at[peer] = now + self._period
            text = WRP_34.format(host=peer)
            return [
                Log("switchlog", text, "WRP 34"),
                Log("switchlog", WRP_FURTHER, "WRP 34"),
                Log("messages", text, "WRP 34"),
                Log("messages", WRP_FURTHER, "WRP 34"),
            ]
        if new is SyncState.IN_SYNC:
            self._wrp35_at.pop(peer, None)
        return []

    def busy(self) -> bool:
        """An application in transition: a switchover pending (including one deferred by the -p
        hold), or RMS still settling after its start with an application whose place it does not
        know yet (clovm migrate's preflight: "no switchover in progress")."""
        if not self._running:
            return False
        settling = self._settle_at is not None and any(node is None for node in self._placement.values())
        return bool(self._pending) or settling

    def activity(self) -> str | None:
        """Why :meth:`busy` is true, for a message that names it: ``"settling"`` (RMS started
        less than ``settle`` seconds ago and has not placed every application yet),
        ``"switchover"`` (an application waits for its new node), ``"switchover held"`` (one waits,
        deferred by the ``clovmmigrate -p`` hold); None when RMS is not busy."""
        if not self._running:
            return None
        if self._pending:
            return "switchover held" if self._held else "switchover"
        if self._settle_at is not None and any(node is None for node in self._placement.values()):
            return "settling"
        return None

    def _learning(self) -> bool:
        """Not yet settled: the CF view may still lag behind the peers' announcements (a peer's
        re-announcement can overtake its join answer), so reports from peers not yet seen UP count."""
        return not self._running or self._settle_at is not None

    # ---------------------------------------------------------------- decisions
    def _successor(self, app: str) -> str | None:
        for n in self._apps[app].nodes:
            if self.node_state(n) is NodeState.UP:
                return n
        return None

    def _resolve_pending(self) -> list[Effect]:
        """Place every pending app (configuration order) if settled and not held."""
        if not self._running or self._held or self._settle_at is not None:
            return []
        out: list[Effect] = []
        for app in [a for a in self._placement if a in self._pending]:
            if any(self.node_state(n) is NodeState.LEFTCLUSTER or n in self._uncertain for n in self._apps[app].nodes):
                continue  # a node that may be running it, or taking it over itself, is uncertain
            dead = self._pending.pop(app)
            succ = self._successor(app)
            self._placement[app] = succ
            if succ is None:
                if dead is not None:
                    out.append(
                        _switchlog(f"(SWT, 5) {app}: cannot fail over from {dead}: no node of its priority list is UP")
                    )
                continue
            if succ != self._me:
                continue
            why = (
                f"failover to {self._me} because {dead} is DOWN"
                if dead
                else f"online on {self._me} (first UP node of its priority list)"
            )
            out += [
                BringAppOnline(app),
                AnnounceAppState(app, self._me, True),
                _switchlog(f"(SWT, {1 if dead else 10}) {app}: {why}"),
            ]
        return out
