"""ldmd: the Logical Domains Manager daemon of one control domain.

``python -m clovm.runtime.ldmd --home H --name CONTROL_DOMAIN``

Drives :class:`clovm.core.ldm.Ldmd` (timers in emulated time via :class:`MachineDriver`) and
turns its effects into real things:

* Unix socket ``Home.ldmd_socket(N)`` (local ``ldm``, xscfd, ``clovm fault``):
  ``ldm {argv}`` → ``{rc, stdout, stderr}`` (``migrate-domain`` answers when the migration ends),
  ``kill_domain {domain, how}``, ``arm_abort {domain}``, ``domains`` → list of dicts,
  ``cd_info``, ``activity``, ``where {domain}``.
* TLS server on ``(address, LDMD_PORT)`` (mutual TLS; the client certificate's CN must be a
  control domain of the topology, else ``FORBIDDEN``): ``peer {msg}`` (the ldmd-to-ldmd
  migration protocol, ``msg = {"type": ClassName, **fields}``), ``ldm {argv}``, ``domains``,
  ``cd_info``, ``activity``, ``where {domain}``.
* ``clovm migrate``'s questions (docs/safe-migration.md): ``activity`` → ``{"journals": sorted
  domains with a ``DOMAIN.journal.json`` (clovmmigrate) or ``DOMAIN.migrate.json`` (one-shot)
  journal in this control domain's clovmmigrate directory, "migrating": sorted domains with a
  migration in progress here, as source or as target}``; ``where {domain}`` → None if this ldmd
  does not hold the domain, else ``{"state", "flags", "migration"}`` where ``migration`` is the
  last ``{"phase", "percent"}`` of an outgoing migration in progress, else None (a target's copy
  shows flag ``t`` and no progress).
* Domain processes: a guest domain *is* a process (``python -m clovm.runtime.nodeagent --home H
  --name DOMAIN``, own session, output appended to ``Home.log_file("nodeagent-DOMAIN")``); its placement
  file ``{"pid", "host", "server"}`` names the control domain that owns it. Suspend/resume are
  SIGSTOP/SIGCONT, a kill is SIGKILL, and the process's exit (watched with a pidfd) is fed back
  as ``DomainProcessExited``. Exactly one ldmd *owns* a domain's pid (feeds its exit); an ldmd
  that released a migrated-out process it spawned keeps only reaping it (so it never lingers
  as a zombie), without feeding anything.
* Pushes the PPAR's running guests (``domains_running``) to the server's xscfd after every
  handled event and ``spconfig_saved`` on ``ConfigSaved``, in order, coalescing consecutive
  ``domains_running`` pushes and retrying every :data:`PUSH_RETRY_S` seconds (or at once when
  there is something new to push) while the xscfd is not reachable.

``migrate-domain [-n] [-f] [-c | -p FILE] source-ldom [user@]target-host``: the target host is
resolved through this control domain's ``etc/inet/hosts`` and must be the address of a control
domain of the topology; it is replaced by that control domain's name before the core sees the
command. ``-p FILE``: the first line of FILE must equal the secrets' ``ldm_password``. FILE is
looked up in the emulated host's tree first (``HOME/hosts/N/FILE``), then as a real path.
Without ``-c`` or ``-p`` the migration is accepted as with ``-c`` (there is no terminal to
prompt for a password; ldmds always authenticate each other with their TLS certificates).

Environment (tests only):
    ``CLOVM_DOMAIN_CMD`` replaces the guest domain command. Either a JSON list of strings or a
    shell-style string (split with :func:`shlex.split`); ``{home}`` and ``{name}`` in any
    argument are replaced by the home root and the domain name; nothing is appended.
    Example: ``["/usr/bin/python3", "-c", "import time; time.sleep(3600)"]``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
import structlog

from .. import formats, settings
from ..core import codes
from ..core._state import DomainState, MigrationPhase
from ..core.base import Effect, Event, Log
from ..core.ldm import (
    LDMD_TAG,
    PRIMARY,
    AdoptDomainProcess,
    CommandReceived,
    ConfigSaved,
    DomainProcessExited,
    FoundDomain,
    Handoff,
    HandoffAcked,
    HandoffNotTaken,
    KillDomainProcess,
    Ldmd,
    MigrationAbortArmed,
    MigrationCancelled,
    MigrationFailed,
    MigrationOffer,
    MigrationProgress,
    OfferAccepted,
    OfferRejected,
    PeerMessageReceived,
    PeerMsg,
    PeerUnreachable,
    PlacementMoved,
    ReleaseDomain,
    Reply,
    ResumeDomainProcess,
    SendToPeer,
    SpStore,
    StartDomainProcess,
    SuspendDomainProcess,
)
from ..fsutil import append_line, atomic_write, read_text_or
from ..topology import ControlDomain, Topology
from . import pki, spawn
from .clock import EmuClock
from .driver import MachineDriver
from .home import Home
from .proc import Ready, daemon_key, daemon_main, fire_armed_kills
from .rpc import RpcError, RpcUnreachable, call_tls, call_unix, serve_tls, serve_unix

DOMAIN_CMD_ENV = "CLOVM_DOMAIN_CMD"
PUSH_RETRY_S = 0.5  # real seconds between attempts to reach an absent xscfd (the supervisor restarts it)

_PEER_TYPES: dict[str, type[PeerMsg]] = {
    c.__name__: c
    for c in (MigrationOffer, OfferAccepted, OfferRejected, Handoff, HandoffAcked, MigrationCancelled, MigrationFailed)
}

log = structlog.get_logger()


# ------------------------------------------------------------------------------ peer messages
def encode_peer_msg(msg: PeerMsg) -> dict[str, Any]:
    """``{"type": ClassName, **fields}``: the wire form of one ldmd-to-ldmd message."""
    return {"type": type(msg).__name__, **msgspec.to_builtins(msg)}


def decode_peer_msg(raw: Any) -> PeerMsg:
    """The inverse of :func:`encode_peer_msg`; raises ``RpcError(codes.BAD_REQUEST)``."""
    if not isinstance(raw, dict):
        raise RpcError(codes.BAD_REQUEST, "peer message must be an object")
    fields = dict(raw)
    cls = _PEER_TYPES.get(str(fields.pop("type", "")))
    if cls is None:
        raise RpcError(codes.BAD_REQUEST, f"unknown peer message type {raw.get('type')!r}")
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as e:
        raise RpcError(codes.BAD_REQUEST, f"bad {cls.__name__}: {e}") from None


# ------------------------------------------------------------------------------ processes
def domain_command(home: Home, name: str) -> list[str]:
    """The argv of guest domain ``name`` (``CLOVM_DOMAIN_CMD`` overrides it)."""
    env = os.environ.get(DOMAIN_CMD_ENV)
    if not env:
        return [sys.executable, "-m", "clovm.runtime.nodeagent", "--home", str(home.root), "--name", name]
    argv = json.loads(env) if env.lstrip().startswith("[") else shlex.split(env)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"{DOMAIN_CMD_ENV} must be a non-empty list of strings")
    return [a.replace("{home}", str(home.root)).replace("{name}", name) for a in argv]


def _refused(e: RpcError) -> bool:
    """The connection was refused (or the socket is missing): nothing reached the peer."""
    text = e.message.lower()
    return "refused" in text or "no such file" in text or "connect call failed" in text


def _definite(e: RpcError) -> bool:
    """The peer ldmd is gone for sure: it refused, the connection broke, or it is another ldmd."""
    return e.code == codes.PEER_RESTARTED or (
        isinstance(e, RpcUnreachable) and (_refused(e) or "closed" in e.message.lower() or "reset" in e.message.lower())
    )


def _alive_session_leader(pid: int) -> bool:
    """True if ``pid`` runs (not a zombie) and leads its own session, as a domain process does."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z" and os.getsid(pid) == pid
    except (OSError, IndexError):
        return False


@dataclass(slots=True)
class _Proc:
    """A watched domain process. ``popen`` is set when it is our child (we must reap it);
    ``owned`` is False once released to another ldmd (then we only reap it)."""

    name: str
    pid: int
    pidfd: int
    popen: subprocess.Popen[bytes] | spawn.Forked | None
    owned: bool = True


# ------------------------------------------------------------------------------ daemon
class LdmdDaemon:
    """One control domain's ldmd: the core machine plus its sockets, processes and pushes."""

    def __init__(self, home: Home, name: str) -> None:
        self.home, self.name = home, name
        self.topo: Topology = home.topology()
        self.cd: ControlDomain = self.topo.control_domain(name)
        self.clock = EmuClock(home)
        self.machine = Ldmd(
            name,
            self.cd.ppar,
            self.cd.server,
            memory_mb=self.cd.memory_mb,
            bandwidth_mb_s=self.topo.migration.bandwidth_mb_s,
        )
        self.driver = MachineDriver(self.machine, self.clock, self._on_effects)
        self.log = log.bind(ldmd=name)
        self._req_ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._procs: dict[str, _Proc] = {}  # owned: this ldmd feeds their exit
        self._reaping: dict[int, _Proc] = {}  # released children, by pid: reap only
        self._progress: dict[str, MigrationProgress] = {}
        self._peer_queues: dict[str, asyncio.Queue[PeerMsg]] = {}
        self._push_queue: list[tuple[str, dict[str, Any]]] = []
        self._push_wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.Server] = []
        self._cd_names = {c.name for c in self.topo.control_domains}
        self._loop = asyncio.get_running_loop()
        self.instance = secrets.token_hex(8)  # who answers `link`: a restarted ldmd is another one
        self._sp_written: dict[str, Any] | None = None  # the SP file as last written
        self._state_written: dict[str, Any] | None = None  # ldmd.json as last written
        self._sp_saved: list[str] | None = None  # the domains of the last saved configuration (for the XSCF)
        self._points: list[str] = []  # armed-kill points reached while applying effects
        self._phase: dict[str, str] = {}  # the last migration phase of each outgoing domain
        self._link_epoch: dict[str, int] = {}  # bumped when the link to a peer is lost: drops its queue
        # the ldmd instance each peer answered as since a migration with it began (cleared when none
        # runs): another instance then means the one before is gone, with the migrations it shared
        self._peer_instance: dict[str, str] = {}

    # ---------------------------------------------------------------- life cycle
    async def start(self) -> None:
        """Build the domain table (see :meth:`_recover`), spawn or re-adopt the guests' processes
        and serve."""
        sp = self._read_sp()
        if sp is None:
            self._first_start()
        else:
            self._recover(sp)
        self._servers.append(await serve_unix(self.home.ldmd_socket(self.name), self._handle_unix))
        self._servers.append(
            await serve_tls(
                self.cd.address, settings.LDMD_PORT, pki.server_context(self.home, self.name), self._handle_tls
            )
        )
        self._spawn_task(self._pusher())
        self._spawn_task(self._link_monitor())

    def _first_start(self) -> None:
        """The very first start of this control domain (its SP holds no configuration yet): the
        topology's guests of this control domain, and the installed configuration saved."""
        for g in self.topo.guests:
            if g.control_domain != self.name:
                continue
            placed = self._read_placement(g.name)
            pid = placed.get("pid") if placed else None
            if placed and isinstance(pid, int) and _alive_session_leader(pid) and placed.get("host") != self.name:
                self.log.warning("guest_elsewhere", domain=g.name, host=placed.get("host"), pid=pid)
                continue
            self.machine.add_domain(
                g.name, g.memory_mb, g.vcpu, g.dirty_rate_mb_s, DomainState.ACTIVE, started_at=self.clock.now()
            )
            if isinstance(pid, int) and _alive_session_leader(pid):
                self.log.info("domain_readopted", domain=g.name, pid=pid)
                self._watch(g.name, pid, None)
            else:
                self._spawn(g.name)
        # The installed system: the running configuration (with its guests) saved on the service
        # processor, so the XSCF knows the domains its shutdown agents will ask about.
        self.driver.feed(CommandReceived(next(self._req_ids), ("add-spconfig", settings.INITIAL_SPCONFIG)))

    def _recover(self, sp: SpStore) -> None:
        """Rebuild from what persists: the SP's configurations and the guests' placement files.

        If this ldmd last ran in this boot of the datacenter (its ``ldmd.json`` names the clock
        file's ``boot``), it restarted while the datacenter ran: :meth:`~clovm.core.ldm.Ldmd.
        restarted` (a domain whose process still runs is adopted and resumed, one whose process
        ended is bound). Otherwise the servers were powered off since (``clovm down``, then ``clovm up``):
        :meth:`~clovm.core.ldm.Ldmd.powered_on` boots every guest whose placement names this
        control domain — the placement wins over the topology's initial control domain, which
        only places a guest that was never placed.
        """
        now = self.clock.now()
        mine: list[tuple[Any, dict[str, Any] | None]] = []
        for g in self.topo.guests:
            placed = self._read_placement(g.name)
            if (placed.get("host") if placed else g.control_domain) == self.name:
                mine.append((g, placed))
        params = {"memory_mb": self.cd.memory_mb, "bandwidth_mb_s": self.topo.migration.bandwidth_mb_s}
        own = self._read_state()
        restarted = "boot" in own and own["boot"] == self.clock.boot
        known = cast("dict[str, Any]", own.get("started") if isinstance(own.get("started"), dict) else {})
        found: list[FoundDomain] = []
        alive: dict[str, int] = {}
        for g, placed in mine:
            pid = placed.get("pid") if placed else None
            started = known.get(g.name) if restarted else None
            live = restarted and isinstance(pid, int) and self._is_domain_process(pid, g.name)
            if live:
                alive[g.name] = int(pid)  # type: ignore[arg-type]
            found.append(
                FoundDomain(
                    g.name,
                    g.memory_mb,
                    g.vcpu,
                    g.dirty_rate_mb_s,
                    live,
                    float(started) if isinstance(started, (int, float)) else None,
                )
            )
        if restarted:
            machine, effects = Ldmd.restarted(self.name, self.cd.ppar, self.cd.server, found, sp, now, **params)
            self.log.info("ldmd_restarted", domains=[f.name for f in found], alive=sorted(alive))
        else:
            machine, effects = Ldmd.powered_on(self.name, self.cd.ppar, self.cd.server, found, sp, now, **params)
            self.log.info("ldmd_powered_on", domains=[f.name for f in found])
        self.machine = self.driver.machine = machine
        for name, pid in sorted(alive.items()):
            self._watch(name, pid, None)
        self._sp_saved = self._read_sp_saved()
        self._on_effects(effects)

    def _is_domain_process(self, pid: int, name: str) -> bool:
        """``pid`` runs guest domain ``name`` of this home (not a recycled pid)."""
        if not _alive_session_leader(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        return name in argv.split() and str(self.home.root) in argv

    def ready(self) -> None:
        """Called right after READY: push the PPAR's state to the xscfd once."""
        self._push_running()

    async def close(self) -> None:
        """Stop serving and watching; guest processes are left running (``clovm down`` kills)."""
        self.driver.stop()
        for srv in self._servers:
            srv.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for p in [*self._procs.values(), *self._reaping.values()]:
            self._unwatch(p)
        self._procs.clear()
        self._reaping.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(Reply(0, 1, "", "Error: ldmd is shutting down\n"))
        try:
            self.home.ldmd_socket(self.name).unlink()
        except FileNotFoundError:
            pass

    def _spawn_task(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- machine
    def feed(self, event: Event) -> None:
        self.driver.feed(event)

    def _feed_soon(self, event: Event) -> None:
        self._loop.call_soon(self.feed, event)

    def _on_effects(self, effects: Sequence[Effect]) -> None:
        for e in effects:
            try:
                self._apply(e)
            except Exception:  # one failed effect must not lose the others
                self.log.exception("effect_failed", effect=repr(e))
        self._push_running()
        self._write_sp()
        self._write_state()
        if self._points:
            points, self._points = self._points, []
            fired = fire_armed_kills(self.home, points, daemon_key("ldmd", self.name))
            for f in fired:
                self.log.warning("armed_kill_fired", point=f.get("point"), victim=f.get("daemon"))

    def _apply(self, e: Effect) -> None:
        match e:
            case Reply(req_id=req_id):
                fut = self._pending.pop(req_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(e)
            case SendToPeer(peer=peer, msg=msg):
                self._send_to_peer(peer, msg)
            case StartDomainProcess(name=name):
                self._spawn(name)
            case KillDomainProcess(name=name):
                placed = self._read_placement(name)
                if placed is not None and placed.get("host") not in (None, self.name):
                    # a hand-off the target took over: the process is no longer this ldmd's to kill
                    self.log.warning("kill_not_ours", domain=name, host=placed.get("host"))
                else:
                    self._signal(name, signal.SIGKILL)
            case SuspendDomainProcess(name=name):
                self._signal(name, signal.SIGSTOP)
            case ResumeDomainProcess(name=name):
                self._signal(name, signal.SIGCONT)
            case AdoptDomainProcess(name=name, from_host=from_host):
                self._adopt(name, from_host)
                self._points.append("taken-over")
            case ReleaseDomain(name=name):
                self._release(name)
            case MigrationProgress(domain=domain, phase=phase, percent=percent):
                self._progress[domain] = e
                self.log.info("migration_progress", domain=domain, phase=phase, percent=percent, round=e.round)
                if self._phase.get(domain) != phase:
                    self._phase[domain] = phase
                    self._points.append(phase)
                if self.machine.migration(domain) is None:
                    self._phase.pop(domain, None)
            case ConfigSaved(ppar=ppar, name=cfg, domains=doms):
                self.log.info("spconfig_saved", spconfig=cfg, domains=sorted(doms))
                self._sp_saved = sorted(set(doms) - {PRIMARY})
                self._push_queue.append(("spconfig_saved", {"ppar": ppar, "domains": sorted(set(doms) - {"primary"})}))
                self._push_wakeup.set()
            case Log(dest=dest, text=text, msgid=msgid):
                self.log.info("log", dest=dest, text=text)
                if dest == "messages":
                    append_line(
                        self.home.messages(self.name),
                        formats.node_log_line(self.clock.wall(self.cd.server), self.name, LDMD_TAG, dest, text, msgid),
                    )
            case _:
                self.log.warning("unknown_effect", effect=repr(e))

    # ---------------------------------------------------------------- domain processes
    def _read_placement(self, name: str) -> dict[str, Any] | None:
        try:
            value = json.loads(self.home.placement_file(name).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _write_placement(self, name: str, pid: int) -> None:
        atomic_write(
            self.home.placement_file(name), json.dumps({"pid": pid, "host": self.name, "server": self.cd.server}) + "\n"
        )

    # ---------------------------------------------------------------- this ldmd's own record
    @property
    def _state_file(self) -> Path:
        """``var/opt/SUNWldm/ldmd.json`` of this control domain: the boot of the datacenter it last
        ran in (``clock.boot``) and when each of its domains started (their uptime survives)."""
        return self.home.host_root(self.name) / "var/opt/SUNWldm/ldmd.json"

    def _read_state(self) -> dict[str, Any]:
        try:
            v = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return v if isinstance(v, dict) else {}

    def _write_state(self) -> None:
        doc = {
            "boot": self.clock.boot,
            "started": {
                d.name: d.started_at for d in self.machine.domains() if d.name != PRIMARY and d.started_at is not None
            },
        }
        if doc != self._state_written:
            atomic_write(self._state_file, json.dumps(doc) + "\n")
            self._state_written = doc

    # ---------------------------------------------------------------- the service processor's store
    def _read_sp(self) -> SpStore | None:
        """The SP's store of this PPAR (``Home.sp_file``); None if it holds nothing yet."""
        try:
            raw = json.loads(self.home.sp_file(self.cd.server, self.cd.ppar).read_text())
            configs = tuple((str(n), frozenset(str(x) for x in doms)) for n, doms in raw["configs"])
            return SpStore(configs, str(raw["next"]), str(raw["booted"]), bool(raw["changed"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.log.error("sp_store_unreadable", error=str(e))
            return None

    def _read_sp_saved(self) -> list[str] | None:
        try:
            saved = json.loads(self.home.sp_file(self.cd.server, self.cd.ppar).read_text()).get("saved")
        except (OSError, ValueError, AttributeError):
            return None
        return sorted(str(x) for x in saved) if isinstance(saved, list) else None

    def _write_sp(self) -> None:
        """Write the SP's store when it changed (``add-spconfig`` & co.; the running configuration
        changing since it was saved). Done before any reply of the same event leaves."""
        sp = self.machine.sp_store()
        doc = {
            "configs": [[n, sorted(doms)] for n, doms in sp.configs],
            "next": sp.next,
            "booted": sp.booted,
            "changed": sp.changed,
            "saved": self._sp_saved,
        }
        if doc != self._sp_written:
            atomic_write(self.home.sp_file(self.cd.server, self.cd.ppar), json.dumps(doc, indent=1) + "\n")
            self._sp_written = doc

    def _spawn(self, name: str) -> None:
        old = self._procs.get(name)
        if old is not None:  # must not happen; never let a stale exit crash the new process
            self.log.warning("domain_process_replaced", domain=name, pid=old.pid)
            self._disown(old)
            self._kill_pid(old.pid, signal.SIGKILL)
        logf = self.home.log_file(daemon_key("nodeagent", name))
        logf.parent.mkdir(parents=True, exist_ok=True)
        popen: subprocess.Popen[bytes] | spawn.Forked
        if spawn.forking() and not os.environ.get(DOMAIN_CMD_ENV):
            popen = spawn.fork_daemon("nodeagent", self.home.root, name, logf, ready_pipe=False)
        else:
            with open(logf, "ab") as out:
                popen = subprocess.Popen(
                    domain_command(self.home, name),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    close_fds=True,
                )
        self._write_placement(name, popen.pid)
        self.log.info("domain_process_started", domain=name, pid=popen.pid)
        self._watch(name, popen.pid, popen)

    def _watch(self, name: str, pid: int, popen: subprocess.Popen[bytes] | spawn.Forked | None) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.log.warning("domain_process_gone", domain=name, pid=pid)
            if popen is not None:
                popen.poll()
            self._feed_soon(DomainProcessExited(name))
            return
        p = _Proc(name, pid, pidfd, popen)
        self._procs[name] = p
        self._loop.add_reader(pidfd, self._on_exit, p)

    def _unwatch(self, p: _Proc) -> None:
        if p.pidfd >= 0:
            self._loop.remove_reader(p.pidfd)
            os.close(p.pidfd)
            p.pidfd = -1

    def _disown(self, p: _Proc) -> None:
        """Stop owning ``p``: keep reaping it if it is our child, else forget it."""
        if self._procs.get(p.name) is p:
            del self._procs[p.name]
        p.owned = False
        if p.popen is not None:
            self._reaping[p.pid] = p
        else:
            self._unwatch(p)

    def _on_exit(self, p: _Proc) -> None:
        self._unwatch(p)
        if p.popen is not None:
            p.popen.poll()  # waitpid(pid, WNOHANG): reap our child
        self._reaping.pop(p.pid, None)
        if p.owned and self._procs.get(p.name) is p:
            del self._procs[p.name]
            self.log.info(
                "domain_process_exited", domain=p.name, pid=p.pid, rc=None if p.popen is None else p.popen.returncode
            )
            self.feed(DomainProcessExited(p.name))

    def _kill_pid(self, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def _signal(self, name: str, sig: signal.Signals) -> None:
        p = self._procs.get(name)
        if p is None:
            self.log.warning("no_domain_process", domain=name, signal=sig.name)
            return
        self.log.info("domain_process_signal", domain=name, pid=p.pid, signal=sig.name)
        self._kill_pid(p.pid, sig)

    def _adopt(self, name: str, from_host: str) -> None:
        placed = self._read_placement(name)
        pid = placed.get("pid") if placed else None
        if not isinstance(pid, int):
            self.log.error("adopt_failed", domain=name, from_host=from_host, why="no placement file")
            self._feed_soon(DomainProcessExited(name))
            return
        self._write_placement(name, pid)
        self.log.info("domain_process_adopted", domain=name, pid=pid, from_host=from_host)
        back = self._reaping.pop(pid, None)  # migrated back to the ldmd that spawned it
        if back is not None and back.pidfd >= 0:
            back.owned = True
            back.name = name
            self._procs[name] = back
        else:
            self._watch(name, pid, None)

    def _release(self, name: str) -> None:
        p = self._procs.get(name)
        if p is not None:
            self.log.info("domain_process_released", domain=name, pid=p.pid)
            self._disown(p)

    # ---------------------------------------------------------------- peers
    def _send_to_peer(self, peer: str, msg: PeerMsg) -> None:
        q = self._peer_queues.get(peer)
        if q is None:
            q = self._peer_queues[peer] = asyncio.Queue()
            self._spawn_task(self._peer_sender(peer, q))
        q.put_nowait(msg)

    async def _peer_sender(self, peer: str, q: asyncio.Queue[PeerMsg]) -> None:
        """Send ``peer``'s messages one at a time, in order; a failed send → PeerUnreachable.

        A refused connection (nothing was delivered: the peer ldmd is not listening, e.g. while the
        supervisor restarts it) is tried again for :data:`settings.LDMD_CONNECT_RETRY` seconds. The
        messages queued before the link to ``peer`` was lost (:meth:`_link_lost`) are dropped: the
        migrations they belong to ended with the loss."""
        ctx = pki.client_context(self.home, self.name)
        while True:
            msg = await q.get()
            epoch = self._link_epoch.get(peer, 0)
            deadline = time.monotonic() + settings.LDMD_CONNECT_RETRY
            while True:
                try:
                    addr = self.topo.control_domain(peer).address
                    # a message of a migration in progress is for the ldmd instance it began with (an
                    # offer begins one: any instance will do)
                    to = None if isinstance(msg, MigrationOffer) else self._peer_instance.get(peer)
                    v = await call_tls(
                        addr, settings.LDMD_PORT, ctx, "peer", msg=encode_peer_msg(msg), instance=self.instance, to=to
                    )
                    if isinstance(v, dict) and isinstance(v.get("instance"), str):
                        self._peer_seen(peer, v["instance"])
                    break
                except (RpcError, StopIteration) as e:
                    if self._link_epoch.get(peer, 0) != epoch:
                        break  # the link was lost meanwhile
                    if isinstance(e, RpcUnreachable) and _refused(e) and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                        continue
                    self.log.warning("peer_unreachable", peer=peer, msg=type(msg).__name__, error=str(e))
                    # (a StopIteration: topo.control_domain() of an unknown peer, which has no code)
                    code = e.code if isinstance(e, RpcError) else None
                    if code == codes.PEER_RESTARTED:
                        self._peer_instance.pop(peer, None)  # learnt again from its next answer
                    try:
                        self._link_lost(peer, str(e), definite=isinstance(e, RpcError) and _definite(e))
                    except Exception:
                        self.log.exception("feed_failed", peer=peer)
                    break

    # ---------------------------------------------------------------- links of migrations in progress
    def _migration_peers(self) -> set[str]:
        """The peers a migration in progress here depends on: the target of each outgoing one and,
        while an incoming copy is held, every other control domain (its source among them)."""
        peers = {m.target for d in self.machine.domains() if (m := self.machine.migration(d.name)) is not None}
        if self.machine.incoming():
            peers |= self._cd_names - {self.name}
        return peers

    async def _link_monitor(self) -> None:
        """Watch the peers of the migrations in progress, as the migration's connection would: a
        peer whose ldmd refuses connections or answers as another instance (it restarted and
        kept nothing of the migration) has lost the link (:meth:`_link_lost`); one that does not
        answer at all is given :data:`settings.LDMD_LINK_GRACE` seconds."""
        ctx = pki.client_context(self.home, self.name)
        silent: dict[str, float] = {}
        while True:
            await asyncio.sleep(settings.LDMD_LINK_PING)
            peers = self._migration_peers()
            for gone in set(silent) - peers:
                silent.pop(gone, None)
            for gone in set(self._peer_instance) - peers:
                self._peer_instance.pop(gone, None)
            for peer in sorted(peers):
                try:
                    addr = self.topo.control_domain(peer).address
                    v = await call_tls(addr, settings.LDMD_PORT, ctx, "link", timeout=1.0)
                except RpcUnreachable as e:
                    first = silent.setdefault(peer, time.monotonic())
                    if _definite(e) or time.monotonic() - first > settings.LDMD_LINK_GRACE:
                        self._link_lost(peer, e.message, definite=_definite(e))
                        silent.pop(peer, None)
                    continue
                except RpcError as e:
                    self.log.warning("link_refused", peer=peer, code=e.code, error=e.message)
                    continue
                silent.pop(peer, None)
                if isinstance(v, dict) and isinstance(v.get("instance"), str):
                    self._peer_seen(peer, v["instance"])

    def _peer_seen(self, peer: str, instance: str) -> None:
        """``peer`` answered (or wrote) as ``instance``: if that is another ldmd than before, the one
        before is gone, and with it every migration it shared with this one."""
        if peer not in self._migration_peers():
            self._peer_instance.pop(peer, None)  # nothing in progress with it: nothing to lose
            return
        old = self._peer_instance.setdefault(peer, instance)
        if old != instance:
            self._peer_instance.pop(peer, None)
            self._link_lost(peer, "its ldmd restarted", definite=True)

    def _link_lost(self, peer: str, why: str, definite: bool) -> None:
        """The link to ``peer`` broke (``definite``: its ldmd is gone — it refused, the connection
        broke, or another ldmd answers — rather than merely silent). A hand-off to it ends as its
        placement says: the guest placed on ``peer`` (it took it over: :class:`PlacementMoved`), or,
        when the loss is definite, still here (:class:`HandoffNotTaken`: this ldmd resumes it);
        everything else involving ``peer`` ends as the core says for :class:`PeerUnreachable`."""
        if peer not in self._migration_peers():
            return
        self.log.warning("link_lost", peer=peer, why=why, definite=definite)
        self._link_epoch[peer] = self._link_epoch.get(peer, 0) + 1
        q = self._peer_queues.get(peer)
        while q is not None and not q.empty():
            q.get_nowait()
        for d in self.machine.domains():
            m = self.machine.migration(d.name)
            if m is not None and m.target == peer and m.phase is MigrationPhase.HANDOFF:
                placed = self._read_placement(d.name)
                if placed is not None and placed.get("host") == peer:
                    self.feed(PlacementMoved(d.name, peer))
                elif definite and placed is not None and placed.get("host") == self.name:
                    self.feed(HandoffNotTaken(d.name, peer))
        self.feed(PeerUnreachable(peer))

    # ---------------------------------------------------------------- xscfd pushes
    def running(self) -> list[str]:
        return sorted(self.machine.running())

    def _push_running(self) -> None:
        args = {"ppar": self.cd.ppar, "running": self.running(), "held": sorted(self.machine.domain_names())}
        if self._push_queue and self._push_queue[-1][0] == "domains_running":
            self._push_queue[-1] = ("domains_running", args)
        else:
            self._push_queue.append(("domains_running", args))
        self._push_wakeup.set()

    async def _pusher(self) -> None:
        """Deliver queued pushes to the xscfd in order; retry while it is unreachable."""
        sock = self.home.xscf_socket(self.cd.server)
        while True:
            await self._push_wakeup.wait()
            self._push_wakeup.clear()
            while self._push_queue:
                op, args = self._push_queue.pop(0)
                try:
                    await call_unix(sock, op, **args)
                except RpcUnreachable as e:
                    self.log.info("xscfd_unreachable", op=op, error=str(e))
                    newer = op == "domains_running" and self._push_queue and self._push_queue[0][0] == "domains_running"
                    if not newer:
                        self._push_queue.insert(0, (op, args))
                    # again after a while, or at once when there is news (a restarted xscfd asks)
                    try:
                        await asyncio.wait_for(self._push_wakeup.wait(), PUSH_RETRY_S)
                    except TimeoutError:
                        pass
                    self._push_wakeup.clear()
                except RpcError as e:
                    self.log.warning("xscfd_refused", op=op, code=e.code, error=e.message)

    # ---------------------------------------------------------------- requests
    async def _handle_unix(self, op: str, args: dict[str, Any], peer: str) -> Any:
        match op:
            case "kill_domain":
                return self._kill_domain(str(args["domain"]), str(args.get("how", "kill")))
            case "arm_abort":
                self.feed(MigrationAbortArmed(str(args["domain"])))
                return None
            case "push":  # a restarted xscfd asks for what runs (and what the SP saved) again
                if self._sp_saved is not None:
                    self._push_queue.append(("spconfig_saved", {"ppar": self.cd.ppar, "domains": self._sp_saved}))
                self._push_running()
                return None
        return await self._handle_common(op, args)

    async def _handle_tls(self, op: str, args: dict[str, Any], peer: str) -> Any:
        if peer not in self._cd_names:
            raise RpcError(codes.FORBIDDEN, f"{peer or 'anonymous'} is not a control domain")
        if op == "peer":
            msg = decode_peer_msg(args.get("msg"))
            to = args.get("to")
            if to and to != self.instance:
                # meant for the ldmd that ran here before this one: it knows nothing of that migration
                raise RpcError(
                    codes.PEER_RESTARTED,
                    f"ldmd on {self.name} restarted; it knows nothing of the migrations of the one before",
                )
            inst = args.get("instance") if isinstance(args.get("instance"), str) else None
            if inst is not None:
                self._peer_seen(peer, inst)  # a new instance: what the one before shared with us is lost
            self.feed(PeerMessageReceived(peer, msg))
            if inst is not None:
                self._peer_seen(peer, inst)  # (for the migration this message began)
            return {"instance": self.instance}
        if op == "link":
            return {"instance": self.instance}
        return await self._handle_common(op, args)

    async def _handle_common(self, op: str, args: dict[str, Any]) -> Any:
        """The operations both channels serve."""
        match op:
            case "ldm":
                return await self._ldm(args.get("argv"))
            case "domains":
                return self._domains()
            case "cd_info":
                return self._cd_info()
            case "activity":
                return self._activity()
            case "where":
                return self._where(args.get("domain"))
        raise RpcError(codes.UNKNOWN_OP, f"unknown op {op!r}")

    async def _ldm(self, argv: Any) -> dict[str, Any]:
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise RpcError(codes.BAD_REQUEST, "argv must be a list of strings")
        args = tuple(argv)
        if args and args[0] == "migrate-domain":
            prepared = self._prepare_migrate(args)
            if isinstance(prepared, str):
                return {"rc": 1, "stdout": "", "stderr": prepared}
            args = prepared
        req_id = next(self._req_ids)
        fut: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[req_id] = fut
        self.feed(CommandReceived(req_id, args))
        r = await fut
        return {"rc": r.rc, "stdout": r.stdout, "stderr": r.stderr}

    def _prepare_migrate(self, argv: tuple[str, ...]) -> tuple[str, ...] | str:
        """Resolve the target host and check ``-p``; the new argv, or an error text (rc 1).

        Malformed command lines are passed through unchanged: the core owns their messages.
        """
        pos: list[int] = []
        pwfile: str | None = None
        i = 1
        while i < len(argv):
            a = argv[i]
            if a == "-p":
                if i + 1 >= len(argv):
                    return argv
                pwfile = argv[i + 1]
                i += 1
            elif not a.startswith("-"):
                pos.append(i)
            i += 1
        if len(pos) != 2 or ("-c" in argv and pwfile is not None):
            return argv
        target = argv[pos[1]].rpartition("@")[2]
        if ":" in target:
            return argv
        addr = formats.resolve(read_text_or(self.home.hosts_file(self.name), ""), target)
        if addr is None:
            return f"Error: cannot resolve target host {target}\n"
        cd = next((c for c in self.topo.control_domains if c.address == addr), None)
        if cd is None:
            return f"Error: {target} is not a control domain running ldmd\n"
        if pwfile is not None:
            err = self._check_password(pwfile)
            if err:
                return err
        out = list(argv)
        out[pos[1]] = cd.name
        return tuple(out)

    def _check_password(self, pwfile: str) -> str | None:
        root = self.home.host_root(self.name)
        candidates = [root / pwfile.lstrip("/"), Path(pwfile)]
        for path in candidates:
            try:
                text = path.read_text(encoding="utf-8")
                break
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            except OSError as e:
                return f"Error: cannot read password file {pwfile}: {e.strerror}\n"
        else:
            return f"Error: password file {pwfile} not found\n"
        given = (text.splitlines() or [""])[0]
        wanted = str(self.home.secrets().get("ldm_password", ""))
        if not wanted or not hmac.compare_digest(given.encode(), wanted.encode()):
            return "Error: authentication to target failed\n"
        return None

    def _kill_domain(self, domain: str, how: str) -> dict[str, Any]:
        p = self._procs.get(domain)
        if p is None:
            raise RpcError(codes.NOT_RUNNING, f"domain {domain} has no running process on {self.name}")
        self.log.info("kill_domain", domain=domain, how=how, pid=p.pid)
        self._kill_pid(p.pid, signal.SIGKILL)
        return {"pid": p.pid}

    def _domains(self) -> list[dict[str, Any]]:
        out = []
        now = self.clock.now()
        for d in self.machine.domains():
            p = self._procs.get(d.name)
            out.append(
                {
                    "name": d.name,
                    "state": str(d.state),
                    "flags": d.flags,
                    "cons": d.cons,
                    "vcpu": d.vcpu,
                    "memory_mb": d.memory_mb,
                    "pid": p.pid if p else None,
                    "migration": self.machine.migration_status(d.name, now),
                }
            )
        return out

    def _activity(self) -> dict[str, list[str]]:
        journals: set[str] = set()
        d = self.home.migrate_dir(self.name)
        for suffix in (".journal.json", ".migrate.json"):
            journals.update(p.name.removesuffix(suffix) for p in d.glob(f"*{suffix}") if p.is_file())
        migrating = {x.name for x in self.machine.domains() if self.machine.migration(x.name) is not None}
        return {"journals": sorted(journals), "migrating": sorted(migrating | self.machine.incoming())}

    def _where(self, domain: Any) -> dict[str, Any] | None:
        if not isinstance(domain, str):
            raise RpcError(codes.BAD_REQUEST, "where: domain must be a domain name")
        row = next((x for x in self._domains() if x["name"] == domain), None)
        if row is None:
            return None
        moving = self.machine.migration(domain) is not None
        return {"state": row["state"], "flags": row["flags"], "migration": row["migration"] if moving else None}

    def _cd_info(self) -> dict[str, Any]:
        return self.topo.control_domain_facts(self.name).info()


async def run(home: Home, name: str, ready: Ready, stop: asyncio.Event) -> None:
    """The daemon body for :func:`clovm.runtime.proc.daemon_main`."""
    daemon = LdmdDaemon(home, name)
    try:
        await daemon.start()
        ready()
        daemon.ready()
        await stop.wait()
    finally:
        await daemon.close()


def main(argv: list[str] | None = None) -> int:
    return daemon_main("ldmd", run, argv)


if __name__ == "__main__":
    sys.exit(main())
