"""Discrete-event scheduler in virtual time (heapq ordered by (time, seq))."""

from __future__ import annotations

import heapq
from functools import partial
from typing import Callable


class Scheduler:
    def __init__(self) -> None:
        self.now = 0.0
        self._q: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._q, (max(when, self.now), self._seq, fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(self.now + delay, fn)

    def run_until(self, t: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Run every callback due up to and including ``t`` (or until ``stop()`` holds)."""
        while self._q and self._q[0][0] <= t and not stop():
            when, _, fn = heapq.heappop(self._q)
            self.now = when
            fn()
        if not stop():
            self.now = max(self.now, t)

    def idle(self) -> bool:
        return not self._q


class Timer:
    """One re-armable wake-up (a machine's next_deadline): arming again cancels the previous one."""

    def __init__(self, sched: Scheduler, fn: Callable[[], None]):
        self._sched, self._fn, self._gen, self.when = sched, fn, 0, None

    def arm(self, when: float | None) -> None:
        if when == self.when:
            return
        self._gen += 1
        self.when = when
        if when is not None:
            self._sched.at(when, partial(self._fire, self._gen))

    def _fire(self, gen: int) -> None:
        if gen == self._gen:  # not re-armed or cancelled since
            self.when = None
            self._fn()

    def cancel(self) -> None:
        self.arm(None)
