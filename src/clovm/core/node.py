"""One cluster node as a single sans-IO composition: CF, SF and RMS of a host, its disk, its operations.

Both drivers run a node through this class and nothing else: the simulator (``sim/world.py``) and
the node agent daemon (``runtime/nodeagent.py``) only turn I/O into the events below and the
effects below into I/O. Everything a node *decides* is here, written once.

Theory of operation
-------------------
*Machines and routing.* Every node runs :class:`~clovm.core.membership.Membership` (CF); a node
of a guest-domain cluster also runs :class:`~clovm.core.fencing.ShutdownFacility` (SF) and
:class:`~clovm.core.rms.Rms`. Effects of one machine that concern another are routed here, in
the order the machine returned them and depth first (CF ``AnnounceNodeState`` → SF
``NodeStateChanged`` and RMS ``PeerNodeStateChanged``; SF ``AnnounceEliminated`` → CF
``NodeEliminated`` here and an :class:`Elimination` to every peer; CF ``StartClusterServices`` →
SF start unless disabled, RMS start; after every RMS step a change of the per-node application
priorities → SF ``AppPrioritiesChanged``). ``next_deadline()`` is the earliest deadline of the
machines and of pending ``sf_wait`` operations; :class:`~clovm.core.base.Ticked` wakes exactly
the machines that are due.

*The interconnect.* Nodes talk in :data:`PeerMessage` values (:class:`Heartbeat`,
:class:`JoinRequest`, :class:`JoinAnswer` — which carries the answering node's incarnation —,
:class:`Elimination`, :class:`AppState`): :class:`Broadcast` and :class:`Send` out,
:class:`MessageReceived` in. Messages from anyone but a peer of the node's cluster are ignored.

*Clock.* A node's wall clock is ``epoch + now + offset(server hosting it) + step``. The driver
reports the server (:class:`PlacementObserved`, at start and whenever it changes) and the servers'
clock offsets (:class:`ClockOffsetsObserved`). ``clock_align`` arms a one-shot step: at the next
change of server, ``step += offset(old) - offset(new)`` so the clock goes on from where it was. A
heartbeat carries the sender's wall clock and its emulated send time; a receiver keeps the last
``clock_samples`` differences (peer − local) per peer and gives RMS the largest one as its
estimate of the peer's clock (transit delay only ever makes a peer look behind: NTP's
least-delay sample). A heartbeat older than ``stale_heartbeat`` when it is handled (it sat in a
socket buffer while this node was suspended) counts for CF but says nothing about the clock.

*Shutdown agents.* SF's ``RunAgent`` goes out as :class:`RunShutdownAgent` with the *generation*
of the SF request it belongs to (every start, reconfig and test request begins a generation: a
driver may let identical concurrent agent runs of one generation share one XSCF probe, never runs
of different generations). The driver reports what the XSCF did — :class:`XscfAnswered`,
:class:`XscfHostKeyUnknown` (SSH refused the XSCF's unknown host key) or
:class:`XscfRequestFailed` — or nothing at all (SF's own timeout then counts); how that reads as
an agent result is :func:`agent_result`.

*Disk.* :class:`NodeDisk` is what survives a restart; the node starts from the driver's copy and
reports every change as :class:`Store` ``(key, value)`` *before* it answers or acts on it. Some
operations re-read operator-edited files (:func:`~clovm.core.node_io.file_read`): the driver attaches what it read.

*Operations.* :class:`OperationRequested` ``(op_id, op, args, caller)`` is answered by exactly one
:class:`Answer` — at once, or later for ``sf_wait`` (when the rows of the named node have
settled, or at its deadline) and ``xscf_check`` (after :class:`CheckXscf` is answered by
:class:`XscfChecked`). ``caller`` None is the local admin channel (root on the host); a name is the
remote channel, open to control domains only. The operations and their answers are the tables of
``core/migration.py`` and ``docs/safe-migration.md``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from . import fencing as fen
from . import membership as mem
from . import messages
from . import rms as rmsmod
from ._state import AGENT_LAN, NodeState, SfDaemonState, SpDomainStatus
from .base import Effect, Event, Log, Ticked
from .node_io import (
    MESSAGE_KIND,
    MESSAGE_KINDS,
    STORE_KEYS,
    Answer,
    AppState,
    AskDomainStatus,
    Broadcast,
    CheckXscf,
    ClockOffsetsObserved,
    ControlDomainFacts,
    DomainStatusAnswered,
    Elimination,
    Heartbeat,
    JoinAnswer,
    JoinRequest,
    MessageReceived,
    NodeDisk,
    NodeSpec,
    NodeStarted,
    NodeTuning,
    OperationRequested,
    OpError,
    PeerMessage,
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
    file_read,
)
from .node_ops import (
    BUSY_SA,
    LOCAL,
    OPERATIONS,
    REMOTE,
    SERVICES_NONE,
    SERVICES_REFUSED,
    SERVICES_STARTED,
    NodeOperations,
    resolve,
)
from .sfconfig import SfConfig, XscfEntry

__all__ = [
    "BUSY_SA",
    "LOCAL",
    "MESSAGE_KIND",
    "MESSAGE_KINDS",
    "OPERATIONS",
    "REMOTE",
    "SERVICES_NONE",
    "SERVICES_REFUSED",
    "SERVICES_STARTED",
    "STORE_KEYS",
    "Answer",
    "AppState",
    "AskDomainStatus",
    "Broadcast",
    "CheckXscf",
    "ClockOffsetsObserved",
    "ControlDomainFacts",
    "DomainStatusAnswered",
    "Elimination",
    "Heartbeat",
    "JoinAnswer",
    "JoinRequest",
    "MessageReceived",
    "Node",
    "NodeDisk",
    "NodeSpec",
    "NodeStarted",
    "NodeTuning",
    "OpError",
    "OperationRequested",
    "PeerMessage",
    "PlacementObserved",
    "RunShutdownAgent",
    "Send",
    "Store",
    "Trace",
    "WriteLog",
    "XscfAnswered",
    "XscfChecked",
    "XscfHostKeyUnknown",
    "XscfRequestFailed",
    "agent_result",
    "file_read",
    "resolve",
]

TICK = Ticked()
# The syslog tag of each machine's lines in /var/adm/messages.
TAG_CF, TAG_SF, TAG_RMS = "CF", "SMAWsf", "RMS"


def agent_result(run: fen.RunAgent, event: Event, host: str) -> tuple[bool, str]:
    """How a shutdown agent on ``host`` reads what the XSCF did: (ok, detail) for SF.

    A kill worked iff the XSCF accepted it. An init or test works iff the XSCF reports the
    domain running or stopped (it can address the domain): an unknown host key is message 7245,
    ``Unknown`` means the configuration was not saved after a migration.
    """
    e = run.entry
    addr = e.lan0 if AGENT_LAN[run.agent] == 0 else e.lan1
    if isinstance(event, XscfHostKeyUnknown):
        return False, messages.first_ssh_connection(addr, e.user, host)
    if isinstance(event, XscfRequestFailed):
        return False, event.detail
    assert isinstance(event, XscfAnswered)
    if run.action == fen.KILL_ACTION:
        return event.ok, event.text or event.status
    if not event.ok:
        return False, " ".join(event.text.split()) or messages.xscf_does_not_know(addr, e.domain)
    if event.status in (SpDomainStatus.RUNNING, SpDomainStatus.STOPPED):
        return True, str(event.status)
    if event.status == SpDomainStatus.UNKNOWN:
        return False, messages.xscf_status_unknown(e.domain)
    return False, messages.xscf_reports(e.domain, event.status)


class Node(NodeOperations):
    """One node's cluster software. See the module docstring."""

    def __init__(
        self,
        spec: NodeSpec,
        disk: NodeDisk,
        *,
        incarnation: int,
        server: str,
        offsets: Mapping[str, float] | None = None,
        tuning: NodeTuning | None = None,
    ) -> None:
        t = self.tuning = tuning or NodeTuning()
        self.spec = spec
        self.disk = disk.snapshot()
        self.incarnation = incarnation
        self.server = server
        self._offsets = dict(offsets or {})
        self._offset = self._offsets.get(server, 0.0)
        self.clock_step = 0.0
        self._align_armed = False
        self._peers = frozenset(spec.peers)
        self.services = SERVICES_NONE
        self.refusal = ""
        self.online: set[str] = set()
        self.sf_generation = 0
        self.cf = mem.Membership(
            spec.cf,
            spec.peers,
            timeout=float(self.disk.timeout),
            incarnation=incarnation,
            heartbeat_interval=t.heartbeat_interval,
            join_timeout=t.join_timeout,
            recheck_interval=t.recheck_interval,
            min_timeout=t.min_detection,
            stall=t.cf_stall,
        )
        self.sf: fen.ShutdownFacility | None = None
        self.rms: rmsmod.Rms | None = None
        if spec.guest_cluster:
            self.sf = fen.ShutdownFacility(
                spec.cf,
                self._machine_config(self.disk.sf_config),
                test_interval=t.sf_test_interval,
                lighter_side_delay=t.sf_lighter_side_delay,
                split_settle=t.sf_split_settle,
                kill_retry=t.sf_kill_retry,
            )
            self.rms = rmsmod.Rms(
                spec.cf,
                spec.nodes,
                spec.apps,
                sync_threshold=t.rms_sync_threshold,
                sync_period=t.rms_sync_period,
                settle=t.rms_settle,
            )
        self._cf_due: float | None = None
        self._sf_due: float | None = None
        self._rms_due: float | None = None
        self._priorities: dict[str, int] | None = None
        self._samples: dict[str, collections.deque[float]] = {}
        self._hb_events: dict[str, mem.HeartbeatReceived] = {}
        self._waits: list[tuple[int, str | None, float]] = []  # sf_wait: (op_id, node, deadline)
        self._checks: set[int] = set()  # xscf_check op_ids waiting for XscfChecked

    # ---- queries ------------------------------------------------------------------------------
    def wall(self, now: float) -> float:
        """This node's wall clock at emulated time ``now`` (epoch seconds)."""
        return self.tuning.epoch + now + self._offset + self.clock_step

    def next_deadline(self) -> float | None:
        due = self._cf_due
        for d in (self._sf_due, self._rms_due):
            if d is not None and (due is None or d < due):
                due = d
        for _, _, d in self._waits:
            if due is None or d < due:
                due = d
        return due

    @property
    def sf_running(self) -> bool:
        return self.sf is not None and self.sf.daemon is SfDaemonState.RUNNING

    def sf_state(self) -> str:
        if self.services == SERVICES_REFUSED:
            return "refused"
        return "running" if self.sf_running else "stopped"

    def rows(self) -> list[list[str]]:
        """``sdtool -s`` rows: [host, agent, sa, shut, test, init]."""
        if self.sf is None:
            return []
        return [
            [r.host, r.agent, str(r.sa_state), str(r.shut_state), str(r.test_state), str(r.init_state)]
            for r in self.sf.rows()
        ]

    def cftool_rows(self) -> list[list[Any]]:
        view = self.cf.view()
        return [[n, i, str(view[n])] for i, n in enumerate(self.spec.nodes, 1)]

    def hvdisp_rows(self) -> list[list[str]]:
        if self.rms is None:
            return []
        rms = self.rms
        rows = [[app, "userApplication", f"{self.spec.cf}RMS", str(rms.app_state(app))] for app in rms.placement()]
        states = {NodeState.UP: "Online", NodeState.LEFTCLUSTER: "Faulted"}
        rows += [[f"{n}RMS", "SysNode", "", states.get(rms.node_state(n), "Offline")] for n in self.spec.nodes]
        return rows

    # ---- events -------------------------------------------------------------------------------
    def handle(self, now: float, event: Event) -> list[Effect]:
        out: list[Effect] = []
        cls = type(event)
        if cls is MessageReceived:
            event = cast(MessageReceived, event)
            if event.sender in self._peers:
                self._on_message(now, event.sender, event.message, out)
        elif cls is Ticked:
            if self._cf_due is not None and self._cf_due <= now:
                self._feed_cf(now, TICK, out)
            if self._sf_due is not None and self._sf_due <= now:
                self._feed_sf(now, TICK, out)
            if self._rms_due is not None and self._rms_due <= now:
                self._feed_rms(now, TICK, out)
            if self._waits:
                self._check_waits(now, out)
        elif cls is OperationRequested:
            self._operation(now, cast(OperationRequested, event), out)
        elif cls in (XscfAnswered, XscfHostKeyUnknown, XscfRequestFailed):
            event = cast("XscfAnswered | XscfHostKeyUnknown | XscfRequestFailed", event)
            ok, detail = agent_result(event.run, event, self.spec.host)
            self._feed_sf(now, fen.AgentFinished(event.run.req_id, ok, detail), out)
        elif cls is DomainStatusAnswered:
            event = cast(DomainStatusAnswered, event)
            self._feed_cf(now, mem.DomainStatusReported(event.node, event.status == SpDomainStatus.STOPPED), out)
        elif cls is XscfChecked:
            event = cast(XscfChecked, event)
            if event.op_id in self._checks:
                self._checks.discard(event.op_id)
                out.append(Answer(event.op_id, True, {"known_host": event.known_host, "snmp": dict(event.snmp)}))
        elif cls is PlacementObserved:
            self._placed(cast(PlacementObserved, event).server, out)
        elif cls is ClockOffsetsObserved:
            event = cast(ClockOffsetsObserved, event)
            self._offsets = dict(event.offsets)
            self._offset = self._offsets.get(self.server, 0.0)
        elif cls is NodeStarted:
            self._start(now, out)
        else:
            raise TypeError(f"node: unexpected event {event!r}")
        return out

    def _start(self, now: float, out: list[Effect]) -> None:
        d = self.disk
        if d.window:
            self._feed_cf(now, mem.MigrationWindowChanged(True), out)
            self._feed_rms(now, rmsmod.SwitchoverHoldChanged(True), out)
        # widen.json: a lease still running (or a hypervisor permission) is applied again.
        kept = {p: w for p, w in d.widen.items() if p in self._peers and (w["until"] > now or w["hypervisor"])}
        for p, w in sorted(kept.items()):
            self._feed_cf(now, mem.DetectionWidened((p,), w["seconds"], w["until"], w["hypervisor"]), out)
        if kept != d.widen:
            self._store("widen", kept, out)
        self._feed_cf(now, mem.NodeBooted(), out)

    def _placed(self, server: str, out: list[Effect]) -> None:
        old = self.server
        if server == old:
            return
        self.server = server
        new_offset = self._offsets.get(server, 0.0)
        if self._align_armed:
            self._align_armed = False
            delta = self._offset - new_offset
            self.clock_step += delta
            out.append(
                Trace(
                    "clock",
                    f"moved from {old} to {server}: clock stepped by {delta:+g} s (step now {self.clock_step:+g} s)",
                )
            )
        self._offset = new_offset

    def _on_message(self, now: float, sender: str, m: PeerMessage, out: list[Effect]) -> None:
        cls = type(m)
        if cls is Heartbeat:
            m = cast(Heartbeat, m)
            hb = self._hb_events.get(sender)
            if hb is None or hb.incarnation != m.inc:  # immutable: one per peer incarnation
                hb = self._hb_events[sender] = mem.HeartbeatReceived(sender, m.inc)
                self._samples.pop(sender, None)  # a restarted peer's clock says nothing of the old one
            self._feed_cf(now, hb, out)
            if now - m.sent > self.tuning.stale_heartbeat:
                return  # it waited while this node was suspended: its clock is long out of date
            local = self.wall(now)
            samples = self._samples.get(sender)
            if samples is None:
                samples = self._samples[sender] = collections.deque(maxlen=self.tuning.clock_samples)
            samples.append(m.clock - local)
            if self.rms is not None:
                self._feed_rms(now, rmsmod.PeerClockObserved(sender, local + max(samples), local), out)
        elif cls is JoinRequest:
            self._feed_cf(now, mem.JoinRequestReceived(sender, cast(JoinRequest, m).inc), out)
        elif cls is JoinAnswer:
            m = cast(JoinAnswer, m)
            self._feed_cf(now, mem.JoinAnswerReceived(sender, m.accepted, m.reason, m.inc), out)
        elif cls is Elimination:
            self._feed_cf(now, mem.NodeEliminated(cast(Elimination, m).node), out)
        elif cls is AppState:
            m = cast(AppState, m)
            self._feed_rms(now, rmsmod.AppStateReported(m.app, m.node, m.online), out)

    # ---- routing ------------------------------------------------------------------------------
    def _feed_cf(self, now: float, event: Event, out: list[Effect]) -> None:
        cf = self.cf
        effects = cf.handle(now, event)
        self._cf_due = cf.next_deadline()
        for e in effects:
            cls = type(e)
            if cls is mem.BroadcastHeartbeat:
                out.append(Broadcast(Heartbeat(cast(mem.BroadcastHeartbeat, e).incarnation, self.wall(now), now)))
            elif cls is Log:
                e = cast(Log, e)
                out.append(WriteLog(TAG_CF, e.dest, e.text, e.msgid))
            elif cls is mem.AnnounceNodeState:
                e = cast(mem.AnnounceNodeState, e)
                out.append(e)
                if e.state is NodeState.DOWN:
                    self._samples.pop(e.node, None)  # its clock is estimated afresh when it is back
                self._feed_sf(now, fen.NodeStateChanged(e.node, e.state, e.unseen), out)
                self._feed_rms(now, rmsmod.PeerNodeStateChanged(e.node, e.state, e.unseen), out)
            elif cls is mem.SendJoinRequest:
                e = cast(mem.SendJoinRequest, e)
                out.append(Send(e.to, JoinRequest(e.incarnation)))
            elif cls is mem.SendJoinAnswer:
                e = cast(mem.SendJoinAnswer, e)
                out.append(Send(e.to, JoinAnswer(e.accepted, e.reason, e.incarnation)))
            elif cls is mem.QueryDomainStatus:
                e = cast(mem.QueryDomainStatus, e)
                entry = self._entry(e.node)
                if entry is None:
                    out.append(Trace("CF", f"domain status of {e.node}: no SA_xscfsnmp.cfg entry to ask"))
                else:
                    out.append(AskDomainStatus(e.node, entry))
            elif cls is mem.StartClusterServices:
                self.services = SERVICES_STARTED
                out.append(Trace("CF", "joined: starting SF, CRM, RMS"))
                if not self.disk.sf_disabled:
                    self._sf_request(now, fen.SfStartRequested(), out)
                self._feed_rms(now, rmsmod.SwitchoverHoldChanged(self.disk.window), out)
                self._feed_rms(now, rmsmod.RmsStarted(), out)
            elif cls is mem.RefuseClusterServices:
                e = cast(mem.RefuseClusterServices, e)
                self.services, self.refusal = SERVICES_REFUSED, e.reason
                out.append(Trace("CF", f"join refused by {', '.join(e.refused_by)}: SF, CRM, RMS not started"))
                for what, tag in messages.SERVICES:
                    out.append(WriteLog(tag, "messages", messages.failed_to_start(what, e.reason)))
            else:
                raise TypeError(f"node: unexpected CF effect {e!r}")

    def _feed_sf(self, now: float, event: Event, out: list[Effect]) -> None:
        sf = self.sf
        if sf is None:
            return
        effects = sf.handle(now, event)
        self._sf_due = sf.next_deadline()
        for e in effects:
            cls = type(e)
            if cls is fen.RunAgent:
                e = cast(fen.RunAgent, e)
                if e.agent in AGENT_LAN:
                    out.append(RunShutdownAgent(e, self.sf_generation))
                else:  # an agent rcsd.cfg names but this SF does not have: it fails at once
                    self._feed_sf(now, fen.AgentFinished(e.req_id, False, messages.unknown_agent(e.agent)), out)
            elif cls is Log:
                e = cast(Log, e)
                out.append(WriteLog(TAG_SF, e.dest, e.text, e.msgid))
            elif cls is fen.AnnounceEliminated:
                e = cast(fen.AnnounceEliminated, e)
                out.append(Trace("SF", f"{e.node} eliminated"))
                self._feed_cf(now, mem.NodeEliminated(e.node), out)
                out.append(Broadcast(Elimination(e.node)))
            else:
                raise TypeError(f"node: unexpected SF effect {e!r}")
        if self._waits:
            self._check_waits(now, out)

    def _feed_rms(self, now: float, event: Event, out: list[Effect]) -> None:
        rms = self.rms
        if rms is None:
            return
        effects = rms.handle(now, event)
        self._rms_due = rms.next_deadline()
        for e in effects:
            cls = type(e)
            if cls is Log:
                e = cast(Log, e)
                out.append(WriteLog(TAG_RMS, e.dest, e.text, e.msgid))
            elif cls is rmsmod.BringAppOnline:
                self.online.add(cast(rmsmod.BringAppOnline, e).app)
                out.append(e)
            elif cls is rmsmod.TakeAppOffline:
                self.online.discard(cast(rmsmod.TakeAppOffline, e).app)
                out.append(e)
            elif cls is rmsmod.AnnounceAppState:
                e = cast(rmsmod.AnnounceAppState, e)
                out.append(Broadcast(AppState(e.app, e.node, e.online)))
            else:
                raise TypeError(f"node: unexpected RMS effect {e!r}")
        # A clock observation (every heartbeat) cannot move an application: skip the comparison.
        if self.sf is not None and (effects or type(event) is not rmsmod.PeerClockObserved):
            prio = rms.priorities()
            if prio != self._priorities:
                self._priorities = prio
                self._feed_sf(now, fen.AppPrioritiesChanged(tuple(sorted(prio.items()))), out)

    def _sf_request(self, now: float, event: Event, out: list[Effect]) -> None:
        """An operator's (or clovmmigrate's) start, reconfig or test of SF begins a generation."""
        self.sf_generation += 1
        self._feed_sf(now, event, out)

    # ---- disk ---------------------------------------------------------------------------------
    def _store(self, key: str, value: Any, out: list[Effect]) -> None:
        setattr(self.disk, key, value)
        out.append(Store(key, value))

    def _machine_config(self, cfg: SfConfig) -> SfConfig:
        """The config SF runs with: every agent timeout at least ``min_agent_timeout``."""
        floor = math.ceil(self.tuning.min_agent_timeout)
        if floor <= 0:
            return cfg
        hosts = tuple(
            replace(h, agents=tuple(replace(a, timeout=max(a.timeout, floor)) for a in h.agents)) for h in cfg.hosts
        )
        return SfConfig(hosts, cfg.xscf)

    def _entry(self, node: str) -> XscfEntry | None:
        try:
            return self.disk.sf_config.entry(node)
        except KeyError:
            return None

    # ---- operations ---------------------------------------------------------------------------
