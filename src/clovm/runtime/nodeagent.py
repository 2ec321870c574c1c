"""The cluster-node daemon: CF, SF (rcsd) and RMS of one emulated host, on real sockets and files.

``python -m clovm.runtime.nodeagent --home H --name HOST`` runs the cluster software of one host
(a guest domain or a control domain of the topology). It is the real-world twin of the node part
of :mod:`clovm.sim.world` (``boot``, ``_node_effect``, ``_run_agent``, ``_query_domain``,
``_node_op``): the same core machines, wired the same way, but over UDP, TLS, unix sockets and the
host's product files instead of the simulated network and :class:`~clovm.sim.world.NodeFiles`.

Theory of operation
-------------------
*Machines.* Every node runs :class:`~clovm.core.membership.Membership` (CF); nodes of a guest
cluster also run :class:`~clovm.core.fencing.ShutdownFacility` (SF) and :class:`~clovm.core.rms.Rms`.
Each machine has its own :class:`~clovm.runtime.driver.MachineDriver` on the shared emulated clock
(:class:`~clovm.runtime.clock.EmuClock`), so deadlines (heartbeats, LEFTCLUSTER, agent timeouts,
settle, WRP 35) run in emulated seconds. Effects are carried out synchronously in the order the
machine returned them; an effect may feed another machine (CF ``AnnounceNodeState`` → SF
``NodeStateChanged`` + RMS ``PeerNodeStateChanged``; SF ``AnnounceEliminated`` → CF
``NodeEliminated`` locally and an ``elim`` datagram to every peer), exactly as the simulator does.
After every RMS step the per-node application priorities are compared with the last ones fed to
SF, and a change is fed as ``AppPrioritiesChanged`` (survival priority in a split brain).

*The host's disk.* Everything that survives a restart is a file under ``home.host_root(HOST)``,
read at start and written atomically (:func:`clovm.fsutil.atomic_write`):
``cluster.config`` (CLUSTER_TIMEOUT), ``rcsd.cfg`` + ``SA_xscfsnmp.cfg`` (SF configuration), and
in the clovmmigrate directory ``timeout.saved`` (the pre-migration timeout record),
``window`` (exists ⇔ the ``-p`` window is open: CF may take a LEFTCLUSTER peer DOWN when its domain
is stopped, RMS holds switchovers), ``sf.disabled`` (exists ⇔ SF was stopped with
``sdtool -e`` / clovmmigrate and must not start with the cluster services) and ``widen.json``
(``clovm migrate --scoped``: ``{"peers": {cf: {"seconds", "until", "hypervisor"}}}`` with
``until`` in absolute emulated seconds; re-applied at start as ``DetectionWidened`` unless the
lease is over — an entry with ``hypervisor`` is kept until narrowed —, removed by ``narrow``). Logs are appended
line by line: ``messages`` in syslog format (tag CF / SMAWsf / RMS by the machine that logged),
``rcsd.log``, ``SA_<agent>.log`` and the RMS ``switchlog`` as plain lines stamped with the
emulated wall clock of the server hosting the node *now* (the placement file ldmd rewrites after
a migration is re-read when its mtime changes), plus the node's clock *step*. The step is 0 at
start; ``clock_align`` arms a one-shot adjustment: the first time the node finds its server
changed (on any look at the placement file: the first heartbeat after a hand-off already
carries the stepped clock), ``step += offset(old server) - offset(new server)``, so its wall clock
goes on from where it was instead of jumping to the new server's.

*CF interconnect.* One UDP socket on ``(address, CF_PORT)``. A datagram is a msgspec JSON object
``{"t": kind, "from": cf, ...fields, "mac": hex}``; ``mac`` is HMAC-SHA256 with the home's cluster
key over the canonical JSON (sorted keys) of every other field. A datagram is dropped unless its
mac verifies, its sender is a peer of this node's cluster, it comes from that peer's address, and
no partition fault separates the two hosts. Kinds: ``hb {inc, clock, sent}`` (heartbeat + wall clock for
the RMS time-sync check + the sender's emulated monotonic time, so a heartbeat that sat in the
socket buffer while the receiving domain was suspended is not used for the clock comparison), ``join {inc}``, ``joinans {accepted, reason}``, ``elim {node}``,
``app {app, node, online}``. Only loopback destinations are ever used.

*Partition fault.* ``run/partition.json`` ``{"groups": [[host...], [host...]]}`` (host = domain or
control-domain name) is re-read when its mtime changes. Two hosts listed in different groups
cannot exchange datagrams (checked when sending and when receiving); a host listed in no group
is not affected.

*Shutdown agents.* A ``RunAgent`` effect becomes an asyncio task bounded by the agent's timeout
converted to real seconds (at least 2 s) that answers ``AgentFinished``. init/test: SSH
``showdomainstatus -p PPAR`` (proves the first SSH connection was made: an unknown host key
is message 7245), then an SNMP status query; the test works iff the XSCF reports the domain
running or stopped. kill: SNMP panic or reset as the agent's name says. The XSCF address is the
entry's LAN#0 or LAN#1 per ``_state.AGENT_LAN``.

*Domain status.* ``QueryDomainStatus`` (only while the migration window is open) asks the XSCF
named for that node in SA_xscfsnmp.cfg (SNMP status on LAN#0, then LAN#1) and reports
``DomainStatusReported(stopped = status is "Host stopped")``; no answer reports nothing (CF asks
again every recheck interval). Unlike the simulator, which also consults the ldmd, the runtime
relies on the XSCF alone, as the product does.

*Admin channels.* The unix socket ``home.node_socket(HOST)`` (0600) serves the local admin
commands and returns data, the CLIs render it. The TLS server on ``(address, NODE_PORT)`` serves
clovmmigrate and accepts only clients whose certificate CN is a control domain of the topology;
its operations have exactly the semantics of the table in :mod:`clovm.core.migration` and of the
guest-node table of ``docs/safe-migration.md`` (``cf_sample``, ``widen``, ``narrow``,
``clock_align``, ``xscf_check``, ``sf_test``, ``sf_entry``; also on the unix socket), as the simulator's
``_node_op``. ``xscf_check {lan0, lan1[, ppar]}`` looks both addresses up in the node's
known_hosts (``[addr]:XSCF_SSH_PORT``, as the SSH agents verify host keys) and asks each LAN's
SNMP agent for the node's domain status with a short timeout (any answer counts: the LAN is up).
``cf_sample``'s ``clock_diff`` is the estimate the RMS time-sync check uses (largest of the last
few heartbeat offsets), as an absolute value; ``rms_busy`` is an application switchover pending
(also one held by the ``-p`` window) or RMS settling with an application not yet placed. Control domains also answer ``guest_nodes``, ``resolve`` and
``cd_info``. SF/RMS operations on a control domain fail with ``NOT_AVAILABLE``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import hashlib
import hmac
import ipaddress
import json
import socket
import sys
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import msgspec
import structlog

from .. import formats, settings
from ..core import fencing as fen
from ..core import membership as mem
from ..core import rms as rmsmod
from ..core._state import AGENT_ACTION, AGENT_LAN, NodeState, SfDaemonState, SpDomainStatus
from ..core.base import Effect, Event, Log
from ..core.sfconfig import SfConfig, XscfEntry
from ..fsutil import WatchedJson, append_line, atomic_write, atomic_write_many, read_text_or
from ..topology import ControlDomain, Guest, Topology
from . import pki, proc, rpc
from .clock import EmuClock
from .driver import MachineDriver
from .home import Home
from .rpc import RpcError

if TYPE_CHECKING:
    from .snmp import XscfSnmpClient

# The XSCF clients (.ssh: asyncssh, .snmp: pysnmp) are imported where they are used, not here:
# only nodes of a guest cluster run SF, and they import both in NodeAgent.__init__ (before
# READY, as before). A control domain's node agent never talks to an XSCF and so saves the
# ~0.2 s of CPU these imports cost (they are most of a node agent's start-up).

log = structlog.get_logger()

SAVED_FILE = "timeout.saved"
WINDOW_FILE = "window"
SF_DISABLED_FILE = "sf.disabled"
WIDEN_FILE = "widen.json"
XSCF_CHECK_SNMP_TIMEOUT = 1.0  # real seconds an xscf_check SNMP query waits per LAN
PARTITION_FILE = "partition.json"
CLOCK_SAMPLES = 5  # heartbeats per peer over which the clock offset is estimated
STALE_HEARTBEAT = 2.0  # emulated seconds: an older heartbeat says nothing about the sender's clock now
STALE_HEARTBEAT_REAL = 0.25  # ... or this many real seconds, whichever is more (high time scales)
DRAIN_MAX = 1024  # datagrams read in one turn of the event loop (see _CfProtocol)
PROBE_FRESH = 0.25  # real seconds a finished XSCF probe still answers for another agent run (see _probe)
PROBE_CONCURRENCY = 4  # XSCF probes one node runs at once
PROBE_SNMP_TIMEOUT = 2.0  # real seconds a probe's SNMP query waits (less only if its agent run has less left)
FIRST_HOLD = 5.0  # real seconds other probes wait at most while clovmmigrate -u tests the changed entry (_probe_once)
JOIN_TIMEOUT = 3.0  # emulated seconds CF waits for join answers (before the real-time floor)
BUSY_SA = ("Init-ing", "Testing")

# ---------------------------------------------------------------------------------------------
# CF datagrams


_enc = msgspec.json.Encoder(order="sorted")


def datagram_mac(key: bytes, fields: dict[str, Any]) -> str:
    """Hex HMAC-SHA256 over the canonical JSON (sorted keys, no spaces) of ``fields``."""
    return hmac.new(key, _enc.encode(fields), hashlib.sha256).hexdigest()


def encode_datagram(key: bytes, fields: dict[str, Any]) -> bytes:
    """``fields`` plus their ``mac``, as JSON bytes."""
    return _enc.encode({**fields, "mac": datagram_mac(key, fields)})


def decode_datagram(key: bytes, data: bytes) -> dict[str, Any] | None:
    """The fields of an authentic datagram (``mac`` removed), or None for anything else."""
    try:
        msg = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    mac = msg.pop("mac", None)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, datagram_mac(key, msg)):
        return None
    if not isinstance(msg.get("t"), str) or not isinstance(msg.get("from"), str):
        return None
    return msg


def _left(deadline: float) -> float:
    """Real seconds an SNMP query may wait before ``deadline`` (loop time). Quantised to 0.5 s, at
    least 0.5: XscfSnmpClient keeps one transport target per (address, port, timeout)."""
    return max(0.5, round((deadline - asyncio.get_running_loop().time()) * 2) / 2)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _stamp(wall: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm`` (UTC) for the plain-text logs."""
    ms = int((wall % 1) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(wall))) + f".{ms:03d}"


@functools.lru_cache(maxsize=1024)
def _require_loopback(address: str) -> str:
    """``address`` itself, if it is in 127.0.0.0/8 (remembered: every heartbeat and agent run asks)."""
    if not ipaddress.ip_address(address).is_loopback:
        raise RuntimeError(f"{address} is outside 127.0.0.0/8: the emulated datacenter uses loopback only")
    return address


# ---------------------------------------------------------------------------------------------
# CF's socket


class _CfProtocol(asyncio.DatagramProtocol):
    """Hands every datagram to the agent, and drains the socket while at it.

    asyncio reads one datagram per turn of the event loop. When the loop is slow (a node
    starting its shutdown agents on a machine where 40 daemons boot at once), 15 peers' heartbeats
    arrive faster than one per turn: they would queue in the socket buffer, and CF would count a
    peer whose heartbeat is waiting there as silent. So every turn that reads one reads them all.
    """

    def __init__(self, agent: NodeAgent, sock: socket.socket):
        self.agent, self.sock = agent, sock

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.agent.on_datagram(data, addr)
        for _ in range(DRAIN_MAX):
            try:
                data, addr = self.sock.recvfrom(65536)
            except OSError:  # drained (BlockingIOError), or an ICMP error: best effort, as below
                return
            self.agent.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a peer that is not running: heartbeats are best effort


# ---------------------------------------------------------------------------------------------
# The daemon


class NodeAgent:
    """One host's cluster software. ``await start()``, then ``await close()``."""

    def __init__(self, home: Home, host: str):
        self.home = home
        self.host = host
        self.topo: Topology = home.topology()
        me = next((h for h in self.topo.hosts() if h.name == host), None)
        if me is None:
            raise ValueError(f"nodeagent: {host} is neither a guest domain nor a control domain of the topology")
        self.me: ControlDomain | Guest = me
        self.cf = me.cf_name
        self.address = _require_loopback(me.address)
        self.is_guest = isinstance(me, Guest)
        cluster = next((c for c in self.topo.clusters if self.cf in c.nodes), None)
        self.nodes: tuple[str, ...] = tuple(cluster.nodes) if cluster else (self.cf,)
        self.peers: tuple[str, ...] = tuple(n for n in self.nodes if n != self.cf)
        self.guest_cluster = cluster is not None and cluster.kind == "guest"
        self.cf_host = {h.cf_name: h.name for h in self.topo.hosts()}
        self.cf_addr = {h.cf_name: h.address for h in self.topo.hosts()}
        self.control_domains = frozenset(c.name for c in self.topo.control_domains)
        self.clock = EmuClock(home)
        self.secrets = home.secrets()
        self.key = str(self.secrets["cluster_key"]).encode()
        self.migrate_dir = home.migrate_dir(host)
        self._placement = WatchedJson(home.placement_file(host))
        self._partition = WatchedJson(home.run_dir / PARTITION_FILE)
        self.services = "none"  # none | started | refused
        self.refusal = ""
        self.incarnation = int(time.time() * 1000) % 2**31
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._snmp: XscfSnmpClient | None = None
        self._ssh: dict[str, Any] = {}  # XSCF user -> XscfSshPool, made at the first agent run
        self._probes: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._probe_done: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._probe_slots = asyncio.Semaphore(PROBE_CONCURRENCY)
        # CF nodes whose agents' probes skip the PROBE_CONCURRENCY queue: the one whose entry
        # set_sf_entry changed last (clovmmigrate -u then waits for it: sf_wait {node})
        self._probe_first: set[str] = set()
        self._first_pending = 0  # agent runs of _probe_first nodes not finished yet
        self._first_held = False  # set_sf_entry .. clear_record: clovmmigrate -u runs (see _probe_once)
        self._hold_timer: asyncio.TimerHandle | None = None  # ends the hold after FIRST_HOLD real seconds
        self._first_idle = asyncio.Event()  # set: the other nodes' probes may run
        self._sf_changed = asyncio.Event()  # set whenever the SF machine was fed (sf_wait)
        self._first_idle.set()
        self._probe_gen = 0  # bumped by every SF start/reconfig/test request: probes of older ones are not reused
        self._priorities: dict[str, int] | None = None
        self._online: set[str] = set()
        self._clock_step = 0.0  # seconds added to the hosting server's wall clock (clock_align)
        self._align_armed = False
        self._last_server: str | None = None

        self.timeout = self._read_timeout()
        scale = self.clock.scale
        self.cf_m = mem.Membership(self.cf, self.peers, timeout=float(self.timeout), incarnation=self.incarnation,
                                   heartbeat_interval=settings.HEARTBEAT_INTERVAL,
                                   join_timeout=max(JOIN_TIMEOUT, settings.CF_MIN_JOIN_REAL * scale),
                                   min_timeout=settings.CF_MIN_DETECTION_REAL * scale)
        self.cf_d = MachineDriver(self.cf_m, self.clock, self._cf_effects)
        self.sf_m: fen.ShutdownFacility | None = None
        self.sf_d: MachineDriver | None = None
        self.rms_m: rmsmod.Rms | None = None
        self.rms_d: MachineDriver | None = None
        self._clock_diffs: dict[str, collections.deque[float]] = {}  # per peer: recent (peer - local) clocks
        # A heartbeat older than this (emulated seconds, by the shared emulated monotonic clock the
        # datagram carries as "sent") is not used for the RMS clock comparison.
        self._stale_after = max(STALE_HEARTBEAT, STALE_HEARTBEAT_REAL * self.clock.scale)
        if self.guest_cluster:
            self.sf_m = fen.ShutdownFacility(self.cf, self._read_sf_config(), test_interval=settings.SF_TEST_INTERVAL)
            self.sf_d = MachineDriver(self.sf_m, self.clock, self._sf_effects)
            apps = [rmsmod.AppSpec(a.name, tuple(a.nodes), a.shutdown_priority)
                    for a in self.topo.apps if self.cf in a.nodes]
            self.rms_m = rmsmod.Rms(self.cf, self.nodes, apps, sync_threshold=settings.RMS_SYNC_THRESHOLD,
                                    sync_period=settings.RMS_SYNC_PERIOD)
            self.rms_d = MachineDriver(self.rms_m, self.clock, self._rms_effects)
            from . import snmp, ssh  # noqa: F401 - SF's agents use both; see the note on the imports

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every socket, then boot CF (join the cluster)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.address, settings.CF_PORT))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: _CfProtocol(self, sock), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._udp = transport
        self._servers.append(await rpc.serve_unix(self.home.node_socket(self.host), self._local_handler))
        ctx = pki.server_context(self.home, self.host)
        self._servers.append(await rpc.serve_tls(self.address, settings.NODE_PORT, ctx, self._tls_handler))
        if self._flag(WINDOW_FILE):
            self._feed(self.cf_d, mem.MigrationWindowChanged(True))
            self._feed(self.rms_d, rmsmod.SwitchoverHoldChanged(True))
        self._reapply_widen()
        if self.sf_m is not None:
            # Build the SNMP engine (MIB loading, USM keys) now, not in the middle of the first
            # agent runs: that burst of CPU would stall the heartbeats just after the join, and at
            # high time scales a short stall is a whole CLUSTER_TIMEOUT.
            self._snmp_client().warm()
        log.info("booting", cf=self.cf, incarnation=self.incarnation, timeout=self.timeout, server=self.server())
        self._feed(self.cf_d, mem.NodeBooted())

    async def close(self) -> None:
        """Stop timers and tasks, close the sockets, remove the unix socket."""
        self._closed = True
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        for d in (self.cf_d, self.sf_d, self.rms_d):
            if d is not None:
                d.stop()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        for s in self._servers:
            s.close()
        for s in self._servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2.0)
            except TimeoutError:
                pass
        try:
            self.home.node_socket(self.host).unlink()
        except FileNotFoundError:
            pass
        if self._snmp is not None:
            self._snmp.close()
        for pool in self._ssh.values():
            pool.close()

    def _sf_request(self, event: Event) -> None:
        """An operator's (or clovmmigrate's) start, reconfig or test of SF: its agent runs probe
        the XSCFs afresh, never answered by a probe of before the request (see _probe)."""
        self._probe_gen += 1
        self._probe_done.clear()
        self._feed(self.sf_d, event)

    def _feed(self, driver: MachineDriver | None, event: Event) -> None:
        if driver is not None and not self._closed:
            driver.feed(event)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", error=_one_line(task.exception()))  # type: ignore[arg-type]

    # ---- files -------------------------------------------------------------------------------
    def _flag(self, name: str) -> bool:
        return (self.migrate_dir / name).exists()

    def _set_flag(self, name: str, on: bool) -> None:
        path = self.migrate_dir / name
        if on:
            if not path.exists():
                atomic_write(path, "")
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _read_timeout(self) -> int:
        return formats.get_cluster_timeout(read_text_or(self.home.cluster_config(self.host), ""))

    def _file_sf_config(self) -> SfConfig:
        """rcsd.cfg + SA_xscfsnmp.cfg as written on disk."""
        hosts = formats.parse_rcsd(read_text_or(self.home.rcsd_cfg(self.host), ""))
        xscf = formats.parse_sa_xscfsnmp(read_text_or(self.home.sa_xscfsnmp_cfg(self.host), ""))
        return SfConfig(hosts, xscf)

    def _machine_config(self, cfg: SfConfig) -> SfConfig:
        """The config the SF machine runs with: rcsd.cfg timeouts are emulated seconds, but SNMP
        and SSH take real time, so at a high --time-scale each agent gets at least
        settings.SF_MIN_AGENT_REAL of real time."""
        floor = math.ceil(settings.SF_MIN_AGENT_REAL * self.clock.scale)
        hosts = tuple(replace(h, agents=tuple(replace(a, timeout=max(a.timeout, floor)) for a in h.agents))
                      for h in cfg.hosts)
        return SfConfig(hosts, cfg.xscf)

    def _read_sf_config(self) -> SfConfig:
        return self._machine_config(self._file_sf_config())

    def _record(self) -> int | None:
        text = read_text_or(self.migrate_dir / SAVED_FILE, None)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def _read_widen(self) -> dict[str, dict[str, Any]]:
        try:
            value = json.loads(read_text_or(self.migrate_dir / WIDEN_FILE, "{}"))
            peers = value.get("peers", {}) if isinstance(value, dict) else {}
            return {str(p): {"seconds": float(w["seconds"]), "until": float(w["until"]),
                             "hypervisor": bool(w["hypervisor"])}
                    for p, w in peers.items() if p in self.peers}
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("widen.json unreadable: ignored", path=str(self.migrate_dir / WIDEN_FILE))
            return {}

    def _write_widen(self, peers: dict[str, dict[str, Any]]) -> None:
        path = self.migrate_dir / WIDEN_FILE
        if peers:
            atomic_write(path, json.dumps({"peers": peers}, indent=1, sort_keys=True) + "\n")
        else:
            path.unlink(missing_ok=True)

    def _reapply_widen(self) -> None:
        now = self.clock.now()
        saved = self._read_widen()
        kept = {p: w for p, w in saved.items() if w["until"] > now or w["hypervisor"]}
        for p, w in sorted(kept.items()):
            self._feed(self.cf_d, mem.DetectionWidened((p,), w["seconds"], w["until"], w["hypervisor"]))
        if kept != saved or (not kept and (self.migrate_dir / WIDEN_FILE).exists()):
            self._write_widen(kept)

    def server(self) -> str:
        """The server hosting this node now (a guest's placement file follows migrations).

        Noticing a change of server applies an armed ``clock_align`` step."""
        if isinstance(self.me, ControlDomain):
            return self.me.server
        p = self._placement.get()
        if isinstance(p, dict) and isinstance(p.get("server"), str):
            srv = p["server"]
        else:
            srv = self.topo.control_domain(self.me.control_domain).server
        old, self._last_server = self._last_server, srv
        if old is not None and old != srv and self._align_armed:
            self._align_armed = False
            delta = self.clock.offset(old) - self.clock.offset(srv)
            self._clock_step += delta
            log.info("clock aligned", old_server=old, new_server=srv, step=delta, total=self._clock_step)
        return srv

    def _wall(self) -> float:
        srv = self.server()
        return self.clock.wall(srv) + self._clock_step

    def _log(self, tag: str, e: Log) -> None:
        wall = self._wall()
        if e.dest == "messages":
            text = e.text.removeprefix(f"{tag}: ")  # the syslog tag already says "CF:"
            append_line(self.home.messages(self.host), formats.syslog_line(wall, self.host, tag, text, e.msgid))
            return
        if e.dest == "rcsd":
            path = self.home.rcsd_log(self.host)
        elif e.dest == "switchlog":
            path = self.home.switchlog(self.host)
        elif e.dest.startswith("SA_"):
            path = self.home.sa_log(self.host, e.dest)
        else:
            log.warning("log to unknown destination", dest=e.dest, text=e.text)
            return
        append_line(path, f"{_stamp(wall)} {e.text}")

    # ---- effects -----------------------------------------------------------------------------
    def _cf_effects(self, effects: Sequence[Effect]) -> None:
        for e in effects:
            if self._closed:
                return
            match e:
                case Log():
                    self._log("CF", e)
                case mem.BroadcastHeartbeat(incarnation=inc):
                    for p in self.peers:
                        self._send(p, {"t": "hb", "inc": inc, "clock": self._wall(), "sent": self.clock.now()})
                case mem.SendJoinRequest(to=to, incarnation=inc):
                    self._send(to, {"t": "join", "inc": inc})
                case mem.SendJoinAnswer(to=to, accepted=accepted, reason=reason):
                    self._send(to, {"t": "joinans", "accepted": accepted, "reason": reason})
                case mem.AnnounceNodeState(node=node, state=state):
                    log.info("cf state", node=node, state=str(state))
                    self._feed(self.sf_d, fen.NodeStateChanged(node, state))
                    self._feed(self.rms_d, rmsmod.PeerNodeStateChanged(node, state))
                case mem.QueryDomainStatus(node=node):
                    self._spawn(self._query_domain(node))
                case mem.StartClusterServices():
                    self.services = "started"
                    if not self._flag(SF_DISABLED_FILE):
                        self._sf_request(fen.SfStartRequested())
                    self._feed(self.rms_d, rmsmod.SwitchoverHoldChanged(self._flag(WINDOW_FILE)))
                    self._feed(self.rms_d, rmsmod.RmsStarted())
                case mem.RefuseClusterServices(reason=reason):
                    self.services, self.refusal = "refused", reason
                    for what, tag in (("SF", "SMAWsf"), ("CRM", "CF"), ("RMS", "RMS")):
                        self._log(tag, Log("messages", f"{what} failed to start: {reason}"))
                case _:
                    log.warning("unexpected CF effect", effect=repr(e))

    def _sf_effects(self, effects: Sequence[Effect]) -> None:
        self._sf_changed.set()  # sf_wait looks at the rows again
        for e in effects:
            if self._closed:
                return
            match e:
                case Log():
                    self._log("SMAWsf", e)
                case fen.RunAgent():
                    first = e.action != "kill" and e.entry.cf_name in self._probe_first
                    if first:  # counted now, before any agent task runs (see _probe_once)
                        self._first_pending += 1
                        self._first_idle.clear()
                    self._spawn(self._run_agent(e, first))
                case fen.AnnounceEliminated(node=node):
                    log.info("eliminated", node=node)
                    self._feed(self.cf_d, mem.NodeEliminated(node))
                    for p in self.peers:
                        self._send(p, {"t": "elim", "node": node})
                case _:
                    log.warning("unexpected SF effect", effect=repr(e))

    def _rms_effects(self, effects: Sequence[Effect]) -> None:
        for e in effects:
            if self._closed:
                return
            match e:
                case Log():
                    self._log("RMS", e)
                case rmsmod.BringAppOnline(app=app):
                    self._online.add(app)
                    log.info("app online", app=app)
                case rmsmod.TakeAppOffline(app=app):
                    self._online.discard(app)
                    log.info("app offline", app=app)
                case rmsmod.AnnounceAppState(app=app, node=node, online=online):
                    for p in self.peers:
                        self._send(p, {"t": "app", "app": app, "node": node, "online": online})
                case _:
                    log.warning("unexpected RMS effect", effect=repr(e))
        if self.rms_m is not None and not self._closed:
            prio = self.rms_m.priorities()
            if prio != self._priorities:
                self._priorities = prio
                self._feed(self.sf_d, fen.AppPrioritiesChanged(tuple(sorted(prio.items()))))

    # ---- CF transport ------------------------------------------------------------------------
    def _separated(self, peer_cf: str) -> bool:
        """True if a partition fault puts this host and the peer's host in different groups."""
        p = self._partition.get()
        if not isinstance(p, dict):
            return False
        mine = theirs = None
        for i, group in enumerate(p.get("groups") or []):
            if not isinstance(group, list):
                continue
            if self.host in group:
                mine = i
            if self.cf_host.get(peer_cf) in group:
                theirs = i
        return mine is not None and theirs is not None and mine != theirs

    def _send(self, peer_cf: str, fields: dict[str, Any]) -> None:
        if self._udp is None or self._closed or peer_cf not in self.peers or self._separated(peer_cf):
            return
        addr = _require_loopback(self.cf_addr[peer_cf])
        self._udp.sendto(encode_datagram(self.key, {**fields, "from": self.cf}), (addr, settings.CF_PORT))

    def on_datagram(self, data: bytes, addr: tuple[Any, int]) -> None:
        if self._closed:
            return
        msg = decode_datagram(self.key, data)
        if msg is None:
            log.warning("datagram dropped: not authentic", source=str(addr[0]))
            return
        sender = msg["from"]
        if sender not in self.peers or self.cf_addr[sender] != addr[0] or self._separated(sender):
            return
        try:
            self._dispatch(sender, msg)
        except (KeyError, TypeError, ValueError) as e:
            log.warning("datagram dropped: malformed", sender=sender, error=_one_line(e))

    def _dispatch(self, sender: str, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == "hb":
            self._feed(self.cf_d, mem.HeartbeatReceived(sender, int(msg["inc"])))
            if self.clock.now() - float(msg.get("sent", self.clock.now())) > self._stale_after:
                # It waited in the socket buffer while this domain was suspended (SIGSTOP): a real
                # suspended domain would never have received it, and its clock is long out of date.
                return
            local = self._wall()
            # Transit and scheduling delay is real time, multiplied by --time-scale, and only ever
            # makes the peer's clock look behind: the best estimate of the offset over the last
            # few heartbeats is the largest one (NTP's least-delay sample).
            recent = self._clock_diffs.setdefault(sender, collections.deque(maxlen=CLOCK_SAMPLES))
            recent.append(float(msg["clock"]) - local)
            self._feed(self.rms_d, rmsmod.PeerClockObserved(sender, local + max(recent), local))
        elif kind == "join":
            self._feed(self.cf_d, mem.JoinRequestReceived(sender, int(msg["inc"])))
        elif kind == "joinans":
            self._feed(self.cf_d, mem.JoinAnswerReceived(sender, bool(msg["accepted"]), str(msg["reason"])))
        elif kind == "elim":
            self._feed(self.cf_d, mem.NodeEliminated(str(msg["node"])))
        elif kind == "app":
            self._feed(self.rms_d, rmsmod.AppStateReported(str(msg["app"]), str(msg["node"]), bool(msg["online"])))

    # ---- XSCF: shutdown agents and domain status -----------------------------------------------
    def _snmp_client(self) -> XscfSnmpClient:
        if self._snmp is None:
            from .snmp import XscfSnmpClient  # see the note on the imports

            s = self.secrets
            user = s.get("xscf_user") or s.get("snmp_user") or settings.XSCF_USER  # the XSCFs' USM user
            self._snmp = XscfSnmpClient(str(user), str(s["snmp_auth"]), str(s["snmp_priv"]))
        return self._snmp

    def _ssh_pool(self, user: str) -> Any:
        pool = self._ssh.get(user)
        if pool is None:
            from .ssh import XscfSshPool  # see the note on the imports

            pool = self._ssh[user] = XscfSshPool(user, self._xscf_password(), self.home.known_hosts(self.host))
        return pool

    def _xscf_password(self) -> str | None:
        v = self.secrets.get("xscf_password", self.secrets.get("password"))
        return None if v is None else str(v)

    async def _run_agent(self, e: fen.RunAgent, first: bool = False) -> None:
        try:
            await self._run_agent_now(e)
        finally:
            if first:
                self._first_pending -= 1
                self._release_others()

    def _hold_others(self) -> None:
        """Hold the other nodes' probes while clovmmigrate -u runs: until ``clear_record``, an
        ``sf_wait`` that finds a row not working (-u then stops with rc 4), or FIRST_HOLD real
        seconds (a -u that is killed leaves no hold behind)."""
        self._first_held = True
        self._first_idle.clear()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._hold_timer = asyncio.get_running_loop().call_later(FIRST_HOLD, self._end_hold)

    def _end_hold(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._first_held = False
        self._release_others()

    def _release_others(self) -> None:
        """Let the other nodes' probes run once the changed entry's runs are over and clovmmigrate
        -u has said it is done (``clear_record``), see _probe_once."""
        if self._first_pending == 0 and not self._first_held:
            self._first_idle.set()

    async def _run_agent_now(self, e: fen.RunAgent) -> None:
        from . import ssh  # see the note on the imports

        real = e.timeout / self.clock.scale  # (at least SF_MIN_AGENT_REAL: see _machine_config)
        try:
            ok, detail = await self._agent(e, real)
        except TimeoutError:
            ok, detail = False, f"timeout after {e.timeout:g} s"
        except ssh.XscfHostKeyUnknown:
            addr = e.entry.lan0 if AGENT_LAN[e.agent] == 0 else e.entry.lan1
            ok, detail = False, (f"7245 The first SSH connection to XSCF {addr} has not been made: connect once with "
                                 f"ssh {e.entry.user}@{addr} from {self.host} and accept the host key, then run "
                                 f"sdtool -r")
        except Exception as ex:  # every failure of an agent is a one-line result, never a crash
            ok, detail = False, _one_line(ex)
        self._feed(self.sf_d, fen.AgentFinished(e.req_id, ok, detail))

    async def _agent(self, e: fen.RunAgent, real: float) -> tuple[bool, str]:
        """One agent run; raises TimeoutError when it takes longer than ``real`` seconds (a kill
        from now, an init/test from when its probe gets its turn: see _probe_once)."""
        entry = e.entry
        addr = _require_loopback(entry.lan0 if AGENT_LAN[e.agent] == 0 else entry.lan1)
        if e.action == "kill":
            client = self._snmp_client()
            act = client.panic if AGENT_ACTION[e.agent] == "panic" else client.reset
            async with asyncio.timeout(real):
                r = await act(addr, settings.SNMP_PORT, entry.ppar_id, entry.domain,
                              timeout=_left(asyncio.get_running_loop().time() + real))
            return r.ok, r.text
        return await self._probe(entry, addr, real)

    async def _probe(self, entry: XscfEntry, addr: str, real: float) -> tuple[bool, str]:
        """An init or test of the agents of ``entry`` on one LAN: can this node reach the XSCF at
        ``addr`` over SSH (host key known) and does its SNMP agent report the domain?

        The agents ``…g0p``/``…g0r`` (and ``g1p``/``g1r``) of a node test the same thing, and an
        init is followed at once by a test: a probe with the same (address, PPAR, domain, user)
        that is running is joined, and one that finished less than PROBE_FRESH real seconds ago
        answers again, result or exception alike. Never across an SF start, reconfig or test
        request (``sdtool -b``/``-r``, ``sf_test``, clovmmigrate's ``sf_start``: _sf_request): the
        runs such a request starts always probe afresh. At most PROBE_CONCURRENCY probes run at
        once, the node set_sf_entry changed first (16 nodes restarting SF together must not
        starve each other's heartbeats, nor what clovmmigrate -u waits for).
        """
        key = (self._probe_gen, addr, entry.ppar_id, entry.domain, entry.user)
        loop = asyncio.get_running_loop()
        done = self._probe_done.get(key)
        if done is not None and loop.time() - done[0] <= PROBE_FRESH:
            outcome = done[1]
        else:
            task = self._probes.get(key)
            if task is None:
                task = self._probes[key] = asyncio.ensure_future(self._probe_once(entry, addr, real))
                task.add_done_callback(lambda t, key=key: self._probe_finished(key, t))
            outcome = await asyncio.shield(task)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _probe_finished(self, key: tuple[Any, ...], task: asyncio.Future[Any]) -> None:
        if self._probes.get(key) is task:
            del self._probes[key]
        if not task.cancelled():
            self._probe_done[key] = (asyncio.get_running_loop().time(), task.result())

    async def _probe_once(self, entry: XscfEntry, addr: str, real: float) -> tuple[bool, str] | Exception:
        """The probe itself, given ``real`` seconds from when it gets its turn.

        The agent runs of the entry set_sf_entry changed go first. The other nodes' probes wait
        until those are over *and* clovmmigrate -u has said it is done (``clear_record``: by
        then every node has tested the changed entry), or FIRST_HOLD real seconds at most, then
        take PROBE_CONCURRENCY turns. So what -u waits for on every node does not share 2 CPUs
        with the 4·N² probes of N restarted shutdown facilities. The wait is the emulator's
        scheduling, not the agent's: its timeout counts from its turn (a real rcsd starts every
        agent as a process of its own at once).
        """
        try:
            if entry.cf_name in self._probe_first:
                return await self._probe_xscf(entry, addr, real)
            try:
                await asyncio.wait_for(self._first_idle.wait(), FIRST_HOLD)
            except TimeoutError:
                pass
            async with self._probe_slots:
                return await self._probe_xscf(entry, addr, real)
        except Exception as ex:  # handed to every agent run that joined this probe
            return ex

    async def _probe_xscf(self, entry: XscfEntry, addr: str, real: float) -> tuple[bool, str]:
        """SSH ``showdomainstatus`` and the SNMP status query, within ``real`` seconds from now."""
        deadline = asyncio.get_running_loop().time() + real
        async with asyncio.timeout_at(deadline):
            return await self._query_xscf(entry, addr, deadline)

    async def _query_xscf(self, entry: XscfEntry, addr: str, deadline: float) -> tuple[bool, str]:
        client = self._snmp_client()
        rc, out, err = await self._ssh_pool(entry.user).exec(
            addr, settings.XSCF_SSH_PORT, ["showdomainstatus", "-p", str(entry.ppar_id)], timeout=_left(deadline))
        if rc != 0:
            return False, f"showdomainstatus on XSCF {addr} failed (rc {rc}): {' '.join((err or out).split())}"
        # One fixed SNMP timeout (the agent run's own deadline bounds the whole probe): the client
        # keeps one transport target per (address, timeout), so a probe never builds a new one.
        r = await client.status(addr, settings.SNMP_PORT, entry.ppar_id, entry.domain,
                                timeout=min(PROBE_SNMP_TIMEOUT, _left(deadline)))
        if not r.ok:
            return False, " ".join(r.text.split()) or f"XSCF {addr} does not know {entry.domain}"
        if r.status in (str(SpDomainStatus.RUNNING), str(SpDomainStatus.STOPPED)):
            return True, r.status
        if r.status == str(SpDomainStatus.UNKNOWN):
            return False, f"XSCF reports {entry.domain} as Unknown: save the configuration with ldm add-spconfig"
        return False, f"XSCF reports {entry.domain} as {r.status}"

    def _entry_for(self, node: str) -> XscfEntry | None:
        try:
            config = self.sf_m.config if self.sf_m is not None else self._read_sf_config()
            return config.entry(node)
        except (KeyError, ValueError):
            return None

    async def _query_domain(self, node: str) -> None:
        entry = self._entry_for(node)
        if entry is None:
            log.warning("domain status: no SA_xscfsnmp.cfg entry", node=node)
            return
        for addr in (entry.lan0, entry.lan1):
            try:
                r = await self._snmp_client().status(_require_loopback(addr), settings.SNMP_PORT, entry.ppar_id,
                                                     entry.domain, timeout=2.0)
            except Exception as ex:
                log.info("domain status: XSCF did not answer", node=node, xscf=addr, error=_one_line(ex))
                continue
            if r.ok:
                self._feed(self.cf_d, mem.DomainStatusReported(node, r.status == str(SpDomainStatus.STOPPED)))
                return

    # ---- views ----------------------------------------------------------------------------------
    def _sf_state(self) -> str:
        if self.services == "refused":
            return "refused"
        if self.sf_m is not None and self.sf_m.daemon is SfDaemonState.RUNNING:
            return "running"
        return "stopped"

    def _rows(self) -> list[list[str]]:
        if self.sf_m is None:
            return []
        return [[r.host, r.agent, str(r.sa_state), str(r.shut_state), str(r.test_state), str(r.init_state)]
                for r in self.sf_m.rows()]

    def _need_sf(self) -> tuple[fen.ShutdownFacility, MachineDriver]:
        if self.sf_m is None or self.sf_d is None:
            raise RpcError("NOT_AVAILABLE", f"{self.host} is not a node of a guest-domain cluster: no SF / RMS")
        return self.sf_m, self.sf_d

    def _need_rms(self) -> rmsmod.Rms:
        if self.rms_m is None:
            raise RpcError("NOT_AVAILABLE", f"{self.host} is not a node of a guest-domain cluster: no SF / RMS")
        return self.rms_m

    def _need_control(self) -> ControlDomain:
        if not isinstance(self.me, ControlDomain):
            raise RpcError("NOT_AVAILABLE", f"{self.host} is not a control domain")
        return self.me

    # ---- operations -----------------------------------------------------------------------------
    def op_cftool_n(self, args: dict) -> Any:
        view = self.cf_m.view()
        return [[n, i, str(view[n])] for i, n in enumerate(self.nodes, 1)]

    def op_cfset_a(self, args: dict) -> Any:
        return {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": str(self.timeout)}

    def op_cfset_r(self, args: dict) -> Any:
        try:
            seconds = self._read_timeout()
        except formats.FormatError as e:
            raise RpcError("BAD_CONFIG", str(e)) from None
        if seconds != self.timeout:
            self.timeout = seconds
            self._feed(self.cf_d, mem.TimeoutChanged(float(seconds)))
        return seconds

    def op_sdtool(self, args: dict) -> Any:
        sf, sf_d = self._need_sf()
        flag = str(args["flag"]).lstrip("-")
        if flag == "s":
            return {"running": sf.daemon is SfDaemonState.RUNNING, "rows": self._rows()}
        if flag == "b":
            if self.services == "refused":
                raise RpcError("SF_REFUSED", f"SF cannot start on {self.cf}: {self.refusal}")
            self._set_flag(SF_DISABLED_FILE, False)
            if self.services == "started":
                self._sf_request(fen.SfStartRequested())
            return None
        if flag == "e":
            self._set_flag(SF_DISABLED_FILE, True)
            self._feed(sf_d, fen.SfStopRequested())
            return None
        if flag == "r":
            try:
                config = self._read_sf_config()
            except formats.FormatError as e:
                raise RpcError("BAD_CONFIG", str(e)) from None
            self._sf_request(fen.SfReconfigRequested(config))
            return None
        raise RpcError("BAD_REQUEST", f"sdtool: unknown flag -{flag} (s, b, e or r)")

    def op_clsnmpsetup_l(self, args: dict) -> Any:
        self._need_sf()
        try:
            return [asdict(e) for e in self._read_sf_config().xscf]
        except formats.FormatError as e:
            raise RpcError("BAD_CONFIG", str(e)) from None

    def op_hvdisp(self, args: dict) -> Any:
        rms = self._need_rms()
        rows = [[app, "userApplication", f"{self.cf}RMS", str(rms.app_state(app))] for app in rms.placement()]
        states = {NodeState.UP: "Online", NodeState.LEFTCLUSTER: "Faulted"}
        rows += [[f"{n}RMS", "SysNode", "", states.get(rms.node_state(n), "Offline")] for n in self.nodes]
        return rows

    def op_status(self, args: dict) -> Any:
        return {
            "host": self.host,
            "cf": self.cf,
            "local_state": str(self.cf_m.local_state),
            "view": {n: str(s) for n, s in self.cf_m.view().items()},
            "timeout": self.timeout,
            "sf": self._sf_state(),
            "services": self.services,
            "apps": dict(self.rms_m.placement()) if self.rms_m is not None else {},
            "server": self.server(),
            "window": self._flag(WINDOW_FILE),
        }

    # -- clovmmigrate (TLS) --
    def op_node_status(self, args: dict) -> Any:
        running = self.sf_m is not None and self.sf_m.daemon is SfDaemonState.RUNNING
        return {"timeout": self.timeout, "sf": "running" if running else "stopped", "record": self._record(),
                "window": self._flag(WINDOW_FILE)}

    def op_record_timeout(self, args: dict) -> Any:
        rec = self._record()
        if rec is None:
            rec = self.timeout
            atomic_write(self.migrate_dir / SAVED_FILE, f"{rec}\n")
        return rec

    def op_set_timeout(self, args: dict) -> Any:
        seconds = args["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or int(seconds) != seconds \
                or seconds <= 0:
            raise RpcError("BAD_REQUEST", f"set_timeout: seconds must be a positive integer, not {seconds!r}")
        path = self.home.cluster_config(self.host)
        atomic_write(path, formats.set_cluster_timeout(read_text_or(path, ""), int(seconds)))
        self.timeout = int(seconds)
        self._feed(self.cf_d, mem.TimeoutChanged(float(self.timeout)))
        return None

    def op_window(self, args: dict) -> Any:
        is_open = bool(args["open"])
        self._set_flag(WINDOW_FILE, is_open)
        self._feed(self.cf_d, mem.MigrationWindowChanged(is_open))
        self._feed(self.rms_d, rmsmod.SwitchoverHoldChanged(is_open))
        return None

    def op_sf_stop(self, args: dict) -> Any:
        _, sf_d = self._need_sf()
        self._set_flag(SF_DISABLED_FILE, True)
        self._feed(sf_d, fen.SfStopRequested())
        return None

    def op_sf_start(self, args: dict) -> Any:
        _, sf_d = self._need_sf()
        self._set_flag(SF_DISABLED_FILE, False)
        if self.services == "started":
            self._sf_request(fen.SfStartRequested())
        return None

    def op_set_sf_entry(self, args: dict) -> Any:
        _, sf_d = self._need_sf()
        try:
            entry = XscfEntry(**args["entry"])
            weight = int(args["weight"])
            config = self._file_sf_config().with_entry(entry, weight=weight)
            sa_text = formats.render_sa_xscfsnmp(config.xscf)
            rcsd_text = formats.render_rcsd(config.hosts)
        except formats.FormatError as e:
            raise RpcError("BAD_CONFIG", str(e)) from None
        except (TypeError, ValueError) as e:
            raise RpcError("BAD_REQUEST", f"set_sf_entry: {_one_line(e)}") from None
        atomic_write_many({self.home.sa_xscfsnmp_cfg(self.host): sa_text, self.home.rcsd_cfg(self.host): rcsd_text})
        self._probe_first = {entry.cf_name}  # the entry that changed is probed first (see _probe_once)
        self._hold_others()
        self._sf_request(fen.SfReconfigRequested(self._machine_config(config)))
        return None

    async def op_sf_wait(self, args: dict) -> Any:
        sf, _ = self._need_sf()
        deadline = self.clock.now() + float(args["seconds"])
        node = args.get("node")
        while True:
            # Looked at again whenever the SF machine is fed (an agent finished, a timer fired):
            # the answer goes out on the turn the last row settles, not at the next poll.
            self._sf_changed.clear()
            rows = [r for r in self._rows() if node is None or r[0] == node]
            busy = any(r[2] in BUSY_SA or r[4] == "Unknown" for r in rows)
            if (sf.daemon is SfDaemonState.RUNNING and not busy) or self.clock.now() >= deadline:
                if any(r[4] != "TestWorked" or r[5] != "InitWorked" for r in rows):
                    self._end_hold()  # -u fails here and never sends clear_record (_probe_once)
                return rows
            try:
                await asyncio.wait_for(self._sf_changed.wait(), max(0.0, deadline - self.clock.now()) / self.clock.scale)
            except TimeoutError:
                pass

    def op_clear_record(self, args: dict) -> Any:
        self._end_hold()  # -u is done: the other nodes' probes may run (_probe_once)
        try:
            (self.migrate_dir / SAVED_FILE).unlink()
        except FileNotFoundError:
            pass
        return None

    # -- clovm migrate (TLS; also local) --
    def op_cf_sample(self, args: dict) -> Any:
        now = self.clock.now()
        view = self.cf_m.view()
        peers: dict[str, Any] = {}
        diffs: dict[str, float | None] = {}
        for p in self.peers:
            last = self.cf_m.last_heard(p)
            peers[p] = {"state": str(view[p]), "gap": None if last is None else now - last,
                        "timeout": self.cf_m.effective_timeout(p, now), "widened": self.cf_m.is_widened(p, now)}
            recent = self._clock_diffs.get(p)
            diffs[p] = abs(max(recent)) if recent else None
        running = self.sf_m is not None and self.sf_m.daemon is SfDaemonState.RUNNING
        return {"t": now, "state": str(self.cf_m.local_state), "sf": "running" if running else "stopped",
                "peers": peers, "clock_diff": diffs, "rms_busy": self.rms_m is not None and self.rms_m.busy()}

    def op_widen(self, args: dict) -> Any:
        peers, seconds, lease = args.get("peers"), args.get("seconds"), args.get("lease")
        hypervisor = args.get("hypervisor", False)
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise RpcError("BAD_REQUEST", f"widen: peers must be a list of CF node names, not {peers!r}")
        for name, v in (("seconds", seconds), ("lease", lease)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise RpcError("BAD_REQUEST", f"widen: {name} must be a positive number, not {v!r}")
        if not isinstance(hypervisor, bool):
            raise RpcError("BAD_REQUEST", f"widen: hypervisor must be true or false, not {hypervisor!r}")
        until = self.clock.now() + float(lease)
        saved = self._read_widen()
        for p in peers:
            if p in self.peers:
                saved[p] = {"seconds": float(seconds), "until": until, "hypervisor": hypervisor}
        self._write_widen(saved)
        self._feed(self.cf_d, mem.DetectionWidened(tuple(peers), float(seconds), until, hypervisor))
        return None

    def op_narrow(self, args: dict) -> Any:
        peers = args.get("peers") or []
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise RpcError("BAD_REQUEST", f"narrow: peers must be a list of CF node names, not {peers!r}")
        saved = self._read_widen()
        for p in peers or list(saved):
            saved.pop(p, None)
        self._write_widen(saved)
        self._feed(self.cf_d, mem.DetectionNarrowed(tuple(peers)))
        return None

    def op_clock_align(self, args: dict) -> Any:
        self.server()  # the server the node is on now: the step applies when it changes from this one
        self._align_armed = True
        return None

    async def op_xscf_check(self, args: dict) -> Any:
        lans = {k: args.get(k) for k in ("lan0", "lan1")}
        if not all(isinstance(a, str) for a in lans.values()):
            raise RpcError("BAD_REQUEST", f"xscf_check: lan0 and lan1 must be addresses, not {lans!r}")
        ppar = args.get("ppar", 0)
        known = self.home.known_hosts(self.host)
        from . import ssh  # see the note on the imports

        # The entry lookup the SSH agents' client makes before it reports an unknown host key (7245).
        known_host = all(ssh._has_entry(known, a, settings.XSCF_SSH_PORT) for a in lans.values())

        async def answers(addr: str) -> bool:
            try:
                await self._snmp_client().status(_require_loopback(addr), settings.SNMP_PORT, int(ppar), self.host,
                                                 timeout=XSCF_CHECK_SNMP_TIMEOUT)
                return True
            except Exception:  # unreachable, refused, not an address of the emulated datacenter
                return False
        up = await asyncio.gather(*(answers(a) for a in lans.values()))
        return {"known_host": known_host, "snmp": dict(zip(lans, up))}

    def op_sf_test(self, args: dict) -> Any:
        _, sf_d = self._need_sf()
        self._sf_request(fen.SfTestRequested())
        return None

    def op_sf_entry(self, args: dict) -> Any:
        self._need_sf()
        try:
            entry = self._file_sf_config().entry(str(args["node"]))
        except KeyError:
            return None
        except formats.FormatError as e:
            raise RpcError("BAD_CONFIG", str(e)) from None
        return {k: v for k, v in asdict(entry).items() if k != "device"}

    # -- control domains --
    def op_guest_nodes(self, args: dict) -> Any:
        self._need_control()
        domain = str(args["domain"])
        g = next((x for x in self.topo.guests if x.name == domain), None)
        cl = next((c for c in self.topo.clusters if g is not None and g.cf_name in c.nodes), None)
        if g is None or cl is None or cl.kind != "guest":
            raise RpcError("NOT_A_CLUSTER_DOMAIN", f"{domain} is not a node of a guest-domain cluster")
        return {"node": g.cf_name, "nodes": list(cl.nodes),
                "domains": {cf: self.topo.host_of_cf(cf).name for cf in cl.nodes}}

    def op_resolve(self, args: dict) -> Any:
        self._need_control()
        try:
            return formats.resolve(read_text_or(self.home.hosts_file(self.host), ""), str(args["name"]))
        except formats.FormatError as e:
            raise RpcError("BAD_CONFIG", str(e)) from None

    def op_cd_info(self, args: dict) -> Any:
        cd = self._need_control()
        srv = self.topo.server(cd.server)
        return {"host": cd.name, "server": srv.name, "ppar": cd.ppar, "lan0": srv.lan0, "lan1": srv.lan1,
                "sf_weight": cd.sf_weight, "user": self.topo.xscf.user, "connection": self.topo.xscf.connection}

    MIGRATE_OPS = ("cf_sample", "widen", "narrow", "clock_align", "xscf_check", "sf_test", "sf_entry")
    LOCAL_OPS = ("cftool_n", "cfset_a", "cfset_r", "sdtool", "clsnmpsetup_l", "hvdisp", "status",
                 "guest_nodes", "resolve", "cd_info", *MIGRATE_OPS)
    TLS_OPS = ("node_status", "record_timeout", "set_timeout", "window", "sf_stop", "sf_start", "set_sf_entry",
               "sf_wait", "clear_record", "guest_nodes", "resolve", "cd_info", *MIGRATE_OPS)

    def _op(self, op: str, allowed: tuple[str, ...]) -> Callable[[dict], Any]:
        if op not in allowed:
            raise RpcError("UNKNOWN_OP", f"nodeagent {self.host}: unknown operation {op!r}")
        fn: Callable[[dict], Any] = getattr(self, f"op_{op}")
        return fn

    def _local_handler(self, op: str, args: dict, peer: str) -> Any:
        return self._op(op, self.LOCAL_OPS)(args)

    def _tls_handler(self, op: str, args: dict, peer: str) -> Any:
        if peer not in self.control_domains:
            raise RpcError("FORBIDDEN", f"{peer or 'a client without a name'} is not a control domain: "
                                        f"only clovmmigrate on a control domain may do {op}")
        return self._op(op, self.TLS_OPS)(args)


async def run(home: Home, name: str, ready: proc.Ready, stop: asyncio.Event) -> None:
    agent = NodeAgent(home, name)
    try:
        await agent.start()
        ready()
        await stop.wait()
    finally:
        await agent.close()


def main(argv: list[str] | None = None) -> int:
    return proc.daemon_main("nodeagent", run, argv)


if __name__ == "__main__":
    sys.exit(main())
