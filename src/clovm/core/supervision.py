"""The supervisor's restart policy (sans-IO): SMF's restarter for the datacenter's daemons.

One :class:`Supervision` watches a fixed set of daemons (keys such as ``ldmd-primary2``). The
driver (``runtime/supervisor.py``) tells it when a daemon exits (:class:`DaemonExited`) and when a
restarted one is ready (:class:`DaemonReady`); the machine answers with :class:`StartDaemon` when
a daemon is to be started again, and with :class:`~clovm.core.base.Log` lines (``dest``
``"supervisor"``) that record every decision. Time is the driver's clock in *real* seconds (SMF
runs on the real machine, not in the emulated time of the cluster).

Rules (states and transitions: ``_state.SUPERVISED``):

* a daemon that exits is restarted ``delay`` seconds later (``RESTARTING`` → ``STARTING``), as
  svc.startd restarts a contract service whose processes died;
* a daemon that exits (or fails to get ready) more than ``limit`` times within ``window`` seconds
  is *flapping*: it is put into ``MAINTENANCE`` and not restarted again (what SMF does with a
  service that keeps dying); ``clovm down`` and ``clovm up`` bring it back;
* a daemon that is ``STARTING`` and exits before it is ready counts as one more exit.

Guest domains are not supervised: a guest domain's process *is* the domain, and a domain that
crashes stays down until ``ldm start-domain`` (ldmd's business, not SMF's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from ._state import SUPERVISED, SupervisedState, step
from .base import Effect, Event, Log, Ticked

LOG = "supervisor"


@dataclass(frozen=True, slots=True)
class DaemonExited(Event):
    """Daemon ``key`` ended (``how``: "killed by SIGKILL", "exited with status 1", ...)."""

    key: str
    how: str


@dataclass(frozen=True, slots=True)
class DaemonReady(Event):
    """The restarted daemon ``key`` (process ``pid``) said READY."""

    key: str
    pid: int


@dataclass(frozen=True, slots=True)
class StartDaemon(Effect):
    """Start daemon ``key`` again (``attempt``: its restarts within the window, this one included)."""

    key: str
    attempt: int


class Supervision:
    """The restart policy of the daemons ``keys`` (every one running at the start)."""

    def __init__(self, keys: Iterable[str], *, delay: float, limit: int, window: float) -> None:
        if delay < 0 or limit < 0 or window <= 0:
            raise ValueError("bad supervision parameters")
        self.delay, self.limit, self.window = delay, limit, window
        self._state: dict[str, SupervisedState] = {k: SupervisedState.RUNNING for k in keys}
        self._exits: dict[str, deque[float]] = {k: deque() for k in self._state}
        self._due: dict[str, float] = {}
        self._restarts: dict[str, int] = dict.fromkeys(self._state, 0)

    # ---- queries -------------------------------------------------------------------------
    def state(self, key: str) -> SupervisedState:
        return self._state[key]

    def restarts(self, key: str) -> int:
        """How often ``key`` was started again since the supervisor started."""
        return self._restarts[key]

    def keys(self) -> tuple[str, ...]:
        return tuple(self._state)

    def due(self, key: str) -> float | None:
        """When a RESTARTING daemon will be started."""
        return self._due.get(key)

    def next_deadline(self) -> float | None:
        return min(self._due.values()) if self._due else None

    # ---- events --------------------------------------------------------------------------
    def handle(self, now: float, event: Event) -> list[Effect]:
        match event:
            case Ticked():
                return self._tick(now)
            case DaemonExited(key=key, how=how) if key in self._state:
                return self._exited(now, key, how)
            case DaemonReady(key=key, pid=pid) if key in self._state:
                if self._state[key] is not SupervisedState.STARTING:
                    return []
                self._state[key] = step(SUPERVISED, self._state[key], "ready")
                return [Log(LOG, f"{key}: running again (pid {pid})")]
            case DaemonExited() | DaemonReady():
                return []
        raise TypeError(f"Supervision cannot handle {event!r}")

    def _exited(self, now: float, key: str, how: str) -> list[Effect]:
        st = self._state[key]
        if st not in (SupervisedState.RUNNING, SupervisedState.STARTING):
            return []  # already handled (a second report of the same exit)
        exits = self._exits[key]
        exits.append(now)
        while exits and exits[0] < now - self.window:
            exits.popleft()
        if len(exits) > self.limit:
            self._state[key] = step(SUPERVISED, st, "flapped")
            return [
                Log(
                    LOG,
                    f"{key}: {how}; it exited {len(exits)} times within {self.window:g} s: not restarted "
                    f"(maintenance); clovm down and clovm up start it again",
                )
            ]
        self._state[key] = step(SUPERVISED, st, "exited")
        self._due[key] = now + self.delay
        return [
            Log(
                LOG,
                f"{key}: {how}; restarting it in {self.delay:g} s (exit {len(exits)} of at most "
                f"{self.limit} within {self.window:g} s)",
            )
        ]

    def _tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for key in sorted(k for k, t in self._due.items() if t <= now):
            del self._due[key]
            self._state[key] = step(SUPERVISED, self._state[key], "due")
            self._restarts[key] += 1
            out += [StartDaemon(key, len(self._exits[key])), Log(LOG, f"{key}: starting it again")]
        return out
