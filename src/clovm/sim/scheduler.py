"""Discrete-event scheduler in virtual time (heapq ordered by (time, seq)).

Queue entries are ``[when, seq, fn]`` lists: ``seq`` is unique, so ``fn`` is never compared.
A :class:`Timer` cancels its pending entry in place (``fn`` set to None) instead of wrapping
every arming in a generation-checking closure; a cancelled entry still advances ``now`` when it
is popped, exactly as a stale wake-up that did nothing used to.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any


class Scheduler:
    def __init__(self) -> None:
        self.now = 0.0
        self._q: list[list[Any]] = []  # [when, seq, fn or None]
        self._seq = 0
        self.halted = False  # set by halt(): run_until stops before the next callback
        self._limit = 0.0  # run_until's ``t``; -inf once halted

    def halt(self) -> None:
        """Stop ``run_until`` once the running callback returns (as a ``stop`` that now holds,
        without calling a predicate between every two callbacks)."""
        self.halted = True
        self._limit = float("-inf")

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        now = self.now
        heappush(self._q, [when if when >= now else now, self._seq, fn])  # (not max(): hot path)

    def after(self, delay: float, fn: Callable[[], object]) -> None:
        self._seq += 1
        now = self.now
        when = now + delay
        heappush(self._q, [when if when >= now else now, self._seq, fn])  # (not max(): hot path)

    def run_until(self, t: float, stop: Callable[[], bool] | None = None) -> None:
        """Run every callback due up to and including ``t`` (or until ``stop()`` holds or
        :meth:`halt` was called)."""
        q = self._q
        if stop is None:
            if not self.halted:
                self._limit = t
            while q and q[0][0] <= self._limit:  # (halt() lowers the limit)
                when, _, fn = heappop(q)
                self.now = when
                if fn is not None:
                    fn()
            if not self.halted:
                self.now = max(self.now, t)
            return
        while q and q[0][0] <= t and not self.halted and not stop():
            when, _, fn = heappop(q)
            self.now = when
            if fn is not None:
                fn()
        if not self.halted and not stop():
            self.now = max(self.now, t)

    def idle(self) -> bool:
        return not self._q


class Timer:
    """One re-armable wake-up (a machine's next_deadline): arming again cancels the previous one."""

    __slots__ = ("_entry", "_fire_cb", "_fn", "_sched", "when")
    _entry: list[Any] | None  # its pending queue entry
    when: float | None

    def __init__(self, sched: Scheduler, fn: Callable[[], None]):
        self._sched, self._fn, self._entry, self.when = sched, fn, None, None
        self._fire_cb = self._fire

    def arm(self, when: float | None) -> None:
        if when == self.when:
            return
        entry = self._entry
        if entry is not None:
            entry[2] = None  # cancelled: popped later without effect
        self.when = when
        if when is None:
            self._entry = None
            return
        s = self._sched
        s._seq = seq = s._seq + 1
        now = s.now
        self._entry = entry = [max(when, now), seq, self._fire_cb]
        heappush(s._q, entry)

    def _fire(self) -> None:
        self._entry = None
        self.when = None
        self._fn()

    def cancel(self) -> None:
        self.arm(None)
