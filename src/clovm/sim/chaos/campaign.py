"""Many chaos seeds in parallel worker processes (each failing seed shrunk where it was found)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from .run import run_seed
from .shrink import shrink


@dataclass(frozen=True)
class SeedResult:
    seed: int
    failures: tuple[str, ...]
    topology: str
    schedule: tuple[str, ...]  # the (shrunk) schedule's lines
    keep: tuple[int, ...] | None  # the shrunk item indices (None: not shrunk)
    items: int  # items in the full schedule
    virtual_seconds: float

    @property
    def ok(self) -> bool:
        return not self.failures

    def replay(self) -> str:
        keep = "" if self.keep is None else " --keep " + (",".join(map(str, self.keep)) or "none")
        return f"clovm sim chaos --seed {self.seed} --replay{keep}"


def one(seed: int, do_shrink: bool = True) -> SeedResult:
    out = run_seed(seed)
    if out.ok:
        return SeedResult(seed, (), out.schedule.topology, (), None, len(out.schedule.items), out.virtual_seconds)
    keep = None
    if do_shrink:
        kept, shrunk = shrink(seed, out)
        if shrunk.failures:
            out, keep = shrunk, tuple(sorted(kept))
    lines = tuple(out.schedule.lines(None if keep is None else frozenset(keep)))
    return SeedResult(
        seed, tuple(out.failures), out.schedule.topology, lines, keep, len(out.schedule.items), out.virtual_seconds
    )


def _one(args: tuple[int, bool]) -> SeedResult:
    return one(*args)


def run_many(seeds: Iterable[int], jobs: int = 0, do_shrink: bool = True) -> list[SeedResult]:
    """Every seed's result, in seed order."""
    seeds = list(seeds)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(seeds) < 4:
        return [one(s, do_shrink) for s in seeds]
    with ProcessPoolExecutor(jobs) as ex:
        return list(ex.map(_one, [(s, do_shrink) for s in seeds], chunksize=max(1, min(50, len(seeds) // (jobs * 8)))))
