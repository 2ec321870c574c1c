"""Runs ``clovmmigrate -p`` / ``-u`` for real: the runtime twin of ``sim/world.py``'s executor.

:func:`run_clovmmigrate` drives one :class:`clovm.core.migration.ClovmmigrateRun` on the control
domain ``host`` (the cluster node the operator typed the command on). The machine is sans-IO; this
module answers each :class:`~clovm.core.migration.Call` over the datacenter's channels, one at a
time, and executes the other effects:

=====================  =========================================================================
effect / call          how it is carried out
=====================  =========================================================================
``Print``              written (and flushed) to ``out`` (``err`` when ``Print.err``)
``Persist``            ``HOST/var/opt/FJSVcluster/clovmmigrate/DOMAIN.journal.json`` written
                       atomically (mode 0600), or removed when the journal is None
``Finished``           returned (rc, code, message): :func:`clovmmigrate`, :func:`safe_migration`
``ldm`` (local)        ``call_unix(home.ldmd_socket(host), "ldm", argv=...)``
``ldm`` (other CD)     ``call_tls(address of that control domain, LDMD_PORT, "ldm", argv=...)``
``resolve``            :func:`clovm.formats.resolve` over this host's ``etc/inet/hosts``
``cd_info``            local host name → unix ldmd socket; an address (or another control
                       domain's name) → ``call_tls(address, LDMD_PORT, "cd_info")``
``guest_nodes``        this control domain's ``clovmmigrate.conf``
node ops               ``call_tls(node address from clovmmigrate.conf, NODE_PORT, op, **args)``
                       (``node_status``, ``record_timeout``, ``set_timeout``, ``window``,
                       ``sf_stop``, ``sf_start``, ``set_sf_entry``, ``sf_wait``, ``clear_record``)
=====================  =========================================================================

TLS calls present this control domain's certificate (``pki.client_context(home, host)``). An
:class:`~clovm.runtime.rpc.RpcError` or :class:`~clovm.runtime.rpc.RpcUnreachable` becomes
``CallReturned(ok=False, error=<one line>)``; the machine turns it into its own message and rc.
``sf_wait {seconds}`` waits ``seconds`` *emulated* seconds on the node, so its real timeout is
``seconds / time_scale`` (``time_scale`` from ``home.clock_file``) plus a margin, at least 5 s.
Only one ``clovmmigrate`` per domain runs at a time on a host (``DOMAIN.lock``, ``flock``).

The guest-domain cluster nodes this control domain may call are listed in its
``clovmmigrate.conf`` (format, :func:`render_clovmmigrate_conf` and :func:`parse_clovmmigrate_conf`
in :mod:`clovm.runtime.clovmmigrate_conf`, re-exported here). The journal files, the lock, the
journal writer and the refusals are :mod:`clovm.runtime.migrate_journal`'s, shared with
:mod:`clovm.pacemaker.migrate_env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from .. import formats, settings
from ..core import codes, names
from ..core import migration as mig
from ..core import safemigrate as sm
from ..fsutil import read_text_or
from . import migrate_journal as mj
from . import pki, rpc
from .clock import EmuClock
from .clovmmigrate_conf import CLOVMMIGRATE_CONF, ConfEntry, parse_clovmmigrate_conf, render_clovmmigrate_conf
from .home import Home
from .proc import MIGRATE_VICTIM, fire_armed_kills

__all__ = [
    "CLOVMMIGRATE_CONF",
    "ConfEntry",
    "clovmmigrate",
    "clovmmigrate_async",
    "journal_path",
    "last_journal_path",
    "load_migrate_journal",
    "migrate_journal_path",
    "parse_clovmmigrate_conf",
    "recorded_migrations",
    "render_clovmmigrate_conf",
    "run_clovmmigrate",
    "run_clovmmigrate_async",
    "run_safe_migration",
    "run_safe_migration_async",
    "safe_migration",
    "safe_migration_async",
]

NODE_OPS = frozenset(
    {
        "node_status",
        "record_timeout",
        "set_timeout",
        "window",
        "sf_stop",
        "sf_start",
        "set_sf_entry",
        "sf_wait",
        "clear_record",
        # clovm migrate (docs/safe-migration.md)
        "cf_sample",
        "widen",
        "narrow",
        "clock_align",
        "xscf_check",
        "sf_test",
        "sf_entry",
    }
)
LDMD_OPS = frozenset({"cd_info", "activity", "where"})  # answered by the ldmd of the target control domain
SAMPLE_TIMEOUT = 1.0  # real seconds for cf_sample: a suspended node must not stall the sampling
LDM_CALL_TIMEOUT = 60.0  # real seconds for one ldm sub-command (add-spconfig & co.)
MIGRATE_CALL_TIMEOUT = 3600.0  # real seconds a migrate-domain started by clovm migrate may take
SF_WAIT_MARGIN = 5.0  # real seconds on top of sf_wait's own wait
SF_WAIT_MIN = 5.0
KILL_AT_ENV = mj.KILL_AT_ENV  # fault injection: see _MigratePersist


def check_domain(domain: str) -> None:
    """Refused unless ``domain`` is a valid domain name (it becomes part of file names here)."""
    problem = names.problem("domain", domain)
    if problem is not None:
        raise mj.Refused(codes.BAD_NAME, f"{problem}; give the name of a guest domain (ldm list). Nothing was changed.")


def journal_path(home: Home, host: str, domain: str) -> Path:
    return home.migrate_dir(host) / f"{domain}.journal.json"


# ---- the environment that answers Calls --------------------------------------------------------------
class _CallFailed(Exception):
    """A Call cannot be answered; ``str()`` is one line without a final period."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


class _Env:
    """Answers the Calls of one run on control domain ``host`` of ``home``."""

    def __init__(self, home: Home, host: str):
        self.home, self.host = home, host
        self._ctx: ssl.SSLContext | None = None
        self._channels: rpc.Channels | None = None
        self._migrations: dict[str, asyncio.Future[Any]] = {}  # migrate_start: domain -> ldm command
        self._conf_cache: tuple[tuple[int, int, int], tuple[ConfEntry, ...]] | None = None

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def channels(self) -> rpc.Channels:
        """The run's kept connections to the guest nodes (closed by ``close()``)."""
        if self._channels is None:
            self._channels = rpc.Channels(self.ctx)
        return self._channels

    def close(self) -> None:
        if self._channels is not None:
            self._channels.close()

    @property
    def ctx(self) -> ssl.SSLContext:
        if self._ctx is None:
            try:
                self._ctx = pki.client_context(self.home, self.host)
            except (OSError, ssl.SSLError) as e:
                raise _CallFailed(f"no TLS certificate for {self.host} in {self.home.pki_dir}: {e}") from None
        return self._ctx

    def _conf(self) -> tuple[ConfEntry, ...]:
        """The parsed clovmmigrate.conf, parsed again only when the file changed (every node call
        of a run looks up its address here)."""
        path = self.home.clovmmigrate_conf(self.host)
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._conf_cache is not None and self._conf_cache[0] == stamp:
                return self._conf_cache[1]
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _CallFailed(f"/{CLOVMMIGRATE_CONF} does not exist on {self.host}") from None
        try:
            entries = parse_clovmmigrate_conf(text)
        except formats.FormatError as e:
            raise _CallFailed(f"/{CLOVMMIGRATE_CONF} on {self.host}: {e}") from None
        self._conf_cache = (stamp, entries)
        return entries

    def _cd_address(self, target: str) -> str:
        """Address of a control domain named by host name or address."""
        if _is_ip(target):
            return target
        try:
            return self.home.topology().control_domain(target).address
        except StopIteration:
            raise _CallFailed(f"{target} is not a control domain") from None

    @functools.cached_property
    def _scale(self) -> float:
        """The datacenter's time scale (fixed for its life), read once."""
        try:
            scale = float(json.loads(self.home.clock_file.read_text())["time_scale"])
        except (OSError, ValueError, KeyError, TypeError):
            scale = settings.DEFAULT_TIME_SCALE
        return max(scale, 1e-9)

    def _sf_wait_timeout(self, seconds: float) -> float:
        return max(SF_WAIT_MIN, seconds / self._scale + SF_WAIT_MARGIN)

    # -- the calls ------------------------------------------------------------------------------------
    async def answer(self, c: mig.Call) -> mig.CallReturned:
        try:
            value = await self._dispatch(c)
        except _CallFailed as e:
            return mig.CallReturned(c.call_id, False, None, _one_line(str(e)))
        except rpc.RpcError as e:  # RpcUnreachable included
            return mig.CallReturned(c.call_id, False, None, _one_line(e.message))
        return mig.CallReturned(c.call_id, True, value)

    async def _dispatch(self, c: mig.Call) -> Any:
        op, target, args = c.op, c.target, dict(c.args)
        if op == "ldm":
            argv = [str(a) for a in args["argv"]]
            if target == self.host:
                return await rpc.call_unix(self.home.ldmd_socket(self.host), "ldm", timeout=LDM_CALL_TIMEOUT, argv=argv)
            return await rpc.call_tls(
                self._cd_address(target), settings.LDMD_PORT, self.ctx, "ldm", timeout=LDM_CALL_TIMEOUT, argv=argv
            )
        if op == "resolve":
            text = read_text_or(self.home.hosts_file(self.host), "")
            try:
                return formats.resolve(text, str(args["name"]))
            except formats.FormatError as e:
                raise _CallFailed(f"/{settings.HOSTS} on {self.host}: {e}") from None
        if op in LDMD_OPS:
            if target == self.host:
                return await rpc.call_unix(self.home.ldmd_socket(self.host), op, **args)
            return await rpc.call_tls(self._cd_address(target), settings.LDMD_PORT, self.ctx, op, **args)
        if op == "sleep":
            await asyncio.sleep(max(float(args["seconds"]) / self._scale, 0.05))
            return None
        if op == "control_domains":
            return [{"host": cd.name, "address": cd.address} for cd in self.home.topology().control_domains]
        if op == "migrate_start":
            domain, to = str(args["domain"]), str(args["target"])
            argv = ["migrate-domain", "-c", domain, to]
            self._migrations[domain] = asyncio.ensure_future(
                rpc.call_unix(self.home.ldmd_socket(self.host), "ldm", timeout=MIGRATE_CALL_TIMEOUT, argv=argv)
            )
            return None
        if op == "migrate_result":
            task = self._migrations.get(str(args["domain"]))
            if task is None or not task.done():
                return None
            try:
                return task.result()
            except rpc.RpcError as e:
                return {"rc": 1, "stdout": "", "stderr": _one_line(e.message)}
        if op == "guest_nodes":
            domain = str(args["domain"])
            conf = self._conf()
            me = next((e for e in conf if e.domain == domain), None)
            if me is None:
                raise _CallFailed(f"{domain} is not a node of a guest-domain cluster")
            return {
                "node": me.cf_name,
                "nodes": [e.cf_name for e in conf if e.cluster == me.cluster],
                "domains": {e.cf_name: e.domain for e in conf if e.cluster == me.cluster},
            }
        if op in NODE_OPS:
            node = next((e for e in self._conf() if e.cf_name == target), None)
            if node is None:
                raise _CallFailed(f"{target} is not listed in /{CLOVMMIGRATE_CONF} on {self.host}")
            timeout = settings.CALL_TIMEOUT
            if op == "cf_sample":
                timeout = SAMPLE_TIMEOUT
            if op == "sf_wait":
                timeout = self._sf_wait_timeout(float(args.get("seconds", 0.0)))
            return await self.channels.call(node.address, settings.NODE_PORT, op, timeout=timeout, **args)
        raise _CallFailed(f"unknown operation {op}")


# ---- the run --------------------------------------------------------------------------------------------
def _say(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _locked_journal(
    home: Home, host: str, domain: str, path: Path
) -> contextlib.AbstractContextManager[dict[str, Any] | None]:
    """Hold ``DOMAIN.lock`` (flock: one clovmmigrate / clovm migrate per domain) and yield the
    journal at ``path`` (None if there is none); Refused if ``domain`` is no valid name, if locked or
    if the journal is unreadable (:func:`clovm.runtime.migrate_journal.locked`)."""
    check_domain(domain)
    return mj.locked(
        home.migrate_dir(host),
        domain,
        path,
        host=host,
        holders="clovmmigrate or clovm migrate",
        root=home.host_root(host),
    )


class CallAnswerer(Protocol):
    """What :func:`drive` needs of a stack's environment: the answer to one call of the run, and
    a close at the end (this module's ``_Env`` for the SPARC stack, ``pacemaker.migrate_env``'s
    ``PcmkEnv`` for Pacemaker)."""

    async def answer(self, c: mig.Call) -> mig.CallReturned: ...

    def close(self) -> None: ...


async def drive(
    run: mig.GeneratorRun,
    env: CallAnswerer,
    now: Callable[[], float],
    persist: Callable[[mig.Persist], None],
    out: TextIO,
    err: TextIO,
) -> mig.Finished:
    """The one driver loop of ``clovmmigrate`` and ``clovm migrate`` on every stack: carry out the
    effects of ``run`` until it finishes; its :class:`~clovm.core.migration.Finished`."""
    try:
        return await _drive_effects(run, env, now, persist, out, err)
    finally:
        env.close()


async def _drive_effects(
    run: mig.GeneratorRun,
    env: CallAnswerer,
    now: Callable[[], float],
    persist: Callable[[mig.Persist], None],
    out: TextIO,
    err: TextIO,
) -> mig.Finished:
    effects = run.handle(now(), mig.RunStarted())
    while True:
        calls: list[mig.Call] = []
        for e in effects:
            if isinstance(e, mig.Print):
                _say(err if e.err else out, e.text)
            elif isinstance(e, mig.Persist):
                persist(e)
            elif isinstance(e, mig.Finished):
                return e
            elif isinstance(e, mig.Call):
                calls.append(e)
        if not calls:  # cannot happen with a well-formed machine
            text = f"{run.PROG}: internal error: the run stopped without finishing"
            _say(err, text)
            return mig.Finished(mig.RC_FAILED, codes.INTERNAL, text)
        effects = []  # one call, or a batch (every node at once): the run goes on with the last answer
        for answer in await asyncio.gather(*(env.answer(c) for c in calls)):
            effects += run.handle(now(), answer)


async def clovmmigrate_async(
    home: Home, host: str, request: mig.Request, out: TextIO | None = None, err: TextIO | None = None
) -> mig.Finished:
    """Run ``clovmmigrate`` on control domain ``host``; how it finished (rc, code, message; see
    core.migration). Its lines go to ``out`` / ``err`` as they come."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        with _locked_journal(home, host, request.domain, journal_path(home, host, request.domain)) as journal:
            run = mig.ClovmmigrateRun(request, journal)
            return await drive(
                run,
                _Env(home, host),
                time.monotonic,
                lambda e: mj.write(journal_path(home, host, e.domain), e.journal),
                out,
                err,
            )
    except mj.Refused as e:
        return mj.refuse(err, "clovmmigrate", e.code, str(e))


def clovmmigrate(
    home: Home, host: str, request: mig.Request, out: TextIO | None = None, err: TextIO | None = None
) -> mig.Finished:
    """Synchronous wrapper of :func:`clovmmigrate_async` (for CLIs: runs its own event loop)."""
    err_stream = err if err is not None else sys.stderr
    try:
        return asyncio.run(clovmmigrate_async(home, host, request, out, err))
    except KeyboardInterrupt:
        text = (
            f"clovmmigrate: interrupted; run the same command again to complete it "
            f"(clovmmigrate {'-p' if request.mode == 'prepare' else '-u'} {request.domain}"
            f"{' ' + request.target_host if request.target_host else ''})"
        )
        _say(err_stream, text)
        return mig.Finished(mig.RC_FAILED, codes.INTERRUPTED, text)


async def run_clovmmigrate_async(
    home: Home, host: str, request: mig.Request, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run ``clovmmigrate`` on control domain ``host`` and return its exit code (see core.migration)."""
    return (await clovmmigrate_async(home, host, request, out, err)).rc


def run_clovmmigrate(
    home: Home, host: str, request: mig.Request, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """:func:`clovmmigrate`'s exit code."""
    return clovmmigrate(home, host, request, out, err).rc


# ---- clovm migrate ------------------------------------------------------------------------------------
def migrate_journal_path(home: Home, host: str, domain: str) -> Path:
    """The journal of a ``clovm migrate`` in progress (or stopped part way) for ``domain``."""
    return mj.active_path(home.migrate_dir(host), domain)


def last_journal_path(home: Home, host: str, domain: str) -> Path:
    """The journal of the last finished ``clovm migrate`` of ``domain`` (for --status and timelines)."""
    return mj.last_path(home.migrate_dir(host), domain)


def recorded_migrations(home: Home, host: str, *, finished: bool = False) -> list[str]:
    """Domains with a ``clovm migrate`` journal in progress on control domain ``host`` (with
    ``finished``: or the journal of their last finished one)."""
    return mj.recorded(home.migrate_dir(host), finished=finished)


def load_migrate_journal(home: Home, host: str, domain: str) -> tuple[Path, dict[str, Any]] | None:
    """The journal in progress, else the last finished one, else None (ValueError if unreadable or
    ``domain`` is not a valid domain name)."""
    if names.problem("domain", domain) is not None:
        raise ValueError(names.problem("domain", domain))
    return mj.load_first(home.migrate_dir(host), domain)


class _MigratePersist(mj.JournalWriter):
    """Writes the Persist effects of a SafeMigrationRun (:class:`~clovm.runtime.migrate_journal.JournalWriter`),
    with the embedded clovmmigrate journal as ``DOMAIN.journal.json`` and this stack's kill points.

    ``CLOVM_MIGRATE_KILL_AT=POINT`` makes the process SIGKILL itself right after the first journal
    write at POINT, so tests can kill ``clovm migrate`` at every journal step: a step name
    (``prepare``, ``migrate``, ``recover``, ``complete``, ``prove``: the step was recorded as begun),
    ``prepared`` (the pre-migration timeouts are recorded, nothing changed yet), ``migrating``
    (the migration is under way), ``pre-copy`` / ``suspend`` / ``hand-off`` (the last progress
    recorded is in that phase), ``handed-off`` (the migration's end is recorded: the guest runs on
    the target) or ``updating`` (the completion has begun). The same points disarm the kills of
    other daemons armed with ``clovm fault kill DAEMON HOST --at POINT`` (runtime.proc).
    """

    def __init__(self, home: Home, host: str, domain: str):
        super().__init__(home.migrate_dir(host), domain)
        self.home, self.host = home, host

    @staticmethod
    def points(j: dict[str, Any]) -> set[str]:
        sub = (j.get("clovmmigrate") or {}).get("mode")
        out = {str(j.get("step"))}
        if sub == "prepared" and j.get("step") == "prepare":
            out.add("prepared")
        if sub == "updating" and j.get("step") == "complete":
            out.add("updating")
        if j.get("progress") and j.get("step") == "migrate":
            out.add("migrating")
            last = j["progress"][-1]
            if isinstance(last, dict) and last.get("phase") in ("pre-copy", "suspend", "hand-off"):
                out.add(str(last["phase"]))
        if j.get("step") == "migrate" and j.get("outcome") == "migrated":
            out.add("handed-off")
        return out

    def other(self, e: mig.Persist) -> None:  # the embedded clovmmigrate journal
        mj.write(journal_path(self.home, self.host, e.domain), e.journal)

    def reached(self, points: set[str]) -> None:
        fire_armed_kills(self.home, points, MIGRATE_VICTIM)


async def safe_migration_async(
    home: Home, host: str, request: sm.MigrateRequest, out: TextIO | None = None, err: TextIO | None = None
) -> tuple[mig.Finished, dict[str, Any] | None]:
    """Run ``clovm migrate`` on control domain ``host``; how it finished and the last journal
    written or read (None if it refused before reading one)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        with _locked_journal(home, host, request.domain, migrate_journal_path(home, host, request.domain)) as journal:
            persist = _MigratePersist(home, host, request.domain)
            run = sm.SafeMigrationRun(request, journal)
            fin = await drive(run, _Env(home, host), EmuClock(home).now, persist, out, err)
            return fin, persist.journal if persist.journal is not None else journal
    except mj.Refused as e:
        return mj.refuse(err, "clovm migrate", e.code, str(e)), None


def safe_migration(
    home: Home, host: str, request: sm.MigrateRequest, out: TextIO | None = None, err: TextIO | None = None
) -> tuple[mig.Finished, dict[str, Any] | None]:
    """Synchronous wrapper of :func:`safe_migration_async` (^C: :func:`clovm.runtime.migrate_journal.run_interruptible`)."""
    return mj.run_interruptible(safe_migration_async(home, host, request, out, err), err, request.domain)


async def run_safe_migration_async(
    home: Home, host: str, request: sm.MigrateRequest, out: TextIO | None = None, err: TextIO | None = None
) -> tuple[int, dict[str, Any] | None]:
    """Run ``clovm migrate`` on control domain ``host``; (exit code, the last journal written or read)."""
    fin, journal = await safe_migration_async(home, host, request, out, err)
    return fin.rc, journal


def run_safe_migration(
    home: Home, host: str, request: sm.MigrateRequest, out: TextIO | None = None, err: TextIO | None = None
) -> tuple[int, dict[str, Any] | None]:
    """:func:`safe_migration`'s exit code and journal."""
    fin, journal = safe_migration(home, host, request, out, err)
    return fin.rc, journal
