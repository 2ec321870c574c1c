"""The XSCF side of the simulated datacenter: what a guest node's shutdown agents and domain status
queries reach, and what the XSCFs do.

:class:`XscfSide` is mixed into :class:`~clovm.sim.world.World` (which provides the attributes and
the methods declared here). It only translates: a node's ``RunShutdownAgent``, ``AskDomainStatus``
and ``CheckXscf`` become requests to the :class:`~clovm.core.sp.Xscf` answering at the address of
the SA_xscfsnmp.cfg entry, over the simulated network (an address nobody answers at gives no
answer; an unknown host key is refused as SSH would); the XSCF's replies go back to the node as
``XscfAnswered`` / ``XscfHostKeyUnknown`` / ``DomainStatusAnswered`` / ``XscfChecked``; its
``PanicDomain`` / ``ResetDomain`` kill the guest when it runs in that PPAR of that server (told to
the invariants either way); and the XSCF is told what the hypervisor of a control domain's PPAR
runs (:meth:`XscfSide._sync_xscf`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import fencing as fen
from ..core import ldm as ldmmod
from ..core import sp as spmod
from ..core._state import AGENT_ACTION, AGENT_LAN
from ..core.base import Event
from ..core.node import (
    CheckXscf,
    DomainStatusAnswered,
    XscfAnswered,
    XscfChecked,
    XscfHostKeyUnknown,
)
from ..core.sfconfig import XscfEntry
from .hosts import SimNode

if TYPE_CHECKING:
    from ..topology import Topology
    from .hosts import TraceLog
    from .invariants import Invariants
    from .network import SimNetwork
    from .scheduler import Scheduler

DOMAIN_STATUS_TIMEOUT = 2.0  # s a domain status query waits for LAN#0 before asking LAN#1


class XscfSide:
    """The XSCF half of :class:`~clovm.sim.world.World`."""

    topo: Topology
    sched: Scheduler
    net: SimNetwork
    trace: TraceLog
    check: Invariants
    nodes: dict[str, SimNode]
    ldm: dict[str, ldmmod.Ldmd]
    ldm_down: set[str]
    xscf: dict[str, spmod.Xscf]
    addr_server: dict[str, tuple[str, int]]
    kills: list[tuple[float, str, str, str]]
    _xscf_waiting: dict[int, Callable[[Any], None]]

    if TYPE_CHECKING:

        def _new_id(self) -> int: ...
        def deliver(self, src: str, n: SimNode, event: Event, *, reliable: bool = False) -> None: ...
        def feed(self, n: SimNode, event: Event) -> None: ...
        def kill(self, n: SimNode, why: str) -> None: ...

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
