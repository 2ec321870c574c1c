"""The XSCF service processor of one SPARC M10 server, as seen by the XSCF SNMP shutdown agents.

One :class:`Xscf` per server. It answers domain status / panic / reset requests that arrive on one
of its two LANs (XSCF-LAN#0, XSCF-LAN#1, named by their addresses) and orders the hypervisor to
panic or reset a guest domain. It is a pure state machine without timers
(``next_deadline()`` is always ``None``).

Theory of operation
-------------------
The XSCF knows two things per PPAR:

* the domains the hypervisor actually runs *now* (:class:`DomainsRunningReported`, sent by the
  driver whenever that changes — a boot, a stop, a migration in or out);
* the domains of the *saved* logical-domain configuration (:class:`SpconfigSaved`, i.e. the last
  ``ldm add-spconfig`` run from that PPAR's control domain). The XSCF addresses guests by
  PPAR-ID + domain name through this saved configuration only.

A domain's status (``showdomainstatus -p N``) follows from both:

====================  ===================  ==========================================
in saved config       running now          status
====================  ===================  ==========================================
yes                   yes                  ``Solaris running``
yes                   no                   ``Host stopped`` (e.g. migrated away)
no                    yes                  ``Unknown`` (migrated here, spconfig not saved)
====================  ===================  ==========================================

When the report also says which domains the hypervisor *holds* in the PPAR (``held``: running,
bound or inactive), a saved domain that is not held there any more (it migrated away) is
``Unknown`` too, not ``Host stopped``: the XSCF does not claim that a domain it does not have is
stopped — on that word CF takes a silent node DOWN (``clovmmigrate -p``'s window, a widening with
the hypervisor permission, a peer that never answered a join) and SF counts a kill as done, while
the domain runs on another server. Without ``held`` (drivers that do not tell) the table above
applies as it is.

Requests (every request gets exactly one :class:`SpReply` carrying its ``req_id``, except below):

* A request on a LAN that is down, or addressed to an address that is not one of this XSCF's
  LANs, gets **no reply at all** (``[]``): the caller times out, like an SNMP agent that does not
  answer.
* A PPAR that is not on this server → ``ok=False``, text ``PPAR-ID n is not on this server``.
* A domain that is neither in the saved configuration nor running → ``ok=False``.
* Status → ``ok=True`` with the status above (text = the status, explained for ``Unknown``).
* Panic / reset of a known, running domain → ``ok=True`` plus :class:`PanicDomain` /
  :class:`ResetDomain`; the domain is no longer running (until the hypervisor reports it again).
* Panic / reset of a known, stopped domain → ``ok=True``, text ``already stopped``, no effect:
  killing a dead node counts as done. (After an unsaved migration this is exactly the hazard the
  product documents: the XSCF "kills" the stale, stopped entry while the guest runs elsewhere.)
* Panic / reset of a running domain that is not in the saved configuration → refused
  (``ok=False``, status ``Unknown``): the XSCF cannot address it until the configuration is saved
  with ``ldm add-spconfig``.

Malformed driver input (a report for a PPAR or a LAN state for an address this server does not
have) raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._state import SpDomainStatus
from .base import Effect, Event, Ticked


# ------------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class DomainStatusRequested(Event):
    req_id: int
    lan: str  # the XSCF address the request was sent to
    ppar: int
    domain: str


@dataclass(frozen=True, slots=True)
class DomainPanicRequested(Event):
    req_id: int
    lan: str
    ppar: int
    domain: str


@dataclass(frozen=True, slots=True)
class DomainResetRequested(Event):
    req_id: int
    lan: str
    ppar: int
    domain: str


@dataclass(frozen=True, slots=True)
class LanStateChanged(Event):
    lan: str
    up: bool


@dataclass(frozen=True, slots=True)
class DomainsRunningReported(Event):
    """What the hypervisor runs in ``ppar`` now (replaces the previous report); ``held``: every guest
    domain it holds there, in any state (None: not told)."""

    ppar: int
    running: frozenset[str]
    held: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class SpconfigSaved(Event):
    """``ldm add-spconfig`` in ``ppar``: the domains of the saved configuration (replaces the old)."""

    ppar: int
    domains: frozenset[str]


# ------------------------------------------------------------------------------------ effects
@dataclass(frozen=True, slots=True)
class SpReply(Effect):
    req_id: int
    ok: bool
    status: str  # an SpDomainStatus, or "" when there is no domain to report on
    text: str


@dataclass(frozen=True, slots=True)
class PanicDomain(Effect):
    ppar: int
    domain: str


@dataclass(frozen=True, slots=True)
class ResetDomain(Effect):
    ppar: int
    domain: str


_Request = DomainStatusRequested | DomainPanicRequested | DomainResetRequested


class Xscf:
    """The XSCF of one server. See the module docstring."""

    def __init__(self, server: str, lan0: str, lan1: str, ppars: Iterable[int]) -> None:
        self._server = server
        self._lans: dict[str, bool] = {lan0: True, lan1: True}
        self._lan0, self._lan1 = lan0, lan1
        self._ppars: tuple[int, ...] = tuple(sorted(set(ppars)))
        self._running: dict[int, frozenset[str]] = {p: frozenset() for p in self._ppars}
        self._saved: dict[int, frozenset[str]] = {p: frozenset() for p in self._ppars}
        self._held: dict[int, frozenset[str] | None] = {p: None for p in self._ppars}

    # ---------------------------------------------------------------- queries
    @property
    def server(self) -> str:
        return self._server

    @property
    def lan0(self) -> str:
        return self._lan0

    @property
    def lan1(self) -> str:
        return self._lan1

    @property
    def ppars(self) -> tuple[int, ...]:
        return self._ppars

    def lan_up(self, lan: str) -> bool:
        return self._lans[lan]

    def status(self, ppar: int) -> dict[str, SpDomainStatus]:
        """``showdomainstatus -p ppar``: every known or running domain, sorted by name."""
        self._check_ppar(ppar)
        names = sorted(self._running[ppar] | self._saved[ppar])
        return {d: self._status(ppar, d) for d in names}

    def next_deadline(self) -> float | None:
        return None

    # ---------------------------------------------------------------- events
    def handle(self, now: float, event: Event) -> list[Effect]:
        match event:
            case Ticked():
                return []
            case LanStateChanged(lan, up):
                if lan not in self._lans:
                    raise ValueError(f"{lan} is not an XSCF-LAN of {self._server}")
                self._lans[lan] = up
                return []
            case DomainsRunningReported(ppar, running, held):
                self._check_ppar(ppar)
                self._running[ppar] = frozenset(running)
                self._held[ppar] = None if held is None else frozenset(held) | self._running[ppar]
                return []
            case SpconfigSaved(ppar, domains):
                self._check_ppar(ppar)
                self._saved[ppar] = frozenset(domains)
                return []
            case DomainStatusRequested() | DomainPanicRequested() | DomainResetRequested():
                return self._request(event)
        raise TypeError(f"Xscf cannot handle {event!r}")

    # ---------------------------------------------------------------- internals
    def _check_ppar(self, ppar: int) -> None:
        if ppar not in self._running:
            raise ValueError(f"PPAR-ID {ppar} is not on this server")

    def _status(self, ppar: int, domain: str) -> SpDomainStatus:
        known, running = domain in self._saved[ppar], domain in self._running[ppar]
        held = self._held[ppar]
        if known and (held is None or domain in held):
            return SpDomainStatus.RUNNING if running else SpDomainStatus.STOPPED
        return SpDomainStatus.UNKNOWN

    def _request(self, req: _Request) -> list[Effect]:
        if not self._lans.get(req.lan, False):
            return []  # no answer: the SNMP request times out
        rid, ppar, dom = req.req_id, req.ppar, req.domain
        if ppar not in self._running:
            return [SpReply(rid, False, "", f"PPAR-ID {ppar} is not on this server")]
        if dom not in self._saved[ppar] and dom not in self._running[ppar]:
            return [SpReply(rid, False, "", f"Domain {dom} does not exist in PPAR-ID {ppar}")]
        st = self._status(ppar, dom)
        gone = dom not in self._running[ppar]  # (UNKNOWN: saved, but no longer held here)
        if isinstance(req, DomainStatusRequested):
            text = str(st)
            if st is SpDomainStatus.UNKNOWN:
                text += (
                    f" ({dom} is no longer in PPAR-ID {ppar}: the hypervisor does not hold it)"
                    if gone
                    else f" ({dom} is running but not in the saved logical-domain configuration)"
                )
            return [SpReply(rid, True, st, text)]
        action = "panic" if isinstance(req, DomainPanicRequested) else "reset"
        if st is SpDomainStatus.UNKNOWN:
            if gone:
                return [SpReply(rid, False, st, f"cannot {action} {dom}: it is no longer in PPAR-ID {ppar}")]
            return [
                SpReply(
                    rid,
                    False,
                    st,
                    f"cannot {action} {dom}: it is not in the saved logical-domain configuration of "
                    f"PPAR-ID {ppar}; save the configuration with ldm add-spconfig first",
                )
            ]
        if st is SpDomainStatus.STOPPED:
            return [SpReply(rid, True, st, "already stopped")]
        self._running[ppar] = self._running[ppar] - {dom}
        if action == "panic":
            return [SpReply(rid, True, SpDomainStatus.PANIC, f"panic requested for {dom}"), PanicDomain(ppar, dom)]
        return [SpReply(rid, True, SpDomainStatus.RESET, f"reset requested for {dom}"), ResetDomain(ppar, dom)]
