"""Which loopback block this pytest-xdist worker's datacenters use (see tests/conftest.py)."""

from __future__ import annotations

import os


def worker_index() -> int:
    """0 for xdist worker gw0 or without xdist, 1 for gw1, ..."""
    w = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(w[2:]) if w.startswith("gw") and w[2:].isdigit() else 0


def net(text: str) -> str:
    """``text`` (a topology, an address, an expected line) with figure-17-1's loopback blocks
    127.20/30/40.x moved to this worker's 127.2W/3W/4W.x. Lengths stay the same (W < 10), so the
    product's fixed-width tables keep their columns."""
    w = worker_index() % 10
    if not w:
        return text
    for block in (20, 30, 40):
        text = text.replace(f"127.{block}.", f"127.{block + w}.")
    return text
