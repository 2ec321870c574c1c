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
operations re-read operator-edited files (:data:`FILE_READS`): the driver attaches what it read.

*Operations.* :class:`OperationRequested` ``(op_id, op, args, caller)`` is answered by exactly one
:class:`Answer` — at once, or later for ``sf_wait`` (when the rows of the named node have
settled, or at its deadline) and ``xscf_check`` (after :class:`CheckXscf` is answered by
:class:`XscfChecked`). ``caller`` None is the local admin channel (root on the host); a name is the
remote channel, open to control domains only. The operations and their answers are the tables of
``core/migration.py`` and ``docs/safe-migration.md``.
"""

from __future__ import annotations

import collections
import ipaddress
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping

from . import codes, messages
from . import fencing as fen
from . import membership as mem
from . import rms as rmsmod
from ._state import AGENT_LAN, NodeState, SfDaemonState, SpDomainStatus
from .base import Effect, Event, Log, Ticked
from .defaults import (
    CLOCK_SAMPLES,
    DEFAULT_CLUSTER_TIMEOUT,
    DOMAIN_RECHECK_INTERVAL,
    EPOCH,
    HEARTBEAT_INTERVAL,
    JOIN_TIMEOUT,
    RMS_SETTLE,
    RMS_SYNC_PERIOD,
    RMS_SYNC_THRESHOLD,
    SF_LIGHTER_SIDE_DELAY,
    SF_TEST_INTERVAL,
    STALE_HEARTBEAT,
)
from .sfconfig import SfConfig, XscfEntry, entry_problem

TICK = Ticked()
BUSY_SA = ("Init-ing", "Testing")
SERVICES_NONE, SERVICES_STARTED, SERVICES_REFUSED = "none", "started", "refused"
# The syslog tag of each machine's lines in /var/adm/messages.
TAG_CF, TAG_SF, TAG_RMS = "CF", "SMAWsf", "RMS"


# ---- static facts of a node (from the topology) -------------------------------------------------
@dataclass(frozen=True, slots=True)
class ControlDomainFacts:
    """What a control domain answers to ``cd_info`` (the one place that answer is built)."""

    host: str
    server: str
    ppar: int
    lan0: str
    lan1: str
    sf_weight: int
    user: str
    connection: str

    def info(self) -> dict[str, Any]:
        return {"host": self.host, "server": self.server, "ppar": self.ppar, "lan0": self.lan0,
                "lan1": self.lan1, "sf_weight": self.sf_weight, "user": self.user, "connection": self.connection}


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """The fixed facts of one node."""

    cf: str
    host: str
    nodes: tuple[str, ...]  # its cluster's nodes, in configuration order (cftool -n numbers them)
    guest_cluster: bool  # a node of a guest-domain cluster: SF and RMS run here
    apps: tuple[rmsmod.AppSpec, ...] = ()
    control_domains: frozenset[str] = frozenset()  # who may use the remote channel
    control: ControlDomainFacts | None = None  # set on a control domain
    # domain -> (its CF node, the nodes of its guest cluster) for every guest-cluster domain
    guest_domains: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, hash=False)
    cf_domain: Mapping[str, str] = field(default_factory=dict, hash=False)  # CF node -> domain / host name

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if n != self.cf)


@dataclass(frozen=True, slots=True)
class NodeTuning:
    """Timing of a node. The simulator uses the defaults; the runtime adds real-time floors."""

    epoch: float = EPOCH
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    join_timeout: float = JOIN_TIMEOUT
    recheck_interval: float = DOMAIN_RECHECK_INTERVAL
    min_detection: float = 0.0  # floor under every CF effective timeout
    min_agent_timeout: float = 0.0  # floor under every shutdown agent's timeout
    stale_heartbeat: float = STALE_HEARTBEAT
    clock_samples: int = CLOCK_SAMPLES
    sf_test_interval: float = SF_TEST_INTERVAL
    sf_lighter_side_delay: float = SF_LIGHTER_SIDE_DELAY
    rms_sync_threshold: float = RMS_SYNC_THRESHOLD
    rms_sync_period: float = RMS_SYNC_PERIOD
    rms_settle: float = RMS_SETTLE


@dataclass
class NodeDisk:
    """A node's files (what survives a restart): cluster.config's CLUSTER_TIMEOUT, the
    clovmmigrate record, the ``-p`` window flag, ``sf.disabled``, rcsd.cfg + SA_xscfsnmp.cfg,
    widen.json (peer -> {"seconds", "until", "hypervisor"}) and etc/inet/hosts (name -> address)."""

    timeout: int = DEFAULT_CLUSTER_TIMEOUT
    record: int | None = None
    window: bool = False
    sf_disabled: bool = False
    sf_config: SfConfig = field(default_factory=SfConfig)
    widen: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> NodeDisk:
        """A copy of just these fields (a driver's subclass may carry more)."""
        return NodeDisk(self.timeout, self.record, self.window, self.sf_disabled, self.sf_config,
                        {p: dict(w) for p, w in self.widen.items()}, dict(self.hosts))


STORE_KEYS = ("timeout", "record", "window", "sf_disabled", "sf_config", "widen")
# Operations that re-read files an operator may edit by hand. The driver attaches what it read as
# args "file_timeout" (cluster.config), "file_sf" (an SfConfig from rcsd.cfg + SA_xscfsnmp.cfg)
# or "file_hosts" (etc/inet/hosts), or "file_error" (one line) when the file does not parse.
_FILE_READS: Mapping[str, str] = {"cfset_r": "timeout", "clsnmpsetup_l": "sf", "sf_entry": "sf",
                                  "set_sf_entry": "sf", "resolve": "hosts"}


def file_read(op: str, args: Mapping[str, Any]) -> str | None:
    """Which file (``"timeout"``, ``"sf"``, ``"hosts"``) the operation re-reads, if any."""
    if op == "sdtool":
        return "sf" if str(args.get("flag", "")).lstrip("-") == "r" else None
    return _FILE_READS.get(op)


# ---- the interconnect -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Heartbeat:
    inc: int
    clock: float  # the sender's wall clock
    sent: float  # the sender's emulated monotonic time


@dataclass(frozen=True, slots=True)
class JoinRequest:
    inc: int


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    accepted: bool
    reason: str
    inc: int  # the answering node's incarnation


@dataclass(frozen=True, slots=True)
class Elimination:
    node: str


@dataclass(frozen=True, slots=True)
class AppState:
    app: str
    node: str
    online: bool


PeerMessage = Heartbeat | JoinRequest | JoinAnswer | Elimination | AppState
MESSAGE_KINDS: Mapping[str, type] = {"hb": Heartbeat, "join": JoinRequest, "joinans": JoinAnswer,
                                     "elim": Elimination, "app": AppState}
MESSAGE_KIND = {cls: kind for kind, cls in MESSAGE_KINDS.items()}


# ---- events -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    """The host's cluster software started (boot): re-apply the disk, join the cluster."""


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    sender: str
    message: PeerMessage


@dataclass(frozen=True, slots=True)
class PlacementObserved(Event):
    """The node runs on ``server`` (reported at start and whenever it changes)."""

    server: str


@dataclass(frozen=True, slots=True)
class ClockOffsetsObserved(Event):
    """The servers' clock offsets (s) are now these (a server not listed: 0)."""

    offsets: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class XscfAnswered(Event):
    """The XSCF answered the request of ``run`` (status, panic or reset)."""

    run: fen.RunAgent
    ok: bool
    status: str
    text: str


@dataclass(frozen=True, slots=True)
class XscfHostKeyUnknown(Event):
    """``run``'s SSH connection to the XSCF was refused: its host key is not in known_hosts."""

    run: fen.RunAgent


@dataclass(frozen=True, slots=True)
class XscfRequestFailed(Event):
    """``run`` got no usable answer from the XSCF (one line saying why)."""

    run: fen.RunAgent
    detail: str


@dataclass(frozen=True, slots=True)
class DomainStatusAnswered(Event):
    """Answer to :class:`AskDomainStatus`: the XSCF's status of ``node``'s domain."""

    node: str
    status: str


@dataclass(frozen=True, slots=True)
class XscfChecked(Event):
    """Answer to :class:`CheckXscf`."""

    op_id: int
    known_host: bool
    snmp: tuple[tuple[str, bool], ...]  # ("lan0", up), ("lan1", up)


@dataclass(frozen=True, slots=True)
class OperationRequested(Event):
    op_id: int
    op: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    caller: str | None = None  # None: the local admin channel; else the remote caller's name


# ---- effects ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Broadcast(Effect):
    """Send ``message`` to every peer of the cluster."""

    message: PeerMessage


@dataclass(frozen=True, slots=True)
class Send(Effect):
    to: str
    message: PeerMessage


@dataclass(frozen=True, slots=True)
class WriteLog(Effect):
    """Append a line to a log of the node (``Log`` of one machine, with that machine's syslog tag)."""

    tag: str
    dest: str
    text: str
    msgid: str = ""


@dataclass(frozen=True, slots=True)
class RunShutdownAgent(Effect):
    run: fen.RunAgent
    generation: int


@dataclass(frozen=True, slots=True)
class AskDomainStatus(Effect):
    """Ask the XSCF of ``entry`` (LAN#0, else LAN#1) for the status of ``node``'s domain."""

    node: str
    entry: XscfEntry


@dataclass(frozen=True, slots=True)
class CheckXscf(Effect):
    """``xscf_check``: is the host key of both addresses known here, and does each LAN's SNMP
    agent answer (any answer counts)? Answered by :class:`XscfChecked`."""

    op_id: int
    lan0: str
    lan1: str
    ppar: int
    domain: str


@dataclass(frozen=True, slots=True)
class Store(Effect):
    """A file of the node's disk changed: ``key`` is one of :data:`STORE_KEYS`."""

    key: str
    value: Any = field(hash=False)


@dataclass(frozen=True, slots=True)
class Answer(Effect):
    op_id: int
    ok: bool
    value: Any = field(default=None, hash=False)
    code: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Trace(Effect):
    """A line about what the node did (simulator trace, daemon log); not a product message."""

    what: str
    text: str


# Passed through as they are, for the drivers' records: mem.AnnounceNodeState,
# rmsmod.BringAppOnline, rmsmod.TakeAppOffline.


class OpError(Exception):
    """An operation is refused: ``code`` (core.codes) and a one-line message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


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


def _positive_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 and math.isfinite(v)


def _peer_list(op: str, v: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if v is None and allow_empty:
        return ()
    if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) for p in v):
        raise OpError(codes.BAD_REQUEST, f"{op}: peers must be a list of CF node names, not {v!r}")
    return tuple(v)


class Node:
    """One node's cluster software. See the module docstring."""

    def __init__(self, spec: NodeSpec, disk: NodeDisk, *, incarnation: int, server: str,
                 offsets: Mapping[str, float] | None = None, tuning: NodeTuning | None = None) -> None:
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
        self.cf = mem.Membership(spec.cf, spec.peers, timeout=float(self.disk.timeout), incarnation=incarnation,
                                 heartbeat_interval=t.heartbeat_interval, join_timeout=t.join_timeout,
                                 recheck_interval=t.recheck_interval, min_timeout=t.min_detection)
        self.sf: fen.ShutdownFacility | None = None
        self.rms: rmsmod.Rms | None = None
        if spec.guest_cluster:
            self.sf = fen.ShutdownFacility(spec.cf, self._machine_config(self.disk.sf_config),
                                           test_interval=t.sf_test_interval,
                                           lighter_side_delay=t.sf_lighter_side_delay)
            self.rms = rmsmod.Rms(spec.cf, spec.nodes, spec.apps, sync_threshold=t.rms_sync_threshold,
                                  sync_period=t.rms_sync_period, settle=t.rms_settle)
        self._cf_due: float | None = None
        self._sf_due: float | None = None
        self._rms_due: float | None = None
        self._priorities: dict[str, int] | None = None
        self._samples: dict[str, collections.deque[float]] = {}
        self._hb_events: dict[str, mem.HeartbeatReceived] = {}
        self._waits: list[tuple[int, str | None, float]] = []  # sf_wait: (op_id, node, deadline)
        self._checks: set[int] = set()  # xscf_check op_ids waiting for XscfChecked
        self._ops: dict[str, Callable[[float, int, Mapping[str, Any], list[Effect]], Any]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("_op_")}

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
        return [[r.host, r.agent, str(r.sa_state), str(r.shut_state), str(r.test_state), str(r.init_state)]
                for r in self.sf.rows()]

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
            self._operation(now, event, out)
        elif cls in (XscfAnswered, XscfHostKeyUnknown, XscfRequestFailed):
            ok, detail = agent_result(event.run, event, self.spec.host)
            self._feed_sf(now, fen.AgentFinished(event.run.req_id, ok, detail), out)
        elif cls is DomainStatusAnswered:
            self._feed_cf(now, mem.DomainStatusReported(event.node, event.status == SpDomainStatus.STOPPED), out)
        elif cls is XscfChecked:
            if event.op_id in self._checks:
                self._checks.discard(event.op_id)
                out.append(Answer(event.op_id, True, {"known_host": event.known_host, "snmp": dict(event.snmp)}))
        elif cls is PlacementObserved:
            self._placed(event.server, out)
        elif cls is ClockOffsetsObserved:
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
            out.append(Trace("clock", f"moved from {old} to {server}: clock stepped by {delta:+g} s "
                                      f"(step now {self.clock_step:+g} s)"))
        self._offset = new_offset

    def _on_message(self, now: float, sender: str, m: PeerMessage, out: list[Effect]) -> None:
        cls = type(m)
        if cls is Heartbeat:
            hb = self._hb_events.get(sender)
            if hb is None or hb.incarnation != m.inc:  # immutable: one per peer incarnation
                hb = self._hb_events[sender] = mem.HeartbeatReceived(sender, m.inc)
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
            self._feed_cf(now, mem.JoinRequestReceived(sender, m.inc), out)
        elif cls is JoinAnswer:
            self._feed_cf(now, mem.JoinAnswerReceived(sender, m.accepted, m.reason, m.inc), out)
        elif cls is Elimination:
            self._feed_cf(now, mem.NodeEliminated(m.node), out)
        elif cls is AppState:
            self._feed_rms(now, rmsmod.AppStateReported(m.app, m.node, m.online), out)

    # ---- routing ------------------------------------------------------------------------------
    def _feed_cf(self, now: float, event: Event, out: list[Effect]) -> None:
        cf = self.cf
        effects = cf.handle(now, event)
        self._cf_due = cf.next_deadline()
        for e in effects:
            cls = type(e)
            if cls is mem.BroadcastHeartbeat:
                out.append(Broadcast(Heartbeat(e.incarnation, self.wall(now), now)))
            elif cls is Log:
                out.append(WriteLog(TAG_CF, e.dest, e.text, e.msgid))
            elif cls is mem.AnnounceNodeState:
                out.append(e)
                self._feed_sf(now, fen.NodeStateChanged(e.node, e.state), out)
                self._feed_rms(now, rmsmod.PeerNodeStateChanged(e.node, e.state), out)
            elif cls is mem.SendJoinRequest:
                out.append(Send(e.to, JoinRequest(e.incarnation)))
            elif cls is mem.SendJoinAnswer:
                out.append(Send(e.to, JoinAnswer(e.accepted, e.reason, e.incarnation)))
            elif cls is mem.QueryDomainStatus:
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
                out.append(RunShutdownAgent(e, self.sf_generation))
            elif cls is Log:
                out.append(WriteLog(TAG_SF, e.dest, e.text, e.msgid))
            elif cls is fen.AnnounceEliminated:
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
                out.append(WriteLog(TAG_RMS, e.dest, e.text, e.msgid))
            elif cls is rmsmod.BringAppOnline:
                self.online.add(e.app)
                out.append(e)
            elif cls is rmsmod.TakeAppOffline:
                self.online.discard(e.app)
                out.append(e)
            elif cls is rmsmod.AnnounceAppState:
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
        hosts = tuple(replace(h, agents=tuple(replace(a, timeout=max(a.timeout, floor)) for a in h.agents))
                      for h in cfg.hosts)
        return SfConfig(hosts, cfg.xscf)

    def _entry(self, node: str) -> XscfEntry | None:
        try:
            return self.disk.sf_config.entry(node)
        except KeyError:
            return None

    # ---- operations ---------------------------------------------------------------------------
    def _operation(self, now: float, ev: OperationRequested, out: list[Effect]) -> None:
        op, caller = ev.op, ev.caller
        try:
            if caller is not None and caller not in self.spec.control_domains:
                raise OpError(codes.FORBIDDEN, f"{caller or 'a client without a name'} is not a control domain: "
                                               f"only clovmmigrate on a control domain may do {op}")
            channels = OPERATIONS.get(op)
            if channels is None or (REMOTE if caller is not None else LOCAL) not in channels:
                raise OpError(codes.UNKNOWN_OP, f"nodeagent {self.spec.host}: unknown operation {op!r}")
            if "file_error" in ev.args:
                raise OpError(codes.BAD_CONFIG, str(ev.args["file_error"]))
            value = self._ops[op](now, ev.op_id, ev.args, out)
        except OpError as e:
            out.append(Answer(ev.op_id, False, None, e.code, e.message))
            return
        except (KeyError, TypeError, ValueError) as e:
            out.append(Answer(ev.op_id, False, None, codes.BAD_REQUEST, f"{op}: bad arguments ({e!r})"))
            return
        if value is not _LATER:
            out.append(Answer(ev.op_id, True, value))

    def _need_sf(self) -> fen.ShutdownFacility:
        if self.sf is None:
            raise OpError(codes.NOT_AVAILABLE, messages.no_sf_here(self.spec.host))
        return self.sf

    def _need_control(self) -> ControlDomainFacts:
        if self.spec.control is None:
            raise OpError(codes.NOT_AVAILABLE, f"{self.spec.host} is not a control domain")
        return self.spec.control

    def _file_sf(self, args: Mapping[str, Any]) -> SfConfig:
        cfg = args.get("file_sf")
        return cfg if isinstance(cfg, SfConfig) else self.disk.sf_config

    # -- local admin commands
    def _op_cftool_n(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return self.cftool_rows()

    def _op_cftool_k(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        """cftool -k NODE: the operator declares a LEFTCLUSTER node DOWN."""
        node = args["node"]
        if node not in self._peers:
            raise OpError(codes.BAD_REQUEST, f"cftool -k: {node!r} is not another node of this cluster")
        self._feed_cf(now, mem.NodeMarkedDown(node), out)
        return str(self.cf.view()[node])

    def _op_cfset_a(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": str(self.disk.timeout)}

    def _op_cfset_r(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        seconds = int(args.get("file_timeout", self.disk.timeout))
        if seconds != self.disk.timeout:
            self.disk.timeout = seconds
            self._feed_cf(now, mem.TimeoutChanged(float(seconds)), out)
        return seconds

    def _op_sdtool(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        sf = self._need_sf()
        flag = str(args["flag"]).lstrip("-")
        if flag == "s":
            return {"running": sf.daemon is SfDaemonState.RUNNING, "rows": self.rows()}
        if flag == "b":
            if self.services == SERVICES_REFUSED:
                raise OpError(codes.SF_REFUSED, messages.sf_cannot_start(self.spec.cf, self.refusal))
            self._sf_start(now, out)
            return None
        if flag == "e":
            self._sf_stop(now, out)
            return None
        if flag == "r":
            self.disk.sf_config = self._file_sf(args)
            self._sf_request(now, fen.SfReconfigRequested(self._machine_config(self.disk.sf_config)), out)
            return None
        raise OpError(codes.BAD_REQUEST, f"sdtool: unknown flag -{flag} (s, b, e or r)")

    def _op_clsnmpsetup_l(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        return [asdict(e) for e in self._file_sf(args).xscf]

    def _op_hvdisp(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        if self.rms is None:
            raise OpError(codes.NOT_AVAILABLE, messages.no_sf_here(self.spec.host))
        return self.hvdisp_rows()

    def _op_status(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return {"host": self.spec.host, "cf": self.spec.cf, "local_state": str(self.cf.local_state),
                "view": {n: str(s) for n, s in self.cf.view().items()}, "timeout": self.disk.timeout,
                "sf": self.sf_state(), "services": self.services,
                "apps": dict(self.rms.placement()) if self.rms is not None else {},
                "server": self.server, "window": self.disk.window}

    # -- clovmmigrate (remote)
    def _op_node_status(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        d = self.disk
        return {"timeout": d.timeout, "sf": "running" if self.sf_running else "stopped", "record": d.record,
                "window": d.window}

    def _op_record_timeout(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        if self.disk.record is None:  # an existing record is kept: a second -p never records 600
            self._store("record", self.disk.timeout, out)
        return self.disk.record

    def _op_set_timeout(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        seconds = args["seconds"]
        if not _positive_number(seconds) or int(seconds) != seconds:
            raise OpError(codes.BAD_REQUEST, f"set_timeout: seconds must be a positive integer, not {seconds!r}")
        self._store("timeout", int(seconds), out)
        self._feed_cf(now, mem.TimeoutChanged(float(seconds)), out)
        return None

    def _op_window(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        is_open = args["open"]
        if not isinstance(is_open, bool):
            raise OpError(codes.BAD_REQUEST, f"window: open must be true or false, not {is_open!r}")
        self._store("window", is_open, out)
        self._feed_cf(now, mem.MigrationWindowChanged(is_open), out)
        self._feed_rms(now, rmsmod.SwitchoverHoldChanged(is_open), out)
        return None

    def _sf_stop(self, now: float, out: list[Effect]) -> None:
        self._store("sf_disabled", True, out)
        self._feed_sf(now, fen.SfStopRequested(), out)

    def _sf_start(self, now: float, out: list[Effect]) -> None:
        self._store("sf_disabled", False, out)
        if self.services == SERVICES_STARTED:
            self._sf_request(now, fen.SfStartRequested(), out)

    def _op_sf_stop(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        self._sf_stop(now, out)
        return None

    def _op_sf_start(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        self._sf_start(now, out)
        return None

    def _op_set_sf_entry(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        try:
            entry = XscfEntry(**args["entry"])
            weight = args["weight"]
        except (TypeError, KeyError) as e:
            raise OpError(codes.BAD_REQUEST, f"set_sf_entry: {e}") from None
        problem = entry_problem(entry)
        if problem is None and (isinstance(weight, bool) or not isinstance(weight, int) or weight < 0):
            problem = f"weight must be a non-negative integer, not {weight!r}"
        if problem is not None:
            raise OpError(codes.BAD_REQUEST, f"set_sf_entry: {problem}")
        config = self._file_sf(args).with_entry(entry, weight=weight)
        self._store("sf_config", config, out)
        self._sf_request(now, fen.SfReconfigRequested(self._machine_config(config)), out)
        return None

    def _op_sf_wait(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        seconds, node = args["seconds"], args.get("node")
        if not _positive_number(seconds) or not (node is None or isinstance(node, str)):
            raise OpError(codes.BAD_REQUEST, f"sf_wait: seconds must be positive and node a name, not {dict(args)!r}")
        self._waits.append((op_id, node, now + float(seconds)))
        self._check_waits(now, out)
        return _LATER

    def _check_waits(self, now: float, out: list[Effect]) -> None:
        """Answer every ``sf_wait`` whose rows have settled (SF running, none of them Init-ing,
        Testing or not yet tested) or whose deadline has come."""
        running, all_rows, waiting = self.sf_running, self.rows(), []
        for op_id, node, deadline in self._waits:
            rows = [r for r in all_rows if node is None or r[0] == node]
            busy = any(r[2] in BUSY_SA or r[4] == "Unknown" for r in rows)
            if (running and not busy) or now >= deadline:
                out.append(Answer(op_id, True, rows))
            else:
                waiting.append((op_id, node, deadline))
        self._waits = waiting

    def _op_clear_record(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        if self.disk.record is not None:
            self._store("record", None, out)
        return None

    # -- clovm migrate (remote and local)
    def _op_cf_sample(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        cf = self.cf
        view = cf.view()
        peers: dict[str, Any] = {}
        diffs: dict[str, float | None] = {}
        for p in self.spec.peers:
            last = cf.last_heard(p)
            peers[p] = {"state": str(view[p]), "gap": None if last is None else now - last,
                        "timeout": cf.effective_timeout(p, now), "widened": cf.is_widened(p, now)}
            samples = self._samples.get(p)
            diffs[p] = abs(max(samples)) if samples else None
        return {"t": now, "state": str(cf.local_state), "sf": "running" if self.sf_running else "stopped",
                "peers": peers, "clock_diff": diffs, "rms_busy": self.rms is not None and self.rms.busy()}

    def _op_widen(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        peers = _peer_list("widen", args.get("peers"))
        seconds, lease, hypervisor = args.get("seconds"), args.get("lease"), args.get("hypervisor", False)
        for name, v in (("seconds", seconds), ("lease", lease)):
            if not _positive_number(v):
                raise OpError(codes.BAD_REQUEST, f"widen: {name} must be a positive number, not {v!r}")
        if not isinstance(hypervisor, bool):
            raise OpError(codes.BAD_REQUEST, f"widen: hypervisor must be true or false, not {hypervisor!r}")
        until = now + float(lease)
        saved = {p: dict(w) for p, w in self.disk.widen.items()}
        for p in peers:
            if p in self._peers:
                saved[p] = {"seconds": float(seconds), "until": until, "hypervisor": hypervisor}
        self._store("widen", saved, out)
        self._feed_cf(now, mem.DetectionWidened(peers, float(seconds), until, hypervisor), out)
        return None

    def _op_narrow(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        peers = _peer_list("narrow", args.get("peers") or None, allow_empty=True)
        saved = {p: dict(w) for p, w in self.disk.widen.items() if peers and p not in peers}
        self._store("widen", saved, out)
        self._feed_cf(now, mem.DetectionNarrowed(peers), out)
        return None

    def _op_clock_align(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._align_armed = True  # the step applies when the server changes from the current one
        return None

    def _op_xscf_check(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        lan0, lan1, ppar = args.get("lan0"), args.get("lan1"), args.get("ppar", 0)
        if not isinstance(lan0, str) or not isinstance(lan1, str):
            raise OpError(codes.BAD_REQUEST, f"xscf_check: lan0 and lan1 must be addresses, not {lan0!r}, {lan1!r}")
        if isinstance(ppar, bool) or not isinstance(ppar, int):
            raise OpError(codes.BAD_REQUEST, f"xscf_check: ppar must be an integer, not {ppar!r}")
        self._checks.add(op_id)
        out.append(CheckXscf(op_id, lan0, lan1, ppar, self.spec.host))
        return _LATER

    def _op_sf_test(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        self._sf_request(now, fen.SfTestRequested(), out)
        return None

    def _op_sf_entry(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        try:
            e = self._file_sf(args).entry(str(args["node"]))
        except KeyError:
            return None
        return {k: v for k, v in asdict(e).items() if k != "device"}

    # -- control domains
    def _op_guest_nodes(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_control()
        domain = str(args["domain"])
        found = self.spec.guest_domains.get(domain)
        if found is None:
            raise OpError(codes.NOT_A_CLUSTER_DOMAIN, messages.not_a_cluster_domain(domain))
        cf, nodes = found
        return {"node": cf, "nodes": list(nodes), "domains": {n: self.spec.cf_domain[n] for n in nodes}}

    def _op_resolve(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_control()
        hosts = args.get("file_hosts")
        return resolve(hosts if isinstance(hosts, Mapping) else self.disk.hosts, str(args["name"]))

    def _op_cd_info(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return self._need_control().info()


def resolve(hosts: Mapping[str, str], name: str) -> str | None:
    """``name`` itself if it is an IP address, else its address in etc/inet/hosts (or None)."""
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        return hosts.get(name)


class _Later:
    """The answer comes in a later ``handle`` call."""


_LATER = _Later()
LOCAL, REMOTE = "local", "remote"
_BOTH = frozenset({LOCAL, REMOTE})
# Which channel serves which operation (local: the host's admin socket; remote: clovmmigrate).
OPERATIONS: Mapping[str, frozenset[str]] = {
    **dict.fromkeys(("cftool_n", "cftool_k", "cfset_a", "cfset_r", "sdtool", "clsnmpsetup_l", "hvdisp", "status"),
                    frozenset({LOCAL})),
    **dict.fromkeys(("node_status", "record_timeout", "set_timeout", "window", "sf_stop", "sf_start",
                     "set_sf_entry", "sf_wait", "clear_record"), frozenset({REMOTE})),
    **dict.fromkeys(("guest_nodes", "resolve", "cd_info", "cf_sample", "widen", "narrow", "clock_align",
                     "xscf_check", "sf_test", "sf_entry"), _BOTH),
}
