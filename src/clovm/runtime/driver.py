"""Drives one core machine on the asyncio loop: feed events, run effects, wake at deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..core.base import Effect, Event, Ticked
from .clock import EmuClock


class MachineDriver:
    def __init__(self, machine: Any, clock: EmuClock, on_effects: Callable[[Sequence[Effect]], None]):
        self.machine, self.clock, self.on_effects = machine, clock, on_effects
        self._timer: asyncio.TimerHandle | None = None

    def feed(self, event: Event) -> None:
        effects = self.machine.handle(self.clock.now(), event)
        self._arm()
        self.on_effects(effects)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(self.clock.real_delay(deadline), self.feed, Ticked())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
