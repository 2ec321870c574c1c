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

Crashes. :meth:`World.crash_ldmd` / :meth:`World.restart_ldmd`: an ldmd stops (its pending ``ldm``
commands get an error, its peers' connections to it break: :class:`~clovm.core.ldm.PeerUnreachable`)
and is rebuilt from what it persists (:meth:`~clovm.core.ldm.Ldmd.restarted`: the placement of
every domain process, the SP's configurations); meanwhile the hypervisor still tells the XSCF what
runs. :meth:`World.crash_control_domain` takes a whole control domain down (its cluster node, its
ldmd and every command running on it); its guests keep running.

Invariants. ``World.check`` (:class:`~clovm.sim.invariants.Invariants`) is told of every change
that an invariant is about (a domain starting or stopping to run somewhere, an application going
online, an XSCF kill, a journal, a finished command) and appends to ``World.violations``.

Clocks. A node's wall clock is the core node's (``EPOCH + now + offset(server hosting it) +
its step``); the world tells a node its server when it boots and at a hand-off, and every node
the servers' offsets when ``clovm fault clock`` (:meth:`World.set_clock_offset`) changes one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import fields
from functools import partial
from typing import Any, cast

from .. import formats
from ..core import fencing as fen
from ..core import ldm as ldmmod
from ..core import membership as mem
from ..core import rms as rmsmod
from ..core import sp as spmod
from ..core._state import AGENT_ACTION, AGENT_LAN
from ..core.base import Effect, Event, Log, Ticked
from ..core.defaults import EPOCH, INITIAL_SPCONFIG
from ..core.ldm import LDMD_TAG
from ..core.node import (
    Answer,
    AskDomainStatus,
    Broadcast,
    CheckXscf,
    ClockOffsetsObserved,
    DomainStatusAnswered,
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
    XscfAnswered,
    XscfChecked,
    XscfHostKeyUnknown,
)
from ..core.sfconfig import XscfEntry
from ..topology import Guest, Topology
from .commands import Command, CommandCalls
from .hosts import NodeFiles, Pending, SimNode, TraceLog, WaitFor
from .invariants import Invariants
from .network import SimNetwork
from .scheduler import Scheduler, Timer

DOMAIN_STATUS_TIMEOUT = 2.0  # s a domain status query waits for LAN#0 before asking LAN#1
HELD_MAX = 1024  # messages a suspended node's socket buffers keep (later ones are dropped)
TICK = Ticked()  # the one wake-up event (frozen, no fields): not rebuilt for every tick


class World(CommandCalls):
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

    # ---- the XSCF side, as a guest node's shutdown agents see it ----------------------------------
    def _xscf_request(
        self,
        n: SimNode,
        addr: str,
        ev_of: Callable[[int], Event],
        target: str,
        on_reply: Callable[[spmod.SpReply], None],
    ) -> str | None:
        """Send a request to the XSCF answering at ``addr``: its server (None: nothing answers there)."""
        server, _ = self.addr_server.get(addr, (None, None))
        if server is None:
            return None
        rid = self._new_id()
        self._xscf_waiting[rid] = on_reply
        ev = ev_of(rid)
        self.net.send(
            n.cf, f"xscf:{server}", lambda: self._xscf_feed(server, ev, by=n.cf, target=target), reliable=True
        )
        return server

    def _ask_domain_status(self, n: SimNode, node: str, entry: XscfEntry, lan: int = 0) -> None:
        """The domain status of ``node`` from the XSCF of its SA_xscfsnmp.cfg entry: LAN#0, and
        LAN#1 if LAN#0 does not answer within DOMAIN_STATUS_TIMEOUT (no answer at all: nothing)."""
        addr = entry.lan0 if lan == 0 else entry.lan1
        answered = [False]

        def on_reply(r: spmod.SpReply) -> None:
            answered[0] = True
            if r.ok:
                self.deliver(f"xscf:{addr}", n, DomainStatusAnswered(node, str(r.status)), reliable=True)

        def no_answer() -> None:
            if not answered[0] and lan == 0 and n.alive:
                self._ask_domain_status(n, node, entry, 1)

        self._xscf_request(
            n, addr, lambda rid: spmod.DomainStatusRequested(rid, addr, entry.ppar_id, entry.domain), node, on_reply
        )
        self.sched.after(DOMAIN_STATUS_TIMEOUT, no_answer)

    def _check_xscf(self, n: SimNode, e: CheckXscf) -> None:
        servers = [self.addr_server.get(a, (None, 0))[0] for a in (e.lan0, e.lan1)]
        known = all(s is not None and s in n.files.known_xscf for s in servers)
        snmp = tuple(
            (k, s is not None and self.xscf[s].lan_up(a))
            for k, a, s in zip(("lan0", "lan1"), (e.lan0, e.lan1), servers)
        )
        self.feed(n, XscfChecked(e.op_id, known, snmp))

    def _run_agent(self, n: SimNode, run: fen.RunAgent) -> None:
        entry = run.entry
        addr = entry.lan0 if AGENT_LAN[run.agent] == 0 else entry.lan1
        server, _ = self.addr_server.get(addr, (None, None))
        if server is None:
            return  # nothing answers at that address: the agent times out

        def answer(event: Event) -> None:
            self.deliver(f"xscf:{server}", n, event, reliable=True)

        if run.action in ("init", "test") and server not in n.files.known_xscf:  # SSH refuses the host key
            self.net.send(n.cf, f"xscf:{server}", lambda: answer(XscfHostKeyUnknown(run)), reliable=True)
            return
        kind: type[spmod.DomainPanicRequested | spmod.DomainResetRequested | spmod.DomainStatusRequested]
        if run.action == "kill":
            kind = spmod.DomainPanicRequested if AGENT_ACTION[run.agent] == "panic" else spmod.DomainResetRequested
        else:
            kind = spmod.DomainStatusRequested
        self._xscf_request(
            n,
            addr,
            lambda rid: kind(rid, addr, entry.ppar_id, entry.domain),
            run.host,
            lambda r: answer(XscfAnswered(run, r.ok, str(r.status), r.text)),
        )

    def _xscf_feed(self, server: str, ev: Event, by: str = "", target: str = "") -> None:
        for eff in self.xscf[server].handle(self.sched.now, ev):
            if isinstance(eff, spmod.SpReply):
                cb = self._xscf_waiting.pop(eff.req_id, None)
                if cb:
                    cb(eff)
            elif isinstance(eff, (spmod.PanicDomain, spmod.ResetDomain)):
                victim = next((x for x in self.nodes.values() if x.host == eff.domain), None)
                what = "panic" if isinstance(eff, spmod.PanicDomain) else "reset"
                self.trace(f"xscf:{server}", "SP", f"{what} {eff.domain} in PPAR-ID {eff.ppar} (requested by {by})")
                here = victim is not None and self.runs_in(victim, server, eff.ppar)
                self.check.fenced(server, eff.ppar, by, target, eff.domain, victim, here)
                self.kills.append((self.sched.now, by, target, eff.domain))
                if victim is not None and here:  # an XSCF reaches only the domains of its own server
                    self.kill(victim, f"{what} by XSCF {server}")

    def runs_in(self, g: SimNode, server: str, ppar: int) -> bool:
        """Whether guest ``g``'s process runs in PPAR ``ppar`` of ``server`` now."""
        if not g.alive:
            return False
        cd = self.topo.control_domain(g.hosted_by)
        return cd.server == server and cd.ppar == ppar

    def _sync_xscf(self, host: str) -> None:
        """Tell the XSCF what the hypervisor of this control domain's PPAR runs now (as ldmd has it;
        while ldmd is down, the domain processes placed there)."""
        cd = self.topo.control_domain(host)
        if host in self.ldm_down:  # (the domains it held before stay held)
            running = frozenset(
                g.host for g in self.nodes.values() if g.kind == "guest" and g.alive and g.hosted_by == host
            )
            held = self.ldm[host].domain_names() | running
        else:
            d = self.ldm[host]
            running = frozenset(x.name for x in d.domains() if x.name != "primary" and x.state == "active")
            held = d.domain_names()
        self._xscf_feed(cd.server, spmod.DomainsRunningReported(cd.ppar, running, held))

    # ---- ldmd --------------------------------------------------------------------------------------
    def ldm_command(self, host: str, *argv: str) -> Pending:
        """``ldm ARGV...`` on control domain ``host`` (resolves to the ldmd's Reply; at once with an
        error when ldmd is not running there)."""
        p = Pending()
        if host in self.ldm_down:
            p.resolve(ldmmod.Reply(0, 1, "", f"Error: cannot connect to ldmd on {host}: connection refused\n"))
            return p
        rid = self._new_id()
        self._ldm_waiting[rid] = p.resolve
        self._ldm_host[rid] = host
        self._ldm_feed(host, ldmmod.CommandReceived(rid, tuple(argv)))
        return p

    def _ldm_feed(self, host: str, ev: Event) -> None:
        if host in self.ldm_down:  # nobody listens: the event is lost
            self._sync_xscf(host)
            return
        d = self.ldm[host]
        effects = d.handle(self.sched.now, ev)
        self.ldm_timers[host].arm(d.next_deadline())
        for e in effects:
            self._ldm_effect(host, e)
        self._sync_xscf(host)
        if effects and host not in self.ldm_down:
            self.check.running(host, self.ldm[host].running())

    def _peer_deliver(self, src: str, peer: str, msg: ldmmod.PeerMsg) -> None:
        """An ldmd-to-ldmd message arrives at ``peer`` (refused when its ldmd is not running)."""
        if peer in self.ldm_down:
            self.net.send(peer, src, lambda: self._ldm_feed(src, ldmmod.PeerUnreachable(peer)), reliable=True)
            return
        self._ldm_feed(peer, ldmmod.PeerMessageReceived(src, msg))

    def crash_ldmd(self, host: str, why: str = "crashed") -> None:
        """ldmd on ``host`` stops: its pending commands fail, every connection to it breaks."""
        if host in self.ldm_down:
            return
        self.ldm_down.add(host)
        self.ldm_timers[host].cancel()
        self.trace(host, "ldm", f"ldmd on {host} stopped: {why}")
        for rid in [r for r, h in self._ldm_host.items() if h == host]:
            del self._ldm_host[rid]
            cb = self._ldm_waiting.pop(rid, None)
            if cb:
                cb(ldmmod.Reply(rid, 1, "", f"Error: connection to ldmd on {host} lost\n"))
        self._progress = {k: v for k, v in self._progress.items() if k[0] != host}
        # (after whatever it sent before it stopped has arrived)
        for other in sorted(self.ldm):
            if other != host:
                self.sched.after(
                    self.net.latency + self.net.jitter, partial(self._ldm_feed, other, ldmmod.PeerUnreachable(host))
                )

    def restart_ldmd(self, host: str) -> None:
        """ldmd on ``host`` starts again, rebuilt from what persists (core: ``Ldmd.restarted``)."""
        if host not in self.ldm_down or host in self.cd_down:
            return
        old, cd, t = self.ldm[host], self.topo.control_domain(host), self.topo
        found = [
            ldmmod.FoundDomain(
                g.host, t.guest(g.host).memory_mb, t.guest(g.host).vcpu, t.guest(g.host).dirty_rate_mb_s, g.alive
            )
            for _, g in sorted(self.nodes.items())
            if g.kind == "guest" and g.hosted_by == host
        ]
        d, effects = ldmmod.Ldmd.restarted(
            host,
            cd.ppar,
            cd.server,
            found,
            old.sp_store(),
            self.sched.now,
            memory_mb=cd.memory_mb,
            bandwidth_mb_s=t.migration.bandwidth_mb_s,
        )
        self.ldm[host] = d
        self.ldm_down.discard(host)
        self.trace(host, "ldm", f"ldmd on {host} restarted")
        for e in effects:
            self._ldm_effect(host, e)
        self.ldm_timers[host].arm(d.next_deadline())
        self._sync_xscf(host)
        self.check.running(host, d.running())

    def crash_control_domain(self, host: str, why: str = "crashed") -> None:
        """Control domain ``host`` goes down: its cluster node, its ldmd and its commands (its
        guests keep running)."""
        if host in self.cd_down:
            return
        self.cd_down.add(host)
        self.kill(self._cd_node(host), why)
        self.crash_ldmd(host, why)
        self.kill_commands(host, why)

    def restart_control_domain(self, host: str) -> None:
        if host not in self.cd_down:
            return
        self.cd_down.discard(host)
        self.boot(self._cd_node(host))
        self.restart_ldmd(host)

    def _guest(self, domain: str) -> SimNode | None:
        return next((x for x in self.nodes.values() if x.host == domain and x.kind == "guest"), None)

    def _ldm_effect(self, host: str, e: Effect) -> None:
        if isinstance(e, ldmmod.Reply):
            self._ldm_host.pop(e.req_id, None)
            cb = self._ldm_waiting.pop(e.req_id, None)
            if cb:
                cb(e)
        elif isinstance(e, ldmmod.SendToPeer):
            self.net.send(host, e.peer, partial(self._peer_deliver, host, e.peer, e.msg), reliable=True)
        elif isinstance(e, ldmmod.StartDomainProcess):
            g = self._guest(e.name)
            if g:
                self._place(g, host)
                self.boot(g)
        elif isinstance(e, ldmmod.KillDomainProcess):
            g = self._guest(e.name)
            if g:
                self.kill(g, f"stopped by ldmd on {host}")
        elif isinstance(e, ldmmod.SuspendDomainProcess):
            self.pause(e.name, "ldm", f"{e.name} suspended (SIGSTOP) on {host}")
        elif isinstance(e, ldmmod.AdoptDomainProcess):
            g = self._guest(e.name)
            if g:
                self._place(g, host)
                self.trace(g.cf, "ldm", f"{e.name} handed off from {e.from_host} to {host}")
        elif isinstance(e, ldmmod.ResumeDomainProcess):
            self.resume(e.name, "ldm", f"{e.name} resumed (SIGCONT) on {host}")
        elif isinstance(e, ldmmod.ConfigSaved):
            self._xscf_feed(self.server_of_host(host), spmod.SpconfigSaved(e.ppar, frozenset(e.domains) - {"primary"}))
        elif isinstance(e, ldmmod.MigrationProgress):
            self._progress[(host, e.domain)] = e
            self.trace(host, "ldm", f"migration of {e.domain}: {e.phase} {e.percent}%")
        elif isinstance(e, Log):
            if e.dest == "messages":  # ldmd's lines in the control domain's var/adm/messages
                self.log(self._cd_node(host), LDMD_TAG, e.dest, e.text, e.msgid)
            else:
                self.trace(host, "ldm", e.text)

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

    def where(self, domain: str) -> list[tuple[str, str]]:
        """Where ``domain`` is: (control domain, ldm state) for every running ldmd that lists it."""
        return [
            (h, str(x.state))
            for h, d in self.ldm.items()
            if h not in self.ldm_down
            for x in d.domains()
            if x.name == domain
        ]
