"""The emulated clock every process of a datacenter shares.

``now()`` = ``time_scale × (CLOCK_MONOTONIC − start)``: CLOCK_MONOTONIC is system-wide on Linux,
so every daemon of a home agrees on it. ``wall(server)`` adds the emulated epoch and the clock
offset of a server (``clovm fault clock``), re-read from ``offsets.json`` when that file changes.
"""

from __future__ import annotations

import json
import os
import time

from .home import Home


LOOK_INTERVAL = 0.05  # real seconds between two looks at offsets.json


class EmuClock:
    def __init__(self, home: Home):
        self.home = home
        c = json.loads(home.clock_file.read_text())
        self.epoch, self.start, self.scale = float(c["epoch"]), float(c["start"]), float(c["time_scale"])
        self._offsets: dict[str, float] = {}
        self._offsets_mtime = -1
        self._offsets_name = str(home.offsets_file)
        self._next_look = -1.0

    def now(self) -> float:
        return self.scale * (time.monotonic() - self.start)

    def offset(self, server: str) -> float:
        """The server's clock offset (``clovm fault clock``); the file is looked at at most every
        LOOK_INTERVAL real seconds (every heartbeat asks)."""
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + LOOK_INTERVAL
            try:
                m = os.stat(self._offsets_name).st_mtime_ns
            except FileNotFoundError:
                self._offsets, self._offsets_mtime = {}, -1
            else:
                if m != self._offsets_mtime:
                    self._offsets = json.loads(self.home.offsets_file.read_text())
                    self._offsets_mtime = m
        return float(self._offsets.get(server, 0.0))

    def wall(self, server: str) -> float:
        return self.epoch + self.now() + self.offset(server)

    def real_delay(self, deadline: float) -> float:
        return max(0.0, (deadline - self.now()) / self.scale)
