"""Use cases of the product's admin commands (pcs ``lib/commands``): plain functions ``f(env, host, ...)``.

One function per command (``cftool -n``, ``cfset``, ``sdtool``, ``clsnmpsetup -l``, ``hvdisp``,
``ldm``, ``clovmmigrate``, ``clovm migrate``), run *on* ``host`` over an injected
:class:`~clovm.api.env.Env`. Each checks the host first (NOT_RUNNING: no datacenter;
BAD_TOPOLOGY; UNKNOWN_HOST; NOT_A_CONTROL_DOMAIN for the control-domain commands), then asks the
host's node agent or ldmd and returns :mod:`clovm.api.dto` values; nothing here prints, except
that the clovmmigrate and clovm migrate machines write their own lines to the ``out`` / ``err``
they are given while they run. Every failure is a :class:`~clovm.api.errors.ClovmError` with a
:mod:`clovm.core.codes` code: the daemon's own (NOT_AVAILABLE, ...), UNREACHABLE, or one below.

Node-agent values decoded here; rows may be JSON objects (field names below) or arrays (fields in
that order):

=================  =====================================================================================
op                 value
=================  =====================================================================================
``cftool_n``       rows ``{node, number, state[, os, cpu]}``
``cfset_a``        ``{KEY: VALUE}`` (or ``[[KEY, VALUE]...]``)
``cfset_r``        ignored
``sdtool {flag}``  ``s``: rows ``{host, agent, sa_state, shut_state, test_state, init_state}``; SF not
                   running: error code ``SF_NOT_RUNNING`` (or NOT_RUNNING, or value None /
                   ``{"running": false}``). ``b`` / ``e`` / ``r``: None or a one-line message to print
``clsnmpsetup_l``  entries ``{cf_name, ppar_id, domain, lan0, lan1, user, connection[, device]}``
``hvdisp``         ``{"local_system": str, "rows": [{name, type, host, state[, detail]}...]}`` or rows
=================  =====================================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TextIO

from ..core import codes
from ..core import migration as mig
from ..core import safemigrate as sm
from ..core.sfconfig import XscfEntry
from .dto import (
    CftoolRow,
    Hvdisp,
    HvdispRow,
    JournalView,
    LdmResult,
    MigrateOutcome,
    Outcome,
    SdtoolRow,
)
from .env import Env
from .errors import ClovmError

__all__ = [
    "cfset_get",
    "cfset_reread",
    "cfset_values",
    "cftool_nodes",
    "clovmmigrate",
    "clsnmpsetup_entries",
    "hvdisp",
    "ldm",
    "migrate",
    "migrate_status",
    "sdtool_control",
    "sdtool_status",
]

LDM_MIGRATE_TIMEOUT = 3600.0  # real seconds: a live migration may take long
LDM_TIMEOUT = 60.0  # real seconds for any other ldm sub-command
SF_NOT_RUNNING_CODES = frozenset({codes.SF_NOT_RUNNING, codes.NOT_RUNNING})
# the machines' exit codes (core.migration, core.safemigrate)
RC_OK, RC_STOPPED, RC_REFUSED, RC_FAILED, RC_RESTORED = (
    mig.RC_OK,
    mig.RC_STOPPED,
    mig.RC_REFUSED,
    mig.RC_FAILED,
    sm.RC_RESTORED,
)


# ---- helpers ---------------------------------------------------------------------------------------------
def _check_host(env: Env, host: str, *, control_domain: bool = False) -> None:
    """``host`` is a host of the datacenter (and a control domain, if asked)."""
    topo = env.topology()
    if host not in {h.name for h in topo.hosts()}:
        raise ClovmError(codes.UNKNOWN_HOST, f"unknown host {host} (see clovm status)")
    if control_domain and not any(c.name == host for c in topo.control_domains):
        raise ClovmError(codes.NOT_A_CONTROL_DOMAIN, f"{host} is not a control domain")


def _row(cls: Any, value: Any) -> Any:
    """``cls`` (NamedTuple or dataclass) from a JSON object (by field name) or array (in order)."""
    names = cls._fields if hasattr(cls, "_fields") else [f.name for f in dataclasses.fields(cls)]
    if isinstance(value, dict):
        return cls(**{k: value[k] for k in names if k in value})
    return cls(*value)


def _rows(cls: Any, value: Any, what: str) -> list[Any]:
    try:
        return [_row(cls, v) for v in (value or [])]
    except (TypeError, KeyError) as e:
        raise ClovmError(codes.BAD_ANSWER, f"unexpected {what} answer from the cluster node agent: {e}") from None


def _outcome(fin: mig.Finished) -> Outcome:
    return Outcome(fin.rc, fin.code or None, fin.message)


# ---- CF, SF, RMS (any host) --------------------------------------------------------------------------------
def cftool_nodes(env: Env, host: str) -> list[CftoolRow]:
    """``cftool -n``: the CF nodes and their states as ``host`` sees them.

    host -- the host the command runs on
    """
    _check_host(env, host)
    return _rows(CftoolRow, env.call(host, "node", "cftool_n"), "cftool_n")


def cfset_values(env: Env, host: str) -> dict[str, Any]:
    """``cfset -a``: every value of ``host``'s CF module, in the order the node gave them."""
    _check_host(env, host)
    raw = env.call(host, "node", "cfset_a")
    return dict(raw) if isinstance(raw, dict) else {str(k): v for k, v in (raw or [])}


def cfset_get(env: Env, host: str, name: str) -> Any:
    """``cfset -g name``: one value of ``host``'s CF module; NOT_SET if it has none.

    name -- the key, e.g. CLUSTER_TIMEOUT
    """
    values = cfset_values(env, host)
    if name not in values:
        raise ClovmError(codes.NOT_SET, f"{name} is not set in the CF module (see cfset -a)")
    return values[name]


def cfset_reread(env: Env, host: str) -> None:
    """``cfset -r``: ``host``'s CF module reads cluster.config again."""
    _check_host(env, host)
    env.call(host, "node", "cfset_r")


def sdtool_status(env: Env, host: str) -> list[SdtoolRow]:
    """``sdtool -s``: the shutdown agents of every cluster host as ``host``'s SF sees them;
    SF_NOT_RUNNING if its shutdown facility is not running."""
    _check_host(env, host)
    try:
        value = env.call(host, "node", "sdtool", flag="s")
    except ClovmError as e:
        if e.code in SF_NOT_RUNNING_CODES:
            raise ClovmError(codes.SF_NOT_RUNNING, f"the shutdown facility is not running on {host}") from None
        raise
    if value is None or (isinstance(value, dict) and not value.get("running", True)):
        raise ClovmError(codes.SF_NOT_RUNNING, f"the shutdown facility is not running on {host}")
    rows = value.get("rows", []) if isinstance(value, dict) else value
    return _rows(SdtoolRow, rows, "sdtool")


def sdtool_control(env: Env, host: str, flag: str) -> str:
    """``sdtool -b`` (start SF), ``-e`` (stop it), ``-r`` (re-read rcsd.cfg) on ``host``; the
    message the node gave ("" for none).

    flag -- "b", "e" or "r"
    """
    if flag not in ("b", "e", "r"):
        raise ClovmError(codes.BAD_ARGUMENT, f"sdtool: unknown flag -{flag} (b, e or r)")
    _check_host(env, host)
    value = env.call(host, "node", "sdtool", flag=flag)
    return value.rstrip("\n") if isinstance(value, str) and value.strip() else ""


def clsnmpsetup_entries(env: Env, host: str) -> list[XscfEntry]:
    """``clsnmpsetup -l``: the XSCF entries of ``host``'s shutdown facility (SA_xscfsnmp.cfg)."""
    _check_host(env, host)
    return _rows(XscfEntry, env.call(host, "node", "clsnmpsetup_l"), "clsnmpsetup_l")


def hvdisp(env: Env, host: str) -> Hvdisp:
    """``hvdisp -a``: the RMS resources and their states on ``host``."""
    _check_host(env, host)
    value = env.call(host, "node", "hvdisp")
    local = ""
    if isinstance(value, dict):
        local, value = str(value.get("local_system", "") or ""), value.get("rows", [])
    return Hvdisp(local, _rows(HvdispRow, value, "hvdisp"))


# ---- control domains -------------------------------------------------------------------------------------
def ldm(env: Env, host: str, argv: Sequence[str]) -> LdmResult:
    """``ldm SUBCOMMAND ...`` run by control domain ``host``'s ldmd (a nonzero rc is no error).

    argv -- the sub-command and its arguments
    """
    if not argv:
        raise ClovmError(codes.BAD_ARGUMENT, "a subcommand is required")
    _check_host(env, host, control_domain=True)
    timeout = LDM_MIGRATE_TIMEOUT if argv[0] in ("migrate-domain", "migrate") else LDM_TIMEOUT
    r = env.call(host, "ldmd", "ldm", timeout=timeout, argv=list(argv))
    return LdmResult(int(r.get("rc", 1)), str(r.get("stdout") or ""), str(r.get("stderr") or ""))


def clovmmigrate(
    env: Env, host: str, mode: str, domain: str, target_host: str = "", *, out: TextIO, err: TextIO
) -> Outcome:
    """``clovmmigrate -p source-ldom`` / ``-u source-ldom target-host`` on control domain ``host``
    (core.migration); its lines go to ``out`` / ``err`` as it runs.

    mode -- "prepare" (-p) or "update" (-u)
    domain -- the guest domain being migrated
    target_host -- -u: the control domain where the domain runs now (address or hosts name)
    """
    if mode not in ("prepare", "update") or (mode == "update") != bool(target_host):
        raise ClovmError(codes.BAD_ARGUMENT, "give -p DOMAIN, or -u DOMAIN TARGET-HOST")
    _check_host(env, host, control_domain=True)
    return _outcome(env.clovmmigrate(mig.Request(mode, domain, host, target_host), out, err))


def migrate(
    env: Env,
    host: str,
    domain: str = "",
    target_host: str = "",
    *,
    scoped: bool = False,
    dry_run: bool = False,
    resume: bool = False,
    out: TextIO,
    err: TextIO,
) -> MigrateOutcome:
    """``clovm migrate`` on control domain ``host`` (core.safemigrate; docs/safe-migration.md):
    preflight, journal, clovmmigrate -p, the migration, -u, proof; its lines go to ``out`` /
    ``err`` as it runs.

    domain -- the guest domain; with ``resume`` it may be "" when one migration is recorded
    target_host -- the destination control domain ("" only with ``resume``)
    scoped -- widen failure detection for the migrating node only
    dry_run -- stop after the preflight and the plan
    resume -- continue the recorded migration from its journal (NO_JOURNAL, SEVERAL_MIGRATIONS)
    """
    if not resume and not (domain and target_host):
        raise ClovmError(codes.BAD_ARGUMENT, "DOMAIN and TARGET-HOST are required")
    _check_host(env, host, control_domain=True)
    if resume and not domain:
        recorded = env.recorded_migrations(host)
        if not recorded:
            raise ClovmError(codes.NO_JOURNAL, f"no clovm migrate is recorded on {host}; nothing to resume")
        if len(recorded) > 1:
            raise ClovmError(
                codes.SEVERAL_MIGRATIONS,
                f"several migrations are recorded ({', '.join(recorded)}); name one: clovm migrate --resume DOMAIN",
            )
        domain = recorded[0]
    req = sm.MigrateRequest(domain, host, target_host, scoped=scoped, dry_run=dry_run, resume=resume)
    fin, journal = env.safe_migration(req, out, err)
    return MigrateOutcome(fin.rc, fin.code or None, fin.message, domain, journal)


def migrate_status(env: Env, host: str, domain: str = "") -> list[JournalView]:
    """``clovm migrate --status``: the journals of the clovm migrate runs recorded on control
    domain ``host`` (in progress, else the last finished one), of ``domain`` or of every domain;
    BAD_JOURNAL if one does not parse."""
    _check_host(env, host, control_domain=True)
    found = []
    for d in [domain] if domain else env.recorded_migrations(host, finished=True):
        try:
            j = env.migrate_journal(host, d)
        except ValueError as e:
            raise ClovmError(codes.BAD_JOURNAL, f"the journal of {d} is unreadable ({e}); move it away") from None
        if j is not None:
            found.append(JournalView(d, *j))
    return found
