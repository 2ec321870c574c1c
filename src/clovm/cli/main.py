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
from typing import Any

from .. import settings, topology


class Parser(argparse.ArgumentParser):
    """One clear line and exit 2 on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sim(args: argparse.Namespace) -> int:
    from ..sim import campaign, scenarios

    try:
        topo = topology.load(scenarios.topology_for(args.scenario, args.topology))
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
def _home(args: argparse.Namespace):  # -> Home
    from ..runtime.home import Home

    return Home(args.home)


def _fail(cmd: str, e: Exception) -> int:
    print(f"clovm {cmd}: {e}", file=sys.stderr)
    for line in getattr(e, "details", ()):
        print(f"  {line}", file=sys.stderr)
    return 1


def _render_summary(s) -> str:  # s: api.datacenter.Summary
    out = [f"datacenter up: home {s.home}, topology {s.topology}, time scale {s.time_scale:g}", "servers:"]
    for v in s.servers:
        ppars = ",".join(str(p) for p in v.ppars)
        out.append(f"  {v.name:<10} PPAR {ppars:<4} XSCF LAN#0 {v.lan0:<15} LAN#1 {v.lan1:<15} "
                   f"(SNMP udp/{settings.SNMP_PORT}, SSH tcp/{settings.XSCF_SSH_PORT})")
    out.append("control domains:")
    for c in s.control_domains:
        out.append(f"  {c.name:<10} {c.server} PPAR {c.ppar:<2} {c.address:<15} CF {c.cf_name} "
                   f"SF weight {c.sf_weight} (ldmd tcp/{settings.LDMD_PORT})")
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

    try:
        summary = datacenter.up(_home(args), args.topology, args.time_scale)
    except ClovmError as e:
        return _fail("up", e)
    print(_render_summary(summary))
    return 0


def _down(args: argparse.Namespace) -> int:
    from ..api import ClovmError, datacenter

    try:
        lines = datacenter.down(_home(args))
    except ClovmError as e:
        return _fail("down", e)
    print("\n".join(lines))
    return 0


def _render_status(st: dict) -> str:
    out = [f"home {st['home']} (time scale {st.get('time_scale')})", "servers:"]
    for s in st["servers"]:
        doms = "; ".join(f"PPAR {p}: " + (", ".join(f"{d} {v}" for d, v in x.items()) if isinstance(x, dict) else str(x))
                         for p, x in (s.get("ppars") or {}).items())
        out.append(f"  {s['name']:<10} xscfd {s['xscfd']:<8} LAN#0 {s['lan0']} LAN#1 {s['lan1']}  {doms}")
    out.append("control domains:")
    for c in st["control_domains"]:
        doms = c.get("domains")
        text = (", ".join(f"{d.get('name')} {d.get('state')} {d.get('flags')}" for d in doms if isinstance(d, dict))
                if isinstance(doms, list) else str(doms))
        out.append(f"  {c['name']:<10} ldmd {c['ldmd']:<8} {text}")
    out.append("guests:")
    for g in st["guests"]:
        where = f"on {g['control_domain']} ({g['server']})" if g.get("control_domain") else "not placed"
        out.append(f"  {g['name']:<10} {where} pid {g.get('pid')} {'running' if g.get('running') else 'NOT RUNNING'}")
    out.append("cluster nodes:")
    for cf, n in st["nodes"].items():
        rest = " ".join(f"{k}={v}" for k, v in n.items() if k != "host")
        out.append(f"  {cf:<12} ({n.get('host')}) {rest}")
    if st["migrations"]:
        out.append("migrations in progress:")
        out += [f"  {m['domain']} {m['role']} on {m['control_domain']} ({m['flags']})" for m in st["migrations"]]
    return "\n".join(out)


def _status(args: argparse.Namespace) -> int:
    import json

    from ..api import ClovmError, datacenter

    try:
        st = datacenter.status(_home(args))
    except ClovmError as e:
        if args.json:
            print(json.dumps({"ok": False, "code": e.code, "message": e.message}, indent=2))
        return _fail("status", e)
    print(json.dumps(st, indent=2, default=str) if args.json else _render_status(st))
    return 0


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def _exec(args: argparse.Namespace) -> int:
    from ..api import ClovmError, datacenter

    command = _strip_dashes(args.command)
    if not command:
        print("clovm exec: error: no command (usage: clovm exec HOST -- COMMAND [ARGS...])", file=sys.stderr)
        return 2
    home = _home(args)
    try:
        host = datacenter.check_host(home, args.host)
    except ClovmError as e:
        return _fail("exec", e)
    from .admin import run_command

    return int(run_command(command[0], command[1:], host=host, home=home, out=sys.stdout, err=sys.stderr))


def _shell(args: argparse.Namespace) -> int:
    import shlex

    from ..api import ClovmError, datacenter

    home = _home(args)
    try:
        host = datacenter.check_host(home, args.host)
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
            del rest[i:i + 2]
        if len(rest) != 1:
            raise usage
        return "xscf_lan", (rest[0],), {"up": kind == "xscf-up", "lans": lans}
    if kind == "partition":
        if not args or args[0] == "--" or args[-1] == "--" or args.count("--") > 1:
            raise usage
        if "--" in args:
            cut = args.index("--")
            return "partition", (args[:cut], args[cut + 1:]), {}
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
    p.add_argument("--home", default=settings.default_home(),
                   help="datacenter home (default: $CLOVM_HOME or %(default)s)")


def build_parser() -> Parser:
    from ..sim import SCENARIO_NAMES

    p = Parser(prog="clovm", description="cluster-safe live migration on an emulated SPARC datacenter")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    s = sub.add_parser("sim", help="run a built-in scenario in the deterministic simulator")
    s.add_argument("scenario", choices=sorted(SCENARIO_NAMES))
    s.add_argument("--topology", default=None,
                   help=f"built-in name or TOML file (default: the scenario's own, else {topology.DEFAULT})")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--seeds", type=int, default=0, help="run this many seeds (from --seed) and summarise")
    s.add_argument("--jobs", type=int, default=0, help="worker processes for --seeds (default: CPU count)")
    s.add_argument("--quiet", action="store_true", help="do not print the trace")
    s.set_defaults(func=_sim)
    d = sub.add_parser("demo", help="run the seed's procedure end to end and check every outcome")
    d.add_argument("--scenario", default="happy-path",
                   choices=["happy-path", "abort-recovery", "early-start", "ssh-first-connection", "spconfig-limit",
                            "time-sync", "cancelled"], help="which branch of the seed to run (default happy-path)")
    d.add_argument("--time-scale", type=float, default=None,
                   help="emulated seconds per real second (default: 10, or 20 where 600 s must pass)")
    d.add_argument("--sim", action="store_true", help="run the procedure in the simulator instead")
    d.add_argument("--topology", default=topology.DEFAULT,
                   help="figure-17-1 (default) or a TOML copy of it with other loopback addresses")
    d.set_defaults(func=_demo)

    u = sub.add_parser("up", help="start the emulated datacenter in the background")
    _add_home(u)
    u.add_argument("--topology", default=None,
                   help=f"built-in name or TOML file (default: the home's, else {topology.DEFAULT})")
    u.add_argument("--time-scale", type=float, default=settings.DEFAULT_TIME_SCALE,
                   help="emulated seconds per real second (default %(default)s)")
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
    fa = sub.add_parser("fault", help="inject a fault: " + ", ".join(f"{k} {u}".rstrip() for k, u in FAULT_USAGE.items()))
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
    mg.add_argument("--json", action="store_true",
                    help="print the result (rc, stable code of a refusal or failure, journal state) as JSON")
    mg.set_defaults(func=_migrate)
    tl = sub.add_parser("timeline", help="draw a clovm migrate journal as SVG")
    tl.add_argument("journal", metavar="JOURNAL.json")
    tl.add_argument("-o", "--output", default="", metavar="FILE.svg", help="default: the journal's name with .svg")
    tl.set_defaults(func=_timeline)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
