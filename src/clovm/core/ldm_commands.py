"""The ``ldm`` subcommands of ldmd (``core.ldm``): parsing, validation, ``ldm list`` output, usage.

:class:`LdmCommands` is mixed into :class:`~clovm.core.ldm.Ldmd`; ``_command`` is the entry. The
rules the commands follow (domain states, SP configurations, what ``migrate-domain`` checks) are
the module docstring of ``core/ldm.py``; the migration a ``migrate-domain`` starts is run by
:class:`~clovm.core.ldm_migration.LdmMigration`.

Commands
    Every ``ldm`` invocation arrives as ``CommandReceived(req_id, argv)``; ``argv`` is the argument
    vector *without* the program name (``("list",)``, ``("migrate-domain", "-c", "guest2",
    "ctl2")``). Each command gets exactly one :class:`~clovm.core.ldm_io.Reply`. A command is
    validated completely before anything changes: an error reply (rc 1, one ``Error: ...`` line on
    stderr, from a :class:`_CmdError`) leaves the machine untouched. ``migrate-domain`` is the only
    command whose reply is deferred: it is sent when the migration ends (done, rejected, cancelled
    or failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ._state import DOMAIN, MIGRATION, DomainState, allowed, step
from .base import Effect, Log
from .ldm_io import (
    _LOG,
    _SPCONFIG_NAME,
    FACTORY_DEFAULT,
    MAX_SPCONFIGS,
    PRIMARY,
    ConfigSaved,
    Domain,
    KillDomainProcess,
    Migration,
    MigrationOffer,
    MigrationProgress,
    Reply,
    SendToPeer,
    StartDomainProcess,
    _guest_flags,
    _Incoming,
    format_memory,
    format_uptime,
)


class _CmdError(Exception):
    pass


_USAGE: dict[str, str] = {
    "list": "list [-o status] [NAME]",
    "list-domain": "list-domain [NAME]",
    "list-spconfig": "list-spconfig",
    "add-spconfig": "add-spconfig NAME",
    "remove-spconfig": "remove-spconfig NAME",
    "set-spconfig": "set-spconfig NAME",
    "start-domain": "start-domain NAME",
    "stop-domain": "stop-domain NAME",
    "bind-domain": "bind-domain NAME",
    "unbind-domain": "unbind-domain NAME",
    "migrate-domain": "migrate-domain [-f] [-n] [-c | -p FILE] source-ldom target-host",
    "cancel-operation": "cancel-operation migration NAME",
}
_ALIASES = {"ls": "list", "list-config": "list-spconfig"}
HELP_TEXT = "Usage: ldm SUBCOMMAND ...\n" + "".join(f"    ldm {u}\n" for u in _USAGE.values())


def _args(sub: str, args: Sequence[str], n_min: int, n_max: int) -> Sequence[str]:
    for a in args:
        if a.startswith("-"):
            raise _CmdError(f"unknown option '{a}' for {sub}; usage: ldm {_USAGE[sub]}")
    if len(args) < n_min:
        raise _CmdError(f"missing argument for {sub}; usage: ldm {_USAGE[sub]}")
    if len(args) > n_max:
        raise _CmdError(f"unexpected argument '{args[n_max]}'; usage: ldm {_USAGE[sub]}")
    return args


class LdmCommands:
    """The command half of :class:`~clovm.core.ldm.Ldmd` (which provides the attributes and the
    methods declared here)."""

    host: str
    ppar: int
    _domains: dict[str, Domain]
    _out: dict[str, Migration]
    _in: dict[str, _Incoming]
    _mig_seq: int
    _store: dict[str, frozenset[str]]
    _next: str
    _booted: str
    _changed: bool

    if TYPE_CHECKING:

        def migration_status(self, domain: str, now: float) -> dict[str, object] | None: ...
        def _label(self, name: str) -> str: ...
        def _cancel(
            self,
            m: Migration,
            trigger: str,
            reasons: Sequence[str],
            *,
            notify: bool = True,
            process_gone: bool = False,
        ) -> list[Effect]: ...

    def _command(self, now: float, req_id: int, argv: tuple[str, ...]) -> list[Effect]:
        if not argv:
            return [Reply(req_id, 1, "", "Error: no subcommand given; see ldm --help\n")]
        sub, args = _ALIASES.get(argv[0], argv[0]), argv[1:]
        if sub in ("--help", "-h", "help"):
            return [Reply(req_id, 0, HELP_TEXT, "")]
        handler: Callable[[float, int, str, Sequence[str]], list[Effect]] | None = {
            "list": self._cmd_list,
            "list-domain": self._cmd_list,
            "list-spconfig": self._cmd_list_spconfig,
            "add-spconfig": self._cmd_add_spconfig,
            "remove-spconfig": self._cmd_remove_spconfig,
            "set-spconfig": self._cmd_set_spconfig,
            "start-domain": self._cmd_start,
            "stop-domain": self._cmd_stop,
            "bind-domain": self._cmd_bind,
            "unbind-domain": self._cmd_unbind,
            "migrate-domain": self._cmd_migrate,
            "cancel-operation": self._cmd_cancel,
        }.get(sub)
        if handler is None:
            return [Reply(req_id, 1, "", f"Error: unknown subcommand '{argv[0]}'; see ldm --help\n")]
        try:
            return handler(now, req_id, sub, args)
        except _CmdError as e:
            return [Reply(req_id, 1, "", f"Error: {e}\n")]

    def _ok(self, req_id: int, stdout: str = "") -> Reply:
        return Reply(req_id, 0, stdout, "")

    def _get(self, name: str, *, guest: str = "") -> Domain:
        d = self._domains.get(name)
        if d is None:
            raise _CmdError(f"Domain {name} not found")
        if guest and name == PRIMARY:
            raise _CmdError(f"The control domain {PRIMARY} cannot be {guest}")
        if guest and (name in self._out or name in self._in):
            raise _CmdError(f"Domain {name} is being migrated; it cannot be {guest} now")
        return d

    def _cmd_list(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        if tuple(args[:2]) == ("-o", "status"):
            return self._list_status(now, req_id, sub, args[2:])
        names = _args(sub, args, 0, 1)
        rows = [self._get(names[0])] if names else list(self._domains.values())
        lines = [self._row("NAME", "STATE", "FLAGS", "CONS", "VCPU", "MEMORY", "UTIL", "UPTIME")]
        for d in rows:
            up = now - d.started_at if d.state is DomainState.ACTIVE and d.started_at is not None else None
            lines.append(
                self._row(
                    d.name,
                    str(d.state),
                    d.flags,
                    d.cons,
                    str(d.vcpu),
                    format_memory(d.memory_mb),
                    "-" if up is None else f"{d.util:.1f}%",
                    "-" if up is None else format_uptime(up),
                )
            )
        return [self._ok(req_id, "".join(line + "\n" for line in lines))]

    def _list_status(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        """``ldm list -o status [NAME]``: each domain's operation in progress (a migration: its
        progress and the other side)."""
        names = _args(sub, args, 0, 1)
        rows = [self._get(names[0])] if names else list(self._domains.values())
        out = []
        for d in rows:
            out.append(f"NAME\n{d.name}\n\nSTATUS\n")
            st = self.migration_status(d.name, now)
            if st is not None:
                out.append(
                    f"    {'OPERATION':<13}{'PROGRESS':<12}TARGET\n"
                    f"    {'migration':<13}{str(st['percent']) + '%':<12}{self._out[d.name].target}\n"
                )
            elif d.name in self._in:
                out.append(
                    f"    {'OPERATION':<13}{'PROGRESS':<12}SOURCE\n"
                    f"    {'migration':<13}{'-':<12}{self._in[d.name].source}\n"
                )
            else:
                out.append(f"    {'OPERATION':<13}PROGRESS\n")
            out.append("\n")
        return [self._ok(req_id, "".join(out).rstrip("\n") + "\n")]

    @staticmethod
    def _row(*c: str) -> str:
        return f"{c[0]:<16} {c[1]:<10} {c[2]:<7} {c[3]:<7} {c[4]:<5} {c[5]:<8} {c[6]:<5} {c[7]}"

    def _cmd_list_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        _args(sub, args, 0, 0)
        out = "".join(f"{n} [{lab}]\n" if (lab := self._label(n)) else f"{n}\n" for n in self._store)
        return [self._ok(req_id, out)]

    def _cmd_add_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        if name in self._store:
            raise _CmdError(f"The configuration {name} already exists")
        if not _SPCONFIG_NAME.fullmatch(name):
            raise _CmdError("Operation failed because an invalid configuration name was given")
        if len(self._store) >= MAX_SPCONFIGS:
            raise _CmdError(
                f"Cannot save configuration {name}: the service processor holds at most "
                f"{MAX_SPCONFIGS} configurations per PPAR including {FACTORY_DEFAULT} "
                f"({len(self._store)} present); remove one with ldm remove-spconfig"
            )
        doms = frozenset(n for n in self._domains if n not in self._in)
        self._store[name] = doms
        self._next = self._booted = name
        self._changed = False
        return [
            self._ok(req_id),
            ConfigSaved(self.ppar, name, doms),
            Log(_LOG, f"ldmd: configuration {name} saved to the service processor"),
        ]

    def _existing_config(self, sub: str, args: Sequence[str]) -> str:
        (name,) = _args(sub, args, 1, 1)
        if name not in self._store:
            raise _CmdError(f"The configuration {name} does not exist")
        return name

    def _cmd_remove_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        name = self._existing_config(sub, args)
        if name == FACTORY_DEFAULT:
            raise _CmdError(f"The {FACTORY_DEFAULT} configuration cannot be removed")
        del self._store[name]
        if self._next == name:
            self._next = FACTORY_DEFAULT
        return [self._ok(req_id)]

    def _cmd_set_spconfig(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        self._next = self._existing_config(sub, args)
        return [self._ok(req_id)]

    def _cmd_start(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        d = self._get(name, guest="started")
        if not allowed(DOMAIN, d.state, "start"):
            raise _CmdError(f"Domain {name} is already {d.state}")
        st = step(DOMAIN, d.state, "start")
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st), started_at=now)
        return [StartDomainProcess(name), self._ok(req_id, f"LDom {name} started\n")]

    def _cmd_stop(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        d = self._get(name, guest="stopped")
        if not allowed(DOMAIN, d.state, "stop"):
            raise _CmdError(f"Domain {name} is not active ({d.state})")
        st = step(DOMAIN, d.state, "stop")
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st, d.flags[5]), started_at=None)
        kill: list[Effect] = [KillDomainProcess(name)] if d.state is DomainState.ACTIVE else []
        return [*kill, self._ok(req_id, f"LDom {name} stopped\n")]

    def _cmd_bind(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        return self._bind_unbind(req_id, sub, args, "bind", "bound", "is already")

    def _cmd_unbind(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        return self._bind_unbind(req_id, sub, args, "unbind", "unbound", "must be bound, not")

    def _bind_unbind(self, req_id: int, sub: str, args: Sequence[str], trig: str, done: str, why: str) -> list[Effect]:
        (name,) = _args(sub, args, 1, 1)
        d = self._get(name, guest=done)
        if not allowed(DOMAIN, d.state, trig):
            raise _CmdError(f"Domain {name} {why} {d.state}")
        st = step(DOMAIN, d.state, trig)
        self._domains[name] = replace(d, state=st, flags=_guest_flags(st))
        return [self._ok(req_id)]

    def _cmd_migrate(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        dry, cert, pwfile, pos = False, False, None, []
        it = iter(args)
        for a in it:
            if a == "-n":
                dry = True
            elif a == "-f":
                pass  # force: accepted, no effect in this emulation
            elif a == "-c":
                cert = True
            elif a == "-p":
                pwfile = next(it, None)
                if pwfile is None:
                    raise _CmdError(f"option -p needs a file name; usage: ldm {_USAGE[sub]}")
            elif a.startswith("-"):
                raise _CmdError(f"unknown option '{a}' for {sub}; usage: ldm {_USAGE[sub]}")
            else:
                pos.append(a)
        if cert and pwfile is not None:
            raise _CmdError(f"options -c and -p are mutually exclusive; usage: ldm {_USAGE[sub]}")
        _args(sub, pos, 2, 2)
        name, target = pos[0], pos[1].rpartition("@")[2]
        if ":" in target:
            raise _CmdError("renaming the domain on the target (target-host:target-ldom) is not supported")
        if target == self.host:
            raise _CmdError(f"target host {target} is the source host")
        d = self._get(name, guest="migrated")
        if d.state is not DomainState.ACTIVE:
            raise _CmdError(f"Domain {name} is {d.state}; only live migration of an active domain is supported")
        self._mig_seq += 1
        m = Migration(self._mig_seq, name, target, req_id, dry)
        self._out[name] = m
        offer = MigrationOffer(
            m.mig_id, name, d.memory_mb, d.vcpu, d.dirty_rate_mb_s, self.host, d.started_at or 0.0, d.util, dry
        )
        return [
            MigrationProgress(name, str(m.phase), 0),
            SendToPeer(target, offer),
            Log(_LOG, f"ldmd: {'dry run of ' if dry else ''}migration of {name} to {target} started"),
        ]

    def _cmd_cancel(self, now: float, req_id: int, sub: str, args: Sequence[str]) -> list[Effect]:
        what, name = _args(sub, args, 2, 2)
        if what != "migration":
            raise _CmdError(f"only 'migration' operations can be cancelled; usage: ldm {_USAGE[sub]}")
        if name in self._in:
            raise _CmdError(f"Migration of domain {name} must be cancelled on the source host {self._in[name].source}")
        m = self._out.get(name)
        if m is None:
            d = self._get(name)
            if d.flags[5] != "e":
                raise _CmdError(f"No migration of domain {name} is in progress")
            self._domains[name] = replace(d, flags=_guest_flags(d.state))
            return [self._ok(req_id), Log(_LOG, f"ldmd: error state of {name} cleared")]
        if not allowed(MIGRATION, m.phase, "cancel"):
            raise _CmdError(f"Migration of domain {name} is in the {m.phase} phase and can no longer be cancelled")
        return [*self._cancel(m, "cancel", ()), self._ok(req_id)]
