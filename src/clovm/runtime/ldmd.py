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

This module is the daemon itself — the machine, its start (first start or recovery from what
persists), the effects and :func:`main`; :class:`LdmdDaemon` mixes in one class per job of the
sibling modules:

* :mod:`clovm.runtime.ldmd_requests` — the operations of both sockets (``migrate-domain``'s
  target and ``-p`` checked there);
* :mod:`clovm.runtime.ldmd_peers` — the peer wire format (:func:`encode_peer_msg`,
  :func:`decode_peer_msg`) and the links to the peers of the migrations in progress;
* :mod:`clovm.runtime.ldmd_procs` — the domain processes and their placement files
  (:data:`DOMAIN_CMD_ENV`, :func:`domain_command`);
* :mod:`clovm.runtime.ldmd_records` — the SP's store and ``ldmd.json``, what survives a restart;
* :mod:`clovm.runtime.ldmd_push` — the pushes to the xscfd (:data:`PUSH_RETRY_S`).

Their public names are importable from here too.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import signal
import sys
from collections.abc import Sequence
from typing import Any, cast

import structlog

from .. import formats, settings
from ..core._state import DomainState
from ..core.base import Effect, Event, Log
from ..core.ldm import (
    LDMD_TAG,
    PRIMARY,
    AdoptDomainProcess,
    CommandReceived,
    ConfigSaved,
    FoundDomain,
    KillDomainProcess,
    Ldmd,
    MigrationProgress,
    PeerMsg,
    ReleaseDomain,
    Reply,
    ResumeDomainProcess,
    SendToPeer,
    SpStore,
    StartDomainProcess,
    SuspendDomainProcess,
)
from ..fsutil import append_line
from ..topology import ControlDomain, Topology
from . import pki
from .clock import EmuClock
from .driver import MachineDriver
from .home import Home
from .ldmd_peers import PeerLinks, decode_peer_msg, encode_peer_msg
from .ldmd_procs import DOMAIN_CMD_ENV, DomainProcesses, _alive_session_leader, _Proc, domain_command
from .ldmd_push import PUSH_RETRY_S, XscfPushes
from .ldmd_records import LdmdRecords
from .ldmd_requests import LdmdRequests
from .proc import Ready, daemon_key, daemon_main, fire_armed_kills
from .rpc import serve_tls, serve_unix

__all__ = [
    "DOMAIN_CMD_ENV",
    "PUSH_RETRY_S",
    "LdmdDaemon",
    "decode_peer_msg",
    "domain_command",
    "encode_peer_msg",
    "main",
    "run",
]

log = structlog.get_logger()


# ------------------------------------------------------------------------------ daemon
class LdmdDaemon(LdmdRequests, PeerLinks, DomainProcesses, LdmdRecords, XscfPushes):
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
