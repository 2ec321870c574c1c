"""A fake datagram network between named endpoints (modelled on trio's FakeNet).

Latency, jitter and loss come from the world's seeded ``random.Random``; partitions cut the
links between groups of endpoints. Delivery order between two endpoints may change with jitter,
as on a real network.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .scheduler import Scheduler


class SimNetwork:
    def __init__(
        self,
        sched: Scheduler,
        rng: random.Random,
        *,
        latency: float = 0.0005,
        jitter: float = 0.0005,
        loss: float = 0.0,
    ):
        self.sched, self.rng = sched, rng
        self.latency, self.jitter, self.loss = latency, jitter, loss
        self._groups: list[frozenset[str]] = []  # partitions: endpoints in different groups can't talk
        self.lossy: frozenset[str] | None = None  # random loss only on datagrams from these (None: all)
        self.sent = 0
        self.dropped = 0

    def partition(self, *groups: set[str] | frozenset[str]) -> None:
        self._groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self._groups = []

    def connected(self, a: str, b: str) -> bool:
        # An endpoint named in no group (an XSCF, an ldmd) still reaches everyone.
        ga = next((g for g in self._groups if a in g), None)
        gb = next((g for g in self._groups if b in g), None)
        return ga is None or gb is None or ga is gb

    def passes(self, src: str, dst: str) -> bool:
        """Whether one datagram from src reaches dst (partition, then random loss)."""
        self.sent += 1
        if not self.connected(src, dst) or (
            self.loss and (self.lossy is None or src in self.lossy) and self.rng.random() < self.loss
        ):
            self.dropped += 1
            return False
        return True

    def all_pass(self, src: str, count: int) -> bool:
        """Fast path of ``passes`` for ``count`` datagrams from src: True (and counted as sent) when
        nothing can stop them (no partition, no loss); False, counting nothing, when each must be
        asked about with ``passes``."""
        if self._groups or self.loss:
            return False
        self.sent += count
        return True

    def deliver_later(self, deliver: Callable[[], object]) -> None:
        self.sched.after(self.latency + self.rng.random() * self.jitter, deliver)

    def send(self, src: str, dst: str, deliver: Callable[[], None], *, reliable: bool = False) -> None:
        """Deliver ``deliver()`` at dst after latency, unless lost or partitioned.

        ``reliable`` models a TCP/SSH channel: no random loss, but a partition still cuts it.
        """
        self.sent += 1
        if (
            self._groups
            and not self.connected(src, dst)
            or (
                not reliable
                and self.loss
                and (self.lossy is None or src in self.lossy)
                and self.rng.random() < self.loss
            )
        ):
            self.dropped += 1
            return
        self.sched.after(self.latency + self.rng.random() * self.jitter, deliver)
