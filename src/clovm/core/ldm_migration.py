"""The live-migration machinery of ldmd (``core.ldm``): both ends of a migration, and what ends one.

:class:`LdmMigration` is mixed into :class:`~clovm.core.ldm.Ldmd`. Source side: the pre-copy
rounds, the suspend and its final copy, the hand-off, cancel and fail (``_tick`` replays every
expired deadline). Target side: the offer (a bound copy flagged ``t``), the hand-off (the copy made
active), destroying the copy. And the events that end a migration from outside: peer messages
(routed to the right end, stale ones ignored), :class:`~clovm.core.ldm_io.PlacementMoved`,
:class:`~clovm.core.ldm_io.PeerUnreachable` and a domain process exiting. The phases and what
each one does are "Live migration" in the module docstring of ``core/ldm.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ._state import DOMAIN, MIGRATION, DomainState, MigrationPhase, allowed, step
from .base import Effect, Log
from .ldm_io import (
    _LOG,
    PRIMARY,
    SUSPEND_OVERHEAD_S,
    AdoptDomainProcess,
    Domain,
    Handoff,
    HandoffAcked,
    KillDomainProcess,
    Migration,
    MigrationCancelled,
    MigrationFailed,
    MigrationOffer,
    MigrationProgress,
    OfferAccepted,
    OfferRejected,
    PeerMsg,
    ReleaseDomain,
    Reply,
    ResumeDomainProcess,
    SendToPeer,
    SuspendDomainProcess,
    _guest_flags,
    _Incoming,
    format_memory,
)


class LdmMigration:
    """The migration half of :class:`~clovm.core.ldm.Ldmd` (which provides the attributes and
    the methods declared here)."""

    host: str
    bandwidth_mb_s: float
    max_precopy_rounds: int
    converge_mb: float
    _domains: dict[str, Domain]
    _out: dict[str, Migration]
    _in: dict[str, _Incoming]
    _armed: set[str]
    _changed: bool
    _now: float

    if TYPE_CHECKING:

        def free_memory_mb(self) -> int: ...
        def _take_port(self) -> str: ...

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
