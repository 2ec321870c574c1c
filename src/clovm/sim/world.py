"""The simulated datacenter: every core machine of a topology, wired through a fake network.

One :class:`SimNode` per cluster node (guest domains and control domains) holds the node's
"disk" (:class:`NodeFiles`: what survives a crash) and, while its process lives, its machines:
CF membership for every node; SF and RMS on guest-cluster nodes. One ``Ldmd`` per control domain,
one ``Xscf`` per server. The world only routes: it feeds events to machines, arms their
``next_deadline()`` timers, and turns effects into network messages, process kills, suspends and
trace lines. Every random choice comes from ``self.rng`` (seeded), every instant from the
scheduler, so a seed fixes the trace byte for byte.

Commands. :meth:`World.clovmmigrate` runs ``clovmmigrate -p/-u``; :meth:`World.run_machine` runs
any machine with the same driving interface (``handle(now, RunStarted()|CallReturned(...))`` →
``Print`` / ``Persist`` / ``Call`` / ``Finished``), e.g. the one-shot ``clovm migrate``. Every
``Call`` is answered by :meth:`World._call` (control-domain side) or :meth:`World._node_op` (guest
node side) with the semantics of the tables in :mod:`clovm.core.migration` and
``docs/safe-migration.md``; a node op reaches the node over the simulated network and gets no
answer from a dead or suspended node (the call times out). ``Persist`` stores the journal in
``World.journals[(host, domain)]`` (the one-shot journal under ``DOMAIN + ".migrate"``).

Clocks. A node's wall clock is ``EPOCH + now + offset(server hosting it) + its step``. The step is
0 at boot; ``clock_align`` arms a one-shot adjustment applied when the node next finds itself on
another server (hand-off): ``step += offset(old server) - offset(new server)``.
"""

from __future__ import annotations

import collections
import ipaddress
import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Generator, Iterable, Protocol

from ..core import fencing as fen
from ..core import ldm as ldmmod
from ..core import membership as mem
from ..core import migration as mig
from ..core import rms as rmsmod
from ..core import sp as spmod
from ..core._state import AGENT_ACTION, AGENT_LAN, SpDomainStatus
from ..core.base import Effect, Event, Log, Ticked
from ..core.sfconfig import SfConfig, SfHost, XscfEntry
from ..topology import Topology
from .network import SimNetwork
from .scheduler import Scheduler, Timer

EPOCH = 1_764_000_000.0  # emulated wall clock at virtual time 0 (2025-11-24T16:00:00Z)
CALL_TIMEOUT = 30.0
INITIAL_SPCONFIG = "config1"
CLOCK_SAMPLES = 5  # heartbeats per peer over which cf_sample's clock difference is estimated
TICK = Ticked()  # the one wake-up event (frozen, no fields): not rebuilt for every tick


class CommandRun(Protocol):
    """What :meth:`World.run_machine` drives (``core.migration.ClovmmigrateRun`` and its kin)."""

    def handle(self, now: float, event: Event) -> list[Effect]: ...


class Trace:
    def __init__(self, sched: Scheduler, echo: Callable[[str], None] | None = None):
        self.sched, self.lines, self.echo = sched, [], echo

    def __call__(self, who: str, what: str, text: str) -> None:
        line = f"[{self.sched.now:10.3f}] {who:<11} {what:<6} {text}"
        self.lines.append(line)
        if self.echo:
            self.echo(line)


@dataclass
class NodeFiles:
    """A node's persistent state (its etc/ and var/ trees): survives a crash or restart."""

    timeout: int = 10
    record: int | None = None  # pre-migration timeout recorded by clovmmigrate -p
    window: bool = False
    sf_enabled: bool = True
    sf_config: SfConfig = field(default_factory=SfConfig)
    known_xscf: set[str] = field(default_factory=set)  # servers whose XSCF host key is known
    logs: dict[str, list[str]] = field(default_factory=dict)
    # widen.json: peer -> {"seconds", "until" (virtual time), "hypervisor"}
    widen: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SimNode:
    cf: str
    host: str  # domain / host name
    kind: str  # "guest" | "control"
    cluster: tuple[str, ...]
    files: NodeFiles
    hosted_by: str  # control domain hosting it (itself for a control domain)
    alive: bool = False
    suspended: bool = False
    incarnation: int = 0
    services: str = "none"  # none | started | refused
    machines: dict[str, Any] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)
    tick_pending: bool = False
    clock_step: float = 0.0  # added to the wall clock of the server hosting it (clock_align)
    clock_align: bool = False  # step the clock at the next change of server
    peers: list["SimNode"] = field(default_factory=list)  # the other nodes of its cluster (fixed)
    heartbeat: Any = None  # the HeartbeatReceived its peers get (cached by the world)


class Pending:
    """Something a scenario can wait for (an ldm command, a clovmmigrate run)."""

    def __init__(self) -> None:
        self.done, self.value, self._cbs = False, None, []

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done, self.value = True, value
            for cb in self._cbs:
                cb(value)

    def add_callback(self, cb: Callable[[Any], None]) -> None:
        if self.done:
            cb(self.value)
        else:
            self._cbs.append(cb)


@dataclass(frozen=True)
class WaitFor:
    pred: Callable[[], bool]
    timeout: float
    poll: float = 1.0


class World:
    def __init__(self, topo: Topology, seed: int = 0, *, loss: float = 0.0, echo: Callable[[str], None] | None = None):
        self.topo = topo
        self.seed = seed
        self.rng = random.Random(seed)
        self.sched = Scheduler()
        self.net = SimNetwork(self.sched, self.rng, loss=loss)
        self.trace = Trace(self.sched, echo)
        self.offsets = {s.name: s.clock_offset for s in topo.servers}
        self._server_of = {c.name: c.server for c in topo.control_domains}
        self.nodes: dict[str, SimNode] = {}
        self.ldm: dict[str, ldmmod.Ldmd] = {}
        self.ldm_timers: dict[str, Timer] = {}
        self.xscf: dict[str, spmod.Xscf] = {}
        self.addr_server: dict[str, tuple[str, int]] = {}
        self.journals: dict[tuple[str, str], dict] = {}
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
        self._clock_samples: dict[tuple[str, str], collections.deque[float]] = {}  # (observer, peer)
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
                kind = cl.kind
                hosted_by = h.control_domain if kind == "guest" else h.name
                files = NodeFiles(known_xscf={s.name for s in t.servers})
                if kind == "guest":
                    files.sf_config = self._initial_sf_config(cl.nodes)
                self.nodes[cf] = SimNode(cf, h.name, kind, tuple(cl.nodes), files, hosted_by)
        for n in self.nodes.values():
            n.peers = [self.nodes[p] for p in n.cluster if p != n.cf]
        for c in t.control_domains:  # the operator saved the initial configuration
            self.ldm_command(c.name, "add-spconfig", INITIAL_SPCONFIG)
        for cf in sorted(self.nodes):  # power on, slightly staggered
            n = self.nodes[cf]
            self.sched.after(self.rng.uniform(0.0, 0.5), lambda n=n: self.boot(n))

    def _initial_sf_config(self, nodes: Iterable[str]) -> SfConfig:
        t = self.topo
        hosts, entries = [], []
        for cf in nodes:
            g = t.host_of_cf(cf)
            cd = t.control_domain(g.control_domain)
            srv = t.server(cd.server)
            hosts.append(SfHost(cf, weight=cd.sf_weight, adm_ip=g.address))
            entries.append(XscfEntry(cf, cd.ppar, g.name, srv.lan0, srv.lan1, t.xscf.user, t.xscf.connection))
        return SfConfig(tuple(hosts), tuple(entries))

    def _new_id(self) -> int:
        self._ids += 1
        return self._ids

    # ---- clocks --------------------------------------------------------------------------------------
    def server_of_host(self, host: str) -> str:
        return self._server_of[host]

    def wallclock(self, node: SimNode) -> float:
        return EPOCH + self.sched.now + self.offsets[self.server_of_host(node.hosted_by)] + node.clock_step

    def _place(self, g: SimNode, host: str) -> None:
        """``g`` now runs on control domain ``host``; apply an armed clock_align on a server change."""
        old, new = self.server_of_host(g.hosted_by), self.server_of_host(host)
        g.hosted_by = host
        if g.clock_align and g.alive and old != new:
            g.clock_align = False
            delta = self.offsets[old] - self.offsets[new]
            g.clock_step += delta
            self.trace(g.cf, "clock", f"moved from {old} to {new}: clock stepped by {delta:+g} s "
                                      f"(step now {g.clock_step:+g} s)")

    # ---- node processes ----------------------------------------------------------------------------
    def boot(self, n: SimNode) -> None:
        if n.alive:
            return
        n.alive, n.suspended, n.incarnation, n.services = True, False, n.incarnation + 1, "none"
        n.clock_step, n.clock_align = 0.0, False
        self.silent_since.pop(n.cf, None)
        for k in [k for k in self._clock_samples if k[0] == n.cf]:
            del self._clock_samples[k]
        peers = [p for p in n.cluster if p != n.cf]
        n.machines = {"cf": mem.Membership(n.cf, peers, timeout=float(n.files.timeout), incarnation=n.incarnation)}
        if n.kind == "guest":
            n.machines["sf"] = fen.ShutdownFacility(n.cf, n.files.sf_config)
            apps = [rmsmod.AppSpec(a.name, tuple(a.nodes), a.shutdown_priority)
                    for a in self.topo.apps if n.cf in a.nodes]
            n.machines["rms"] = rmsmod.Rms(n.cf, n.cluster, apps)
        n.timers = {k: Timer(self.sched, partial(self._tick, n, k, n.incarnation))
                    for k in n.machines}
        self.trace(n.cf, "boot", f"{n.host} started (incarnation {n.incarnation}) on {n.hosted_by}")
        if n.files.window:
            self.feed(n, "cf", mem.MigrationWindowChanged(True))
            if "rms" in n.machines:
                self.feed(n, "rms", rmsmod.SwitchoverHoldChanged(True))
        for peer, w in sorted(n.files.widen.items()):  # widen.json: re-applied unless over
            if w["until"] > self.sched.now or w["hypervisor"]:
                self.feed(n, "cf", mem.DetectionWidened((peer,), w["seconds"], w["until"], w["hypervisor"]))
            else:
                del n.files.widen[peer]
        self.feed(n, "cf", mem.NodeBooted())

    def kill(self, n: SimNode, why: str) -> None:
        if not n.alive:
            return
        n.alive = False
        self.silent_since.setdefault(n.cf, self.sched.now)
        for t in n.timers.values():
            t.cancel()
        n.machines, n.timers, n.services = {}, {}, "none"
        for app, on in self.online.items():
            on.discard(n.cf)
        self.trace(n.cf, "down", f"{n.host} stopped: {why}")
        if n.kind == "guest":
            self._ldm_feed(n.hosted_by, ldmmod.DomainProcessExited(n.host))

    def _tick(self, n: SimNode, key: str, inc: int) -> None:
        if not n.alive or n.incarnation != inc:
            return
        if n.suspended:
            n.tick_pending = True
            return
        self.feed(n, key, TICK)

    def feed(self, n: SimNode, key: str, event: Event) -> None:
        """Hand an event to one of a node's machines and carry out the effects."""
        m = n.machines.get(key)
        if m is None or not n.alive:
            return
        effects = m.handle(self.sched.now, event)
        due, timer = m.next_deadline(), n.timers[key]
        if due != timer.when:
            timer.arm(due)
        if effects:
            node_effect = self._node_effect
            for e in effects:
                node_effect(n, e)
                if not n.alive:
                    return

    def deliver(self, src: str, n: SimNode, key: str, event: Event, *, reliable: bool = False) -> None:
        def go() -> None:
            if n.alive and not n.suspended:
                self.feed(n, key, event)
        self.net.send(src, n.cf, go, reliable=reliable)

    def log(self, n: SimNode, dest: str, text: str, msgid: str = "") -> None:
        logs = n.files.logs.get(dest)
        if logs is None:
            logs = n.files.logs[dest] = []
        logs.append(text)
        self.trace(n.cf, dest[:6], (f"[{msgid}] " if msgid else "") + text)

    def _peers(self, n: SimNode) -> list[SimNode]:
        return n.peers

    def _node_effect(self, n: SimNode, e: Effect) -> None:
        # -- CF (the common case first: every UP node broadcasts every second)
        if type(e) is mem.BroadcastHeartbeat:
            hb = n.heartbeat
            if hb is None or hb.incarnation != e.incarnation:  # immutable: built once per incarnation
                hb = n.heartbeat = mem.HeartbeatReceived(n.cf, e.incarnation)
            # heartbeats carry the sender's wall clock for RMS (= self.wallclock(n))
            clock = EPOCH + self.sched.now + self.offsets[self._server_of[n.hosted_by]] + n.clock_step
            net, cf = self.net, n.cf
            peers = n.peers if net.all_pass(cf, len(n.peers)) else [p for p in n.peers if net.passes(cf, p.cf)]
            # one multicast datagram: every reachable peer hears it after the same latency
            # (net.deliver_later, inlined)
            self.sched.after(net.latency + net.rng.random() * net.jitter, partial(self._heartbeats, peers, hb, clock))
        elif isinstance(e, Log):
            self.log(n, e.dest, e.text, e.msgid)
        elif isinstance(e, fen.RunAgent):  # (every effect class is a direct subclass: order is free)
            self._run_agent(n, e)
        elif isinstance(e, mem.SendJoinRequest):
            self.deliver(n.cf, self.nodes[e.to], "cf", mem.JoinRequestReceived(n.cf, e.incarnation))
        elif isinstance(e, mem.SendJoinAnswer):
            self.deliver(n.cf, self.nodes[e.to], "cf", mem.JoinAnswerReceived(n.cf, e.accepted, e.reason, e.incarnation))
        elif isinstance(e, mem.AnnounceNodeState):
            self.trace(n.cf, "CF", f"{e.node}: {e.state}")
            self.feed(n, "sf", fen.NodeStateChanged(e.node, e.state))
            self.feed(n, "rms", rmsmod.PeerNodeStateChanged(e.node, e.state))
        elif isinstance(e, mem.QueryDomainStatus):
            self._query_domain(n, e.node)
        elif isinstance(e, mem.StartClusterServices):
            n.services = "started"
            self.trace(n.cf, "CF", "joined: starting SF, CRM, RMS")
            if n.files.sf_enabled:
                self.feed(n, "sf", fen.SfStartRequested())
            self.feed(n, "rms", rmsmod.RmsStarted())
        elif isinstance(e, mem.RefuseClusterServices):
            n.services = "refused"
            self.trace(n.cf, "CF", f"join refused by {', '.join(e.refused_by)}: SF, CRM, RMS not started")
            for what in ("SF", "CRM", "RMS"):
                self.log(n, "messages", f"{what} failed to start: {e.reason}")
        # -- SF (RunAgent: above)
        elif isinstance(e, fen.AnnounceEliminated):
            self.trace(n.cf, "SF", f"{e.node} eliminated")
            self.feed(n, "cf", mem.NodeEliminated(e.node))
            for p in self._peers(n):
                self.deliver(n.cf, p, "cf", mem.NodeEliminated(e.node), reliable=True)
        # -- RMS
        elif isinstance(e, rmsmod.BringAppOnline):
            on = self.online.setdefault(e.app, set())
            on.add(n.cf)
            self.trace(n.cf, "RMS", f"{e.app} Online")
            if len(on) > 1:
                self.violations.append(f"t={self.sched.now:.3f}: {e.app} online on {sorted(on)}")
        elif isinstance(e, rmsmod.TakeAppOffline):
            self.online.setdefault(e.app, set()).discard(n.cf)
            self.trace(n.cf, "RMS", f"{e.app} Offline")
        elif isinstance(e, rmsmod.AnnounceAppState):
            for p in self._peers(n):
                self.deliver(n.cf, p, "rms", rmsmod.AppStateReported(e.app, e.node, e.online), reliable=True)

    def _heartbeats(self, peers: list[SimNode], hb: mem.HeartbeatReceived, clock: float) -> None:
        """One heartbeat datagram arrives at every peer in ``peers`` (``_heartbeat``, inlined)."""
        now, sender = self.sched.now, hb.sender
        offsets, server_of, all_samples = self.offsets, self._server_of, self._clock_samples
        for p in peers:
            if p.alive and not p.suspended:
                # feed(p, "cf", hb), inlined
                m = p.machines.get("cf")
                if m is not None:
                    effects = m.handle(now, hb)
                    due, timer = m.next_deadline(), p.timers["cf"]
                    if due != timer.when:
                        timer.arm(due)
                    for e in effects:
                        self._node_effect(p, e)
                        if not p.alive:
                            break
                local = EPOCH + now + offsets[server_of[p.hosted_by]] + p.clock_step  # wallclock(p)
                key = (p.cf, sender)
                samples = all_samples.get(key)
                if samples is None:
                    samples = all_samples[key] = collections.deque(maxlen=CLOCK_SAMPLES)
                samples.append(clock - local)
                m = p.machines.get("rms")
                if m is not None and p.alive:  # feed(p, "rms", ...), inlined
                    effects = m.handle(now, rmsmod.PeerClockObserved(sender, clock, local))
                    due, timer = m.next_deadline(), p.timers["rms"]
                    if due != timer.when:
                        timer.arm(due)
                    for e in effects:
                        self._node_effect(p, e)
                        if not p.alive:
                            break

    # ---- the hypervisor side, as a guest node sees it ----------------------------------------------
    def _domain_stopped(self, domain: str) -> bool:
        """Stopped means: an ldmd holds the domain, not active, and its XSCF does not see it running."""
        for host, d in self.ldm.items():
            for dom in d.domains():
                if dom.name == domain:
                    srv = self.server_of_host(host)
                    st = self.xscf[srv].status(self.topo.control_domain(host).ppar).get(domain)
                    return str(dom.state) != "active" and st != SpDomainStatus.RUNNING
        return False  # nowhere to be found: do not conclude anything

    def _query_domain(self, n: SimNode, node: str) -> None:
        domain = self.topo.host_of_cf(node).name
        self.net.send(n.cf, "hypervisor", lambda: self.deliver(
            "hypervisor", n, "cf", mem.DomainStatusReported(node, self._domain_stopped(domain)), reliable=True),
            reliable=True)

    # ---- shutdown agents -----------------------------------------------------------------------------
    def _run_agent(self, n: SimNode, e: fen.RunAgent) -> None:
        lan = AGENT_LAN[e.agent]
        addr = e.entry.lan0 if lan == 0 else e.entry.lan1
        server, _ = self.addr_server.get(addr, (None, None))
        if server is None:
            return  # nothing answers at that address: the agent times out

        def answer(ok: bool, text: str) -> None:
            self.deliver(f"xscf:{server}", n, "sf", fen.AgentFinished(e.req_id, ok, text), reliable=True)

        if e.action in ("init", "test") and server not in n.files.known_xscf:
            self.net.send(n.cf, f"xscf:{server}", lambda: answer(
                False, f"7245 The first SSH connection to XSCF {addr} ({server}) has not been made: connect once "
                f"with ssh {e.entry.user}@{addr} from {n.host} and accept the host key"), reliable=True)
            return
        rid = self._new_id()
        if e.action == "kill":
            ev: Event = (spmod.DomainPanicRequested if AGENT_ACTION[e.agent] == "panic" else spmod.DomainResetRequested)(
                rid, addr, e.entry.ppar_id, e.entry.domain)
        else:
            ev = spmod.DomainStatusRequested(rid, addr, e.entry.ppar_id, e.entry.domain)

        def on_reply(r: spmod.SpReply) -> None:
            ok = r.ok and (e.action == "kill" or r.status in (SpDomainStatus.RUNNING, SpDomainStatus.STOPPED))
            text = r.text or str(r.status)
            if e.action != "kill" and r.ok and not ok:
                text = f"XSCF {server} reports {e.entry.domain} in PPAR-ID {e.entry.ppar_id} as {r.status}"
            answer(ok, text)

        self._xscf_waiting[rid] = on_reply
        self.net.send(n.cf, f"xscf:{server}", lambda: self._xscf_feed(server, ev, by=n.cf, target=e.host), reliable=True)

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
                if victim is None or victim.cf != target:
                    self.violations.append(f"t={self.sched.now:.3f}: agent of {by} aimed at {target} hit {eff.domain}")
                if any(x.files.window for x in self.nodes.values() if x.kind == "guest"):
                    self.violations.append(f"t={self.sched.now:.3f}: {eff.domain} fenced while clovmmigrate -p is in force")
                self.kills.append((self.sched.now, by, target, eff.domain))
                if victim is not None:
                    self.kill(victim, f"{what} by XSCF {server}")

    def _sync_xscf(self, host: str) -> None:
        """Tell the XSCF what the hypervisor of this control domain's PPAR runs now."""
        cd = self.topo.control_domain(host)
        running = frozenset(x.name for x in self.ldm[host].domains() if x.name != "primary" and x.state == "active")
        self._xscf_feed(cd.server, spmod.DomainsRunningReported(cd.ppar, running))

    # ---- ldmd --------------------------------------------------------------------------------------
    def ldm_command(self, host: str, *argv: str) -> Pending:
        p = Pending()
        rid = self._new_id()
        self._ldm_waiting[rid] = p.resolve
        self._ldm_feed(host, ldmmod.CommandReceived(rid, tuple(argv)))
        return p

    def _ldm_feed(self, host: str, ev: Event) -> None:
        d = self.ldm[host]
        effects = d.handle(self.sched.now, ev)
        self.ldm_timers[host].arm(d.next_deadline())
        for e in effects:
            self._ldm_effect(host, e)
        self._sync_xscf(host)

    def _guest(self, domain: str) -> SimNode | None:
        return next((x for x in self.nodes.values() if x.host == domain and x.kind == "guest"), None)

    def _ldm_effect(self, host: str, e: Effect) -> None:
        if isinstance(e, ldmmod.Reply):
            cb = self._ldm_waiting.pop(e.req_id, None)
            if cb:
                cb(e)
        elif isinstance(e, ldmmod.SendToPeer):
            self.net.send(host, e.peer, lambda: self._ldm_feed(e.peer, ldmmod.PeerMessageReceived(host, e.msg)),
                          reliable=True)
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
            g = self._guest(e.name)
            if g and g.alive:
                g.suspended = True
                self._suspended_at[e.name] = self.sched.now
                self.silent_since.setdefault(g.cf, self.sched.now)
                self.trace(g.cf, "ldm", f"{e.name} suspended (SIGSTOP) on {host}")
        elif isinstance(e, ldmmod.AdoptDomainProcess):
            g = self._guest(e.name)
            if g:
                self._place(g, host)
                self.trace(g.cf, "ldm", f"{e.name} handed off from {e.from_host} to {host}")
        elif isinstance(e, ldmmod.ResumeDomainProcess):
            g = self._guest(e.name)
            if g and g.alive and g.suspended:
                g.suspended = False
                self.silent_since.pop(g.cf, None)
                self.suspends.append((e.name, self._suspended_at.pop(e.name, self.sched.now), self.sched.now))
                self.trace(g.cf, "ldm", f"{e.name} resumed (SIGCONT) on {host}")
                if g.tick_pending:
                    g.tick_pending = False
                    for k in list(g.machines):
                        self.feed(g, k, TICK)
        elif isinstance(e, ldmmod.ConfigSaved):
            self._xscf_feed(self.server_of_host(host), spmod.SpconfigSaved(e.ppar, frozenset(e.domains) - {"primary"}))
        elif isinstance(e, ldmmod.MigrationProgress):
            self._progress[(host, e.domain)] = e
            self.trace(host, "ldm", f"migration of {e.domain}: {e.phase} {e.percent}%")
        elif isinstance(e, Log):
            self.trace(host, "ldm", e.text)

    # ---- clovmmigrate ----------------------------------------------------------------------------------
    def clovmmigrate(self, host: str, mode: str, domain: str, target: str = "") -> Pending:
        """Run clovmmigrate -p/-u on control domain ``host``; resolves to the Finished effect."""
        run = mig.ClovmmigrateRun(mig.Request(mode, domain, host, target), self.journals.get((host, domain)))
        flag = "-p" if mode == "prepare" else "-u"
        return self.run_machine(host, run, f"clovmmigrate {flag} {domain} {target}".rstrip())

    def run_machine(self, host: str, run: CommandRun, label: str) -> Pending:
        """Run a command machine on control domain ``host`` (``label`` goes to the trace);
        resolves to its ``Finished`` effect."""
        p = Pending()
        self.trace(host, "cmd", label)
        self._run_effects(host, run, run.handle(self.sched.now, mig.RunStarted()), p)
        return p

    def _run_effects(self, host: str, run: CommandRun, effects: list[Effect], p: Pending) -> None:
        for e in effects:
            if isinstance(e, mig.Print):
                self.trace(host, "cmd", e.text)
            elif isinstance(e, mig.Persist):
                if e.journal is None:
                    self.journals.pop((host, e.domain), None)
                else:
                    self.journals[(host, e.domain)] = dict(e.journal)
            elif isinstance(e, mig.Finished):
                p.resolve(e)
            elif isinstance(e, mig.Call):
                answered = [False]

                def reply(ok: bool, value: Any = None, error: str = "", call: mig.Call = e,
                          answered: list[bool] = answered) -> None:  # (bound per call: a batch has several)
                    if answered[0]:
                        return
                    answered[0] = True
                    self._run_effects(host, run, run.handle(self.sched.now, mig.CallReturned(call.call_id, ok, value, error)), p)

                limit = CALL_TIMEOUT + float(e.args.get("seconds", 0.0))  # sf_wait waits by itself
                self.sched.after(limit, lambda reply=reply, c=e, limit=limit: reply(
                    False, error=f"timeout: {c.target} did not answer within {limit:.0f} s"))
                self._call(host, e, reply)

    def _cd_name(self, target: str) -> str | None:
        """The control domain named or addressed by ``target`` (None if it is none)."""
        if target in self.ldm:
            return target
        return next((cd.name for cd in self.topo.control_domains if cd.address == target), None)

    def _remote(self, host: str, cd: str, answer: Callable[[], Any], reply: Callable[..., None]) -> None:
        """Ask control domain ``cd`` (from ``host``) over the network; reply with what it answers."""
        def there() -> None:
            value = answer()
            self.net.send(cd, host, lambda: reply(True, value), reliable=True)
        self.net.send(host, cd, there, reliable=True)

    def _activity(self, cd: str) -> dict[str, list[str]]:
        journals = sorted({d.removesuffix(".migrate") for h, d in self.journals if h == cd})
        d = self.ldm[cd]
        migrating = sorted({x.name for x in d.domains() if d.migration(x.name) is not None} | set(d.incoming()))
        return {"journals": journals, "migrating": migrating}

    def _where(self, cd: str, domain: str) -> dict[str, Any] | None:
        d = self.ldm[cd]
        dom = d.domain(domain)
        if dom is None:
            return None
        prog = self._progress.get((cd, domain)) if d.migration(domain) is not None else None
        return {"state": str(dom.state), "flags": dom.flags,
                "migration": None if prog is None else {"phase": str(prog.phase), "percent": prog.percent}}

    def _call(self, host: str, c: mig.Call, reply: Callable[..., None]) -> None:
        t = self.topo
        local = self._cd_name(c.target) or host
        if c.op == "sleep":
            self.sched.after(float(c.args["seconds"]), lambda: reply(True, None))
        elif c.op == "control_domains":
            reply(True, [{"host": cd.name, "address": cd.address} for cd in t.control_domains])
        elif c.op in ("activity", "where"):
            cd = self._cd_name(c.target)
            if cd is None:
                return reply(False, error=f"unknown control domain {c.target}")
            if c.op == "activity":
                self._remote(host, cd, lambda: self._activity(cd), reply)
            else:
                self._remote(host, cd, lambda: self._where(cd, str(c.args["domain"])), reply)
        elif c.op == "migrate_start":
            domain, target = str(c.args["domain"]), str(c.args["target"])
            self._progress.pop((local, domain), None)
            self.trace(local, "cmd", f"ldm migrate-domain -c {domain} {target} (background)")
            self._background[(local, domain)] = self.ldm_command(
                local, "migrate-domain", "-c", domain, self._cd_name(target) or target)
            reply(True, None)
        elif c.op == "migrate_result":
            bg = self._background.get((local, str(c.args["domain"])))
            r = bg.value if bg is not None and bg.done else None
            reply(True, None if r is None else {"rc": r.rc, "stdout": r.stdout, "stderr": r.stderr})
        elif c.op == "ldm":
            if c.target not in self.ldm:
                return reply(False, error=f"unknown control domain {c.target}")
            self.net.send(host, c.target, lambda: self.ldm_command(c.target, *c.args["argv"]).add_callback(
                lambda r: self.net.send(c.target, host, lambda: reply(True, {"rc": r.rc, "stdout": r.stdout,
                                                                             "stderr": r.stderr}), reliable=True)),
                reliable=True)
        elif c.op == "guest_nodes":
            g = next((x for x in t.guests if x.name == c.args["domain"]), None)
            if g is None:
                return reply(False, error=f"{c.args['domain']} is not a node of a guest-domain cluster")
            nodes = list(t.cluster_of(g.cf_name).nodes)
            reply(True, {"node": g.cf_name, "nodes": nodes, "domains": {cf: t.host_of_cf(cf).name for cf in nodes}})
        elif c.op == "resolve":
            name = c.args["name"]
            try:
                ipaddress.ip_address(name)
                return reply(True, name)
            except ValueError:
                pass
            reply(True, next((h.address for h in t.hosts() if h.name == name), None))
        elif c.op == "cd_info":
            cd = next((x for x in t.control_domains if c.target in (x.address, x.name)), None)
            if cd is None:
                return reply(False, error=f"no control domain answers at {c.target}")
            srv = t.server(cd.server)
            reply(True, {"host": cd.name, "server": srv.name, "ppar": cd.ppar, "lan0": srv.lan0, "lan1": srv.lan1,
                         "sf_weight": cd.sf_weight, "user": t.xscf.user, "connection": t.xscf.connection})
        else:
            n = self.nodes.get(c.target)
            if n is None:
                return reply(False, error=f"unknown cluster node {c.target}")

            def at_node() -> None:
                if not n.alive or n.suspended:
                    return  # no answer: the call times out
                self._node_op(n, c, lambda *a, **k: self.net.send(n.cf, host, lambda: reply(*a, **k), reliable=True))
            self.net.send(host, n.cf, at_node, reliable=True)

    def _node_op(self, n: SimNode, c: mig.Call, reply: Callable[..., None]) -> None:
        f = n.files
        op = c.op
        if op == "node_status":
            sf = n.machines.get("sf")
            running = sf is not None and str(sf.daemon) == "running"
            reply(True, {"timeout": f.timeout, "sf": "running" if running else "stopped", "record": f.record,
                         "window": f.window})
        elif op == "record_timeout":
            if f.record is None:
                f.record = f.timeout
            reply(True, f.record)
        elif op == "set_timeout":
            f.timeout = int(c.args["seconds"])
            self.feed(n, "cf", mem.TimeoutChanged(float(f.timeout)))
            reply(True)
        elif op == "window":
            f.window = bool(c.args["open"])
            self.feed(n, "cf", mem.MigrationWindowChanged(f.window))
            self.feed(n, "rms", rmsmod.SwitchoverHoldChanged(f.window))
            reply(True)
        elif op == "sf_stop":
            f.sf_enabled = False
            self.feed(n, "sf", fen.SfStopRequested())
            reply(True)
        elif op == "sf_start":
            f.sf_enabled = True
            if n.services == "started":
                self.feed(n, "sf", fen.SfStartRequested())
            reply(True)
        elif op == "set_sf_entry":
            entry = XscfEntry(**c.args["entry"])
            f.sf_config = f.sf_config.with_entry(entry, weight=int(c.args["weight"]))
            self.feed(n, "sf", fen.SfReconfigRequested(f.sf_config))
            reply(True)
        elif op == "sf_wait":
            deadline = self.sched.now + float(c.args["seconds"])

            def poll() -> None:
                sf = n.machines.get("sf") if n.alive else None
                rows = [r for r in (sf.rows() if sf else []) if c.args.get("node") in (None, r.host)]
                busy = any(str(r.sa_state) in ("Init-ing", "Testing") or str(r.test_state) == "Unknown" for r in rows)
                if sf is not None and not busy or self.sched.now >= deadline:
                    reply(True, [[r.host, r.agent, str(r.sa_state), str(r.shut_state), str(r.test_state),
                                  str(r.init_state)] for r in rows])
                else:
                    self.sched.after(1.0, poll)
            poll()
        elif op == "clear_record":
            f.record = None
            reply(True)
        elif op == "cf_sample":
            reply(True, self.cf_sample(n))
        elif op == "widen":
            peers = tuple(str(p) for p in c.args["peers"])
            seconds, hyp = float(c.args["seconds"]), bool(c.args.get("hypervisor", False))
            until = self.sched.now + float(c.args["lease"])
            for p in peers:
                if p in n.cluster and p != n.cf:
                    f.widen[p] = {"seconds": seconds, "until": until, "hypervisor": hyp}
            self.feed(n, "cf", mem.DetectionWidened(peers, seconds, until, hyp))
            reply(True)
        elif op == "narrow":
            peers = tuple(str(p) for p in c.args.get("peers") or ())
            for p in peers or tuple(f.widen):
                f.widen.pop(p, None)
            self.feed(n, "cf", mem.DetectionNarrowed(peers))
            reply(True)
        elif op == "clock_align":
            n.clock_align = True
            reply(True)
        elif op == "xscf_check":
            lans = {"lan0": str(c.args["lan0"]), "lan1": str(c.args["lan1"])}
            servers = {k: self.addr_server.get(a, (None, 0))[0] for k, a in lans.items()}
            reply(True, {
                "known_host": all(s is not None and s in f.known_xscf for s in servers.values()),
                "snmp": {k: s is not None and self.xscf[s].lan_up(lans[k]) for k, s in servers.items()},
            })
        elif op == "sf_test":
            self.feed(n, "sf", fen.SfTestRequested())
            reply(True)
        elif op == "sf_entry":
            e = next((x for x in f.sf_config.xscf if x.cf_name == c.args["node"]), None)
            reply(True, None if e is None else {"cf_name": e.cf_name, "ppar_id": e.ppar_id, "domain": e.domain,
                                                "lan0": e.lan0, "lan1": e.lan1, "user": e.user,
                                                "connection": e.connection})
        else:
            reply(False, error=f"unknown operation {op}")

    def cf_sample(self, n: SimNode) -> dict[str, Any]:
        """The ``cf_sample`` answer of a live node (see docs/safe-migration.md)."""
        now = self.sched.now
        cf: mem.Membership = n.machines["cf"]
        view = cf.view()
        peers: dict[str, Any] = {}
        diffs: dict[str, float | None] = {}
        for p in n.cluster:
            if p == n.cf:
                continue
            last = cf.last_heard(p)
            peers[p] = {"state": str(view[p]), "gap": None if last is None else now - last,
                        "timeout": cf.effective_timeout(p, now), "widened": cf.is_widened(p, now)}
            samples = self._clock_samples.get((n.cf, p))
            diffs[p] = abs(max(samples)) if samples else None
        sf = n.machines.get("sf")
        rms = n.machines.get("rms")
        return {"t": now, "state": str(cf.local_state),
                "sf": "running" if sf is not None and str(sf.daemon) == "running" else "stopped",
                "peers": peers, "clock_diff": diffs, "rms_busy": rms is not None and rms.busy()}

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

    def sf_rows(self, cf: str) -> list:
        sf = self.nodes[cf].machines.get("sf")
        return sf.rows() if sf else []

    def where(self, domain: str) -> list[tuple[str, str]]:
        return [(h, str(x.state)) for h, d in self.ldm.items() for x in d.domains() if x.name == domain]


