"""The vocabulary of ldmd (``core.ldm``): its constants, records, events, peer messages and effects.

Plain dataclasses and the few value formats ``ldm list`` shows them in (memory sizes,
uptimes, a guest's FLAGS column); no behaviour. :class:`~clovm.core.ldm.Ldmd` (``core/ldm.py``)
consumes the events and returns the effects; its module docstring says what each one means.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import names
from ._state import DomainState, MigrationPhase
from .base import Effect, Event

MAX_SPCONFIGS = 8  # per PPAR, including factory-default
FACTORY_DEFAULT = "factory-default"
SUSPEND_OVERHEAD_S = 0.1
FIRST_CONSOLE_PORT = 5000
PRIMARY = "primary"
_SPCONFIG_NAME = names.SPCONFIG  # (core.names)
_LOG = "messages"
LDMD_TAG = "ldmd"  # the syslog tag of ldmd's lines in a control domain's var/adm/messages


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class Domain:
    """One row of ``ldm list``. ``started_at`` is None unless active."""

    name: str
    state: DomainState
    flags: str
    cons: str
    vcpu: int
    memory_mb: int
    dirty_rate_mb_s: float = 0.0
    started_at: float | None = None
    util: float = 0.1


@dataclass(frozen=True, slots=True)
class Spconfig:
    """One saved configuration. ``label`` is "current", "next poweron" or ""."""

    name: str
    label: str
    domains: frozenset[str]


@dataclass(slots=True)
class Migration:
    """An outgoing migration (source side)."""

    mig_id: int
    domain: str
    target: str
    req_id: int
    dry_run: bool
    phase: MigrationPhase = MigrationPhase.CHECKS
    round: int = 0
    to_copy_mb: float = 0.0  # amount of the current round / of the suspend copy
    deadline: float | None = None
    suspended_at: float | None = None


@dataclass(frozen=True, slots=True)
class SpStore:
    """What the service processor keeps of one PPAR's configurations (it survives ldmd)."""

    configs: tuple[tuple[str, frozenset[str]], ...]  # in store order, factory-default first
    next: str  # the configuration used at next power-on
    booted: str  # the configuration last booted or saved
    changed: bool  # the running configuration changed since it was booted or saved


@dataclass(frozen=True, slots=True)
class FoundDomain:
    """A guest domain a restarting ldmd finds placed on its control domain (its placement file)."""

    name: str
    memory_mb: int
    vcpu: int
    dirty_rate_mb_s: float
    alive: bool  # its process runs (perhaps frozen by an interrupted migration)
    started_at: float | None = None  # when it was started, if the driver knows


@dataclass(frozen=True, slots=True)
class _Incoming:
    source: str
    mig_id: int


# ------------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class CommandReceived(Event):
    req_id: int
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerMsg:
    """Base of the ldmd-to-ldmd migration protocol (plain fields, msgspec-encodable)."""


@dataclass(frozen=True, slots=True)
class PeerMessageReceived(Event):
    peer: str
    msg: PeerMsg


@dataclass(frozen=True, slots=True)
class PeerUnreachable(Event):
    peer: str


@dataclass(frozen=True, slots=True)
class DomainProcessExited(Event):
    name: str


@dataclass(frozen=True, slots=True)
class MigrationAbortArmed(Event):
    domain: str


@dataclass(frozen=True, slots=True)
class PlacementMoved(Event):
    """The driver saw the process of ``domain`` placed on control domain ``host`` now (its
    placement record moved): for a domain handing off to ``host`` the target has taken it over,
    even if its :class:`HandoffAcked` never arrives (the target died right after the take-over)."""

    domain: str
    host: str


@dataclass(frozen=True, slots=True)
class HandoffNotTaken(Event):
    """The driver knows for sure that control domain ``host`` did not take ``domain`` over: the
    ldmd that held its copy is gone (its connection refused or broke, or it answers as a restarted
    ldmd that knows nothing of the migration) and the domain's placement still names this control
    domain. A source handing off to ``host`` still holds the only, complete, frozen copy: it resumes
    it (the migration is cancelled). Without that certainty (a target that merely stopped
    answering) the driver feeds :class:`PeerUnreachable`, and the hand-off fails."""

    domain: str
    host: str


# ------------------------------------------------------------------------------------ protocol
@dataclass(frozen=True, slots=True)
class MigrationOffer(PeerMsg):
    mig_id: int
    domain: str
    memory_mb: int
    vcpu: int
    dirty_rate_mb_s: float
    source_host: str
    started_at: float = 0.0
    util: float = 0.1
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class OfferAccepted(PeerMsg):
    mig_id: int
    domain: str


@dataclass(frozen=True, slots=True)
class OfferRejected(PeerMsg):
    mig_id: int
    domain: str
    reason: str


@dataclass(frozen=True, slots=True)
class Handoff(PeerMsg):
    mig_id: int
    domain: str


@dataclass(frozen=True, slots=True)
class HandoffAcked(PeerMsg):
    mig_id: int
    domain: str


@dataclass(frozen=True, slots=True)
class MigrationCancelled(PeerMsg):
    mig_id: int
    domain: str


@dataclass(frozen=True, slots=True)
class MigrationFailed(PeerMsg):
    mig_id: int
    domain: str


# ------------------------------------------------------------------------------------ effects
@dataclass(frozen=True, slots=True)
class Reply(Effect):
    req_id: int
    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class SendToPeer(Effect):
    peer: str
    msg: PeerMsg


@dataclass(frozen=True, slots=True)
class StartDomainProcess(Effect):
    name: str


@dataclass(frozen=True, slots=True)
class KillDomainProcess(Effect):
    name: str


@dataclass(frozen=True, slots=True)
class SuspendDomainProcess(Effect):
    name: str


@dataclass(frozen=True, slots=True)
class ResumeDomainProcess(Effect):
    name: str


@dataclass(frozen=True, slots=True)
class AdoptDomainProcess(Effect):
    name: str
    from_host: str


@dataclass(frozen=True, slots=True)
class ReleaseDomain(Effect):
    name: str


@dataclass(frozen=True, slots=True)
class MigrationProgress(Effect):
    domain: str
    phase: str  # a MigrationPhase value
    percent: int
    round: int = 0  # the pre-copy round (1, 2, ...; 0 before the first)


@dataclass(frozen=True, slots=True)
class ConfigSaved(Effect):
    """``add-spconfig`` stored ``name`` with these domains (for the XSCF's view of the PPAR)."""

    ppar: int
    name: str
    domains: frozenset[str]


def format_memory(mb: float) -> str:
    mb = int(mb)
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def format_uptime(seconds: float) -> str:
    s = max(0, int(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h {m}m"
    if h:
        return f"{h}h {m}m"
    return f"{m}m" if m else f"{s}s"


def _guest_flags(state: DomainState, mark: str = "-") -> str:
    return f"-{'n' if state is DomainState.ACTIVE else '-'}---{mark}"
