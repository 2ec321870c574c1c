"""Delta debugging over a failing seed's schedule: the smallest set of items that still fails.

:func:`shrink` runs Zeller's *ddmin* over the item indices of the seed's schedule: it tries
subsets and complements of ever finer partitions and keeps any that still fails *the same way*
(:func:`category` of the first failure), until no single item can be removed. Every run is a
deterministic simulation (the seed fixes the topology, each item's parameters and the world's
random numbers), so the result is deterministic too. Items that refer to an operation that was
removed (``op``) do nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .run import Outcome, run_seed
from .schedule import Schedule, draw

_CATEGORIES = (
    (re.compile(r"runs on .* at once"), "two running instances of a domain"),
    (re.compile(r"online on \['"), "an application online on two nodes"),
    (re.compile(r"aimed at"), "a kill hit another node"),
    (re.compile(r"XSCF of .* was asked"), "a kill through the XSCF of another server"),
    (re.compile(r"fenced by .* -p is in force"), "a node fenced under its -p"),
    (re.compile(r"CLUSTER_TIMEOUT is"), "a timeout not restored"),
    (re.compile(r"window is still open"), "a -p window left open"),
    (re.compile(r"liveness"), "liveness"),
    (re.compile(r"did not come up"), "the datacenter did not come up"),
    (re.compile(r"did not end"), "the run did not end"),
)


def category(failure: str) -> str:
    """What kind of failure a failure line is (what the shrinker must keep failing)."""
    if "exception: " in failure:
        return "exception " + failure.split("exception: ", 1)[1].split(":", 1)[0]
    return next((name for rx, name in _CATEGORIES if rx.search(failure)), "other")


def ddmin(items: list[int], fails: Callable[[list[int]], bool]) -> list[int]:
    """A 1-minimal sublist of ``items`` (order kept) for which ``fails`` holds (it holds for ``items``)."""
    if fails([]):
        return []
    n = 2
    while len(items) >= 2:
        size = -(-len(items) // n)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        for c in chunks:
            if fails(c):
                items, n = c, 2
                break
        else:
            for c in chunks:
                rest = [x for x in items if x not in c]
                if fails(rest):
                    items, n = rest, max(n - 1, 2)
                    break
            else:
                if n >= len(items):
                    break
                n = min(len(items), 2 * n)
    return items


def shrink(
    seed: int, outcome: Outcome | None = None, schedule: Schedule | None = None, max_runs: int = 200
) -> tuple[frozenset[int], Outcome]:
    """The minimal kept set of ``seed``'s failing schedule, and the outcome of running it."""
    sched = schedule or draw(seed)
    first = outcome or run_seed(seed, schedule=sched)
    if first.ok:
        raise ValueError(f"seed {seed} does not fail")
    want = category(first.failures[0])
    cache: dict[frozenset[int], Outcome] = {}
    runs = [0]

    def fails(keep: list[int]) -> bool:
        k = frozenset(keep)
        if k not in cache:
            if runs[0] >= max_runs:
                return False  # out of budget: keep what we have
            runs[0] += 1
            cache[k] = run_seed(seed, k, schedule=sched)
        return any(category(f) == want for f in cache[k].failures)

    kept = frozenset(ddmin(list(range(len(sched.items))), fails))
    return kept, cache.get(kept) or run_seed(seed, kept, schedule=sched)
