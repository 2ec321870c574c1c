"""The chaos run's faults (:class:`ChaosFaults`, mixed into :class:`~clovm.sim.chaos.run.Chaos`): one
process per fault item, which injects it at its time (or, for ``cancel`` and ``ldmd-crash-mig``,
timed from the start of its operation's migration) and heals it after its duration; a fault
that overlaps a later one of the same slot (the network, a LAN, a clock) leaves the healing to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import sp as spmod
from ..hosts import WaitFor
from ..world import World
from .limits import MAX_RUN, Proc
from .observe import guest_nodes
from .schedule import Item


class ChaosFaults:
    """The faults half of :class:`~clovm.sim.chaos.run.Chaos` (which provides the attributes and
    the methods declared here)."""

    w: World
    t0: float
    faults_left: int
    op_over: set[int]
    op_where: dict[int, tuple[str, str, str]]
    hold: dict[str, float]
    early: set[str]
    _mine: dict[str, object]

    if TYPE_CHECKING:

        def note(self, text: str) -> None: ...
        def _up(self, cd: str) -> bool: ...
        def _sleep_until(self, t: float) -> Proc: ...

    def _relative(self, op: int, it: Item) -> Proc:
        """A fault timed from the start of operation ``op``'s migration."""
        w = self.w
        try:

            def started() -> bool:
                where = self.op_where.get(op)
                if where is None or where[1] in w.ldm_down:
                    return False
                m = w.ldm[where[1]].migration(where[0])
                return m is not None and not m.dry_run

            ok = yield WaitFor(lambda: op in self.op_over or started(), MAX_RUN, poll=0.5)
            if not ok or op in self.op_over:
                return
            yield it.at
            d, src, tgt = self.op_where[op]
            if it.kind == "cancel":
                if self._up(src):
                    r = yield w.ldm_command(src, "cancel-operation", "migration", d)
                    self.note(f"{src} # ldm cancel-operation migration {d}: rc {r.rc} {r.stderr.strip()}")
            else:
                host = src if it.get("side") == "source" else tgt
                if host not in w.cd_down:
                    w.crash_ldmd(host, "crashed (chaos)")
                    yield it.get("down")
                    w.restart_ldmd(host)
        finally:
            self.faults_left -= 1

    def _fault(self, it: Item) -> Proc:
        try:
            yield from self._sleep_until(self.t0 + it.at)
            self.note(f"fault: {it}")
            yield from getattr(self, "_f_" + it.kind.replace("-", "_"))(it)
        finally:
            self.faults_left -= 1

    def _slot(self, key: str, it: Item) -> None:
        self._mine[key] = it

    def _holds(self, key: str, it: Item) -> bool:
        return self._mine.get(key) is it

    def _f_crash_guest(self, it: Item) -> Proc:
        d = it.get("domain")
        n = self.w.nodes[self.w.topo.guest(d).cf_name]
        self.hold[d] = max(self.hold.get(d, 0.0), self.w.sched.now + it.get("down"))
        if it.get("early"):
            self.early.add(d)
        if n.alive:
            self.w.kill(n, "crashed (chaos)")
        yield it.get("down")

    def _f_crash_cd(self, it: Item) -> Proc:
        cd = it.get("cd")
        if cd in self.w.cd_down:
            return
        w = self.w
        w.crash_control_domain(cd, "crashed (chaos)")
        yield it.get("down")
        # The control-domain cluster has no shutdown agents: its peers hold the crashed node
        # LEFTCLUSTER until the operator, who knows it is down, marks it DOWN (cftool -k).
        cf = w.topo.control_domain(cd).cf_name
        peers = [p for p in w.nodes[cf].peers]
        yield WaitFor(
            lambda: all(not p.alive or p.node is None or str(p.node.cf.view()[cf]) != "UP" for p in peers), 60.0
        )
        for p in peers:
            if p.alive and p.node is not None and str(p.node.cf.view()[cf]) == "LEFTCLUSTER":
                self.note(f"{p.cf} # cftool -k {cf}: {w.ask(p.cf, 'cftool_k', {'node': cf})}")
        w.restart_control_domain(cd)

    def _f_ldmd_crash(self, it: Item) -> Proc:
        cd = it.get("cd")
        if cd in self.w.cd_down or cd in self.w.ldm_down:
            return
        self.w.crash_ldmd(cd, "crashed (chaos)")
        yield it.get("down")
        self.w.restart_ldmd(cd)

    def _frozen_by_migration(self, d: str) -> bool:
        return any(
            h not in self.w.ldm_down and (m := x.migration(d)) is not None and str(m.phase) in ("suspend", "hand-off")
            for h, x in self.w.ldm.items()
        )

    def _f_pause(self, it: Item) -> Proc:
        d, w = it.get("domain"), self.w
        n = w.nodes[w.topo.guest(d).cf_name]
        if not n.alive or n.suspended:
            return
        inc = n.incarnation
        w.pause(d, "fault", f"{d} paused (SIGSTOP) for {it.get('for'):g} s")
        yield it.get("for")
        if n.alive and n.incarnation == inc and n.suspended and not self._frozen_by_migration(d):
            w.resume(d, "fault", f"{d} resumed (SIGCONT)")

    def _f_partition(self, it: Item) -> Proc:
        w = self.w
        side = set(it.get("side"))
        rest = set(guest_nodes(w)) - side
        self._slot("net", it)
        w.net.partition(side, rest)
        w.trace("net", "fault", f"interconnect partition: {' '.join(sorted(side))} | {' '.join(sorted(rest))}")
        yield it.get("for")
        if self._holds("net", it):
            w.net.heal()
            w.trace("net", "fault", "partition healed")

    def _f_loss(self, it: Item) -> Proc:
        w = self.w
        self._slot("loss", it)
        w.net.lossy = frozenset(guest_nodes(w))  # the guest cluster's interconnect
        w.net.loss = it.get("rate")
        yield it.get("for")
        if self._holds("loss", it):
            w.net.loss = 0.0
            w.trace("net", "fault", "packet loss over")

    def _f_lan(self, it: Item) -> Proc:
        w = self.w
        srv = w.topo.server(it.get("server"))
        addr = srv.lan0 if it.get("lan") == 0 else srv.lan1
        key = f"lan:{addr}"
        self._slot(key, it)
        w._xscf_feed(srv.name, spmod.LanStateChanged(addr, False))
        yield it.get("for")
        if self._holds(key, it):
            w._xscf_feed(srv.name, spmod.LanStateChanged(addr, True))
            w.trace(f"xscf:{srv.name}", "fault", f"XSCF-LAN#{it.get('lan')} {addr} up again")

    def _f_skew(self, it: Item) -> Proc:
        w = self.w
        srv = w.topo.server(it.get("server"))
        key = f"clock:{srv.name}"
        self._slot(key, it)
        w.set_clock_offset(srv.name, srv.clock_offset + it.get("seconds"))
        yield it.get("for")
        if self._holds(key, it):
            w.set_clock_offset(srv.name, srv.clock_offset)
            w.trace(srv.name, "fault", "clock back in sync")
