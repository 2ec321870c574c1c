"""``clovm`` on the Pacemaker topology (issue 13), and ``clovm fault pause`` on both stacks.

:func:`takes` says whether a parsed ``clovm`` command line is this module's: ``up --topology
pacemaker``, ``demo --topology pacemaker``, ``fault pause ...`` (either stack), and ``down``,
``status``, ``exec``, ``shell``, ``fault``, ``migrate`` on a home that holds a Pacemaker
topology. :func:`run` runs it (``clovm.cli.main`` calls both, first thing).

* ``up``: :func:`clovm.pacemaker.api.up` (hosts kvm1-3, the cluster vm1/vm2), its summary;
* ``down`` / ``status [--json]``: the topology's teardown and status;
* ``exec HOST -- COMMAND...``: the real command inside a host or VM, with this terminal (no
  capture, no time limit): ``clovm exec vm1 -- crm_mon -1``;
* ``shell HOST``: an interactive ``bash`` there, prompt ``HOST # ``;
* ``fault pause HOST SECONDS``: freeze every process of a VM (Pacemaker) or the process of a
  guest domain (SPARC: :func:`clovm.api.faults.pause`, SIGSTOP/SIGCONT) for that long,
  then thaw it; ``fault migration-abort VM``: its next live migration fails after the copy;
* ``migrate``: the same command line, journal, resume, status and timeline as the SPARC
  stack's (``clovm.cli.admin.main_clovm``), run by :mod:`clovm.pacemaker.migrate_env`;
* ``demo --topology pacemaker``: :mod:`clovm.pacemaker.demo`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

PACEMAKER = "pacemaker"
PAUSE_MAX_S = 3600.0


def _home_of(args: argparse.Namespace) -> Path | None:
    home = getattr(args, "home", None)
    return Path(home) if home else None


def is_pacemaker(args: argparse.Namespace) -> bool:
    home = _home_of(args)
    if home is None:
        return False
    from ..pacemaker import layout  # (not pacemaker.api: every `clovm exec` asks this)

    return layout.is_pacemaker_home(home)


def takes(args: argparse.Namespace) -> bool:
    """Is this parsed command line one for this module?"""
    cmd = getattr(args, "cmd", "")
    if cmd in ("up", "demo"):
        return getattr(args, "topology", None) == PACEMAKER
    if cmd == "fault" and getattr(args, "kind", "") == "pause":
        return True
    return cmd in ("down", "status", "exec", "shell", "fault", "migrate") and is_pacemaker(args)


def run(args: argparse.Namespace) -> int:
    return int(_COMMANDS[args.cmd](args))


def _fail(cmd: str, e: Exception) -> int:
    print(f"clovm {cmd}: {e}", file=sys.stderr)
    for line in getattr(e, "details", ()) or ():
        print(f"  {line}", file=sys.stderr)
    return 1


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


# ---------------------------------------------------------------------------------------- up, down, status
def render_up(s: dict[str, Any]) -> str:
    head = (
        f"pacemaker topology up: home {s['home']}, cluster {s['cluster']}, time scale {s['time_scale']:g}, "
        f"token {s['token_ms']} ms, freezer {s['freezer']} ({s['up_seconds']:g} s)"
    )
    out = [head, "hypervisor hosts:"]
    out += [f"  {h:<6} {addr:<16} sshd, hvd (virsh)" for h, addr in s["hosts"].items()]
    out.append("cluster nodes (VMs):")
    out += [f"  {vm:<6} {v['address']:<16} on {v['host']}  corosync + pacemaker" for vm, v in s["vms"].items()]
    out.append(
        "fence devices: " + ", ".join(f"{d} on {n}" for d, n in sorted(s["stonith"].items())) + f"; DC {s['dc']}"
    )
    return "\n".join(out)


def _up(args: argparse.Namespace) -> int:
    from ..api.errors import ClovmError
    from ..pacemaker import api

    try:
        s = api.up(args.home, time_scale=args.time_scale)
    except ClovmError as e:
        return _fail("up", e)
    print(render_up(s))
    return 0


def _down(args: argparse.Namespace) -> int:
    from ..api.errors import ClovmError
    from ..pacemaker import api

    try:
        lines = api.down(args.home)
    except ClovmError as e:
        return _fail("down", e)
    print("\n".join(lines) if lines else "nothing to stop")
    return 0


def render_status(st: dict[str, Any]) -> str:
    head = (
        f"home {st['home']} (pacemaker topology, {st['state']}; time scale {st.get('time_scale')}, token "
        f"{st.get('token_ms')} ms, freezer {st.get('freezer')})"
    )
    out = [head, "hypervisor hosts:"]
    for h, v in st["hosts"].items():
        doms = ", ".join(f"{d['name']} {d['state']}" for d in v.get("domains") or []) or "-"
        mig = (
            " migrating "
            + ", ".join(f"{d} -> {m.get('target')} ({m.get('phase')})" for d, m in (v.get("migrating") or {}).items())
            if v.get("migrating")
            else ""
        )
        out.append(f"  {h:<6} {v['address']:<16} {'running' if v['running'] else 'NOT RUNNING':<12} {doms}{mig}")
    out.append("VMs:")
    for vm, v in st["vms"].items():
        state = "running" if v["running"] else "NOT RUNNING"
        out.append(
            f"  {vm:<6} {v['address']:<16} {state:<12} on {v.get('link_on') or '-'}, {v['processes']} processes"
            + (", FROZEN" if v.get("frozen") else "")
        )
    return "\n".join(out)


def _status(args: argparse.Namespace) -> int:
    from ..api.errors import ClovmError
    from ..pacemaker import api

    try:
        st = api.status(args.home)
    except ClovmError as e:
        if args.json:
            print(json.dumps({"ok": False, "code": e.code, "message": e.message}, indent=2))
        return _fail("status", e)
    print(json.dumps(st, indent=2, default=str) if args.json else render_status(st))
    return 0


# ---------------------------------------------------------------------------------------- exec, shell
def _exec(args: argparse.Namespace) -> int:
    from ..api.errors import ClovmError
    from ..pacemaker import api, files

    command = _strip_dashes(list(args.command))
    if not command:
        print("clovm exec: error: no command (usage: clovm exec HOST -- COMMAND [ARGS...])", file=sys.stderr)
        return 2
    try:
        argv = api.exec_argv(args.home, args.host, command)
    except ClovmError as e:
        return _fail("exec", e)
    sys.stdout.flush()
    return subprocess.run(argv, check=False, env=files.subprocess_env()).returncode


def _shell(args: argparse.Namespace) -> int:
    from ..api.errors import ClovmError
    from ..pacemaker import api, files

    try:
        interactive = ["-i"] if sys.stdin.isatty() else []  # piped commands: no job control, no prompts
        argv = api.exec_argv(args.home, args.host, ["bash", "--norc", "--noprofile", *interactive])
    except ClovmError as e:
        return _fail("shell", e)
    env = {**files.subprocess_env(), "PS1": f"{args.host} # ", "TERM": os.environ.get("TERM", "dumb")}
    sys.stdout.flush()
    return subprocess.run(argv, check=False, env=env).returncode


# ---------------------------------------------------------------------------------------- fault
def _seconds(text: str) -> float:
    from ..api.errors import ClovmError
    from ..core import codes

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= PAUSE_MAX_S:
        raise ClovmError(codes.BAD_ARGUMENT, f"a pause lasts (0, {PAUSE_MAX_S:g}] seconds, not {text!r}")
    return value


def _fault(args: argparse.Namespace) -> int:
    from ..api.errors import ClovmError
    from ..core import codes

    rest = _strip_dashes(list(args.args))
    try:
        if args.kind == "pause":
            if len(rest) != 2:
                raise ClovmError(codes.BAD_ARGUMENT, "usage: clovm fault pause HOST SECONDS")
            seconds = _seconds(rest[1])
            if is_pacemaker(args):
                from ..pacemaker import api

                r = api.pause(args.home, rest[0], seconds)
                print(f"{rest[0]}: every process frozen for {r['frozen_s']:.2f} s ({r['freezer']}), then thawed")
            else:
                from ..api import faults
                from ..runtime.home import Home

                print(faults.pause(Home(args.home), rest[0], seconds))
            return 0
        if args.kind == "migration-abort":
            if len(rest) != 1:
                raise ClovmError(codes.BAD_ARGUMENT, "usage: clovm fault migration-abort VM")
            from ..pacemaker import migrate_env

            print(migrate_env.arm_abort(args.home, rest[0]))
            return 0
        raise ClovmError(
            codes.UNKNOWN_FAULT,
            f"fault {args.kind!r} does not apply to the pacemaker topology (pause HOST SECONDS, migration-abort VM)",
        )
    except ClovmError as e:
        return _fail("fault", e)


# ---------------------------------------------------------------------------------------- migrate
def _migrate(args: argparse.Namespace) -> int:
    return migrate_main(args, sys.stdout, sys.stderr)


def migrate_main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``clovm migrate`` on a Pacemaker home: the SPARC command's parsing, output and exit codes
    (``clovm.cli.admin.main_clovm``), with the journals in ``HOME/hosts/HOST/clovm/``."""
    import getopt

    from .. import timeline
    from ..core import codes
    from ..core import safemigrate as sm
    from ..pacemaker import migrate_env
    from . import admin

    argv = ["migrate", *args.operands]
    for flag in ("scoped", "dry_run", "resume", "status"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    if args.timeline:
        argv += ["--timeline", args.timeline]
    if args.json:
        argv.append("--json")

    def fail(code: str, message: str, rc: int) -> int:
        err.write(f"clovm migrate: {message}\n")
        err.flush()
        if args.json:
            admin._print_json(out, {"rc": rc, "ok": False, "code": code, "message": message})
        return rc

    try:
        a = admin._parse_clovm(argv)
    except (admin._Usage, getopt.GetoptError) as e:
        return fail(codes.BAD_USAGE, f"{e}; usage: {admin.USAGE['clovm']}", 2)
    host = args.host or os.environ.get("CLOVM_HOST") or ""
    if not host:
        return fail(
            codes.BAD_USAGE,
            f"no host given: use --host HOST (the hypervisor host that runs the VM) or "
            f"set CLOVM_HOST; usage: {admin.USAGE['clovm']}",
            2,
        )
    home = args.home
    if a.action == "status":
        try:
            found = migrate_env.journals(home, host, a.domain)
        except ValueError as e:
            return fail(codes.BAD_JOURNAL, f"a journal is unreadable ({e}); move it away", 1)
        if a.json:
            admin._print_json(
                out,
                {
                    "rc": 0,
                    "ok": True,
                    "code": None,
                    "message": "",
                    "migrations": [
                        {"domain": j.get("domain"), "journal": str(p), **admin._journal_json(j)} for p, j in found
                    ],
                },
            )
            return 0
        out.writelines(f"{p}:\n" + timeline.render_text_summary(j).rstrip("\n") + "\n" for p, j in found)
        if not found:
            out.write(f"no clovm migrate is recorded on {host}" + (f" for {a.domain}" if a.domain else "") + "\n")
        out.flush()
        return 0
    domain = a.domain
    if a.action == "resume" and not domain:
        rec = migrate_env.recorded(home, host)
        if not rec:
            return fail(codes.NO_JOURNAL, f"no clovm migrate is recorded on {host}; nothing to resume", 3)
        if len(rec) > 1:
            return fail(
                codes.SEVERAL_MIGRATIONS,
                f"several migrations are recorded ({', '.join(rec)}); name one: clovm migrate --resume DOMAIN",
                2,
            )
        domain = rec[0]
    lines = err if a.json else out
    req = sm.MigrateRequest(domain, host, a.target, scoped=a.scoped, dry_run=a.dry_run, resume=a.action == "resume")
    fin, journal = migrate_env.safe_migration(home, host, req, lines, err)
    drawn = ""
    if journal is not None and not a.dry_run and fin.rc != 3:
        lines.write(timeline.render_text_summary(journal).rstrip("\n") + "\n")
        if a.timeline:
            timeline.write_svg(Path(a.timeline), journal)
            drawn = a.timeline
            lines.write(f"clovm migrate: timeline written to {a.timeline}\n")
        lines.flush()
    if a.json:
        admin._print_json(
            out,
            {
                "rc": fin.rc,
                "ok": fin.rc == 0,
                "code": fin.code or None,
                "message": fin.message,
                "domain": domain,
                **admin._journal_json(journal),
                "timeline": drawn or None,
            },
        )
    return fin.rc


# ---------------------------------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    from ..pacemaker import demo

    return demo.run(sys.stdout, args.time_scale)


_COMMANDS = {
    "up": _up,
    "down": _down,
    "status": _status,
    "exec": _exec,
    "shell": _shell,
    "fault": _fault,
    "migrate": _migrate,
    "demo": _demo,
}
