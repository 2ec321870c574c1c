"""ldmd: the Logical Domains Manager of one control domain (sans-IO).

One :class:`Ldmd` per control domain. It owns the domain table of its PPAR (the control domain
itself is listed as ``primary``), the PPAR's saved SP configurations (spconfigs), and both ends of
live migrations: outgoing ones (this ldmd is the source) and incoming ones (it is the target).

Commands
    Every ``ldm`` invocation arrives as ``CommandReceived(req_id, argv)``; ``argv`` is the argument
    vector *without* the program name (``("list",)``, ``("migrate-domain", "-c", "guest2",
    "ctl2")``). Each command gets exactly one :class:`Reply`. A command is validated completely
    before anything changes: an error reply (rc 1, one ``Error: ...`` line on stderr) leaves the
    machine untouched. ``migrate-domain`` is the only command whose reply is deferred: it is sent
    when the migration ends (done, rejected, cancelled or failed).

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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from . import names
from ._state import DOMAIN, MIGRATION, DomainState, MigrationPhase, allowed, step
from .base import Effect, Event, Log, Ticked

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


# ------------------------------------------------------------------------------------ helpers
class _CmdError(Exception):
    pass


_USAGE: dict[str, str] = {
    "list": "list [-o status] [NAME]",
    "list-domain": "list-domain [NAME]",
    "list-spconfig": "list-spconfig",
    "add-spconfig": "add-spconfig NAME",
    "remove-spconfig": "remove-spconfig NAME",
    "set-spconfig": "set-spconfig NAME",
    "start-domain": "start-domain NAME",
    "stop-domain": "stop-domain NAME",
    "bind-domain": "bind-domain NAME",
    "unbind-domain": "unbind-domain NAME",
    "migrate-domain": "migrate-domain [-f] [-n] [-c | -p FILE] source-ldom target-host",
    "cancel-operation": "cancel-operation migration NAME",
}
_ALIASES = {"ls": "list", "list-config": "list-spconfig"}
HELP_TEXT = "Usage: ldm SUBCOMMAND ...\n" + "".join(f"    ldm {u}\n" for u in _USAGE.values())


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


def _args(sub: str, args: Sequence[str], n_min: int, n_max: int) -> Sequence[str]:
    for a in args:
        if a.startswith("-"):
            raise _CmdError(f"unknown option '{a}' for {sub}; usage: ldm {_USAGE[sub]}")
    if len(args) < n_min:
        raise _CmdError(f"missing argument for {sub}; usage: ldm {_USAGE[sub]}")
    if len(args) > n_max:
        raise _CmdError(f"unexpected argument '{args[n_max]}'; usage: ldm {_USAGE[sub]}")
    return args


# ------------------------------------------------------------------------------------ machine
class Ldmd:
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

    # ---------------------------------------------------------------- commands
    def _command(self, now: float, req_id: int, argv: tuple[str, ...]) -> list[Effect]:
        if not argv:
            return [Reply(req_id, 1, "", "Error: no subcommand given; see ldm --help\n")]
        sub, args = _ALIASES.get(argv[0], argv[0]), argv[1:]
        if sub in ("--help", "-h", "help"):
            return [Reply(req_id, 0, HELP_TEXT, "")]
        handler: Callable[[float, int, str, Sequence[str]], list[Effect]] | None = {
            "list": self._cmd_list,
            "list-domain": self._cmd_list,
            "list-spconfig": self._cmd_list_spconfig,
            "add-spconfig": self._cmd_add_spconfig,
            "remove-spconfig": self._cmd_remove_spconfig,
            "set-spconfig": self._cmd_set_spconfig,
            "start-domain": self._cmd_start,
            "stop-domain": self._cmd_stop,
            "bind-domain": self._cmd_bind,
            "unbind-domain": self._cmd_unbind,
            "migrate-domain": self._cmd_migrate,
            "cancel-operation": self._cmd_cancel,
        }.get(sub)
        if handler is None:
            return [Reply(req_id, 1, "", f"Error: unknown subcommand '{argv[0]}'; see ldm --help\n")]
        try:
            return handler(now, req_id, sub, args)
        except _CmdError as e:
            return [Reply(req_id, 1, "", f"Error: {e}\n")]

    def _ok(self, req_id: int, stdout: str = "") -> Reply:
        return Reply(req_id, 0, stdout, "")

    def _get(self, name: str, *, guest: str = "") -> Domain:
        d = self._domains.get(name)
        if d is None:
            raise _CmdError(f"Domain {name} not found")
        if guest and name == PRIMARY:
            raise _CmdError(f"The control domain {PRIMARY} cannot be {guest}")
        if guest and (name in self._out or name in self._in):
            raise _CmdError(f"Domain {name} is being migrated; it cannot be {guest} now")
        return d

    def _cmd_list(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        if tuple(args[:2]) == ("-o", "status"):
            return self._list_status(now, req_id, sub, args[2:])
        names = _args(sub, args, 0, 1)
        rows = [self._get(names[0])] if names else list(self._domains.values())
        lines = [self._row("NAME", "STATE", "FLAGS", "CONS", "VCPU", "MEMORY", "UTIL", "UPTIME")]
        for d in rows:
            up = now - d.started_at if d.state is DomainState.ACTIVE and d.started_at is not None else None
            lines.append(
                self._row(
                    d.name,
                    str(d.state),
                    d.flags,
                    d.cons,
                    str(d.vcpu),
                    format_memory(d.memory_mb),
                    "-" if up is None else f"{d.util:.1f}%",
                    "-" if up is None else format_uptime(up),
                )
            )
        return [self._ok(req_id, "".join(line + "\n" for line in lines))]

    def _list_status(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        """``ldm list -o status [NAME]``: each domain's operation in progress (a migration: its
        progress and the other side)."""
        names = _args(sub, args, 0, 1)
        rows = [self._get(names[0])] if names else list(self._domains.values())
        out = []
        for d in rows:
            out.append(f"NAME\n{d.name}\n\nSTATUS\n")
            st = self.migration_status(d.name, now)
            if st is not None:
                out.append(
                    f"    {'OPERATION':<13}{'PROGRESS':<12}TARGET\n"
                    f"    {'migration':<13}{str(st['percent']) + '%':<12}{self._out[d.name].target}\n"
                )
            elif d.name in self._in:
                out.append(
                    f"    {'OPERATION':<13}{'PROGRESS':<12}SOURCE\n"
                    f"    {'migration':<13}{'-':<12}{self._in[d.name].source}\n"
                )
            else:
                out.append(f"    {'OPERATION':<13}PROGRESS\n")
            out.append("\n")
        return [self._ok(req_id, "".join(out).rstrip("\n") + "\n")]

    @staticmethod
    def _row(*c: str) -> str:
        return f"{c[0]:<16} {c[1]:<10} {c[2]:<7} {c[3]:<7} {c[4]:<5} {c[5]:<8} {c[6]:<5} {c[7]}"

    def _cmd_list_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        _args(sub, args, 0, 0)
        out = "".join(f"{n} [{lab}]\n" if (lab := self._label(n)) else f"{n}\n" for n in self._store)
        return [self._ok(req_id, out)]

    def _label(self, name: str) -> str:
        if name != self._next:
            return ""
        return "current" if name == self._booted and not self._changed else "next poweron"

    def _cmd_add_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        if name in self._store:
            raise _CmdError(f"The configuration {name} already exists")
        if not _SPCONFIG_NAME.fullmatch(name):
            raise _CmdError("Operation failed because an invalid configuration name was given")
        if len(self._store) >= MAX_SPCONFIGS:
            raise _CmdError(
                f"Cannot save configuration {name}: the service processor holds at most "
                f"{MAX_SPCONFIGS} configurations per PPAR including {FACTORY_DEFAULT} "
                f"({len(self._store)} present); remove one with ldm remove-spconfig"
            )
        doms = frozenset(n for n in self._domains if n not in self._in)
        self._store[name] = doms
        self._next = self._booted = name
        self._changed = False
        return [
            self._ok(req_id),
            ConfigSaved(self.ppar, name, doms),
            Log(_LOG, f"ldmd: configuration {name} saved to the service processor"),
        ]

    def _existing_config(self, sub: str, args: Sequence[str]) -> str:
        (name,) = _args(sub, args, 1, 1)
        if name not in self._store:
            raise _CmdError(f"The configuration {name} does not exist")
        return name

    def _cmd_remove_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        name = self._existing_config(sub, args)
        if name == FACTORY_DEFAULT:
            raise _CmdError(f"The {FACTORY_DEFAULT} configuration cannot be removed")
        del self._store[name]
        if self._next == name:
            self._next = FACTORY_DEFAULT
        return [self._ok(req_id)]

    def _cmd_set_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        self._next = self._existing_config(sub, args)
        return [self._ok(req_id)]

    def _cmd_start(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        d = self._get(name, guest="started")
        if not allowed(DOMAIN, d.state, "start"):
            raise _CmdError(f"Domain {name} is already {d.state}")
        st = step(DOMAIN, d.state, "start")
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st), started_at=now)
        return [StartDomainProcess(name), self._ok(req_id, f"LDom {name} started\n")]

    def _cmd_stop(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        d = self._get(name, guest="stopped")
        if not allowed(DOMAIN, d.state, "stop"):
            raise _CmdError(f"Domain {name} is not active ({d.state})")
        st = step(DOMAIN, d.state, "stop")
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st, d.flags[5]), started_at=None)
        kill: list[Effect] = [KillDomainProcess(name)] if d.state is DomainState.ACTIVE else []
        return [*kill, self._ok(req_id, f"LDom {name} stopped\n")]

    def _cmd_bind(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        return self._bind_unbind(req_id, sub, args, "bind", "bound", "is already")

    def _cmd_unbind(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        return self._bind_unbind(req_id, sub, args, "unbind", "unbound", "must be bound, not")

    def _bind_unbind(self, req_id: int, sub: str, args: Sequence[str], trig: str, done: str, why: str) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        d = self._get(name, guest=done)
        if not allowed(DOMAIN, d.state, trig):
            raise _CmdError(f"Domain {name} {why} {d.state}")
        st = step(DOMAIN, d.state, trig)
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st))
        return [self._ok(req_id)]

    def _cmd_migrate(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        dry, cert, pwfile, pos = False, False, None, []
        it = iter(args)
        for a in it:
            if a == "-n":
                dry = True
            elif a == "-f":
                pass  # force: accepted, no effect in this emulation
            elif a == "-c":
                cert = True
            elif a == "-p":
                pwfile = next(it, None)
                if pwfile is None:
                    raise _CmdError(f"option -p needs a file name; usage: ldm {_USAGE[sub]}")
            elif a.startswith("-"):
                raise _CmdError(f"unknown option '{a}' for {sub}; usage: ldm {_USAGE[sub]}")
            else:
                pos.append(a)
        if cert and pwfile is not None:
            raise _CmdError(f"options -c and -p are mutually exclusive; usage: ldm {_USAGE[sub]}")
        _args(sub, pos, 2, 2)
        name, target = pos[0], pos[1].rpartition("@")[2]
        if ":" in target:
            raise _CmdError("renaming the domain on the target (target-host:target-ldom) is not supported")
        if target == self.host:
            raise _CmdError(f"target host {target} is the source host")
        d = self._get(name, guest="migrated")
        if d.state is not DomainState.ACTIVE:
            raise _CmdError(f"Domain {name} is {d.state}; only live migration of an active domain is supported")
        self._mig_seq += 1
        m = Migration(self._mig_seq, name, target, req_id, dry)
        self._out[name] = m
        offer = MigrationOffer(
            m.mig_id, name, d.memory_mb, d.vcpu, d.dirty_rate_mb_s, self.host, d.started_at or 0.0, d.util, dry
        )
        return [
            MigrationProgress(name, str(m.phase), 0),
            SendToPeer(target, offer),
            Log(_LOG, f"ldmd: {'dry run of ' if dry else ''}migration of {name} to {target} started"),
        ]

    def _cmd_cancel(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        what, name = _args(sub, args, 2, 2)
        if what != "migration":
            raise _CmdError(f"only 'migration' operations can be cancelled; usage: ldm {_USAGE[sub]}")
        if name in self._in:
            raise _CmdError(f"Migration of domain {name} must be cancelled on the source host {self._in[name].source}")
        m = self._out.get(name)
        if m is None:
            d = self._get(name)
            if d.flags[5] != "e":
                raise _CmdError(f"No migration of domain {name} is in progress")
            self._domains[name] = replace(d, flags=_guest_flags(d.state))
            return [self._ok(req_id), Log(_LOG, f"ldmd: error state of {name} cleared")]
        if not allowed(MIGRATION, m.phase, "cancel"):
            raise _CmdError(f"Migration of domain {name} is in the {m.phase} phase and can no longer be cancelled")
        return [*self._cancel(m, "cancel", ()), self._ok(req_id)]

    # ---------------------------------------------------------------- migration, source side
    def _progress(self, m: Migration, percent: int | None = None) -> MigrationProgress:
        if percent is None:
            mem = self._domains[m.domain].memory_mb
            percent = 0 if m.round == 0 else round(100 * (mem - m.to_copy_mb) / mem)
        return MigrationProgress(m.domain, str(m.phase), percent, m.round)

    def _set_mark(self, name: str, mark: str) -> None:
        d = self._domains[name]
        self._domains[name] = replace(d, flags=_guest_flags(d.state, mark))

    def _finish(self, m: Migration, rc: int, stdout: str, stderr: str, log: str) -> list[Effect]:
        del self._out[m.domain]
        return [Reply(m.req_id, rc, stdout, stderr), Log(_LOG, f"ldmd: {log}")]

    def _tick(self) -> list[Effect]:
        out: list[Effect] = []
        for m in list(self._out.values()):
            # a late tick replays every expired deadline from the deadline itself
            while m.domain in self._out and m.deadline is not None and m.deadline <= self._now:
                t = m.deadline
                if m.phase is MigrationPhase.PRECOPY:
                    out += self._round_done(m, t)
                else:
                    out += self._suspend_done(m)
        return out

    def _start_precopy(self, m: Migration, t: float) -> list[Effect]:
        m.phase = step(MIGRATION, m.phase, "accepted")
        self._set_mark(m.domain, "s")
        m.round, m.to_copy_mb = 1, float(self._domains[m.domain].memory_mb)
        m.deadline = t + m.to_copy_mb / self.bandwidth_mb_s
        return [self._progress(m)]

    def _round_done(self, m: Migration, t: float) -> list[Effect]:
        d = self._domains[m.domain]
        duration = m.to_copy_mb / self.bandwidth_mb_s
        nxt = min(float(d.memory_mb), d.dirty_rate_mb_s * duration)
        m.to_copy_mb = nxt
        if nxt <= self.converge_mb or m.round >= self.max_precopy_rounds:
            m.phase = step(MIGRATION, m.phase, "converged")
            m.suspended_at = t
            m.deadline = t + nxt / self.bandwidth_mb_s + SUSPEND_OVERHEAD_S
            return [SuspendDomainProcess(m.domain), self._progress(m)]
        m.phase = step(MIGRATION, m.phase, "round_done")
        m.round += 1
        m.deadline = t + nxt / self.bandwidth_mb_s
        return [self._progress(m)]

    def _suspend_done(self, m: Migration) -> list[Effect]:
        m.deadline = None
        if m.domain in self._armed:
            self._armed.discard(m.domain)
            return self._fail(m, "Migration aborted after the memory copy (injected fault)")
        m.phase = step(MIGRATION, m.phase, "copied")
        return [SendToPeer(m.target, Handoff(m.mig_id, m.domain)), self._progress(m, 100)]

    def _fail(self, m: Migration, reason: str, notify: bool = True) -> list[Effect]:
        m.phase = step(MIGRATION, m.phase, "aborted")
        d = self._domains[m.domain]
        st = step(DOMAIN, d.state, "crash") if allowed(DOMAIN, d.state, "crash") else d.state
        self._domains[m.domain] = replace(d, state=st, flags=_guest_flags(st, "e"), started_at=None)
        out: list[Effect] = [KillDomainProcess(m.domain)]
        if notify:
            out.append(SendToPeer(m.target, MigrationFailed(m.mig_id, m.domain)))
        out.append(self._progress(m))
        return out + self._finish(
            m,
            1,
            "",
            f"{reason}\nDomain Migration of LDom {m.domain} failed\n",
            f"migration of {m.domain} to {m.target} failed: {reason}",
        )

    def _cancel(
        self, m: Migration, trigger: str, reasons: Sequence[str], *, notify: bool = True, process_gone: bool = False
    ) -> list[Effect]:
        was = m.phase
        m.phase = step(MIGRATION, m.phase, trigger)
        m.deadline = None
        out: list[Effect] = []
        d = self._domains[m.domain]
        if process_gone:
            st = step(DOMAIN, d.state, "crash")
            self._domains[m.domain] = replace(d, state=st, flags=_guest_flags(st), started_at=None)
        else:
            self._set_mark(m.domain, "-")
            if was in (MigrationPhase.SUSPENDED, MigrationPhase.HANDOFF):
                out.append(ResumeDomainProcess(m.domain))
        if notify:
            out.append(SendToPeer(m.target, MigrationCancelled(m.mig_id, m.domain)))
        out.append(self._progress(m))
        text = "".join(r + "\n" for r in reasons) + f"Migration of domain {m.domain} was cancelled\n"
        return out + self._finish(m, 1, "", text, f"migration of {m.domain} to {m.target} cancelled")

    def _source_message(self, peer: str, msg: PeerMsg, m: Migration) -> list[Effect]:
        match msg:
            case OfferAccepted() if m.phase is MigrationPhase.CHECKS:
                if m.dry_run:
                    return self._finish(
                        m,
                        0,
                        f"Domain Migration of LDom {m.domain} would succeed if attempted\n",
                        "",
                        f"dry run of {m.domain}: would succeed",
                    )
                return self._start_precopy(m, self._now)
            case OfferRejected(reason=reason) if m.phase is MigrationPhase.CHECKS:
                m.phase = step(MIGRATION, m.phase, "rejected")
                tail = "would fail if attempted" if m.dry_run else "failed"
                return self._finish(
                    m,
                    1,
                    "",
                    f"{reason}\nDomain Migration of LDom {m.domain} {tail}\n",
                    f"migration of {m.domain} to {m.target} rejected: {reason}",
                )
            case HandoffAcked() if m.phase is MigrationPhase.HANDOFF:
                m.phase = step(MIGRATION, m.phase, "acked")
                del self._domains[m.domain]
                self._changed = True
                return [
                    ReleaseDomain(m.domain),
                    self._progress(m, 100),
                    *self._finish(m, 0, "", "", f"migration of {m.domain} to {m.target} completed"),
                ]
            case MigrationFailed() if m.phase is MigrationPhase.HANDOFF:
                return self._fail(m, f"Target host {peer} could not resume domain {m.domain}", notify=False)
        return [Log(_LOG, f"ldmd: ignored stale {type(msg).__name__} for {m.domain} from {peer}")]

    # ---------------------------------------------------------------- migration, target side
    def _target_message(self, peer: str, msg: PeerMsg) -> list[Effect]:
        match msg:
            case MigrationOffer():
                return self._offer(peer, msg)
            case Handoff(mig_id=mig_id, domain=name) if self._in.get(name) == _Incoming(peer, mig_id):
                del self._in[name]
                d = self._domains[name]
                st = step(DOMAIN, d.state, "start")
                self._domains[name] = replace(d, state=st, flags=_guest_flags(st))
                self._changed = True
                return [
                    AdoptDomainProcess(name, peer),
                    ResumeDomainProcess(name),
                    SendToPeer(peer, HandoffAcked(mig_id, name)),
                    Log(_LOG, f"ldmd: domain {name} migrated in from {peer}"),
                ]
            case Handoff(mig_id=mig_id, domain=name):
                return [
                    SendToPeer(peer, MigrationFailed(mig_id, name)),
                    Log(_LOG, f"ldmd: hand-off of unknown migration of {name} from {peer}"),
                ]
            case MigrationCancelled(mig_id=mig_id, domain=name) | MigrationFailed(mig_id=mig_id, domain=name):
                if self._in.get(name) == _Incoming(peer, mig_id):
                    return self._destroy_incoming(name)
        return [Log(_LOG, f"ldmd: ignored {type(msg).__name__} from {peer}")]

    def _offer(self, peer: str, o: MigrationOffer) -> list[Effect]:
        free = self.free_memory_mb()
        if o.domain in self._domains:
            reason = f"Domain {o.domain} already exists on target host {self.host}"
        elif o.memory_mb > free:
            reason = (
                f"Unable to bind {format_memory(o.memory_mb)} memory region on target host "
                f"{self.host}: only {format_memory(free)} free"
            )
        else:
            if not o.dry_run:
                st = step(DOMAIN, DomainState.INACTIVE, "bind")
                self._domains[o.domain] = Domain(
                    o.domain,
                    st,
                    _guest_flags(st, "t"),
                    self._take_port(),
                    o.vcpu,
                    o.memory_mb,
                    o.dirty_rate_mb_s,
                    o.started_at,
                    o.util,
                )
                self._in[o.domain] = _Incoming(peer, o.mig_id)
            return [SendToPeer(peer, OfferAccepted(o.mig_id, o.domain))]
        return [
            SendToPeer(peer, OfferRejected(o.mig_id, o.domain, reason)),
            Log(_LOG, f"ldmd: migration of {o.domain} from {peer} rejected: {reason}"),
        ]

    def _destroy_incoming(self, name: str) -> list[Effect]:
        del self._in[name]
        del self._domains[name]
        return [Log(_LOG, f"ldmd: incoming copy of {name} destroyed")]

    # ---------------------------------------------------------------- other events
    def _peer_message(self, peer: str, msg: PeerMsg) -> list[Effect]:
        if isinstance(msg, (MigrationOffer, Handoff, MigrationCancelled)) or (
            isinstance(msg, MigrationFailed) and msg.domain in self._in
        ):
            return self._target_message(peer, msg)
        m = self._out.get(getattr(msg, "domain", ""))
        if m is None or m.target != peer or m.mig_id != getattr(msg, "mig_id", None):
            return [Log(_LOG, f"ldmd: ignored {type(msg).__name__} from {peer}")]
        return self._source_message(peer, msg, m)

    def _placement_moved(self, name: str, host: str) -> list[Effect]:
        """A hand-off to ``host`` counts as acknowledged once the domain is placed there."""
        m = self._out.get(name)
        if m is None or m.phase is not MigrationPhase.HANDOFF or m.target != host:
            return []
        return [
            Log(
                _LOG, f"ldmd: {name} is placed on {host}: the hand-off happened, although {host} did not acknowledge it"
            ),
            *self._source_message(host, HandoffAcked(m.mig_id, name), m),
        ]

    def _peer_unreachable(self, peer: str) -> list[Effect]:
        out: list[Effect] = []
        reason = f"Lost connection to target host {peer}"
        for m in [m for m in self._out.values() if m.target == peer]:
            if m.phase is MigrationPhase.HANDOFF:
                out += self._fail(m, reason, notify=False)
            else:
                trig = "link_lost" if allowed(MIGRATION, m.phase, "link_lost") else "cancel"
                out += self._cancel(m, trig, (reason,), notify=False)
        for name in [n for n, i in self._in.items() if i.source == peer]:
            out += self._destroy_incoming(name)
        return out

    def _process_exited(self, name: str) -> list[Effect]:
        d = self._domains.get(name)
        m = self._out.get(name)
        if m is not None and m.phase is not MigrationPhase.HANDOFF:
            return self._cancel(m, "cancel", (f"Domain {name} stopped during migration",), process_gone=True)
        if d is None or name == PRIMARY or m is not None or not allowed(DOMAIN, d.state, "crash"):
            return [Log(_LOG, f"ldmd: exit of domain process {name} ignored")]
        st = step(DOMAIN, d.state, "crash")
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st), started_at=None)
        return [Log(_LOG, f"ldmd: domain {name} stopped unexpectedly (now {st})")]

    def _take_port(self) -> str:
        self._next_port += 1
        return str(self._next_port - 1)
