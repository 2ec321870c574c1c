"""Changes of CF membership's failure detection while it runs: CLUSTER_TIMEOUT, the migration window,
widening leases, stalls.

:class:`DetectionTuning` is mixed into :class:`~clovm.core.membership.Membership` (which provides
the attributes and the methods declared here): ``TimeoutChanged`` (cfset -r; *Monitoring* in
``core/membership.py``), ``MigrationWindowChanged`` (clovmmigrate -p/-u; *Leaving* there),
``DetectionWidened`` / ``DetectionNarrowed`` and the end of a widening's lease, and a node that
did not run for longer than ``stall``:

Widened detection (``clovm migrate --scoped``). :class:`DetectionWidened` gives some peers
their own timeout ``seconds`` under a *lease* that ends at ``until`` (emulated seconds): a peer's
*effective timeout* is the widened value while ``now < until``, else CLUSTER_TIMEOUT; questionable
and LEFTCLUSTER follow the effective timeout. Names that are not peers (the node itself, unknown
nodes) are ignored, so a driver may pass a whole cluster: the migrating node widens every peer,
the others widen only the migrating node. Widening a peer again replaces its widening. The end of a
lease is a deadline of the machine (reported by ``next_deadline``); :class:`DetectionNarrowed`
ends widenings explicitly (no names = every widened peer). Whenever a peer's effective timeout is
*lowered* (a widening shorter than the current timeout, a lease ending, a narrowing) its silence
counts from that moment, as for ``TimeoutChanged``. With ``hypervisor=True`` a widened peer is
treated as under the migration window (*Leaving* in ``core/membership.py``): a LEFTCLUSTER one is
queried and taken DOWN when its domain is stopped, even after the lease ended, until it is
narrowed explicitly.

Stalls. With ``stall`` set, a call of ``handle`` more than ``stall`` seconds after the previous
one means that this node did not run in between (its domain was frozen: ``clovm fault pause``, the
suspend of a live migration; it is ticked at least every heartbeat interval while UP): every UP
peer's silence is counted from ``gap`` seconds later, so that a node frozen for less than the
timeout does not hold its healthy peers LEFTCLUSTER when it runs again (and, as the lighter side of
a split that only it sees, kill them all). The peers' own detection of the frozen node is not
changed. Drivers set it (``NodeTuning.cf_stall``); the machine's default is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._state import NodeState
from .base import Effect, Log

UP, LEFTCLUSTER = NodeState.UP, NodeState.LEFTCLUSTER


@dataclass(slots=True)
class _Widening:
    seconds: float
    until: float | None  # None once the lease is over (kept only for the hypervisor permission)
    hypervisor: bool


class DetectionTuning:
    """The failure-detection-tuning half of :class:`~clovm.core.membership.Membership`."""

    _me: str
    _peers: tuple[str, ...]
    _timeout: float
    _min_timeout: float
    _due: float | None
    _window_open: bool
    _view: dict[str, NodeState]
    _last_hb: dict[str, float]
    _questionable: set[str]
    _next_query: dict[str, float]
    _widened: dict[str, _Widening]
    _silent: set[str]

    if TYPE_CHECKING:

        def _base(self) -> float: ...
        def _eff(self, peer: str) -> float: ...
        def _compute_deadline(self) -> float | None: ...
        def _move(
            self, now: float, peer: str, trigger: str, text: str, incarnation: int | None = None
        ) -> list[Effect]: ...

    def _stalled(self, now: float, gap: float) -> list[Effect]:
        """This node did not run for ``gap`` s (its domain was frozen: a pause, a migration's
        suspend): its peers' silence meanwhile is not theirs, and does not count."""
        for p, t in self._last_hb.items():
            self._last_hb[p] = min(now, t + gap)
        self._questionable = {p for p in self._questionable if now >= self._last_hb[p] + self._eff(p) / 2}
        self._due = self._compute_deadline()
        return [
            Log(
                "messages",
                f"CF: {self._me}: this node did not run for {gap:.1f} s: the silence of its peers "
                f"meanwhile is not counted",
            )
        ]

    def _set_timeout(self, now: float, seconds: float) -> list[Effect]:
        if seconds <= 0:
            raise ValueError(f"CLUSTER_TIMEOUT must be positive, not {seconds}")
        old, old_base = self._timeout, self._base()
        self._timeout = float(seconds)
        if self._base() < old_base:
            # Lowering the timeout never expels a peer retroactively: its silence counts from the
            # change. After clovmmigrate -u, the migrated node has heard nobody during its suspend
            # (a suspended guest's clock does not run); 600 -> 10 s must not make it declare its
            # healthy peers LEFTCLUSTER. A peer that really is dead goes at now + new timeout.
            for p in self._peers:
                if self._view[p] is UP:
                    self._last_hb[p] = max(self._last_hb[p], now)
        # A longer timeout can make a questionable peer unquestionable again.
        self._questionable = {p for p in self._questionable if now >= self._last_hb[p] + self._eff(p) / 2}
        return [Log("messages", f"CF: {self._me}: CLUSTER_TIMEOUT changed from {old:g} to {seconds:g} seconds")]

    def _set_window(self, now: float, is_open: bool) -> list[Effect]:
        if is_open and not self._window_open:
            for p in self._peers:
                if self._view[p] is LEFTCLUSTER:
                    self._next_query.setdefault(p, now)
        self._window_open = is_open
        if not is_open:  # widened peers with the hypervisor permission keep being asked about (and silent ones)
            self._next_query = {
                p: t for p, t in self._next_query.items() if self._hypervisor_may(p) or p in self._silent
            }
        return []

    def _hypervisor_may(self, peer: str) -> bool:
        """May the hypervisor's word (domain stopped) take ``peer`` DOWN?"""
        w = self._widened.get(peer)
        return self._window_open or (w is not None and w.hypervisor)

    # -- widened failure detection
    def _lowered(self, now: float, peer: str, old: float) -> None:
        """``peer``'s effective timeout may have changed from ``old``: a lower one counts its
        silence from now (as ``_set_timeout``); a higher one may end its questionable flag."""
        last = self._last_hb.get(peer)
        if last is None:
            return
        if self._eff(peer) < old:
            self._last_hb[peer] = max(last, now)
        if now < self._last_hb[peer] + self._eff(peer) / 2:
            self._questionable.discard(peer)

    def _widen(
        self, now: float, peers: tuple[str, ...], seconds: float, until: float, hypervisor: bool
    ) -> list[Effect]:
        if seconds <= 0:
            raise ValueError(f"a widened timeout must be positive, not {seconds}")
        chosen = sorted(set(peers) & set(self._peers))
        if not chosen:
            return []
        lease = until if until > now else None
        if lease is None and not hypervisor:
            return []  # a lease that is already over changes nothing
        for p in chosen:
            old = self._eff(p)
            self._widened[p] = _Widening(float(seconds), lease, hypervisor)
            self._lowered(now, p, old)
            if hypervisor and self._view[p] is LEFTCLUSTER:
                self._next_query.setdefault(p, now)
            elif not self._hypervisor_may(p):
                self._next_query.pop(p, None)
        who = ", ".join(chosen)
        if lease is None:
            text = f"CF: {self._me}: the hypervisor may declare {who} DOWN when its domain is stopped"
        else:
            text = f"CF: {self._me}: failure detection of {who} widened to {seconds:g} s for {lease - now:g} s"
            if hypervisor:
                text += " (the hypervisor may declare it DOWN when its domain is stopped)"
        return [Log("messages", text)]

    def _narrow(self, now: float, peers: tuple[str, ...]) -> list[Effect]:
        chosen = sorted(p for p in (peers or self._widened) if p in self._widened)
        if not chosen:
            return []
        for p in chosen:
            old = self._eff(p)
            del self._widened[p]
            self._lowered(now, p, old)
            if not self._hypervisor_may(p):
                self._next_query.pop(p, None)
        text = f"CF: {self._me}: failure detection of {', '.join(chosen)} narrowed back to CLUSTER_TIMEOUT {self._timeout:g} s"
        return [Log("messages", text)]

    def _end_lease(self, now: float, p: str) -> list[Effect]:
        """``p``'s lease is over (``now`` >= its end): silence counts from the lease end."""
        w = self._widened[p]
        until, w.until = w.until, None
        assert until is not None
        if not w.hypervisor:
            del self._widened[p]
        last = self._last_hb.get(p)
        if last is not None and last + max(w.seconds, self._min_timeout) <= until:
            # (late tick only) the peer was already silent for the widened timeout during the lease
            return self._move(now, p, "heartbeat_lost", f"CF: {p}: LEFTCLUSTER (no heartbeat for {now - last:.1f} s)")
        if last is not None:
            if self._base() < max(w.seconds, self._min_timeout):
                self._last_hb[p] = max(last, until)
            if now < self._last_hb[p] + self._base() / 2:
                self._questionable.discard(p)
        return []
