"""Exposure: how long a crash of a node that is NOT being migrated goes undetected during a migration.

Usage: python bench/exposure.py [--seeds 20]

In the deterministic simulator (figure-17-1-3g: guest2 migrates primary2 -> primary3 while
cfguest1 crashes at a random moment of the pre-copy), measure the time from the crash until
cfguest3 no longer holds cfguest1 UP, for

* the manual procedure's window (``clovm migrate``: CLUSTER_TIMEOUT 600 s on every node), and
* ``clovm migrate --scoped`` (only the migrating node's failure detection is widened).

Target (issue 5): --scoped at least 50x shorter. The median of each and the ratio of the medians
are printed; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import statistics

from clovm import topology
from clovm.sim import scenarios


def detection(scoped: bool, seed: int, topo: topology.Topology) -> float:
    def proc(ctx: scenarios.Ctx):
        yield from scenarios.one_shot_with_a_crash(ctx, scoped)

    out = scenarios.run_process("exposure", proc, 3000.0, topo, seed)
    if "detection" not in out.metrics:
        raise SystemExit(f"seed {seed} ({'scoped' if scoped else 'manual'}): no detection: {out.failures}")
    return out.metrics["detection"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    topo = topology.load("figure-17-1-3g")
    res = {}
    for scoped in (False, True):
        times = [detection(scoped, s, topo) for s in range(args.seeds)]
        res[scoped] = statistics.median(times)
        print(
            f"{'--scoped' if scoped else 'manual  '}: detection median {res[scoped]:7.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}; {args.seeds} seeds, virtual seconds)"
        )
    ratio = res[False] / res[True]
    print(f"ratio manual/--scoped: {ratio:.1f}x (target >= 50x: {'met' if ratio >= 50 else 'NOT met'})")


if __name__ == "__main__":
    main()
