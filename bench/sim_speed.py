"""Simulator speed: virtual seconds per wall second, and seeds per minute of a campaign.

Usage: python bench/sim_speed.py [--runs 5] [--seeds 1000]
Targets (issue 2): >= 10,000x real time for live-migration; a 1,000-seed campaign < 60 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from clovm import topology
from clovm.sim import campaign, scenarios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1000)
    args = ap.parse_args()
    topo = topology.load()
    print(f"cpus: {os.cpu_count()}")
    for name in sorted(scenarios.SCENARIOS):
        ratios, cpu_ratios = [], []
        for i in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            out = scenarios.run(name, topology.load(scenarios.topology_for(name, None)), i)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert out.ok, out.failures
            ratios.append(out.virtual_seconds / wall)
            cpu_ratios.append(out.virtual_seconds / cpu)
        print(
            f"{name:15s} virtual/wall median {statistics.median(ratios):8,.0f}x  "
            f"virtual/cpu median {statistics.median(cpu_ratios):8,.0f}x  ({args.runs} runs)"
        )
    t0 = time.perf_counter()
    results = campaign.run_many("live-migration", topo, range(args.seeds))
    wall = time.perf_counter() - t0
    failed = sum(1 for _, f in results if f)
    print(
        f"campaign live-migration: {args.seeds} seeds in {wall:.1f} s "
        f"({args.seeds / wall * 60:,.0f} seeds/min), {failed} failed"
    )


if __name__ == "__main__":
    main()
