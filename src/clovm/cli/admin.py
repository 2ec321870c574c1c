"""The product's admin commands, typed on an emulated host: cftool, cfset, sdtool, clsnmpsetup,
hvdisp, ldm, clovmmigrate and ``clovm migrate``.

Each ``main_<cmd>(argv, *, host=None, home=None, out=None, err=None) -> int`` parses the product's
single-letter options (``getopt``, as the product does), calls its use case in
:mod:`clovm.api.commands` over the home's :class:`~clovm.api.env.HomeEnv`, and prints what the
product prints (tables from :mod:`clovm.cli.render`). The host is ``--host HOST`` (anywhere in
argv), else the ``host`` argument, else ``$CLOVM_HOST``; the home is ``--home DIR``, else
``home``, else ``settings.default_home()``. :func:`run_command` runs one by name or by the
product's full path (``settings.COMMAND_PATHS``); ``clovm exec`` uses it.

Exit codes and messages (always one line on stderr), from the use cases' report codes:

* bad usage: ``<cmd>: <problem>; usage: <syntax>`` — rc 2, nothing is contacted or changed;
* unknown host: ``<cmd>: unknown host X (see clovm status)`` — rc 1;
* daemon down: ``<cmd>: cannot reach <daemon> on HOST: <reason>; is the datacenter up
  (clovm status)?`` — rc 1;
* a control-domain command elsewhere: ``<cmd>: command not available on HOST: <why>`` — rc 1;
* ``sdtool -s`` without SF: the product's ``sdtool: The shutdown facility is not running; ...`` — rc 1;
* the daemon refused: ``<cmd>: <its one-line error>`` — rc 1;
* clovmmigrate and ``clovm migrate``: the machine's own rc (core.migration, core.safemigrate).

``clovm migrate --json`` prints one JSON object on stdout instead (``rc``, ``ok``, ``code``: the
stable code of a refusal or failure, else null, ``message``; for a run also ``domain`` and the
journal's ``step``, ``outcome``, ``complete_to``, ``result``, ``proof``; for ``--status``
``migrations``); the lines meant for the operator then all go to stderr.
"""

from __future__ import annotations

import getopt
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from .. import settings
from ..api import commands
from ..api.env import Env, HomeEnv
from ..api.errors import ClovmError
from ..core import codes
from ..runtime.home import Home
from . import render

__all__ = [
    "COMMANDS",
    "SDTOOL_NOT_RUNNING",
    "main_cfset",
    "main_cftool",
    "main_clovm",
    "main_clovmmigrate",
    "main_clsnmpsetup",
    "main_hvdisp",
    "main_ldm",
    "main_sdtool",
    "run_command",
]

SDTOOL_NOT_RUNNING = "sdtool: The shutdown facility is not running; start it with /opt/SMAW/bin/sdtool -b"

USAGE = {
    "cftool": "cftool -n",
    "cfset": "cfset -a | -r | -g name",
    "sdtool": "sdtool -s | -b | -e | -r",
    "clsnmpsetup": "clsnmpsetup -l",
    "hvdisp": "hvdisp [-a]",
    "ldm": "ldm subcommand [options] [operands]",
    "clovmmigrate": "clovmmigrate -p source-ldom | -u source-ldom target-host",
    "clovm": "clovm migrate DOMAIN TARGET-HOST [--scoped] [--dry-run] [--timeline FILE.svg] [--json] | clovm migrate "
    "--resume [DOMAIN] [--timeline FILE.svg] [--json] | clovm migrate --status [DOMAIN] [--json]",
}
# where a control-domain command is refused elsewhere: "command not available on HOST: <this>"
ONLY_ON_CONTROL_DOMAINS = {
    "ldm": "ldm runs on control domains",
    "clovmmigrate": "run clovmmigrate on the cluster node of the source control domain",
    "clovm": "run clovm migrate on the source control domain",
}
EXIT_CODES = {codes.BAD_USAGE: 2, codes.SEVERAL_MIGRATIONS: 2}  # every other report code: 1


# ---- errors and context ----------------------------------------------------------------------------------
class _Usage(Exception):
    """Bad usage: one line, rc 2."""


@dataclass
class _Ctx:
    cmd: str
    host: str
    env: Env
    out: TextIO
    err: TextIO

    def print(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _message(cmd: str, host: str, e: ClovmError) -> str:
    """The product's stderr line for a report code."""
    if e.code == codes.SF_NOT_RUNNING and cmd == "sdtool":
        return SDTOOL_NOT_RUNNING
    if e.code == codes.NOT_A_CONTROL_DOMAIN and cmd in ONLY_ON_CONTROL_DOMAINS:
        return f"{cmd}: command not available on {host}: {ONLY_ON_CONTROL_DOMAINS[cmd]}"
    if e.code == codes.SEVERAL_MIGRATIONS:
        return f"clovm migrate: {e.message}"
    return f"{cmd}: {e.message}"


def _split_common(argv: Sequence[str]) -> tuple[list[str], str | None, str | None]:
    """Take ``--host H``/``--host=H`` and ``--home D``/``--home=D`` out of argv (up to a ``--``)."""
    rest: list[str] = []
    host = home = None
    it = iter(argv)
    for a in it:
        if a == "--":
            rest.append(a)
            rest.extend(it)
            break
        for name in ("--host", "--home"):
            if a == name or a.startswith(name + "="):
                if a == name:
                    value = next(it, None)
                    if value is None:
                        raise _Usage(f"option {name} requires an argument")
                else:
                    value = a[len(name) + 1 :]
                if not value:
                    raise _Usage(f"option {name} requires an argument")
                if name == "--host":
                    host = value
                else:
                    home = value
                break
        else:
            rest.append(a)
    return rest, host, home


def _wants_json(argv: Sequence[str]) -> bool:
    return "--json" in list(argv)[: list(argv).index("--")] if "--" in argv else "--json" in argv


def _run(
    cmd: str,
    argv: Sequence[str],
    host: str | None,
    home: Home | str | Path | None,
    out: TextIO | None,
    err: TextIO | None,
    parse: Callable[[list[str]], Any],
    body: Callable[[_Ctx, Any], int],
    *,
    json_errors: bool = False,
) -> int:
    """Common frame: options, host and home, then ``body``; every failure is one line on stderr
    (and, with ``json_errors`` and ``--json`` in argv, a JSON object on stdout too)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    as_json = json_errors and _wants_json(argv)

    def fail(line: str, code: str, message: str) -> int:
        rc = EXIT_CODES.get(code, 1)
        err.write(line + "\n")
        err.flush()
        if as_json:
            _print_json(out, {"rc": rc, "ok": False, "code": code, "message": message})
        return rc

    try:
        rest, host_opt, home_opt = _split_common(argv)
        parsed = parse(rest)
    except (_Usage, getopt.GetoptError) as e:
        return fail(f"{cmd}: {e}; usage: {USAGE[cmd]}", codes.BAD_USAGE, f"{e}; usage: {USAGE[cmd]}")
    host = host_opt or host or os.environ.get("CLOVM_HOST") or None
    if not host:
        text = f"no host given: use --host HOST or set CLOVM_HOST; usage: {USAGE[cmd]}"
        return fail(f"{cmd}: {text}", codes.BAD_USAGE, text)
    the_home = (
        Home(home_opt)
        if home_opt
        else home
        if isinstance(home, Home)
        else Home(home)
        if home is not None
        else Home(settings.default_home())
    )
    try:
        return body(_Ctx(cmd, host, HomeEnv(the_home), out, err), parsed)
    except ClovmError as e:
        return fail(_message(cmd, host, e), e.code, e.message)


def _print_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2, default=str) + "\n")
    out.flush()


def _getopt_one(argv: list[str], letters: str, *, allow_none: bool = False) -> tuple[str | None, list[str], list[str]]:
    """Exactly one of the single-letter flags ``letters`` (``x:`` takes a value); no operands."""
    opts, operands = getopt.getopt(argv, letters)
    if operands:
        raise _Usage(f"unexpected operand {operands[0]!r}")
    if len(opts) > 1:
        raise _Usage(f"options {opts[0][0]} and {opts[1][0]} cannot be combined")
    if not opts:
        if allow_none:
            return None, [], []
        raise _Usage("an option is required")
    flag, value = opts[0]
    return flag[1], [value] if value else [], operands


# ---- cftool, cfset, sdtool, clsnmpsetup, hvdisp ----------------------------------------------------------
def main_cftool(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``cftool -n``: CF node states as this node sees them."""

    def body(ctx: _Ctx, parsed: tuple[Any, ...]) -> int:
        ctx.print(render.cftool_n(commands.cftool_nodes(ctx.env, ctx.host)))
        return 0

    return _run("cftool", argv, host, home, out, err, lambda a: _getopt_one(a, "n"), body)


def main_cfset(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``cfset -a`` (all values), ``cfset -r`` (re-read cluster.config), ``cfset -g name`` (one value)."""

    def body(ctx: _Ctx, parsed: tuple[Any, ...]) -> int:
        flag, values, _ = parsed
        if flag == "r":
            commands.cfset_reread(ctx.env, ctx.host)
        elif flag == "a":
            ctx.print(render.cfset_a(commands.cfset_values(ctx.env, ctx.host)))
        else:
            ctx.print(f"KEY: {values[0]}  VALUE: {commands.cfset_get(ctx.env, ctx.host, values[0])}\n")
        return 0

    return _run("cfset", argv, host, home, out, err, lambda a: _getopt_one(a, "arg:"), body)


def main_sdtool(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``sdtool -s`` (status table), ``-b`` (start SF), ``-e`` (stop SF), ``-r`` (re-read rcsd.cfg)."""

    def body(ctx: _Ctx, parsed: tuple[Any, ...]) -> int:
        flag = parsed[0]
        if flag == "s":
            ctx.print(render.sdtool_s(commands.sdtool_status(ctx.env, ctx.host)))
            return 0
        text = commands.sdtool_control(ctx.env, ctx.host, flag)
        if text:
            ctx.print(text + "\n")
        return 0

    return _run("sdtool", argv, host, home, out, err, lambda a: _getopt_one(a, "sber"), body)


def main_clsnmpsetup(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``clsnmpsetup -l``: the XSCF entries of the shutdown facility (SA_xscfsnmp.cfg)."""

    def body(ctx: _Ctx, parsed: tuple[Any, ...]) -> int:
        ctx.print(render.clsnmpsetup_l(commands.clsnmpsetup_entries(ctx.env, ctx.host)))
        return 0

    return _run("clsnmpsetup", argv, host, home, out, err, lambda a: _getopt_one(a, "l"), body)


def main_hvdisp(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``hvdisp -a`` (or ``hvdisp``): RMS resources and their states."""

    def body(ctx: _Ctx, parsed: tuple[Any, ...]) -> int:
        hv = commands.hvdisp(ctx.env, ctx.host)
        ctx.print(render.hvdisp(hv.rows, local_system=hv.local_system))
        return 0

    return _run("hvdisp", argv, host, home, out, err, lambda a: _getopt_one(a, "a", allow_none=True), body)


# ---- ldm ----------------------------------------------------------------------------------------------------
def _parse_ldm(argv: list[str]) -> list[str]:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise _Usage("a subcommand is required")
    return argv


def main_ldm(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``ldm SUBCOMMAND ...``: passed to this control domain's ldmd; its stdout, stderr and rc."""

    def body(ctx: _Ctx, args: list[str]) -> int:
        r = commands.ldm(ctx.env, ctx.host, args)
        if r.stdout:
            ctx.print(r.stdout)
        if r.stderr:
            ctx.err.write(r.stderr)
            ctx.err.flush()
        return r.rc

    return _run("ldm", argv, host, home, out, err, _parse_ldm, body)


# ---- clovmmigrate -------------------------------------------------------------------------------------------
def _parse_clovmmigrate(argv: list[str]) -> tuple[str, str, str]:
    opts, operands = getopt.getopt(argv, "p:u:")
    if len(opts) != 1:
        raise _Usage("give exactly one of -p and -u" if opts else "-p or -u is required")
    flag, domain = opts[0]
    if flag == "-p":
        if operands:
            raise _Usage(f"unexpected operand {operands[0]!r}")
        return "prepare", domain, ""
    if not operands:
        raise _Usage("-u needs the target-host (address or /etc/inet/hosts name of the destination control domain)")
    if len(operands) > 1:
        raise _Usage(f"unexpected operand {operands[1]!r}")
    return "update", domain, operands[0]


def main_clovmmigrate(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``clovmmigrate -p source-ldom`` / ``clovmmigrate -u source-ldom target-host`` (core.migration)."""

    def body(ctx: _Ctx, parsed: tuple[str, str, str]) -> int:
        mode, domain, target = parsed
        return commands.clovmmigrate(ctx.env, ctx.host, mode, domain, target, out=ctx.out, err=ctx.err).rc

    return _run("clovmmigrate", argv, host, home, out, err, _parse_clovmmigrate, body)


# ---- clovm migrate ------------------------------------------------------------------------------------------
class _MigrateArgs(NamedTuple):
    action: str  # "run" | "resume" | "status"
    domain: str
    target: str
    scoped: bool
    dry_run: bool
    timeline: str
    json: bool = False


def _parse_clovm(argv: list[str]) -> _MigrateArgs:
    if not argv or argv[0] != "migrate":
        raise _Usage(f"unknown subcommand {argv[0]!r}" if argv else "a subcommand is required")
    opts, operands = getopt.gnu_getopt(argv[1:], "", ["scoped", "dry-run", "resume", "status", "timeline=", "json"])
    flags = dict(opts)
    as_json = "--json" in flags
    action = "resume" if "--resume" in flags else "status" if "--status" in flags else "run"
    if "--resume" in flags and "--status" in flags:
        raise _Usage("options --resume and --status cannot be combined")
    if action != "run":
        extra = [f for f in ("--scoped", "--dry-run") if f in flags]
        if extra:
            raise _Usage(f"option {extra[0]} cannot be combined with --{action}")
        if len(operands) > 1:
            raise _Usage(f"unexpected operand {operands[1]!r}")
        return _MigrateArgs(
            action, operands[0] if operands else "", "", False, False, flags.get("--timeline", ""), as_json
        )
    if len(operands) != 2:
        raise _Usage(
            "DOMAIN and TARGET-HOST are required" if len(operands) < 2 else f"unexpected operand {operands[2]!r}"
        )
    if "--dry-run" in flags and "--timeline" in flags:
        raise _Usage("a dry run draws no timeline")
    return _MigrateArgs(
        "run", operands[0], operands[1], "--scoped" in flags, "--dry-run" in flags, flags.get("--timeline", ""), as_json
    )


JOURNAL_KEYS = ("step", "outcome", "complete_to", "result", "proof", "source", "target")  # in --json


def _journal_json(j: dict[str, Any] | None) -> dict[str, Any]:
    return {k: (j or {}).get(k) for k in JOURNAL_KEYS}


def main_clovm(
    argv: Sequence[str],
    *,
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``clovm migrate ...`` on a control domain (core.safemigrate; docs/safe-migration.md)."""
    from .. import timeline

    def body(ctx: _Ctx, a: _MigrateArgs) -> int:
        if a.action == "status":
            found = commands.migrate_status(ctx.env, ctx.host, a.domain)
            if a.json:
                _print_json(
                    ctx.out,
                    {
                        "rc": 0,
                        "ok": True,
                        "code": None,
                        "message": "",
                        "migrations": [
                            {"domain": v.domain, "journal": v.path, **_journal_json(v.journal)} for v in found
                        ],
                    },
                )
                return 0
            for v in found:
                ctx.print(f"{v.path}:\n" + timeline.render_text_summary(v.journal).rstrip("\n") + "\n")
            if not found:
                ctx.print(
                    f"no clovm migrate is recorded on {ctx.host}" + (f" for {a.domain}" if a.domain else "") + "\n"
                )
            return 0
        lines = ctx.err if a.json else ctx.out  # with --json, stdout is the JSON document alone
        r = commands.migrate(
            ctx.env,
            ctx.host,
            a.domain,
            a.target,
            scoped=a.scoped,
            dry_run=a.dry_run,
            resume=a.action == "resume",
            out=lines,
            err=ctx.err,
        )
        drawn = ""
        if r.journal is not None and not a.dry_run and r.rc != commands.RC_REFUSED:
            lines.write(timeline.render_text_summary(r.journal).rstrip("\n") + "\n")
            lines.flush()
            if a.timeline:
                timeline.write_svg(Path(a.timeline), r.journal)
                drawn = a.timeline
                lines.write(f"clovm migrate: timeline written to {a.timeline}\n")
                lines.flush()
        if a.json:
            _print_json(
                ctx.out,
                {
                    "rc": r.rc,
                    "ok": r.rc == 0,
                    "code": r.code,
                    "message": r.message,
                    "domain": r.domain,
                    **_journal_json(r.journal),
                    "timeline": drawn or None,
                },
            )
        return r.rc

    return _run("clovm", argv, host, home, out, err, _parse_clovm, body, json_errors=True)


# ---- dispatch -----------------------------------------------------------------------------------------------
Main = Callable[..., int]

COMMANDS: dict[str, Main] = {
    "cftool": main_cftool,
    "cfset": main_cfset,
    "sdtool": main_sdtool,
    "clsnmpsetup": main_clsnmpsetup,
    "hvdisp": main_hvdisp,
    "ldm": main_ldm,
    "clovmmigrate": main_clovmmigrate,
    "clovm": main_clovm,
}


def run_command(
    name_or_path: str,
    argv: Sequence[str],
    host: str | None = None,
    home: Home | str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run an admin command by name (``sdtool``) or full product path (``/opt/SMAW/bin/sdtool``)."""
    name = settings.COMMAND_PATHS.get(name_or_path, name_or_path)
    main = COMMANDS.get(name)
    if main is None:
        e = err if err is not None else sys.stderr
        e.write(f"{name_or_path}: command not found\n")
        e.flush()
        return 127
    return main(list(argv), host=host, home=home, out=out, err=err)


# ---- console scripts ----------------------------------------------------------------------------------------
def cftool() -> None:
    sys.exit(main_cftool(sys.argv[1:]))


def cfset() -> None:
    sys.exit(main_cfset(sys.argv[1:]))


def sdtool() -> None:
    sys.exit(main_sdtool(sys.argv[1:]))


def clsnmpsetup() -> None:
    sys.exit(main_clsnmpsetup(sys.argv[1:]))


def hvdisp() -> None:
    sys.exit(main_hvdisp(sys.argv[1:]))


def ldm() -> None:
    sys.exit(main_ldm(sys.argv[1:]))


def clovmmigrate() -> None:
    sys.exit(main_clovmmigrate(sys.argv[1:]))
