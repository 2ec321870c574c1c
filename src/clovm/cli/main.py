"""``clovm``: the developer/operator entry point (sim, demo, and the emulated datacenter)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import topology


class Parser(argparse.ArgumentParser):
    """One clear line and exit 2 on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sim(args: argparse.Namespace) -> int:
    from ..sim import campaign, scenarios

    try:
        topo = topology.load(args.topology)
    except topology.TopologyError as e:
        print(f"clovm sim: {e}", file=sys.stderr)
        return 2
    if args.seeds:
        results = campaign.run_many(args.scenario, topo, range(args.seed, args.seed + args.seeds), args.jobs)
        failed = [r for r in results if r[1]]
        for seed, failures in failed:
            print(f"seed {seed}: FAILED: {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""))
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0
    out = scenarios.run(args.scenario, topo, args.seed, echo=print if not args.quiet else None)
    for f in out.failures:
        print(f"FAILED: {f}")
    print(f"scenario {args.scenario} seed {args.seed}: {'passed' if out.ok else 'FAILED'} "
          f"({out.virtual_seconds:.1f} virtual seconds)")
    return 0 if out.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from ..sim import scenarios

    out = scenarios.run("live-migration", topology.load(), 0, echo=print)
    for f in out.failures:
        print(f"FAILED: {f}")
    print("demo (simulated datacenter):", "all checks held" if out.ok else "FAILED")
    return 0 if out.ok else 1


def build_parser() -> Parser:
    from ..sim.scenarios import SCENARIOS

    p = Parser(prog="clovm", description="cluster-safe live migration on an emulated SPARC datacenter")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    s = sub.add_parser("sim", help="run a built-in scenario in the deterministic simulator")
    s.add_argument("scenario", choices=sorted(SCENARIOS))
    s.add_argument("--topology", default=topology.DEFAULT, help="built-in name or TOML file")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--seeds", type=int, default=0, help="run this many seeds (from --seed) and summarise")
    s.add_argument("--jobs", type=int, default=0, help="worker processes for --seeds (default: CPU count)")
    s.add_argument("--quiet", action="store_true", help="do not print the trace")
    s.set_defaults(func=_sim)
    d = sub.add_parser("demo", help="run the seed's procedure end to end and check every outcome")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
