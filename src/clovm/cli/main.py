"""``clovm``: the developer/operator entry point (sim, demo, and the emulated datacenter).

Thin: each subcommand parses its arguments, calls :mod:`clovm.api` (or the simulator) and
renders the result; errors are the use cases' :class:`~clovm.api.errors.ClovmError` (one line on
stderr, rc 1). ``clovm status --json`` prints the status document (per-daemon state, and a code
when something is wrong); on an error it prints ``{"ok": false, "code", "message"}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings, topology
from . import (
    pcmk,  # the Pacemaker topology (issue 13) and `clovm fault pause` on both stacks
)

if TYPE_CHECKING:  # (imported where they are used: a command loads only what it needs)
    from ..api.datacenter import Summary
    from ..runtime.home import Home


class Parser(argparse.ArgumentParser):
    """One clear line and exit 2 on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(text: str) -> int:
    """A non-negative whole number (``--seed``, ``--seeds``, ``--jobs``)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return n


def _sim_chaos(args: argparse.Namespace) -> int:
    """``clovm sim chaos``: the randomised campaign over everything (clovm.sim.chaos)."""
    import time

    from ..sim.chaos import campaign as chaos_campaign
    from ..sim.chaos import run as chaos_run
    from ..sim.chaos import schedule as chaos_schedule
    from ..sim.chaos import shrink as chaos_shrink

    def refuse(text: str) -> int:
        print(f"clovm sim chaos: {text}", file=sys.stderr)
        return 2

    if args.topology:
        return refuse("every seed draws its own topology; --topology does not apply")
    if args.seeds:
        if args.replay or args.keep is not None:
            return refuse("--replay and --keep replay one seed: give --seed S without --seeds")
        t0 = time.perf_counter()
        results = chaos_campaign.run_many(
            range(args.seed, args.seed + args.seeds), args.jobs, do_shrink=not args.no_shrink
        )
        dt = time.perf_counter() - t0
        failed = [r for r in results if not r.ok]
        for r in failed:
            more = f" (+{len(r.failures) - 1} more)" if len(r.failures) > 1 else ""
            print(f"seed {r.seed}: FAILED: {r.failures[0]}{more}")
            items = f"shrunk to {len(r.keep)} of {r.items} items" if r.keep is not None else f"{r.items} items"
            print(f"  topology {r.topology}, schedule ({items}):")
            for line in r.schedule:
                print(f"    {line}")
            print(f"  replay: {r.replay()}")
        print(
            f"clovm sim chaos: {len(results)} seeds in {dt:.1f} s ({len(results) / max(dt, 1e-9):.1f} seeds/s)",
            file=sys.stderr,
        )
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0
    sched = chaos_schedule.draw(args.seed)
    keep: frozenset[int] | None = None
    if args.keep is not None:
        try:
            keep = frozenset() if args.keep.strip() in ("", "none") else frozenset(int(x) for x in args.keep.split(","))
        except ValueError:
            return refuse(f"--keep takes item numbers separated by commas (or none), not {args.keep!r}")
        bad = sorted(i for i in keep if not 0 <= i < len(sched.items))
        if bad:
            return refuse(f"--keep: seed {args.seed} has items 0 to {len(sched.items) - 1}, not {bad[0]}")
    if not args.quiet:
        print(
            f"chaos seed {args.seed}: topology {sched.topology}, schedule"
            + (f" ({len(keep)} of {len(sched.items)} items):" if keep is not None else ":")
        )
        for line in sched.lines(keep):
            print(f"  {line}")
    out = chaos_run.run_seed(args.seed, keep, echo=print if args.replay else None, schedule=sched)
    for f in out.failures:
        print(f"FAILED: {f}")
    if not out.ok:
        if keep is None and not args.replay and not args.no_shrink:
            kept, shrunk = chaos_shrink.shrink(args.seed, out, sched)
            if shrunk.failures:
                keep = kept
                print(f"shrunk to {len(kept)} of {len(sched.items)} items:")
                for line in sched.lines(kept):
                    print(f"  {line}")
        tail = "" if keep is None else " --keep " + (",".join(map(str, sorted(keep))) or "none")
        print(f"replay: clovm sim chaos --seed {args.seed} --replay{tail}")
    print(f"chaos seed {args.seed}: {'passed' if out.ok else 'FAILED'} ({out.virtual_seconds:.1f} virtual seconds)")
    return 0 if out.ok else 1


def _sim(args: argparse.Namespace) -> int:
    from ..sim import campaign, scenarios

    if args.scenario == "chaos":
        return _sim_chaos(args)
    if args.replay or args.keep is not None or args.no_shrink:
        print("clovm sim: --replay, --keep and --no-shrink are for clovm sim chaos", file=sys.stderr)
        return 2
    try:
        topo = topology.load(scenarios.topology_for(args.scenario, args.topology))
    except topology.TopologyError as e:
        print(f"clovm sim: {e}", file=sys.stderr)
        return 2
    if args.seeds:
        results = campaign.run_many(args.scenario, topo, range(args.seed, args.seed + args.seeds), args.jobs)
        failed = [r for r in results if r[1]]
        for seed, failures in failed:
            print(
                f"seed {seed}: FAILED: {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
            )
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0
    out = scenarios.run(args.scenario, topo, args.seed, echo=print if not args.quiet else None)
    for f in out.failures:
        print(f"FAILED: {f}")
    print(
        f"scenario {args.scenario} seed {args.seed}: {'passed' if out.ok else 'FAILED'} "
        f"({out.virtual_seconds:.1f} virtual seconds)"
    )
    return 0 if out.ok else 1


def _demo(args: argparse.Namespace) -> int:
    if args.sim:
        from ..sim import scenarios

        out = scenarios.run("live-migration", topology.load(), 0, echo=print)
        for f in out.failures:
            print(f"FAILED: {f}")
        print("demo (simulated datacenter):", "all checks held" if out.ok else "FAILED")
        return 0 if out.ok else 1
    from ..api import demo
    from .admin import run_command

    return demo.run(sys.stdout, run_command, args.time_scale, args.scenario, args.topology)


# ---- the emulated datacenter (thin: parse, call clovm.api, render) ---------------------------------
def _home(args: argparse.Namespace) -> Home:
    from ..runtime.home import Home

    return Home(args.home)


def _fail(cmd: str, e: Exception) -> int:
    print(f"clovm {cmd}: {e}", file=sys.stderr)
    for line in getattr(e, "details", ()):
        print(f"  {line}", file=sys.stderr)
    return 1


def _render_summary(s: Summary) -> str:
    out = [f"datacenter up: home {s.home}, topology {s.topology}, time scale {s.time_scale:g}", "servers:"]
    for v in s.servers:
        ppars = ",".join(str(p) for p in v.ppars)
        out.append(
            f"  {v.name:<10} PPAR {ppars:<4} XSCF LAN#0 {v.lan0:<15} LAN#1 {v.lan1:<15} "
            f"(SNMP udp/{settings.SNMP_PORT}, SSH tcp/{settings.XSCF_SSH_PORT})"
        )
    out.append("control domains:")
    for c in s.control_domains:
        out.append(
            f"  {c.name:<10} {c.server} PPAR {c.ppar:<2} {c.address:<15} CF {c.cf_name} "
            f"SF weight {c.sf_weight} (ldmd tcp/{settings.LDMD_PORT})"
        )
    out.append("guests:")
    for g in s.guests or ():
        out.append(f"  {g.name:<10} on {g.control_domain} ({g.server}) {g.address:<15} CF {g.cf_name}")
    out.append("cluster nodes:")
    for cl in s.clusters:
        out.append(f"  {cl.name} ({cl.kind}): {' '.join(cl.nodes)}")
    out += [f"warning: {w}" for w in s.warnings]
    return "\n".join(out)


def _up(args: argparse.Namespace) -> int:
    from ..api import ClovmError, datacenter

    def progress(text: str) -> None:
        print(f"clovm up: {text}", flush=True)

    try:
        summary = datacenter.up(_home(args), args.topology, args.time_scale, fresh=args.fresh, progress=progress)
    except ClovmError as e:
        return _fail("up", e)
    if summary.discarded:
        print(f"clovm up: warning: {summary.discarded}", file=sys.stderr, flush=True)
    print(_render_summary(summary))
    if not summary.ready:
        from ..core import codes

        print(
            f"clovm up: {summary.not_ready} (code {codes.NOT_READY}); the datacenter runs: clovm status "
            f"--home {summary.home} shows it, clovm down stops it",
            file=sys.stderr,
        )
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    from ..api import ClovmError, datacenter

    try:
        lines = datacenter.down(_home(args))
    except ClovmError as e:
        return _fail("down", e)
    print("\n".join(lines))
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from ..api import ClovmError, datacenter

    try:
        st = datacenter.status(_home(args))
    except ClovmError as e:
        if args.json:
            print(json.dumps({"ok": False, "code": e.code, "message": e.message}, indent=2))
        return _fail("status", e)
    from .status import render_status

    print(json.dumps(st, indent=2, default=str) if args.json else render_status(st))
    return 0


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def _exec(args: argparse.Namespace) -> int:
    from ..api import ClovmError, lookup

    command = _strip_dashes(args.command)
    if not command:
        print("clovm exec: error: no command (usage: clovm exec HOST -- COMMAND [ARGS...])", file=sys.stderr)
        return 2
    home = _home(args)
    try:
        host = lookup.check_host(home, args.host)
    except ClovmError as e:
        return _fail("exec", e)
    from .admin import run_command

    global _PRODUCT_COMMAND_RAN
    rc = int(run_command(command[0], command[1:], host=host, home=home, out=sys.stdout, err=sys.stderr))
    _PRODUCT_COMMAND_RAN = True
    return rc


def _shell(args: argparse.Namespace) -> int:
    import shlex

    from ..api import ClovmError, lookup

    home = _home(args)
    try:
        host = lookup.check_host(home, args.host)
    except ClovmError as e:
        return _fail("shell", e)
    from .admin import run_command

    rc = 0
    while True:
        try:
            line = input(f"{host} # ")
        except EOFError:
            print()
            return rc
        except KeyboardInterrupt:
            print()
            continue
        try:
            argv = shlex.split(line)
        except ValueError as e:
            print(f"clovm shell: {e}", file=sys.stderr)
            continue
        if not argv:
            continue
        if argv[0] in ("exit", "logout"):
            return rc
        try:
            rc = int(run_command(argv[0], argv[1:], host=host, home=home, out=sys.stdout, err=sys.stderr))
        except KeyboardInterrupt:
            print()
            rc = 130
        sys.stdout.flush()


FAULT_USAGE = {
    "xscf-down": "SERVER [--lan 0|1]",
    "xscf-up": "SERVER [--lan 0|1]",
    "partition": "HOST... [-- HOST...]",
    "heal": "",
    "clock": "SERVER ±SECONDS",
    "migration-abort": "DOMAIN",
    "forget-xscf-key": "HOST SERVER",
    "kill": "xscfd SERVER | ldmd CONTROL-DOMAIN | nodeagent HOST [--at POINT]",
    "pause": "HOST SECONDS",  # clovm.cli.pcmk (both stacks)
}


def _fault_call(kind: str, args: list[str]) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``clovm fault KIND ARGS...`` as (function of :mod:`clovm.api.faults`, its arguments after
    the home, keyword arguments); ClovmError BAD_ARGUMENT (the usage) or UNKNOWN_FAULT."""
    import math

    from ..api import ClovmError, faults
    from ..core import codes

    if kind not in FAULT_USAGE:
        raise ClovmError(codes.UNKNOWN_FAULT, f"unknown fault {kind!r} (one of: {', '.join(faults.FAULTS)})")
    usage = ClovmError(codes.BAD_ARGUMENT, f"usage: clovm fault {kind} {FAULT_USAGE[kind]}")
    if kind in ("xscf-down", "xscf-up"):
        rest, lans = list(args), [0, 1]
        if "--lan" in rest:
            i = rest.index("--lan")
            if i + 1 >= len(rest) or rest[i + 1] not in ("0", "1"):
                raise usage
            lans = [int(rest[i + 1])]
            del rest[i : i + 2]
        if len(rest) != 1:
            raise usage
        return "xscf_lan", (rest[0],), {"up": kind == "xscf-up", "lans": lans}
    if kind == "partition":
        if not args or args[0] == "--" or args[-1] == "--" or args.count("--") > 1:
            raise usage
        if "--" in args:
            cut = args.index("--")
            return "partition", (args[:cut], args[cut + 1 :]), {}
        return "partition", (args, None), {}
    if kind == "clock":
        if len(args) != 2:
            raise usage
        try:
            delta = float(args[1])
        except ValueError:
            delta = math.nan
        if not math.isfinite(delta):
            raise ClovmError(codes.BAD_ARGUMENT, f"not a number of seconds: {args[1]!r}")
        return "clock", (args[0], delta), {}
    if kind == "kill":
        rest, at = list(args), None
        if "--at" in rest:
            i = rest.index("--at")
            if i + 1 >= len(rest):
                raise usage
            at = rest[i + 1]
            del rest[i : i + 2]
        if len(rest) != 2:
            raise usage
        return "kill", (rest[0], rest[1]), {"at": at}
    n = {"heal": 0, "migration-abort": 1, "forget-xscf-key": 2}[kind]
    if len(args) != n:
        raise usage
    return kind.replace("-", "_"), tuple(args), {}


def _fault(args: argparse.Namespace) -> int:
    from ..api import ClovmError, faults

    try:
        name, pos, kw = _fault_call(args.kind, _strip_dashes(args.args))
        print(getattr(faults, name)(_home(args), *pos, **kw))
    except ClovmError as e:
        return _fail("fault", e)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .admin import main_clovm

    argv = ["migrate", *args.operands]
    for flag in ("scoped", "dry_run", "resume", "status"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    if args.timeline:
        argv += ["--timeline", args.timeline]
    if args.json:
        argv.append("--json")
    host = args.host or os.environ.get("CLOVM_HOST") or None
    return main_clovm(argv, host=host, home=_home(args), out=sys.stdout, err=sys.stderr)


def _timeline(args: argparse.Namespace) -> int:
    import json

    from .. import timeline

    try:
        journal = json.loads(Path(args.journal).read_text(encoding="utf-8"))
        if not isinstance(journal, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - handled with the JSON errors below
    except (OSError, ValueError) as e:
        print(f"clovm timeline: cannot read the journal {args.journal}: {e}", file=sys.stderr)
        return 1
    output = args.output or str(Path(args.journal).with_suffix(".svg"))
    timeline.write_svg(Path(output), journal)
    print(f"clovm timeline: {output}")
    return 0


def _add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--home", default=settings.default_home(), help="datacenter home (default: $CLOVM_HOME or %(default)s)"
    )


def build_parser() -> Parser:
    from ..sim import SCENARIO_NAMES

    p = Parser(prog="clovm", description="cluster-safe live migration on an emulated SPARC datacenter")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    s = sub.add_parser("sim", help="run a built-in scenario in the deterministic simulator")
    s.add_argument(
        "scenario",
        choices=sorted((*SCENARIO_NAMES, "chaos")),
        help="a scenario, or chaos: the randomised campaign over everything",
    )
    s.add_argument(
        "--topology",
        default=None,
        help=f"built-in name or TOML file (default: the scenario's own, else {topology.DEFAULT})",
    )
    s.add_argument("--seed", type=_count, default=0)
    s.add_argument("--seeds", type=_count, default=0, help="run this many seeds (from --seed) and summarise")
    s.add_argument("--jobs", type=_count, default=0, help="worker processes for --seeds (default: CPU count)")
    s.add_argument("--quiet", action="store_true", help="do not print the trace (chaos: nor the schedule)")
    s.add_argument("--replay", action="store_true", help="chaos: run one seed and print its whole trace")
    s.add_argument(
        "--keep",
        default=None,
        metavar="I,J,...",
        help="chaos: run only these items of the seed's schedule (as a shrunk replay line gives)",
    )
    s.add_argument("--no-shrink", action="store_true", help="chaos: do not shrink failing schedules")
    s.set_defaults(func=_sim)
    d = sub.add_parser("demo", help="run the seed's procedure end to end and check every outcome")
    d.add_argument(
        "--scenario",
        default="happy-path",
        choices=[
            "happy-path",
            "abort-recovery",
            "early-start",
            "ssh-first-connection",
            "spconfig-limit",
            "time-sync",
            "cancelled",
        ],
        help="which branch of the seed to run (default happy-path)",
    )
    d.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="emulated seconds per real second (default: 10, or 20 where 600 s must pass)",
    )
    d.add_argument("--sim", action="store_true", help="run the procedure in the simulator instead")
    d.add_argument(
        "--topology",
        default=topology.DEFAULT,
        help="figure-17-1 (default) or a TOML copy of it with other loopback addresses",
    )
    d.set_defaults(func=_demo)

    u = sub.add_parser("up", help="start the emulated datacenter in the background")
    _add_home(u)
    u.add_argument(
        "--topology", default=None, help=f"built-in name or TOML file (default: the home's, else {topology.DEFAULT})"
    )
    u.add_argument(
        "--time-scale",
        type=float,
        default=settings.DEFAULT_TIME_SCALE,
        help="emulated seconds per real second (default %(default)s)",
    )
    u.add_argument(
        "--fresh",
        action="store_true",
        help="start over from the topology: forget where the guests ran, saved configurations and "
        "every host's files kept by an earlier run of this home",
    )
    u.set_defaults(func=_up)
    dn = sub.add_parser("down", help="stop every process of the datacenter")
    _add_home(dn)
    dn.set_defaults(func=_down)
    st = sub.add_parser("status", help="servers, domains, cluster nodes and migrations")
    _add_home(st)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)
    ex = sub.add_parser("exec", help="run an admin command on a host: clovm exec HOST -- COMMAND [ARGS...]")
    _add_home(ex)
    ex.add_argument("host")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=_exec)
    sh = sub.add_parser("shell", help="interactive admin shell on a host")
    _add_home(sh)
    sh.add_argument("host")
    sh.set_defaults(func=_shell)
    fa = sub.add_parser(
        "fault", help="inject a fault: " + ", ".join(f"{k} {u}".rstrip() for k, u in FAULT_USAGE.items())
    )
    _add_home(fa)
    fa.add_argument("kind")
    fa.add_argument("args", nargs=argparse.REMAINDER)
    fa.set_defaults(func=_fault)
    mg = sub.add_parser("migrate", help="one-shot safe live migration: clovm migrate [--host CD] DOMAIN TARGET-HOST")
    _add_home(mg)
    mg.add_argument("--host", default=None, help="the source control domain (default: $CLOVM_HOST)")
    mg.add_argument("operands", nargs="*", metavar="DOMAIN TARGET-HOST")
    mg.add_argument("--scoped", action="store_true", help="widen failure detection for the migrating node only")
    mg.add_argument("--dry-run", action="store_true", help="run the preflight, print the plan, change nothing")
    mg.add_argument("--resume", action="store_true", help="continue a recorded migration from its journal")
    mg.add_argument("--status", action="store_true", help="show the journal")
    mg.add_argument("--timeline", default="", metavar="FILE.svg", help="draw the migration into FILE.svg")
    mg.add_argument(
        "--json",
        action="store_true",
        help="print the result (rc, stable code of a refusal or failure, journal state) as JSON",
    )
    mg.set_defaults(func=_migrate)
    tl = sub.add_parser("timeline", help="draw a clovm migrate journal as SVG")
    tl.add_argument("journal", metavar="JOURNAL.json")
    tl.add_argument("-o", "--output", default="", metavar="FILE.svg", help="default: the journal's name with .svg")
    tl.set_defaults(func=_timeline)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if pcmk.takes(args):  # up/demo --topology pacemaker, fault pause, and any command on a pacemaker home
        return pcmk.run(args)
    return int(args.func(args))


_PRODUCT_COMMAND_RAN = False  # set by `clovm exec` once the product command has returned


def run() -> None:
    """The ``clovm`` executable: :func:`main`, then exit. After ``clovm exec`` has run a product
    command, which wrote everything it changed (atomically, fsynced) before it returned, the
    interpreter's teardown is skipped: it does nothing the operator needs, and right after
    ``clovmmigrate -u`` on 16 nodes, when every shutdown facility re-tests its rows on 2 cores, it
    took 0.7-1 s of the operator's wait (docs/benchmarks.md)."""
    rc = main()
    if _PRODUCT_COMMAND_RAN:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a reader that went away (`| head`): nothing left to tell it
                pass
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    run()
