"""ldmd: the Logical Domains Manager of one control domain (sans-IO).

One :class:`Ldmd` per control domain. It owns the domain table of its PPAR (the control domain
itself is listed as ``primary``), the PPAR's saved SP configurations (spconfigs), and both ends of
live migrations: outgoing ones (this ldmd is the source) and incoming ones (it is the target).

Where the code is
    This module keeps :class:`Ldmd` itself: its state, restart and power-on, the queries, event
    dispatch (``handle``) and ``next_deadline``. ``ldm_io.py`` holds the constants, records,
    events, peer messages and effects (all re-exported here: ``from clovm.core.ldm import X`` works
    for each); ``ldm_commands.py`` the ``ldm`` subcommands (how a command is answered: its
    docstring); ``ldm_migration.py`` both ends of a live migration and the events that end one.

Domain states
    STATE follows ``_state.DOMAIN`` (start/stop/crash/bind/unbind). FLAGS are six positional chars:
    col2 ``n`` for an active domain, col4/col5 ``cv`` for the control domain, col6 ``s`` (source of
    a migration), ``t`` (target copy of a migration) or ``e`` (error: migration failed after the
    copy). ``start-domain`` on a domain marked ``e`` clears the mark (the operator declares the
    source copy authoritative); so does ``cancel-operation migration NAME``.

SP configurations
    The store holds at most :data:`MAX_SPCONFIGS` names *including* ``factory-default``, which is
    always first and cannot be removed. Exactly one name carries a label: the configuration used
    at next power-on. It is shown ``[current]`` while it is also the configuration last booted or
    saved and the running configuration has not changed since; otherwise ``[next poweron]``.
    Only adding or removing a domain changes the running configuration (a migrated-in domain at
    hand-off, a migrated-out domain at release); starting/stopping/binding does not, and neither
    does the temporary bound copy a target holds during a migration. ``add-spconfig NAME`` saves
    the running configuration (emits :class:`ConfigSaved`) and makes NAME ``[current]``;
    ``set-spconfig NAME`` makes NAME ``[next poweron]``; removing the next-power-on configuration
    falls back to ``factory-default``.

Live migration (source S, target T; phases from ``_state.MIGRATION``; one migration per domain,
concurrent migrations of different domains each get the full link bandwidth)
    CHECKS   S: the domain must exist, be a guest, be active (bound/inactive domains are refused:
             this emulation does live migration only) and not be migrating. S sends
             :class:`MigrationOffer`. T refuses a name it already holds and a domain larger than its
             free memory (``memory_mb`` minus every domain's memory, incl. primary) with
             :class:`OfferRejected`; otherwise it creates the domain *bound*, flags ``-----t``
             (not for a dry run) and answers :class:`OfferAccepted`. Rejection → FAILED, reply rc 1
             with the reason and ``Domain Migration of LDom NAME failed``. Dry run (``-n``): the
             record is dropped after the answer; the reply says the migration would succeed, or
             ``... would fail if attempted``.
    PRECOPY  S: flags ``-n---s``. Round 1 copies the whole memory; round k+1 copies
             ``min(memory, dirty_rate × duration of round k)``; a round lasts amount/bandwidth.
             When the next amount is ≤ ``converge_mb`` or ``max_precopy_rounds`` rounds are done →
    SUSPENDED  S: :class:`SuspendDomainProcess`; the remaining amount is sent in
             ``remaining/bandwidth + SUSPEND_OVERHEAD_S`` seconds (the guest's "suspend time": for
             8 GiB at 500 MB/s dirtying 2000 MB/s the copy never converges and the guest is frozen
             for ~16.5 s). At the end: if a :class:`MigrationAbortArmed` fault is pending for the
             domain → FAILED; else →
    HANDOFF  S sends :class:`Handoff`. T makes its copy active (flags ``-n----``, uptime carried
             over), emits :class:`AdoptDomainProcess` then :class:`ResumeDomainProcess` and answers
             :class:`HandoffAcked`. S deletes the domain, emits :class:`ReleaseDomain` and replies
             rc 0 → DONE.
    CANCELLED  ``cancel-operation migration NAME`` on S in CHECKS/PRECOPY/SUSPENDED, the domain's
             process exiting, or :class:`PeerUnreachable` for T: S clears the flag, resumes the
             guest if it was suspended, tells T (:class:`MigrationCancelled`) to destroy its copy,
             and the migrate reply is rc 1 ``Migration of domain NAME was cancelled``.
    FAILED (after the copy)  abort fault, T answering Handoff with :class:`MigrationFailed`, or T
             unreachable during HANDOFF: S leaves the domain bound with flags ``-----e`` and emits
             :class:`KillDomainProcess`; T is told to destroy its copy; reply rc 1.
    HAND-OFF LOST  when T's ldmd dies during the hand-off, the driver tells S what the domain's
             placement says: :class:`PlacementMoved` (T took the domain over before it died: the
             hand-off counts as acknowledged) or :class:`HandoffNotTaken` (T never took it: S
             resumes its frozen copy, the migration is cancelled). Only a target that merely stops
             answering leaves S with :class:`PeerUnreachable` → FAILED above.
    Every phase entry (and every pre-copy round) emits :class:`MigrationProgress` on S. Percent is
    the share of memory already consistent on T: ``100 × (memory − amount still to send) / memory``;
    :meth:`Ldmd.migration_status` (``ldm list -o status``) is the share of the whole transfer sent
    at a given moment, and the pre-copy round.
    Messages carry ``mig_id`` (per source) so stale answers of an earlier attempt are ignored.

Power-on (:meth:`Ldmd.powered_on`)
    When the servers are powered on again (``clovm down``, then ``clovm up``), an ldmd is built as
    by a restart (below) from the SP's store and the guests whose placement names its control
    domain, and boots every one of them (:class:`StartDomainProcess`).

Restart (:meth:`Ldmd.restarted`)
    An ldmd keeps nothing of its own on disk but the guests' placement files (which control domain
    owns each domain process, and the process itself); the SP configurations live on the service
    processor (:meth:`Ldmd.sp_store`). A restarted ldmd is rebuilt from exactly that
    (:class:`FoundDomain` per guest whose placement names this control domain):

    * a domain whose process runs is ``active`` and is *resumed* (:class:`ResumeDomainProcess`):
      no migration survives a restart, and one the crash interrupted may have left the guest
      frozen in its suspend — the source copy is the only one (a target's bound copy was never
      placed there, and a hand-off moves the placement before it resumes the guest);
    * a domain whose process ended while ldmd was down is ``bound`` (it is not started: restarting
      ldmd never boots a domain; the operator does, after the documented checks);
    * no migration record survives, so none is in progress, in either direction.

    The SP's store (names, contents, the next-power-on name, the last booted or saved name) is
    kept; the running configuration counts as changed since the last save when the domains found
    differ from the ones that configuration holds, or when it had already changed before.
    When a peer ldmd stops (its connection breaks) the driver feeds :class:`PeerUnreachable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ._state import DomainState, MigrationPhase
from .base import Effect, Event, Log, Ticked
from .ldm_commands import HELP_TEXT, LdmCommands
from .ldm_io import (
    _LOG,
    _SPCONFIG_NAME,
    FACTORY_DEFAULT,
    FIRST_CONSOLE_PORT,
    LDMD_TAG,
    MAX_SPCONFIGS,
    PRIMARY,
    SUSPEND_OVERHEAD_S,
    AdoptDomainProcess,
    CommandReceived,
    ConfigSaved,
    Domain,
    DomainProcessExited,
    FoundDomain,
    Handoff,
    HandoffAcked,
    HandoffNotTaken,
    KillDomainProcess,
    Migration,
    MigrationAbortArmed,
    MigrationCancelled,
    MigrationFailed,
    MigrationOffer,
    MigrationProgress,
    OfferAccepted,
    OfferRejected,
    PeerMessageReceived,
    PeerMsg,
    PeerUnreachable,
    PlacementMoved,
    ReleaseDomain,
    Reply,
    ResumeDomainProcess,
    SendToPeer,
    Spconfig,
    SpStore,
    StartDomainProcess,
    SuspendDomainProcess,
    _guest_flags,
    _Incoming,
    format_memory,
    format_uptime,
)
from .ldm_migration import LdmMigration

__all__ = [
    "FACTORY_DEFAULT",
    "FIRST_CONSOLE_PORT",
    "HELP_TEXT",
    "LDMD_TAG",
    "MAX_SPCONFIGS",
    "PRIMARY",
    "SUSPEND_OVERHEAD_S",
    "AdoptDomainProcess",
    "CommandReceived",
    "ConfigSaved",
    "Domain",
    "DomainProcessExited",
    "FoundDomain",
    "Handoff",
    "HandoffAcked",
    "HandoffNotTaken",
    "KillDomainProcess",
    "LdmCommands",
    "LdmMigration",
    "Ldmd",
    "Migration",
    "MigrationAbortArmed",
    "MigrationCancelled",
    "MigrationFailed",
    "MigrationOffer",
    "MigrationProgress",
    "OfferAccepted",
    "OfferRejected",
    "PeerMessageReceived",
    "PeerMsg",
    "PeerUnreachable",
    "PlacementMoved",
    "ReleaseDomain",
    "Reply",
    "ResumeDomainProcess",
    "SendToPeer",
    "SpStore",
    "Spconfig",
    "StartDomainProcess",
    "SuspendDomainProcess",
    "format_memory",
    "format_uptime",
]


class Ldmd(LdmCommands, LdmMigration):
    """The ldmd of one control domain. See the module docstring."""

    def __init__(
        self,
        host: str,
        ppar: int,
        server: str,
        *,
        memory_mb: int = 65536,
        bandwidth_mb_s: float = 500.0,
        max_precopy_rounds: int = 5,
        converge_mb: float = 64.0,
        primary_memory_mb: int = 4096,
        primary_vcpu: int = 8,
        spconfigs: Iterable[str] = (),
    ) -> None:
        if bandwidth_mb_s <= 0 or max_precopy_rounds < 1 or not 0 < primary_memory_mb <= memory_mb:
            raise ValueError("bad Ldmd parameters")
        self.host, self.ppar, self.server = host, ppar, server
        self.memory_mb = memory_mb
        self.bandwidth_mb_s = bandwidth_mb_s
        self.max_precopy_rounds = max_precopy_rounds
        self.converge_mb = converge_mb
        self._domains: dict[str, Domain] = {
            PRIMARY: Domain(
                PRIMARY, DomainState.ACTIVE, "-n-cv-", "UART", primary_vcpu, primary_memory_mb, 0.0, 0.0, 0.2
            )
        }
        self._next_port = FIRST_CONSOLE_PORT
        self._out: dict[str, Migration] = {}
        self._in: dict[str, _Incoming] = {}
        self._armed: set[str] = set()
        self._mig_seq = 0
        # spconfigs: store order, saved contents, next-poweron name, last booted/saved, dirty
        self._store: dict[str, frozenset[str]] = {FACTORY_DEFAULT: frozenset({PRIMARY})}
        for name in spconfigs:
            if name in self._store or not _SPCONFIG_NAME.fullmatch(name):
                raise ValueError(f"bad preset spconfig {name!r}")
            self._store[name] = frozenset({PRIMARY})
        if len(self._store) > MAX_SPCONFIGS:
            raise ValueError(f"at most {MAX_SPCONFIGS} spconfigs including {FACTORY_DEFAULT}")
        self._next = self._booted = list(self._store)[-1]
        self._changed = False
        self._now = 0.0

    @classmethod
    def restarted(
        cls, host: str, ppar: int, server: str, found: Iterable[FoundDomain], sp: SpStore, now: float, **params: object
    ) -> tuple[Ldmd, list[Effect]]:
        """The ldmd of ``host`` after a restart, rebuilt from what persists (see "Restart" in the
        module docstring), and the effects of its recovery (resume every adopted domain)."""
        d = cls(host, ppar, server, **params)  # type: ignore[arg-type]
        d._now = now
        d._store = {n: frozenset(doms) for n, doms in sp.configs}
        if FACTORY_DEFAULT not in d._store or len(d._store) > MAX_SPCONFIGS:
            raise ValueError(f"bad SP store {sp!r}")
        d._next = sp.next if sp.next in d._store else FACTORY_DEFAULT
        d._booted = sp.booted
        out: list[Effect] = []
        for f in sorted(found, key=lambda f: f.name):
            if f.alive:
                d.add_domain(
                    f.name,
                    f.memory_mb,
                    f.vcpu,
                    f.dirty_rate_mb_s,
                    DomainState.ACTIVE,
                    started_at=now if f.started_at is None else f.started_at,
                )
                out += [
                    ResumeDomainProcess(f.name),
                    Log(_LOG, f"ldmd: domain {f.name} found running after a restart: adopted and resumed"),
                ]
            else:
                d.add_domain(f.name, f.memory_mb, f.vcpu, f.dirty_rate_mb_s, DomainState.BOUND)
                out.append(Log(_LOG, f"ldmd: domain {f.name} found stopped after a restart: bound, not started"))
        saved = d._store.get(d._booted)
        d._changed = sp.changed or saved is None or saved != frozenset(d._domains)
        out.append(
            Log(
                _LOG,
                f"ldmd: restarted on {host}: {len(d._domains) - 1} guest domain(s); no migration survives a restart",
            )
        )
        return d, out

    @classmethod
    def powered_on(
        cls, host: str, ppar: int, server: str, placed: Iterable[FoundDomain], sp: SpStore, now: float, **params: object
    ) -> tuple[Ldmd, list[Effect]]:
        """The ldmd of ``host`` when its server powers on again (``clovm up`` on a home that was
        stopped): the SP's configurations as they were, and every guest domain whose placement
        names this control domain booted here (:class:`StartDomainProcess`), wherever the
        topology first put it. Nothing of a migration interrupted by the power-off survives."""
        booted = [replace(f, alive=True, started_at=now) for f in placed]
        d, _ = cls.restarted(host, ppar, server, booted, sp, now, **params)
        out: list[Effect] = [StartDomainProcess(f.name) for f in sorted(booted, key=lambda f: f.name)]
        out.append(Log(_LOG, f"ldmd: powered on on {host}: {len(out)} guest domain(s) booted"))
        return d, out

    def sp_store(self) -> SpStore:
        """What the service processor holds of this PPAR's configurations."""
        return SpStore(tuple(self._store.items()), self._next, self._booted, self._changed)

    def running(self) -> frozenset[str]:
        """Guest domains running here: active, and not the frozen source copy of a migration that is
        handing off (the target runs it from the hand-off on)."""
        return frozenset(
            n
            for n, d in self._domains.items()
            if n != PRIMARY
            and d.state is DomainState.ACTIVE
            and not ((m := self._out.get(n)) is not None and m.phase is MigrationPhase.HANDOFF)
        )

    # ---------------------------------------------------------------- setup and accessors
    def add_domain(
        self,
        name: str,
        memory_mb: int,
        vcpu: int,
        dirty_rate_mb_s: float,
        state: DomainState = DomainState.ACTIVE,
        *,
        started_at: float = 0.0,
        util: float = 0.1,
    ) -> Domain:
        """Set-up only: create a guest as if it had been there at boot (no effects, no dirtying)."""
        if name in self._domains or not name:
            raise ValueError(f"domain {name!r} exists")
        if memory_mb > self.free_memory_mb():
            raise ValueError(f"not enough memory for {name}")
        d = Domain(
            name,
            state,
            _guest_flags(state),
            self._take_port(),
            vcpu,
            memory_mb,
            dirty_rate_mb_s,
            started_at if state is DomainState.ACTIVE else None,
            util,
        )
        self._domains[name] = d
        return d

    def domains(self) -> tuple[Domain, ...]:
        return tuple(self._domains.values())

    def domain_names(self) -> frozenset[str]:
        """The guest domains this ldmd holds, in any state (its bound target copies too)."""
        return frozenset(n for n in self._domains if n != PRIMARY)

    def domain(self, name: str) -> Domain | None:
        return self._domains.get(name)

    def free_memory_mb(self) -> int:
        return self.memory_mb - sum(d.memory_mb for d in self._domains.values())

    def migration(self, domain: str) -> Migration | None:
        """A copy of the outgoing migration record of ``domain``, if one is under way."""
        m = self._out.get(domain)
        return None if m is None else replace(m)

    def incoming(self) -> frozenset[str]:
        return frozenset(self._in)

    def migration_status(self, domain: str, now: float) -> dict[str, object] | None:
        """``ldm list -o status``'s view of an outgoing migration at ``now``, or None.

        ``percent`` is the share of the migration's whole transfer already sent (every pre-copy
        round and the final copy while suspended; the model is deterministic, so the total is
        known from the start), so it advances steadily even when the copy never converges;
        ``round`` is the pre-copy round (0 while checking), ``rounds_max`` the most there can be.
        """
        m = self._out.get(domain)
        d = self._domains.get(domain)
        if m is None or d is None:
            return None
        rounds, final = self._schedule(d)
        total = sum(rounds) + final
        if m.phase is MigrationPhase.CHECKS:
            sent = 0.0
        elif m.phase is MigrationPhase.PRECOPY:
            left = 0.0 if m.deadline is None else max(0.0, m.deadline - now) * self.bandwidth_mb_s
            sent = sum(rounds[: m.round - 1]) + max(0.0, m.to_copy_mb - left)
        elif m.phase is MigrationPhase.SUSPENDED:
            left = 0.0 if m.deadline is None else max(0.0, m.deadline - now - SUSPEND_OVERHEAD_S) * self.bandwidth_mb_s
            sent = sum(rounds) + max(0.0, m.to_copy_mb - left)
        else:
            sent = total
        percent = 100 if total <= 0 else max(0, min(100, int(100 * sent / total)))
        return {"phase": str(m.phase), "percent": percent, "round": m.round, "rounds_max": self.max_precopy_rounds}

    def _schedule(self, d: Domain) -> tuple[list[float], float]:
        """The amounts of every pre-copy round of a migration of ``d`` and of its final copy (the
        rules of :meth:`_round_done`)."""
        rounds = [float(d.memory_mb)]
        while True:
            nxt = min(float(d.memory_mb), d.dirty_rate_mb_s * rounds[-1] / self.bandwidth_mb_s)
            if nxt <= self.converge_mb or len(rounds) >= self.max_precopy_rounds:
                return rounds, nxt
            rounds.append(nxt)

    def spconfigs(self) -> tuple[Spconfig, ...]:
        return tuple(Spconfig(n, self._label(n), doms) for n, doms in self._store.items())

    def spconfig_names(self) -> tuple[str, ...]:
        return tuple(self._store)

    def saved_count(self) -> int:
        return len(self._store) - 1

    def _label(self, name: str) -> str:
        if name != self._next:
            return ""
        return "current" if name == self._booted and not self._changed else "next poweron"

    def next_deadline(self) -> float | None:
        ds = [m.deadline for m in self._out.values() if m.deadline is not None]
        return min(ds) if ds else None

    # ---------------------------------------------------------------- dispatch
    def handle(self, now: float, event: Event) -> list[Effect]:
        self._now = now
        match event:
            case CommandReceived(req_id=req_id, argv=argv):
                return self._command(now, req_id, argv)
            case PeerMessageReceived(peer=peer, msg=msg):
                return self._peer_message(peer, msg)
            case PeerUnreachable(peer=peer):
                return self._peer_unreachable(peer)
            case DomainProcessExited(name=name):
                return self._process_exited(name)
            case MigrationAbortArmed(domain=name):
                self._armed.add(name)
                return [Log(_LOG, f"ldmd: fault armed: next migration of {name} fails after the copy")]
            case PlacementMoved(domain=name, host=host):
                return self._placement_moved(name, host)
            case HandoffNotTaken(domain=name, host=host):
                m = self._out.get(name)
                if m is None or m.phase is not MigrationPhase.HANDOFF or m.target != host:
                    return []
                return self._cancel(m, "not_taken", (f"Target host {host} did not take over domain {name}",))
            case Ticked():
                return self._tick()
        raise TypeError(f"Ldmd cannot handle {event!r}")

    def _take_port(self) -> str:
        self._next_port += 1
        return str(self._next_port - 1)
