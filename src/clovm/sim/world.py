"""The simulated driver: a whole datacenter of core machines, wired through a fake network.

One :class:`SimNode` per cluster node (guest domains and control domains) holds the node's
"disk" (:class:`NodeFiles`: what survives a crash) and, while its process lives, its
:class:`~clovm.core.node.Node` — the same sans-IO composition of CF, SF and RMS that the node
agent daemon runs. One ``Ldmd`` per control domain, one ``Xscf`` per server. The world only
translates: it feeds events to machines, arms their ``next_deadline()`` timers, and turns effects
into simulated datagrams, XSCF requests, process kills, suspends, file changes and trace lines.
It decides nothing a node decides. Every random choice comes from ``self.rng`` (seeded), every
instant from the scheduler, so a seed fixes the trace byte for byte.

Commands. :meth:`World.clovmmigrate` runs ``clovmmigrate -p/-u``; :meth:`World.run_machine` runs
any machine with the same driving interface (``handle(now, RunStarted()|CallReturned(...))`` →
``Print`` / ``Persist`` / ``Call`` / ``Finished``), e.g. the one-shot ``clovm migrate``. Every
``Call`` is answered by :meth:`World._call`: control-domain calls here, node operations by the
node itself (:meth:`World.operation`), reached over the simulated network; a dead or suspended node
gives no answer (the call times out). ``Persist`` stores the journal in
``World.journals[(host, domain)]`` (the one-shot journal under ``DOMAIN + ".migrate"``).

Crashes. :meth:`World.crash_ldmd` / :meth:`World.restart_ldmd` (an ldmd stops and is rebuilt
from what it persists) and :meth:`World.crash_control_domain` (a whole control domain goes down,
its guests keep running): see ``sim/ldmd_side.py``.

Invariants. ``World.check`` (:class:`~clovm.sim.invariants.Invariants`) is told of every change
that an invariant is about (a domain starting or stopping to run somewhere, an application going
online, an XSCF kill, a journal, a finished command) and appends to ``World.violations``.

Clocks. A node's wall clock is the core node's (``EPOCH + now + offset(server hosting it) +
its step``); the world tells a node its server when it boots and at a hand-off, and every node
the servers' offsets when ``clovm fault clock`` (:meth:`World.set_clock_offset`) changes one.

Modules. This module holds the world itself: construction, clocks, the node processes, the
interconnect and the effects of nodes, scenario processes and views. Mixed into :class:`World`
are :class:`~clovm.sim.commands.CommandCalls` (``sim/commands.py``: the calls of command
machines), :class:`~clovm.sim.ldmd_side.LdmdSide` (``sim/ldmd_side.py``: ``ldm`` commands, the
ldmds, their crashes and those of control domains) and :class:`~clovm.sim.xscf_side.XscfSide`
(``sim/xscf_side.py``: shutdown agents, domain status queries and what the XSCFs do); the hosts'
state and the trace are in ``sim/hosts.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import fields
from functools import partial
from typing import Any, cast

from .. import formats
from ..core import ldm as ldmmod
from ..core import membership as mem
from ..core import rms as rmsmod
from ..core import sp as spmod
from ..core.base import Effect, Event, Ticked
from ..core.defaults import EPOCH, INITIAL_SPCONFIG
from ..core.node import (
    Answer,
    AskDomainStatus,
    Broadcast,
    CheckXscf,
    ClockOffsetsObserved,
    Heartbeat,
    MessageReceived,
    Node,
    NodeDisk,
    NodeStarted,
    OperationRequested,
    PlacementObserved,
    RunShutdownAgent,
    Send,
    Store,
    Trace,
    WriteLog,
)
from ..topology import Guest, Topology
from .commands import Command, CommandCalls
from .hosts import NodeFiles, Pending, SimNode, TraceLog, WaitFor
from .invariants import Invariants
from .ldmd_side import LdmdSide
from .network import SimNetwork
from .scheduler import Scheduler, Timer
from .xscf_side import XscfSide

HELD_MAX = 1024  # messages a suspended node's socket buffers keep (later ones are dropped)
TICK = Ticked()  # the one wake-up event (frozen, no fields): not rebuilt for every tick


class World(CommandCalls, LdmdSide, XscfSide):
    def __init__(
        self,
        topo: Topology,
        seed: int = 0,
        *,
        loss: float = 0.0,
        echo: Callable[[str], None] | None = None,
        powered_off: frozenset[str] = frozenset(),
        tap: Callable[[str, str, Any], None] | None = None,
    ):
        """``powered_off``: hosts whose cluster software does not start with the datacenter;
        ``tap(sender, receiver, message)`` sees every interconnect message a node sends."""
        self.topo = topo
        self.powered_off = powered_off
        self.tap = tap
        self.seed = seed
        self.rng = random.Random(seed)
        self.sched = Scheduler()
        self.net = SimNetwork(self.sched, self.rng, loss=loss)
        self.trace = TraceLog(self.sched, echo)
        self.offsets = {s.name: s.clock_offset for s in topo.servers}
        self._server_of = {c.name: c.server for c in topo.control_domains}
        self.nodes: dict[str, SimNode] = {}
        self.ldm: dict[str, ldmmod.Ldmd] = {}
        self.ldm_timers: dict[str, Timer] = {}
        self.xscf: dict[str, spmod.Xscf] = {}
        self.addr_server: dict[str, tuple[str, int]] = {}
        self.journals: dict[tuple[str, str], dict[str, Any]] = {}
        self.online: dict[str, set[str]] = {a.name: set() for a in topo.apps}
        self.violations: list[str] = []
        self.kills: list[tuple[float, str, str, str]] = []  # (t, by node, target node, domain killed)
        self.suspends: list[tuple[str, float, float]] = []  # (domain, SIGSTOP at, SIGCONT at)
        self._suspended_at: dict[str, float] = {}
        self.silent_since: dict[str, float] = {}  # cf -> when it stopped sending heartbeats
        self._ids = 0
        self._ldm_waiting: dict[int, Callable[[Any], None]] = {}
        self._xscf_waiting: dict[int, Callable[[Any], None]] = {}
        self._progress: dict[tuple[str, str], ldmmod.MigrationProgress] = {}  # (source host, domain)
        self._background: dict[tuple[str, str], Pending] = {}  # migrate_start: (host, domain)
        self._op_replies: dict[int, tuple[str, Callable[..., None]]] = {}  # op_id -> (node, reply)
        self._ldm_host: dict[int, str] = {}  # req_id of a pending ldm command -> its control domain
        self.ldm_down: set[str] = set()  # control domains whose ldmd is not running
        self.cd_down: set[str] = set()  # control domains that are down (crashed, not yet restarted)
        self.commands: list[Command] = []  # command processes running (clovmmigrate, clovm migrate)
        self.last_journals: dict[tuple[str, str], dict[str, Any]] = {}  # finished clovm migrate journals
        self.check = Invariants(self)
        self._build()

    # ---- construction ------------------------------------------------------------------------------
    def _build(self) -> None:
        t = self.topo
        for s in t.servers:
            self.xscf[s.name] = spmod.Xscf(s.name, s.lan0, s.lan1, s.ppars)
            self.addr_server[s.lan0] = (s.name, 0)
            self.addr_server[s.lan1] = (s.name, 1)
        for c in t.control_domains:
            d = ldmmod.Ldmd(c.name, c.ppar, c.server, memory_mb=c.memory_mb, bandwidth_mb_s=t.migration.bandwidth_mb_s)
            self.ldm[c.name] = d
            self.ldm_timers[c.name] = Timer(self.sched, partial(self._ldm_feed, c.name, TICK))
            for g in t.guests:
                if g.control_domain == c.name:
                    d.add_domain(g.name, g.memory_mb, g.vcpu, g.dirty_rate_mb_s)
        for cl in t.clusters:
            for cf in cl.nodes:
                h = t.host_of_cf(cf)
                hosted_by = cast(Guest, h).control_domain if cl.kind == "guest" else h.name
                disk = t.initial_disk(h.name)
                files = NodeFiles(
                    **{f.name: getattr(disk, f.name) for f in fields(NodeDisk)}, known_xscf={s.name for s in t.servers}
                )
                self.nodes[cf] = SimNode(cf, h.name, cl.kind, t.node_spec(h.name), files, hosted_by)
        for n in self.nodes.values():
            n.peers = [self.nodes[p] for p in n.cluster if p != n.cf]
        for c in t.control_domains:  # the operator saved the initial configuration
            self.ldm_command(c.name, "add-spconfig", INITIAL_SPCONFIG)
        for cf in sorted(self.nodes):  # power on, slightly staggered
            n = self.nodes[cf]
            if n.host in self.powered_off:
                continue

            def power_on(n: SimNode = n) -> None:
                self.boot(n)

            self.sched.after(self.rng.uniform(0.0, 0.5), power_on)

    def _new_id(self) -> int:
        self._ids += 1
        return self._ids

    # ---- clocks --------------------------------------------------------------------------------------
    def server_of_host(self, host: str) -> str:
        return self._server_of[host]

    def wallclock(self, node: SimNode) -> float:
        """A node's wall clock (its server's, plus its clock step while it runs)."""
        if node.node is not None:
            return node.node.wall(self.sched.now)
        return EPOCH + self.sched.now + self.offsets[self.server_of_host(node.hosted_by)]

    def set_clock_offset(self, server: str, seconds: float) -> None:
        """``clovm fault clock``: server's clock is off by ``seconds`` from now on."""
        self.offsets[server] = seconds
        event = ClockOffsetsObserved(tuple(sorted(self.offsets.items())))
        for n in self.nodes.values():
            self.feed(n, event)

    def _place(self, g: SimNode, host: str) -> None:
        """``g`` now runs on control domain ``host`` (the node hears of its new server)."""
        g.hosted_by = host
        self.feed(g, PlacementObserved(self.server_of_host(host)))

    # ---- node processes ----------------------------------------------------------------------------
    def boot(self, n: SimNode) -> None:
        if n.alive:
            return
        n.alive, n.suspended, n.incarnation, n.tick_pending = True, False, n.incarnation + 1, False
        n.held.clear()
        self.silent_since.pop(n.cf, None)
        n.node = Node(
            n.spec, n.files, incarnation=n.incarnation, server=self.server_of_host(n.hosted_by), offsets=self.offsets
        )
        n.timer = Timer(self.sched, partial(self._tick, n, n.incarnation))
        self.trace(n.cf, "boot", f"{n.host} started (incarnation {n.incarnation}) on {n.hosted_by}")
        self.feed(n, NodeStarted())

    def kill(self, n: SimNode, why: str) -> None:
        if not n.alive:
            return
        n.alive = False
        self.silent_since.setdefault(n.cf, self.sched.now)
        if n.timer is not None:
            n.timer.cancel()
        n.node, n.timer = None, None
        for on in self.online.values():
            on.discard(n.cf)
        self._op_replies = {k: v for k, v in self._op_replies.items() if v[0] != n.cf}  # never answered
        n.held.clear()
        self.trace(n.cf, "down", f"{n.host} stopped: {why}")
        if n.kind == "guest":
            self._ldm_feed(n.hosted_by, ldmmod.DomainProcessExited(n.host))

    def pause(self, domain: str, what: str = "fault", text: str = "") -> None:
        """Every process of the guest domain is frozen (SIGSTOP): ``clovm fault pause``, and the
        final suspend of a live migration."""
        g = self._guest(domain)
        if g is not None and g.alive and not g.suspended:
            g.suspended = True
            self._suspended_at[domain] = self.sched.now
            self.silent_since.setdefault(g.cf, self.sched.now)
            self.trace(g.cf, what, text or f"{domain} paused (SIGSTOP)")

    def resume(self, domain: str, what: str = "fault", text: str = "") -> None:
        """The end of :meth:`pause` (SIGCONT): what fell due meanwhile runs now."""
        g = self._guest(domain)
        if g is not None and g.alive and g.suspended:
            g.suspended = False
            self.silent_since.pop(g.cf, None)
            self.suspends.append((domain, self._suspended_at.pop(domain, self.sched.now), self.sched.now))
            self.trace(g.cf, what, text or f"{domain} resumed (SIGCONT)")
            # What arrived meanwhile is read first (as the runtime's event loop handles ready sockets
            # before due timers): a node that was frozen for less than the timeout hears its peers
            # before it checks their silence.
            held, g.held = g.held, []
            for ev in held:
                if not g.alive or g.suspended:
                    break
                self.feed(g, ev)
            if g.tick_pending and g.alive and not g.suspended:
                g.tick_pending = False
                self.feed(g, TICK)

    def _tick(self, n: SimNode, inc: int) -> None:
        if not n.alive or n.incarnation != inc:
            return
        if n.suspended:
            n.tick_pending = True
            return
        self.feed(n, TICK)

    def feed(self, n: SimNode, event: Event) -> None:
        """Hand an event to a node and carry out the effects."""
        node = n.node
        if node is None:
            return
        effects = node.handle(self.sched.now, event)
        due, timer = node.next_deadline(), n.timer
        assert timer is not None  # (set while the node's process lives)
        if due != timer.when:
            timer.arm(due)
        for e in effects:
            self._node_effect(n, e)
            if not n.alive:
                return

    def operation(
        self,
        n: SimNode,
        op: str,
        args: dict[str, Any] | None = None,
        caller: str | None = None,
        reply: Callable[..., None] | None = None,
    ) -> None:
        """Ask node ``n`` for an operation (``caller``: the control domain asking; None: the
        node's own admin channel); ``reply(ok, value, error=...)`` gets the answer, if it comes."""
        op_id = self._new_id()
        self._op_replies[op_id] = (n.cf, reply or (lambda *a, **k: None))
        self.feed(n, OperationRequested(op_id, op, dict(args or {}), caller))

    def ask(self, cf: str, op: str, args: dict[str, Any] | None = None) -> Any:
        """An operation on node ``cf``'s admin channel that answers at once (its value; raises
        RuntimeError with the message of a refusal)."""
        got: list[tuple[bool, Any, str]] = []
        self.operation(self.nodes[cf], op, args, None, lambda ok, value=None, error="": got.append((ok, value, error)))
        if not got:
            raise RuntimeError(f"{cf}: {op} did not answer at once")
        ok, value, error = got[0]
        if not ok:
            raise RuntimeError(error)
        return value

    def deliver(self, src: str, n: SimNode, event: Event, *, reliable: bool = False) -> None:
        def go() -> None:
            if n.alive:
                if n.suspended:
                    self._hold(n, event)
                else:
                    self.feed(n, event)

        self.net.send(src, n.cf, go, reliable=reliable)

    @staticmethod
    def _hold(n: SimNode, event: Event) -> None:
        if len(n.held) < HELD_MAX:
            n.held.append(event)

    def _node_effect(self, n: SimNode, e: Effect) -> None:
        cls = type(e)
        if cls is Broadcast:
            m = cast(Broadcast, e).message
            event = MessageReceived(n.cf, m)
            net, cf = self.net, n.cf
            if self.tap is not None:
                for p in n.peers:
                    self.tap(cf, p.cf, m)
            if type(m) is Heartbeat:  # every UP node, every second: one multicast datagram
                peers = n.peers if net.all_pass(cf, len(n.peers)) else [p for p in n.peers if net.passes(cf, p.cf)]
                # every reachable peer hears it after the same latency (net.deliver_later, inlined)
                self.sched.after(net.latency + net.rng.random() * net.jitter, partial(self._heartbeats, peers, event))
            else:
                for p in n.peers:
                    self.deliver(cf, p, event, reliable=True)
        elif cls is WriteLog:
            e = cast(WriteLog, e)
            self.log(n, e.tag, e.dest, e.text, e.msgid)
        elif cls is RunShutdownAgent:
            self._run_agent(n, cast(RunShutdownAgent, e).run)
        elif cls is Send:
            e = cast(Send, e)
            if self.tap is not None:
                self.tap(n.cf, e.to, e.message)
            self.deliver(n.cf, self.nodes[e.to], MessageReceived(n.cf, e.message))
        elif cls is Answer:
            e = cast(Answer, e)
            _, reply = self._op_replies.pop(e.op_id, (None, None))
            if reply is not None:
                reply(e.ok, e.value, error=e.error)
        elif cls is Store:
            e = cast(Store, e)
            setattr(n.files, e.key, e.value)
            if e.key == "record" and e.value is not None:
                self.check.recorded[n.cf] = e.value
        elif cls is mem.AnnounceNodeState:
            e = cast(mem.AnnounceNodeState, e)
            self.trace(n.cf, "CF", f"{e.node}: {e.state}")
        elif cls is Trace:
            e = cast(Trace, e)
            self.trace(n.cf, e.what, e.text)
        elif cls is AskDomainStatus:
            e = cast(AskDomainStatus, e)
            self._ask_domain_status(n, e.node, e.entry)
        elif cls is CheckXscf:
            self._check_xscf(n, cast(CheckXscf, e))
        elif cls is rmsmod.BringAppOnline:
            e = cast(rmsmod.BringAppOnline, e)
            on = self.online.setdefault(e.app, set())
            on.add(n.cf)
            self.trace(n.cf, "RMS", f"{e.app} Online")
            if len(on) > 1:
                self.check.violation(f"{e.app} online on {sorted(on)}")
        elif cls is rmsmod.TakeAppOffline:
            e = cast(rmsmod.TakeAppOffline, e)
            self.online.setdefault(e.app, set()).discard(n.cf)
            self.trace(n.cf, "RMS", f"{e.app} Offline")
        else:
            raise TypeError(f"sim: unexpected node effect {e!r}")

    def log(self, n: SimNode, tag: str, dest: str, text: str, msgid: str = "") -> None:
        """Keep a log line of host ``n`` as its daemon writes it (stamped with its wall clock)."""
        line = formats.node_log_line(self.wallclock(n), n.host, tag, dest, text, msgid)
        logs = n.files.logs.get(dest)
        if logs is None:
            logs = n.files.logs[dest] = []
        logs.append(line)
        self.trace(n.cf, dest[:6], (f"[{msgid}] " if msgid else "") + text)

    def _heartbeats(self, peers: list[SimNode], event: MessageReceived) -> None:
        """One heartbeat datagram arrives at every peer in ``peers``."""
        for p in peers:
            if p.alive:
                if p.suspended:
                    self._hold(p, event)
                else:
                    self.feed(p, event)

    def _guest(self, domain: str) -> SimNode | None:
        return next((x for x in self.nodes.values() if x.host == domain and x.kind == "guest"), None)

    # ---- scenario processes -------------------------------------------------------------------------
    def spawn(self, gen: Generator[Any, Any, None]) -> None:
        def resume(value: Any = None) -> None:
            try:
                item = gen.send(value)
            except StopIteration:
                return
            if isinstance(item, (int, float)):
                self.sched.after(float(item), resume)
            elif isinstance(item, Pending):
                item.add_callback(lambda v: self.sched.after(0.0, lambda: resume(v)))
            elif isinstance(item, WaitFor):
                deadline = self.sched.now + item.timeout

                def poll() -> None:
                    if item.pred():
                        resume(True)
                    elif self.sched.now >= deadline:
                        resume(False)
                    else:
                        self.sched.after(item.poll, poll)

                poll()
            else:
                raise TypeError(f"scenario yielded {item!r}")

        self.sched.after(0.0, resume)

    def run(self, until: float) -> None:
        self.sched.run_until(until)

    # ---- views for scenarios and invariants --------------------------------------------------------
    def view(self, observer: str) -> dict[str, str]:
        n = self.nodes[observer]
        cf = n.machines.get("cf")
        return {k: str(v) for k, v in cf.view().items()} if cf else {}

    def log_texts(self, cf: str, dest: str) -> list[str]:
        """Node ``cf``'s log ``dest`` without time stamps (see :func:`clovm.formats.log_message`)."""
        return [formats.log_message(dest, ln) for ln in self.nodes[cf].files.logs.get(dest, [])]

    def sf_rows(self, cf: str) -> list[Any]:
        sf = self.nodes[cf].machines.get("sf")
        return sf.rows() if sf else []

    def placement_disagreement(self) -> dict[str, dict[str, str | None]] | None:
        """Where each running guest node believes each application runs, if they do not all
        agree (else None): ``clovm up``'s readiness rule, so that SF weighs a split brain alike
        on every node."""
        views = {
            cf: n.node.rms.placement()
            for cf, n in sorted(self.nodes.items())
            if n.kind == "guest"
            and n.alive
            and not n.suspended
            and n.services == "started"
            and n.node is not None
            and n.node.rms is not None
        }
        first = next(iter(views.values()), None)
        return views if any(v != first for v in views.values()) else None

    def where(self, domain: str) -> list[tuple[str, str]]:
        """Where ``domain`` is: (control domain, ldm state) for every running ldmd that lists it."""
        return [
            (h, str(x.state))
            for h, d in self.ldm.items()
            if h not in self.ldm_down
            for x in d.domains()
            if x.name == domain
        ]
