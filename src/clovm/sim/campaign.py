"""Run one scenario over many seeds, in parallel worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from ..topology import Topology
from . import scenarios


def _one(args: tuple[str, Topology, int]) -> tuple[int, list[str]]:
    name, topo, seed = args
    return seed, scenarios.run(name, topo, seed).failures


def run_many(name: str, topo: Topology, seeds: Iterable[int], jobs: int = 0) -> list[tuple[int, list[str]]]:
    seeds = list(seeds)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(seeds) < 4:
        return [_one((name, topo, s)) for s in seeds]
    with ProcessPoolExecutor(jobs) as ex:
        return list(ex.map(_one, [(name, topo, s) for s in seeds], chunksize=max(1, len(seeds) // (jobs * 8))))
