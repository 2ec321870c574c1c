"""The vocabulary of a cluster node (``core.node``): its facts, its disk, the interconnect
messages, and the events and effects a driver exchanges with it. Plain values, no behaviour
beyond building the ``cd_info`` answer and telling which file an operation re-reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import fencing as fen
from . import rms as rmsmod
from .base import Effect, Event
from .defaults import (
    CF_STALL,
    CLOCK_SAMPLES,
    DEFAULT_CLUSTER_TIMEOUT,
    DOMAIN_RECHECK_INTERVAL,
    EPOCH,
    HEARTBEAT_INTERVAL,
    JOIN_TIMEOUT,
    RMS_SETTLE,
    RMS_SYNC_PERIOD,
    RMS_SYNC_THRESHOLD,
    SF_KILL_RETRY,
    SF_LIGHTER_SIDE_DELAY,
    SF_SPLIT_SETTLE,
    SF_TEST_INTERVAL,
    STALE_HEARTBEAT,
)
from .sfconfig import SfConfig, XscfEntry


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
        return {
            "host": self.host,
            "server": self.server,
            "ppar": self.ppar,
            "lan0": self.lan0,
            "lan1": self.lan1,
            "sf_weight": self.sf_weight,
            "user": self.user,
            "connection": self.connection,
        }


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
    # CF counts no silence across a gap this long between two of its calls (a frozen node; off
    # unless set: the simulator sets CF_STALL; a real-time driver needs a floor like min_detection)
    cf_stall: float = CF_STALL
    min_agent_timeout: float = 0.0  # floor under every shutdown agent's timeout
    stale_heartbeat: float = STALE_HEARTBEAT
    clock_samples: int = CLOCK_SAMPLES
    sf_test_interval: float = SF_TEST_INTERVAL
    sf_lighter_side_delay: float = SF_LIGHTER_SIDE_DELAY
    sf_split_settle: float = SF_SPLIT_SETTLE
    sf_kill_retry: float = SF_KILL_RETRY
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
        return NodeDisk(
            self.timeout,
            self.record,
            self.window,
            self.sf_disabled,
            self.sf_config,
            {p: dict(w) for p, w in self.widen.items()},
            dict(self.hosts),
        )


STORE_KEYS = ("timeout", "record", "window", "sf_disabled", "sf_config", "widen")
# Operations that re-read files an operator may edit by hand. The driver attaches what it read as
# args "file_timeout" (cluster.config), "file_sf" (an SfConfig from rcsd.cfg + SA_xscfsnmp.cfg)
# or "file_hosts" (etc/inet/hosts), or "file_error" (one line) when the file does not parse.
_FILE_READS: Mapping[str, str] = {
    "cfset_r": "timeout",
    "clsnmpsetup_l": "sf",
    "sf_entry": "sf",
    "set_sf_entry": "sf",
    "resolve": "hosts",
}


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
MESSAGE_KINDS: Mapping[str, type] = {
    "hb": Heartbeat,
    "join": JoinRequest,
    "joinans": JoinAnswer,
    "elim": Elimination,
    "app": AppState,
}
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
