"""Fixtures of the api tier: the use cases over fake environments, no daemon, no socket bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from clovm import topology
from clovm.runtime.home import Home


@pytest.fixture
def topo() -> topology.Topology:
    """The seed's figure-17-1 topology (three servers, primary1-3, guest1 and guest2)."""
    return topology.load("figure-17-1")


@pytest.fixture
def home(tmp_path: Path, topo: topology.Topology) -> Home:
    """A home with the figure-17-1 topology and nothing running."""
    h = Home(tmp_path / "home")
    h.run_dir.mkdir(parents=True)
    h.topology_file.write_text(topology.dumps(topo))
    return h
