"""The product's admin commands, typed on an emulated host: cftool, cfset, sdtool, clsnmpsetup,
hvdisp, ldm and clovmmigrate.

Each ``main_<cmd>(argv, *, host=None, home=None, out=None, err=None) -> int`` parses the product's
single-letter options (``getopt``, as the product does), talks to the daemons of the host it runs
on and prints what the product prints (tables from :mod:`clovm.cli.render`). The host is
``--host HOST`` (anywhere in argv), else the ``host`` argument, else ``$CLOVM_HOST``; the home is
``--home DIR``, else ``home``, else ``settings.default_home()``. :func:`run_command` runs one by
name or by the product's full path (``settings.COMMAND_PATHS``); ``clovm exec`` uses it.

Exit codes and messages (always one line on stderr):

* bad usage: ``<cmd>: <problem>; usage: <syntax>`` — rc 2, nothing is contacted or changed;
* unknown host: ``<cmd>: unknown host X (see clovm status)`` — rc 1;
* daemon down: ``<cmd>: cannot reach <daemon> on HOST: <reason>; is the datacenter up
  (clovm status)?`` — rc 1;
* the daemon refused: ``<cmd>: <its one-line error>`` — rc 1.

Node-agent values rendered here (unix ``home.node_socket(host)``); rows may be JSON objects
(field names below) or arrays (fields in that order):

=================  =====================================================================================
op                 value
=================  =====================================================================================
``cftool_n``       rows ``{node, number, state[, os, cpu]}``
``cfset_a``        ``{KEY: VALUE}`` (or ``[[KEY, VALUE]...]``)
``cfset_r``        ignored
``sdtool {flag}``  ``s``: rows ``{host, agent, sa_state, shut_state, test_state, init_state}``; SF not
                   running: error code ``SF_NOT_RUNNING`` (or value None / ``{"running": false}``).
                   ``b`` / ``e`` / ``r``: None or a one-line message to print
``clsnmpsetup_l``  entries ``{cf_name, ppar_id, domain, lan0, lan1, user, connection[, device]}``
``hvdisp``         ``{"local_system": str, "rows": [{name, type, host, state[, detail]}...]}`` or rows
=================  =====================================================================================
"""

from __future__ import annotations

import dataclasses
import getopt
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence, TextIO

from .. import settings
from ..core import migration as mig
from ..core.sfconfig import XscfEntry
from ..runtime import rpc
from ..runtime.home import Home
from . import render

__all__ = [
    "COMMANDS",
    "run_command",
    "main_cftool",
    "main_cfset",
    "main_sdtool",
    "main_clsnmpsetup",
    "main_hvdisp",
    "main_ldm",
    "main_clovmmigrate",
    "main_clovm",
    "SDTOOL_NOT_RUNNING",
]

SDTOOL_NOT_RUNNING = "sdtool: The shutdown facility is not running; start it with /opt/SMAW/bin/sdtool -b"
SF_NOT_RUNNING_CODES = frozenset({"SF_NOT_RUNNING", "NOT_RUNNING"})
LDM_MIGRATE_TIMEOUT = 3600.0  # real seconds: a live migration may take long
LDM_TIMEOUT = 60.0  # real seconds for any other ldm sub-command

USAGE = {
    "cftool": "cftool -n",
    "cfset": "cfset -a | -r | -g name",
    "sdtool": "sdtool -s | -b | -e | -r",
    "clsnmpsetup": "clsnmpsetup -l",
    "hvdisp": "hvdisp [-a]",
    "ldm": "ldm subcommand [options] [operands]",
    "clovmmigrate": "clovmmigrate -p source-ldom | -u source-ldom target-host",
    "clovm": "clovm migrate DOMAIN TARGET-HOST [--scoped] [--dry-run] [--timeline FILE.svg] | clovm migrate "
             "--resume [DOMAIN] [--timeline FILE.svg] | clovm migrate --status [DOMAIN]",
}
_WHAT = {"node": "the cluster node agent", "ldmd": "the logical domains manager (ldmd)"}


# ---- errors and context ----------------------------------------------------------------------------------
class _Usage(Exception):
    """Bad usage: one line, rc 2."""


class _Fail(Exception):
    """A clean failure: one line (without the command name), rc 1."""


@dataclass
class _Ctx:
    cmd: str
    host: str
    home: Home
    out: TextIO
    err: TextIO

    def print(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def node(self, op: str, **args: Any) -> Any:
        """One node-agent op on this host (unix socket)."""
        return self._call("node", self.home.node_socket(self.host), op, settings.CALL_TIMEOUT, args)

    def ldmd(self, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any) -> Any:
        return self._call("ldmd", self.home.ldmd_socket(self.host), op, timeout, args)

    def _call(self, what: str, path: Path, op: str, timeout: float, args: dict) -> Any:
        try:
            return rpc.call_unix_sync(path, op, timeout, **args)
        except rpc.RpcUnreachable as e:
            raise _Fail(f"cannot reach {_WHAT[what]} on {self.host}: {_reason(e, path)}; is the datacenter up "
                        f"(clovm status)?") from None

    def is_control_domain(self) -> bool:
        return any(c.name == self.host for c in self.home.topology().control_domains)


def _reason(e: rpc.RpcUnreachable, path: Path) -> str:
    msg = e.message
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


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
                    value = a[len(name) + 1:]
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


def _run(cmd: str, argv: Sequence[str], host: str | None, home: Home | str | Path | None, out: TextIO | None,
         err: TextIO | None, parse: Callable[[list[str]], Any], body: Callable[[_Ctx, Any], int],
         *, control_domain_only: str = "") -> int:
    """Common frame: options, host and home, then ``body``; every failure is one line."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr

    def fail(text: str, rc: int) -> int:
        err.write(f"{cmd}: {text}\n")
        err.flush()
        return rc

    try:
        rest, host_opt, home_opt = _split_common(argv)
        parsed = parse(rest)
    except _Usage as e:
        return fail(f"{e}; usage: {USAGE[cmd]}", 2)
    except getopt.GetoptError as e:
        return fail(f"{e}; usage: {USAGE[cmd]}", 2)
    host = host_opt or host or os.environ.get("CLOVM_HOST") or None
    if not host:
        return fail(f"no host given: use --host HOST or set CLOVM_HOST; usage: {USAGE[cmd]}", 2)
    the_home = Home(home_opt) if home_opt else home if isinstance(home, Home) else \
        Home(home) if home is not None else Home(settings.default_home())
    if not the_home.topology_file.exists():
        return fail(f"no datacenter in {the_home.root} (start one with clovm up)", 1)
    try:
        topo = the_home.topology()
    except Exception as e:  # TopologyError: one line
        return fail(f"cannot load the datacenter's topology: {e}", 1)
    if host not in {h.name for h in topo.hosts()}:
        return fail(f"unknown host {host} (see clovm status)", 1)
    ctx = _Ctx(cmd, host, the_home, out, err)
    if control_domain_only and not ctx.is_control_domain():
        return fail(f"command not available on {host}: {control_domain_only}", 1)
    try:
        return body(ctx, parsed)
    except _Fail as e:
        return fail(str(e), 1)
    except rpc.RpcError as e:
        return fail(e.message, 1)


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


# ---- value coercion ---------------------------------------------------------------------------------------
class _SdRow(NamedTuple):
    host: str
    agent: str
    sa_state: str
    shut_state: str
    test_state: str
    init_state: str


def _row(cls: Any, value: Any) -> Any:
    """``cls`` (NamedTuple or dataclass) from a JSON object (by field name) or array (in order)."""
    names = cls._fields if hasattr(cls, "_fields") else [f.name for f in dataclasses.fields(cls)]
    if isinstance(value, dict):
        return cls(**{k: value[k] for k in names if k in value})
    return cls(*value)


def _rows(cls: Any, value: Any, what: str) -> list:
    try:
        return [_row(cls, v) for v in (value or [])]
    except (TypeError, KeyError) as e:
        raise _Fail(f"unexpected {what} answer from the cluster node agent: {e}") from None


# ---- cftool -------------------------------------------------------------------------------------------------
def main_cftool(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``cftool -n``: CF node states as this node sees them."""
    def body(ctx: _Ctx, parsed: tuple) -> int:
        rows = _rows(render.CftoolRow, ctx.node("cftool_n"), "cftool_n")
        ctx.print(render.cftool_n(rows))
        return 0
    return _run("cftool", argv, host, home, out, err, lambda a: _getopt_one(a, "n"), body)


# ---- cfset --------------------------------------------------------------------------------------------------
def main_cfset(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``cfset -a`` (all values), ``cfset -r`` (re-read cluster.config), ``cfset -g name`` (one value)."""
    def body(ctx: _Ctx, parsed: tuple) -> int:
        flag, values, _ = parsed
        if flag == "r":
            ctx.node("cfset_r")
            return 0
        raw = ctx.node("cfset_a")
        settings_ = dict(raw) if isinstance(raw, dict) else {str(k): v for k, v in (raw or [])}
        if flag == "a":
            ctx.print(render.cfset_a(settings_))
            return 0
        name = values[0]
        if name not in settings_:
            raise _Fail(f"{name} is not set in the CF module (see cfset -a)")
        ctx.print(f"KEY: {name}  VALUE: {settings_[name]}\n")
        return 0
    return _run("cfset", argv, host, home, out, err, lambda a: _getopt_one(a, "arg:"), body)


# ---- sdtool -------------------------------------------------------------------------------------------------
def main_sdtool(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``sdtool -s`` (status table), ``-b`` (start SF), ``-e`` (stop SF), ``-r`` (re-read rcsd.cfg)."""
    def body(ctx: _Ctx, parsed: tuple) -> int:
        flag = parsed[0]
        try:
            value = ctx.node("sdtool", flag=flag)
        except rpc.RpcError as e:
            if flag == "s" and e.code in SF_NOT_RUNNING_CODES and not isinstance(e, rpc.RpcUnreachable):
                return _not_running(ctx)
            raise
        if flag != "s":
            if isinstance(value, str) and value.strip():
                ctx.print(value.rstrip("\n") + "\n")
            return 0
        if value is None or (isinstance(value, dict) and not value.get("running", True)):
            return _not_running(ctx)
        rows = value.get("rows", []) if isinstance(value, dict) else value
        ctx.print(render.sdtool_s(_rows(_SdRow, rows, "sdtool")))
        return 0
    return _run("sdtool", argv, host, home, out, err, lambda a: _getopt_one(a, "sber"), body)


def _not_running(ctx: _Ctx) -> int:
    ctx.err.write(SDTOOL_NOT_RUNNING + "\n")
    ctx.err.flush()
    return 1


# ---- clsnmpsetup --------------------------------------------------------------------------------------------
def main_clsnmpsetup(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
                     out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``clsnmpsetup -l``: the XSCF entries of the shutdown facility (SA_xscfsnmp.cfg)."""
    def body(ctx: _Ctx, parsed: tuple) -> int:
        entries = _rows(XscfEntry, ctx.node("clsnmpsetup_l"), "clsnmpsetup_l")
        ctx.print(render.clsnmpsetup_l(entries))
        return 0
    return _run("clsnmpsetup", argv, host, home, out, err, lambda a: _getopt_one(a, "l"), body)


# ---- hvdisp -------------------------------------------------------------------------------------------------
def main_hvdisp(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``hvdisp -a`` (or ``hvdisp``): RMS resources and their states."""
    def body(ctx: _Ctx, parsed: tuple) -> int:
        value = ctx.node("hvdisp")
        local = ""
        if isinstance(value, dict):
            local, value = str(value.get("local_system", "") or ""), value.get("rows", [])
        ctx.print(render.hvdisp(_rows(render.HvdispRow, value, "hvdisp"), local_system=local))
        return 0
    return _run("hvdisp", argv, host, home, out, err, lambda a: _getopt_one(a, "a", allow_none=True), body)


# ---- ldm ----------------------------------------------------------------------------------------------------
def _parse_ldm(argv: list[str]) -> list[str]:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise _Usage("a subcommand is required")
    return argv


def main_ldm(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
             out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``ldm SUBCOMMAND ...``: passed to this control domain's ldmd; its stdout, stderr and rc."""
    def body(ctx: _Ctx, args: list[str]) -> int:
        timeout = LDM_MIGRATE_TIMEOUT if args[0] in ("migrate-domain", "migrate") else LDM_TIMEOUT
        r = ctx.ldmd("ldm", timeout=timeout, argv=args)
        if r.get("stdout"):
            ctx.print(r["stdout"])
        if r.get("stderr"):
            ctx.err.write(r["stderr"])
            ctx.err.flush()
        return int(r.get("rc", 1))
    return _run("ldm", argv, host, home, out, err, _parse_ldm, body,
                control_domain_only="ldm runs on control domains")


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


def main_clovmmigrate(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
                      out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``clovmmigrate -p source-ldom`` / ``clovmmigrate -u source-ldom target-host`` (core.migration)."""
    from ..runtime.migrate_env import run_clovmmigrate

    def body(ctx: _Ctx, parsed: tuple[str, str, str]) -> int:
        mode, domain, target = parsed
        return run_clovmmigrate(ctx.home, ctx.host, mig.Request(mode, domain, ctx.host, target), ctx.out, ctx.err)
    return _run("clovmmigrate", argv, host, home, out, err, _parse_clovmmigrate, body,
                control_domain_only="run clovmmigrate on the cluster node of the source control domain")


class _MigrateArgs(NamedTuple):
    action: str  # "run" | "resume" | "status"
    domain: str
    target: str
    scoped: bool
    dry_run: bool
    timeline: str


def _parse_clovm(argv: list[str]) -> _MigrateArgs:
    if not argv or argv[0] != "migrate":
        raise _Usage(f"unknown subcommand {argv[0]!r}" if argv else "a subcommand is required")
    opts, operands = getopt.gnu_getopt(argv[1:], "", ["scoped", "dry-run", "resume", "status", "timeline="])
    flags = {k: v for k, v in opts}
    action = "resume" if "--resume" in flags else "status" if "--status" in flags else "run"
    if "--resume" in flags and "--status" in flags:
        raise _Usage("options --resume and --status cannot be combined")
    if action != "run":
        extra = [f for f in ("--scoped", "--dry-run") if f in flags]
        if extra:
            raise _Usage(f"option {extra[0]} cannot be combined with --{action}")
        if len(operands) > 1:
            raise _Usage(f"unexpected operand {operands[1]!r}")
        return _MigrateArgs(action, operands[0] if operands else "", "", False, False, flags.get("--timeline", ""))
    if len(operands) != 2:
        raise _Usage("DOMAIN and TARGET-HOST are required" if len(operands) < 2
                     else f"unexpected operand {operands[2]!r}")
    if "--dry-run" in flags and "--timeline" in flags:
        raise _Usage("a dry run draws no timeline")
    return _MigrateArgs("run", operands[0], operands[1], "--scoped" in flags, "--dry-run" in flags,
                        flags.get("--timeline", ""))


def main_clovm(argv: Sequence[str], *, host: str | None = None, home: Home | str | Path | None = None,
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``clovm migrate ...`` on a control domain (core.safemigrate; docs/safe-migration.md)."""
    from .. import timeline
    from ..core import safemigrate as sm
    from ..runtime import migrate_env as me

    def body(ctx: _Ctx, a: _MigrateArgs) -> int:
        if a.action == "status":
            domains = [a.domain] if a.domain else me.recorded_migrations(ctx.home, ctx.host, finished=True)
            shown = 0
            for d in domains:
                try:
                    found = me.load_migrate_journal(ctx.home, ctx.host, d)
                except ValueError as e:
                    raise _Fail(f"the journal of {d} is unreadable ({e}); move it away") from None
                if found is not None:
                    path, j = found
                    ctx.print(f"{path.relative_to(ctx.home.host_root(ctx.host)).as_posix()}:\n"
                              + timeline.render_text_summary(j).rstrip("\n") + "\n")
                    shown += 1
            if not shown:
                ctx.print(f"no clovm migrate is recorded on {ctx.host}" + (f" for {a.domain}" if a.domain else "")
                          + "\n")
            return 0
        domain = a.domain
        if a.action == "resume" and not domain:
            recorded = me.recorded_migrations(ctx.home, ctx.host)
            if not recorded:
                raise _Fail(f"no clovm migrate is recorded on {ctx.host}; nothing to resume")
            if len(recorded) > 1:
                ctx.err.write(f"clovm migrate: several migrations are recorded ({', '.join(recorded)}); name one: "
                              f"clovm migrate --resume DOMAIN\n")
                return 2
            domain = recorded[0]
        req = sm.MigrateRequest(domain, ctx.host, a.target, scoped=a.scoped, dry_run=a.dry_run,
                                resume=a.action == "resume")
        rc, journal = me.run_safe_migration(ctx.home, ctx.host, req, ctx.out, ctx.err)
        if journal is not None and not a.dry_run and rc != sm.RC_REFUSED:
            ctx.print(timeline.render_text_summary(journal).rstrip("\n") + "\n")
            if a.timeline:
                timeline.write_svg(Path(a.timeline), journal)
                ctx.print(f"clovm migrate: timeline written to {a.timeline}\n")
        return rc
    return _run("clovm", argv, host, home, out, err, _parse_clovm, body,
                control_domain_only="run clovm migrate on the source control domain")


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


def run_command(name_or_path: str, argv: Sequence[str], host: str | None = None,
                home: Home | str | Path | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
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
