"""The cluster-node daemon: one host's :class:`clovm.core.node.Node` on real sockets and files.

``python -m clovm.runtime.nodeagent --home H --name HOST`` runs the cluster software of one host
(a guest domain or a control domain of the topology). It is the runtime twin of the simulator's
node handling and, like it, only translates: everything the node decides — routing between CF,
SF and RMS, what an operation means, how an agent result reads, the clock estimate RMS gets, the
product's messages — is the core :class:`~clovm.core.node.Node`. Here:

* the node is driven on the shared emulated clock (:class:`~clovm.runtime.clock.EmuClock`) by one
  :class:`~clovm.runtime.driver.MachineDriver`, so its deadlines run in emulated seconds;
* its peers' datagrams come and go through :mod:`clovm.runtime.cf_transport`;
* its disk is its product files (:mod:`clovm.runtime.node_files`), read at start; every
  ``Store`` effect is written atomically before the node acts on it; logs are appended;
* its shutdown agents, domain status queries and ``xscf_check`` go to the XSCFs over SSH and
  SNMPv3 (:mod:`clovm.runtime.xscf_agents`), and what happened comes back as events;
* before each event the node hears of a change of its server (the placement file ldmd rewrites
  after a migration) or of the servers' clock offsets (``clovm fault clock``), so the first
  heartbeat after a hand-off already carries the new (or, with ``clock_align``, stepped) clock;
* its admin channels serve operations: the unix socket ``home.node_socket(HOST)`` (0600, the local
  admin commands) and the TLS server on ``(address, NODE_PORT)`` (clovmmigrate, for clients whose
  certificate CN names a control domain — which the node itself checks). An operation that
  re-reads a file (``cfset -r``, ``sdtool -r``, ...) gets what the file says now.

Time floors. At a high ``--time-scale`` a loaded machine cannot keep sub-second real-time
promises; the node gets floors (``NodeTuning``): CF's detection is never below
``CF_MIN_DETECTION_REAL`` real seconds, its join window ``CF_MIN_JOIN_REAL``, an agent run
``SF_MIN_AGENT_REAL``; a heartbeat older than ``STALE_HEARTBEAT`` emulated or 0.25 real seconds
says nothing about its sender's clock. The simulator runs the same node without floors.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

import structlog

from .. import settings
from ..core import node as nodemod
from ..core import rms as rmsmod
from ..core.base import Effect, Event
from ..core.membership import AnnounceNodeState
from ..fsutil import WatchedJson
from . import pki, proc, rpc
from .cf_transport import CfTransport, decode_datagram, encode_datagram
from .clock import EmuClock
from .driver import MachineDriver
from .home import Home
from .node_files import NodeFiles
from .rpc import RpcError
from .xscf_agents import XscfAgents, one_line

__all__ = ["NodeAgent", "decode_datagram", "encode_datagram", "main", "run"]

log = structlog.get_logger()

STALE_HEARTBEAT_REAL = 0.25  # real seconds: see "Time floors"


class NodeAgent:
    """One host's cluster software. ``await start()``, then ``await close()``."""

    def __init__(self, home: Home, host: str):
        self.home, self.host = home, host
        self.topo = home.topology()
        if not any(h.name == host for h in self.topo.hosts()):
            raise ValueError(f"nodeagent: {host} is neither a guest domain nor a control domain of the topology")
        self.spec = self.topo.node_spec(host)
        self.is_guest = host in {g.name for g in self.topo.guests}
        self.clock = EmuClock(home)
        self.secrets = home.secrets()
        self.files = NodeFiles(home, host, self.spec.peers)
        self._placement = WatchedJson(home.placement_file(host))
        addresses = {h.cf_name: (h.name, h.address) for h in self.topo.hosts()}
        me = addresses[self.spec.cf]
        self.transport = CfTransport(
            host=host,
            cf=self.spec.cf,
            address=me[1],
            key=str(self.secrets["cluster_key"]).encode(),
            peers={p: addresses[p] for p in self.spec.peers},
            partition=WatchedJson(home.partition_file),
            on_message=self._message,
        )
        self.xscf = XscfAgents(host, self.secrets, home.known_hosts(host))
        scale = self.clock.scale
        tuning = nodemod.NodeTuning(
            join_timeout=max(settings.JOIN_TIMEOUT, settings.CF_MIN_JOIN_REAL * scale),
            min_detection=settings.CF_MIN_DETECTION_REAL * scale,
            min_agent_timeout=settings.SF_MIN_AGENT_REAL * scale,
            stale_heartbeat=max(settings.STALE_HEARTBEAT, STALE_HEARTBEAT_REAL * scale),
            cf_stall=max(settings.CF_STALL, settings.CF_MIN_STALL_REAL * scale),
            epoch=self.clock.epoch,
        )
        self._server = self._current_server()
        self._offsets = self.clock.offsets()
        self.node = nodemod.Node(
            self.spec,
            self.files.load(),
            incarnation=int(time.time() * 1000) % 2**31,
            server=self._server,
            offsets=self._offsets,
            tuning=tuning,
        )
        self.driver = MachineDriver(self.node, self.clock, self._effects)
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self._op_ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[Any]] = {}

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every socket, then start the node (join the cluster)."""
        await self.transport.open()
        self._servers.append(await rpc.serve_unix(self.home.node_socket(self.host), self._local_handler))
        ctx = pki.server_context(self.home, self.host)
        self._servers.append(await rpc.serve_tls(self.transport.address, settings.NODE_PORT, ctx, self._tls_handler))
        if self.spec.guest_cluster:
            # Build the SNMP engine (MIB loading, USM keys) now, not in the middle of the first
            # agent runs: that burst of CPU would stall the heartbeats just after the join, and at
            # high time scales a short stall is a whole CLUSTER_TIMEOUT.
            self.xscf.snmp().warm()
        log.info(
            "booting",
            cf=self.spec.cf,
            incarnation=self.node.incarnation,
            timeout=self.node.disk.timeout,
            server=self._server,
        )
        self._feed(nodemod.NodeStarted())

    async def close(self) -> None:
        """Stop the timer and tasks, close the sockets, remove the unix socket."""
        self._closed = True
        self.driver.stop()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.transport.close()
        for s in self._servers:
            s.close()
        for s in self._servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2.0)
            except TimeoutError:
                pass
        self.home.node_socket(self.host).unlink(missing_ok=True)
        self.xscf.close()

    # ---- events in ---------------------------------------------------------------------------
    def _current_server(self) -> str:
        """The server hosting this node now (a guest's placement file follows its migrations)."""
        if not self.is_guest:
            return self.topo.control_domain(self.host).server
        p = self._placement.get()
        if isinstance(p, dict) and isinstance(p.get("server"), str):
            return str(p["server"])
        return self.topo.control_domain(self.topo.guest(self.host).control_domain).server

    def _feed(self, event: Event) -> None:
        """Hand ``event`` to the node, after telling it of a new server or new clock offsets."""
        if self._closed:
            return
        offsets = self.clock.offsets()  # (first: a change of server steps by the offsets of now)
        if offsets is not self._offsets:
            self._offsets = offsets
            self.driver.feed(nodemod.ClockOffsetsObserved(tuple(sorted(offsets.items()))))
        server = self._current_server()
        if server != self._server:
            self._server = server
            self.driver.feed(nodemod.PlacementObserved(server))
        self.driver.feed(event)

    def _message(self, sender: str, message: nodemod.PeerMessage) -> None:
        self._feed(nodemod.MessageReceived(sender, message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", error=one_line(task.exception()))  # type: ignore[arg-type]

    # ---- effects out -------------------------------------------------------------------------
    def _effects(self, effects: Sequence[Effect]) -> None:
        for e in effects:
            if self._closed:
                return
            cls = type(e)
            if cls is nodemod.Broadcast:
                e = cast(nodemod.Broadcast, e)
                for p in self.spec.peers:
                    self.transport.send(p, e.message)
            elif cls is nodemod.WriteLog:
                e = cast(nodemod.WriteLog, e)
                self.files.append_log(self.node.wall(self.clock.now()), e.tag, e.dest, e.text, e.msgid)
            elif cls is nodemod.RunShutdownAgent:
                self._spawn(self._run_agent(cast(nodemod.RunShutdownAgent, e)))
            elif cls is nodemod.Send:
                e = cast(nodemod.Send, e)
                self.transport.send(e.to, e.message)
            elif cls is nodemod.Store:
                e = cast(nodemod.Store, e)
                self.files.store(e.key, e.value)
            elif cls is nodemod.Answer:
                e = cast(nodemod.Answer, e)
                fut = self._answers.pop(e.op_id, None)
                if fut is not None and not fut.done():
                    if e.ok:
                        fut.set_result(e.value)
                    else:
                        fut.set_exception(RpcError(e.code, e.error))
            elif cls is nodemod.AskDomainStatus:
                e = cast(nodemod.AskDomainStatus, e)
                self._spawn(self._domain_status(e.node, e.entry))
            elif cls is nodemod.CheckXscf:
                self._spawn(self._check_xscf(cast(nodemod.CheckXscf, e)))
            elif cls is nodemod.Trace:
                e = cast(nodemod.Trace, e)
                log.info(e.text, what=e.what)
            elif cls is AnnounceNodeState:
                e = cast(AnnounceNodeState, e)
                log.info("cf state", node=e.node, state=str(e.state))
            elif cls is rmsmod.BringAppOnline:
                log.info("app online", app=cast(rmsmod.BringAppOnline, e).app)
            elif cls is rmsmod.TakeAppOffline:
                log.info("app offline", app=cast(rmsmod.TakeAppOffline, e).app)
            else:
                log.warning("unexpected node effect", effect=repr(e))

    async def _run_agent(self, e: nodemod.RunShutdownAgent) -> None:
        result = await self.xscf.run(e.run, e.generation, e.run.timeout / self.clock.scale)
        if result is not None:
            self._feed(result)

    async def _domain_status(self, node: str, entry: Any) -> None:
        status = await self.xscf.domain_status(node, entry)
        if status is not None:
            self._feed(nodemod.DomainStatusAnswered(node, status))

    async def _check_xscf(self, e: nodemod.CheckXscf) -> None:
        known, snmp = await self.xscf.check(e.lan0, e.lan1, e.ppar, e.domain)
        self._feed(nodemod.XscfChecked(e.op_id, known, snmp))

    # ---- admin channels ----------------------------------------------------------------------
    def _operation(self, op: str, args: dict[str, Any], caller: str | None) -> Any:
        """Hand an operation to the node: its answer now, or an awaitable of a later one."""
        op_id = next(self._op_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[op_id] = fut
        self._feed(nodemod.OperationRequested(op_id, op, self.files.with_file_reads(op, args), caller))
        if fut.done():
            return fut.result()
        return self._later(op_id, fut)

    async def _later(self, op_id: int, fut: asyncio.Future[Any]) -> Any:
        try:
            return await fut
        finally:
            self._answers.pop(op_id, None)

    def _local_handler(self, op: str, args: dict[str, Any], peer: str) -> Any:
        return self._operation(op, args, None)

    def _tls_handler(self, op: str, args: dict[str, Any], peer: str) -> Any:
        return self._operation(op, args, peer)


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
