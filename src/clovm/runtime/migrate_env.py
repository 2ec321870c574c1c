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
``Finished``           its rc is returned
``ldm`` (local)        ``call_unix(home.ldmd_socket(host), "ldm", argv=...)``
``ldm`` (other CD)     ``call_tls(address of that control domain, LDMD_PORT, "ldm", argv=...)``
``resolve``            :func:`clovm.formats.resolve` over this host's ``etc/inet/hosts``
``cd_info``            local host name → unix ldmd socket; an address (or another control
                       domain's name) → ``call_tls(address, LDMD_PORT, "cd_info")``
``guest_nodes``        this control domain's ``clovmmigrate.conf`` (below)
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

``etc/opt/FJSVcluster/etc/clovmmigrate.conf`` (clovm's own format; written by ``clovm up`` with
:func:`render_clovmmigrate_conf`, read with :func:`parse_clovmmigrate_conf`)
    The guest-domain cluster nodes whose domains this control domain may host — every node of
    every guest cluster of the topology, since any guest may be migrated to any control domain.
    ``#`` starts a comment; blank lines are ignored; every other line has four whitespace-separated
    fields::

        # guest-domain  cf-node   node-address  cluster-name
        guest1          cfguest1  127.40.0.1    guestcluster
        guest2          cfguest2  127.40.0.2    guestcluster

    ``guest-domain`` is the logical-domain name (unique in the file), ``cf-node`` the CF node name
    of the cluster node running in it (unique), ``node-address`` its IP address (where its node
    agent serves ``NODE_PORT``), ``cluster-name`` the guest cluster it belongs to. ``guest_nodes
    {domain}`` answers ``{"node": cf-node of domain, "nodes": cf-nodes of its cluster}``.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from .. import formats, settings
from ..core import migration as mig
from ..fsutil import atomic_write, read_text_or
from ..topology import Topology
from . import pki, rpc
from .home import Home

__all__ = [
    "CLOVMMIGRATE_CONF",
    "ConfEntry",
    "render_clovmmigrate_conf",
    "parse_clovmmigrate_conf",
    "journal_path",
    "run_clovmmigrate",
    "run_clovmmigrate_async",
]

CLOVMMIGRATE_CONF = "etc/opt/FJSVcluster/etc/clovmmigrate.conf"  # relative to a host's root
NODE_OPS = frozenset({"node_status", "record_timeout", "set_timeout", "window", "sf_stop", "sf_start",
                      "set_sf_entry", "sf_wait", "clear_record"})
LDM_CALL_TIMEOUT = 60.0  # real seconds for one ldm sub-command (add-spconfig & co.)
SF_WAIT_MARGIN = 5.0  # real seconds on top of sf_wait's own wait
SF_WAIT_MIN = 5.0

_CONF = "clovmmigrate.conf"
_CONF_HEADER = ("# clovmmigrate.conf: guest-domain cluster nodes whose domains this control domain may host\n"
                "# (written by clovm up for {host}).\n")


# ---- clovmmigrate.conf ---------------------------------------------------------------------------
class ConfEntry(NamedTuple):
    """One clovmmigrate.conf line."""

    domain: str
    cf_name: str
    address: str
    cluster: str


def render_clovmmigrate_conf(topology: Topology, control_domain: str) -> str:
    """clovmmigrate.conf text for ``control_domain``: every node of every guest cluster."""
    rows: list[tuple[str, str, str, str]] = []
    for cl in topology.clusters:
        if cl.kind != "guest":
            continue
        for cf in cl.nodes:
            g = next(x for x in topology.guests if x.cf_name == cf)
            rows.append((g.name, g.cf_name, g.address, cl.name))
    table = [("# guest-domain", "cf-node", "node-address", "cluster-name"), *rows]
    widths = [max(len(r[i]) for r in table) + 2 for i in range(3)]
    body = "".join(f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:<{widths[2]}}{r[3]}\n" for r in table)
    return _CONF_HEADER.format(host=control_domain) + body


def parse_clovmmigrate_conf(text: str) -> tuple[ConfEntry, ...]:
    """Entries of a clovmmigrate.conf; :class:`clovm.formats.FormatError` names a bad line."""
    out: list[ConfEntry] = []
    domains: set[str] = set()
    cfs: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 4:
            raise formats.FormatError(lineno, f"expected 4 fields (guest-domain cf-node node-address cluster-name), "
                                              f"found {len(fields)}", _CONF)
        domain, cf, addr, cluster = fields
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise formats.FormatError(lineno, f"{addr!r} is not an IP address", _CONF) from None
        if domain in domains:
            raise formats.FormatError(lineno, f"guest domain {domain} is listed twice", _CONF)
        if cf in cfs:
            raise formats.FormatError(lineno, f"CF node {cf} is listed twice", _CONF)
        domains.add(domain)
        cfs.add(cf)
        out.append(ConfEntry(domain, cf, addr, cluster))
    return tuple(out)


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

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def ctx(self) -> ssl.SSLContext:
        if self._ctx is None:
            try:
                self._ctx = pki.client_context(self.home, self.host)
            except (OSError, ssl.SSLError) as e:
                raise _CallFailed(f"no TLS certificate for {self.host} in {self.home.pki_dir}: {e}") from None
        return self._ctx

    def _conf(self) -> tuple[ConfEntry, ...]:
        path = self.home.host_root(self.host) / CLOVMMIGRATE_CONF
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _CallFailed(f"/{CLOVMMIGRATE_CONF} does not exist on {self.host}") from None
        try:
            return parse_clovmmigrate_conf(text)
        except formats.FormatError as e:
            raise _CallFailed(f"/{CLOVMMIGRATE_CONF} on {self.host}: {e}") from None

    def _cd_address(self, target: str) -> str:
        """Address of a control domain named by host name or address."""
        if _is_ip(target):
            return target
        try:
            return self.home.topology().control_domain(target).address
        except StopIteration:
            raise _CallFailed(f"{target} is not a control domain") from None

    def _sf_wait_timeout(self, seconds: float) -> float:
        try:
            scale = float(json.loads(self.home.clock_file.read_text())["time_scale"])
        except (OSError, ValueError, KeyError, TypeError):
            scale = settings.DEFAULT_TIME_SCALE
        return max(SF_WAIT_MIN, seconds / max(scale, 1e-9) + SF_WAIT_MARGIN)

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
                return await rpc.call_unix(self.home.ldmd_socket(self.host), "ldm", timeout=LDM_CALL_TIMEOUT,
                                           argv=argv)
            return await rpc.call_tls(self._cd_address(target), settings.LDMD_PORT, self.ctx, "ldm",
                                      timeout=LDM_CALL_TIMEOUT, argv=argv)
        if op == "resolve":
            text = read_text_or(self.home.hosts_file(self.host), "")
            try:
                return formats.resolve(text, str(args["name"]))
            except formats.FormatError as e:
                raise _CallFailed(f"/{settings.HOSTS} on {self.host}: {e}") from None
        if op == "cd_info":
            if target == self.host:
                return await rpc.call_unix(self.home.ldmd_socket(self.host), "cd_info")
            return await rpc.call_tls(self._cd_address(target), settings.LDMD_PORT, self.ctx, "cd_info")
        if op == "guest_nodes":
            domain = str(args["domain"])
            conf = self._conf()
            me = next((e for e in conf if e.domain == domain), None)
            if me is None:
                raise _CallFailed(f"{domain} is not a node of a guest-domain cluster")
            return {"node": me.cf_name, "nodes": [e.cf_name for e in conf if e.cluster == me.cluster]}
        if op in NODE_OPS:
            node = next((e for e in self._conf() if e.cf_name == target), None)
            if node is None:
                raise _CallFailed(f"{target} is not listed in /{CLOVMMIGRATE_CONF} on {self.host}")
            timeout = settings.CALL_TIMEOUT
            if op == "sf_wait":
                timeout = self._sf_wait_timeout(float(args.get("seconds", 0.0)))
            return await rpc.call_tls(node.address, settings.NODE_PORT, self.ctx, op, timeout=timeout, **args)
        raise _CallFailed(f"unknown operation {op}")


# ---- the journal ---------------------------------------------------------------------------------------
def _load_journal(path: Path) -> dict | None:
    text = read_text_or(path, None)
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _persist(path: Path, journal: dict | None) -> None:
    if journal is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, json.dumps(journal, indent=1, sort_keys=True) + "\n", mode=0o600)


# ---- the run --------------------------------------------------------------------------------------------
def _say(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


async def run_clovmmigrate_async(home: Home, host: str, request: mig.Request, out: TextIO | None = None,
                                 err: TextIO | None = None) -> int:
    """Run ``clovmmigrate`` on control domain ``host`` and return its exit code (see core.migration)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    d = home.migrate_dir(host)
    d.mkdir(parents=True, exist_ok=True)
    path = journal_path(home, host, request.domain)
    lock_fd = os.open(d / f"{request.domain}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(err, f"clovmmigrate: another clovmmigrate for {request.domain} is running on {host}; wait for it "
                      f"to finish. Nothing was changed.")
            return mig.RC_REFUSED
        try:
            journal = _load_journal(path)
        except ValueError as e:
            _say(err, f"clovmmigrate: the journal {path} is unreadable ({_one_line(str(e))}); move it away and run "
                      f"the command again. Nothing was changed.")
            return mig.RC_REFUSED
        env = _Env(home, host)
        run = mig.ClovmmigrateRun(request, journal)
        effects = run.handle(time.monotonic(), mig.RunStarted())
        while True:
            call: mig.Call | None = None
            for e in effects:
                if isinstance(e, mig.Print):
                    _say(err if e.err else out, e.text)
                elif isinstance(e, mig.Persist):
                    _persist(journal_path(home, host, e.domain), e.journal)
                elif isinstance(e, mig.Finished):
                    return e.rc
                elif isinstance(e, mig.Call):
                    call = e
            if call is None:  # cannot happen with a well-formed machine
                _say(err, "clovmmigrate: internal error: the run stopped without finishing")
                return mig.RC_FAILED
            effects = run.handle(time.monotonic(), await env.answer(call))
    finally:
        os.close(lock_fd)  # releases the flock


def run_clovmmigrate(home: Home, host: str, request: mig.Request, out: TextIO | None = None,
                     err: TextIO | None = None) -> int:
    """Synchronous wrapper of :func:`run_clovmmigrate_async` (for CLIs: runs its own event loop)."""
    err_stream = err if err is not None else sys.stderr
    try:
        return asyncio.run(run_clovmmigrate_async(home, host, request, out, err))
    except KeyboardInterrupt:
        _say(err_stream, f"clovmmigrate: interrupted; run the same command again to complete it "
                         f"(clovmmigrate {'-p' if request.mode == 'prepare' else '-u'} {request.domain}"
                         f"{' ' + request.target_host if request.target_host else ''})")
        return mig.RC_FAILED
