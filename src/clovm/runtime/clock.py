"""The emulated clock every process of a datacenter shares.

``now()`` = ``time_scale × (CLOCK_MONOTONIC − start)``: CLOCK_MONOTONIC is system-wide on Linux,
so every daemon of a home agrees on it. ``wall(server)`` adds the emulated epoch and the clock
offset of a server (``clovm fault clock``), re-read from ``offsets.json`` when that file changes.
"""

from __future__ import annotations

import json
import time

from ..fsutil import WatchedJson
from .home import Home


class EmuClock:
    def __init__(self, home: Home):
        self.home = home
        c = json.loads(home.clock_file.read_text())
        self.epoch, self.start, self.scale = float(c["epoch"]), float(c["start"]), float(c["time_scale"])
        # which power-on of the datacenter this is (``clovm up`` writes a new one; None in homes
        # made without it): a daemon that finds records of another boot was powered off since
        self.boot: str | None = c.get("boot")
        self._offsets = WatchedJson(home.offsets_file)
        self._raw: object = object()
        self._parsed: dict[str, float] = {}

    def now(self) -> float:
        return self.scale * (time.monotonic() - self.start)

    def offsets(self) -> dict[str, float]:
        """Every server's clock offset (``clovm fault clock``): the same dict until the file changes."""
        v = self._offsets.get()
        if v is not self._raw:
            self._raw = v
            self._parsed = {str(k): float(x) for k, x in v.items()} if isinstance(v, dict) else {}
        return self._parsed

    def offset(self, server: str) -> float:
        """The server's clock offset (``clovm fault clock``; 0 without one)."""
        return float((self._offsets.get() or {}).get(server, 0.0))

    def wall(self, server: str) -> float:
        return self.epoch + self.now() + self.offset(server)

    def real_delay(self, deadline: float) -> float:
        return max(0.0, (deadline - self.now()) / self.scale)
