"""The events and effects of CF membership: what a driver feeds :class:`~clovm.core.membership.Membership`
and what the machine returns (all of them importable from :mod:`clovm.core.membership` as well).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._state import NodeState
from .base import Effect, Event


# ---- events ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeBooted(Event):
    pass


@dataclass(frozen=True, slots=True)
class HeartbeatReceived(Event):
    sender: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class JoinRequestReceived(Event):
    sender: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class JoinAnswerReceived(Event):
    sender: str
    accepted: bool
    reason: str
    incarnation: int | None = None  # the answering node's incarnation


@dataclass(frozen=True, slots=True)
class TimeoutChanged(Event):
    """cfset -r with a new CLUSTER_TIMEOUT."""

    seconds: float


@dataclass(frozen=True, slots=True)
class MigrationWindowChanged(Event):
    """clovmmigrate -p (open=True) / -u (open=False)."""

    open: bool


@dataclass(frozen=True, slots=True)
class DetectionWidened(Event):
    """clovm migrate --scoped: use ``seconds`` for ``peers`` until ``until`` (emulated seconds).

    ``hypervisor``: a LEFTCLUSTER listed peer may be taken DOWN when its domain is stopped (as in
    the migration window), until :class:`DetectionNarrowed` names it.
    """

    peers: tuple[str, ...]
    seconds: float
    until: float
    hypervisor: bool = False


@dataclass(frozen=True, slots=True)
class DetectionNarrowed(Event):
    """End the widening of ``peers`` (empty: of every widened peer)."""

    peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeEliminated(Event):
    """SF killed ``node`` (locally or announced by a peer)."""

    node: str


@dataclass(frozen=True, slots=True)
class DomainStatusReported(Event):
    """Answer to :class:`QueryDomainStatus`."""

    node: str
    stopped: bool


@dataclass(frozen=True, slots=True)
class NodeMarkedDown(Event):
    """cftool -k."""

    node: str


# ---- effects ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BroadcastHeartbeat(Effect):
    incarnation: int


@dataclass(frozen=True, slots=True)
class SendJoinRequest(Effect):
    to: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class SendJoinAnswer(Effect):
    to: str
    accepted: bool
    reason: str
    incarnation: int = 0  # ours, so the joiner knows which incarnation of us it holds UP


@dataclass(frozen=True, slots=True)
class AnnounceNodeState(Effect):
    node: str
    state: NodeState
    unseen: bool = False  # LEFTCLUSTER without ever having been UP here (a silent peer whose domain runs)


@dataclass(frozen=True, slots=True)
class QueryDomainStatus(Effect):
    node: str


@dataclass(frozen=True, slots=True)
class StartClusterServices(Effect):
    """Join complete: start SF, CRM and RMS."""


@dataclass(frozen=True, slots=True)
class RefuseClusterServices(Effect):
    refused_by: tuple[str, ...]
    reason: str
