"""The join protocol of CF membership: booting, answering a peer's join request, closing the join window.

:class:`JoinProtocol` is mixed into :class:`~clovm.core.membership.Membership` (which provides the
attributes and the methods declared here, and routes the join events to these methods); the rules
are the paragraphs *Joining* and *Silent peers* of the theory of operation in ``core/membership.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._state import MEMBERSHIP, NodeState, allowed, step
from .base import Effect, Log, TransitionError
from .membership_io import (
    AnnounceNodeState,
    RefuseClusterServices,
    SendJoinAnswer,
    SendJoinRequest,
    StartClusterServices,
)

UP, LEFTCLUSTER = NodeState.UP, NodeState.LEFTCLUSTER


class JoinProtocol:
    """The join half of :class:`~clovm.core.membership.Membership`."""

    _me: str
    _peers: tuple[str, ...]
    _incarnation: int
    _join_timeout: float
    _local: NodeState
    _booted: bool
    _view: dict[str, NodeState]
    _peer_inc: dict[str, int | None]
    _last_hb: dict[str, float]
    _next_query: dict[str, float]
    _next_hb: float | None
    _join_deadline: float | None
    _unanswered: set[str]
    _refusals: dict[str, str]
    _silent: set[str]
    _next_join: float | None

    if TYPE_CHECKING:

        def view(self) -> dict[str, NodeState]: ...
        def _move(
            self, now: float, peer: str, trigger: str, text: str, incarnation: int | None = None
        ) -> list[Effect]: ...

    def _boot(self, now: float) -> list[Effect]:
        if self._booted:
            raise TransitionError(f"{self._me}: CF is already started")
        self._booted = True
        self._join_deadline = now + self._join_timeout
        self._unanswered = set(self._peers)
        out: list[Effect] = [SendJoinRequest(p, self._incarnation) for p in self._peers]
        asked = ", ".join(self._peers) or "nobody (single node)"
        out.append(Log("messages", f"CF: {self._me}: COMINGUP: join request sent to {asked}"))
        return out

    def _answer_join(self, now: float, sender: str, incarnation: int) -> list[Effect]:
        held = self._view[sender]
        if held is LEFTCLUSTER and sender in self._silent:  # never heard from: not a restart
            return [
                SendJoinAnswer(sender, True, "", self._incarnation),
                *self._move(now, sender, "answered", f"CF: {sender}: joined the cluster", incarnation),
            ]
        if allowed(MEMBERSHIP, held, "joined"):
            return [
                SendJoinAnswer(sender, True, "", self._incarnation),
                *self._move(now, sender, "joined", f"CF: {sender}: joined the cluster", incarnation),
            ]
        if held is UP and self._peer_inc[sender] == incarnation:
            # Not a restart: the same incarnation we already hold UP (two nodes booting at once
            # each accepted the other's request before their own arrived). Accept again.
            self._peer_inc[sender] = incarnation
            self._last_hb[sender] = max(self._last_hb[sender], now)
            return [SendJoinAnswer(sender, True, "", self._incarnation)]
        reason = f"{self._me} still holds {sender} {held}"
        return [
            SendJoinAnswer(sender, False, reason, self._incarnation),
            Log("messages", f"CF: {sender}: join request refused: {reason}"),
        ]

    def _finish_join(self, now: float) -> list[Effect]:
        self._join_deadline = None
        # (a peer whose own join request we accepted meanwhile is UP: it did answer, in effect)
        unanswered = sorted(p for p in self._unanswered if self._view[p] is not UP)
        self._unanswered = set()
        me = self._me
        if self._refusals:
            self._local = step(MEMBERSHIP, self._local, "join_refused")
            refused_by = tuple(sorted(self._refusals))
            reason = "; ".join(self._refusals[r] for r in refused_by)
            text = (
                f"CF: {me}: join refused by {', '.join(refused_by)} ({reason}); SF, CRM and RMS are not "
                f"started. The documented recovery applies: stop the domain, wait until `cftool -n` on "
                f"another node shows {me} DOWN, then start it"
            )
            refuse = RefuseClusterServices(refused_by, reason)
            return [AnnounceNodeState(me, self._local), refuse, Log("messages", text)]
        self._local = step(MEMBERSHIP, self._local, "join_accepted")
        self._next_hb = now
        members = " ".join(n for n, s in self.view().items() if s is UP)
        text = f"CF: {me}: UP, cluster members: {members}"
        uncertain: list[Effect] = []
        if unanswered:
            text += f" (no answer from {', '.join(unanswered)})"
            self._silent = set(unanswered)
            self._next_join = now + self._join_timeout
            for p in unanswered:  # (asked in the _expire that called us)
                self._next_query[p] = now
            # held DOWN, but not known to be down until the hypervisor says so
            uncertain = [AnnounceNodeState(p, NodeState.DOWN, True) for p in unanswered]
        return [AnnounceNodeState(me, self._local), Log("messages", text), *uncertain, StartClusterServices()]
