"""The ldmd side of the simulated datacenter: ``ldm`` commands, the ldmd of every control domain, its
crashes and restarts, and the crash of a whole control domain.

:class:`LdmdSide` is mixed into :class:`~clovm.sim.world.World` (which provides the attributes and
the methods declared here). It only translates: an ``ldm`` command becomes a ``CommandReceived``
for the control domain's :class:`~clovm.core.ldm.Ldmd` and resolves to its ``Reply``; ldmd's
effects become ldmd-to-ldmd messages over the simulated network, domain processes started,
killed, suspended, handed off and resumed, saved SP configurations told to the XSCF, progress and
log lines. After every step the XSCF is told what the PPAR runs and the invariants what runs where.

Crashes. :meth:`LdmdSide.crash_ldmd` / :meth:`LdmdSide.restart_ldmd`: an ldmd stops (its pending
``ldm`` commands get an error, its peers' connections to it break:
:class:`~clovm.core.ldm.PeerUnreachable`) and is rebuilt from what it persists
(:meth:`~clovm.core.ldm.Ldmd.restarted`: the placement of every domain process, the SP's
configurations); meanwhile the hypervisor still tells the XSCF what runs.
:meth:`LdmdSide.crash_control_domain` takes a whole control domain down (its cluster node, its
ldmd and every command running on it); its guests keep running.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..core import ldm as ldmmod
from ..core import sp as spmod
from ..core.base import Effect, Event, Log
from ..core.ldm import LDMD_TAG
from .hosts import Pending, SimNode

if TYPE_CHECKING:
    from ..topology import Topology
    from .hosts import TraceLog
    from .invariants import Invariants
    from .network import SimNetwork
    from .scheduler import Scheduler, Timer


class LdmdSide:
    """The ldmd half of :class:`~clovm.sim.world.World`."""

    topo: Topology
    sched: Scheduler
    net: SimNetwork
    trace: TraceLog
    check: Invariants
    nodes: dict[str, SimNode]
    ldm: dict[str, ldmmod.Ldmd]
    ldm_timers: dict[str, Timer]
    ldm_down: set[str]
    cd_down: set[str]
    _ldm_waiting: dict[int, Callable[[Any], None]]
    _ldm_host: dict[int, str]
    _progress: dict[tuple[str, str], ldmmod.MigrationProgress]

    if TYPE_CHECKING:

        def _new_id(self) -> int: ...
        def server_of_host(self, host: str) -> str: ...
        def _place(self, g: SimNode, host: str) -> None: ...
        def boot(self, n: SimNode) -> None: ...
        def kill(self, n: SimNode, why: str) -> None: ...
        def pause(self, domain: str, what: str = "fault", text: str = "") -> None: ...
        def resume(self, domain: str, what: str = "fault", text: str = "") -> None: ...
        def _guest(self, domain: str) -> SimNode | None: ...
        def log(self, n: SimNode, tag: str, dest: str, text: str, msgid: str = "") -> None: ...
        def _cd_node(self, host: str) -> SimNode: ...
        def kill_commands(self, host: str, why: str) -> None: ...
        def _sync_xscf(self, host: str) -> None: ...
        def _xscf_feed(self, server: str, ev: Event, by: str = "", target: str = "") -> None: ...

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
