"""The chaos run's healer (:class:`ChaosHealer`, mixed into :class:`~clovm.sim.chaos.run.Chaos`): the
operator's documented recovery of stopped guests, every :data:`~.limits.HEAL_POLL` s — start a
stopped guest once every running peer holds it DOWN (at once for a crash marked ``early``), stop
again a guest whose cluster services were refused, ``cftool -k`` a node held LEFTCLUSTER too
long, ``sdtool -r`` where an agent InitFailed or TestFailed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..world import World
from .limits import HEAL_POLL, LEFT_STUCK, Proc
from .observe import active_on, guest_nodes, migrating


class ChaosHealer:
    """The healer half of :class:`~clovm.sim.chaos.run.Chaos` (which provides the attributes and
    the methods declared here)."""

    w: World
    done: bool
    hold: dict[str, float]
    early: set[str]
    _reinit: dict[str, float]
    _left_since: dict[tuple[str, str], float]

    if TYPE_CHECKING:

        def note(self, text: str) -> None: ...
        def _up(self, cd: str) -> bool: ...

    def _down_everywhere(self, cf: str) -> bool:
        w = self.w
        for p in w.nodes[cf].peers:  # (a suspended peer counts: it goes on with the view it holds)
            if p.alive and p.services == "started" and p.node is not None and str(p.node.cf.view().get(cf)) != "DOWN":
                return False
        return True

    def _recovering(self, domain: str) -> bool:
        """A clovm migrate of ``domain`` is running its recover step (it starts the domain itself)."""
        for cmd in self.w.commands:
            j = getattr(cmd.run, "j", None)
            if j and j.get("domain") == domain and j.get("step") == "recover":
                return True
        return False

    def _clear_leftcluster(self, cf: str) -> None:
        """``cftool -k`` (CF guide, "Recovering from LEFTCLUSTER": when SF does not run or fails to
        clear the state) on every node that has held the stopped node ``cf`` LEFTCLUSTER for
        LEFT_STUCK seconds: SF, the -p window or a widening would have settled it by then if they could
        (e.g. not when its SF entry names the XSCF of the server it migrated away from)."""
        w = self.w
        for p in w.nodes[cf].peers:
            key = (p.cf, cf)
            node = p.node
            if not p.alive or p.suspended or node is None or str(node.cf.view().get(cf)) != "LEFTCLUSTER":
                self._left_since.pop(key, None)
                continue
            since = self._left_since.setdefault(key, w.sched.now)
            if w.sched.now - since >= LEFT_STUCK:
                del self._left_since[key]
                self.note(
                    f"{p.cf} # cftool -k {cf}: {w.ask(p.cf, 'cftool_k', {'node': cf})} ({cf}'s domain is "
                    f"stopped, and {p.cf} held it LEFTCLUSTER for {LEFT_STUCK:g} s)"
                )

    def _healer(self) -> Proc:
        w = self.w
        while not self.done:
            yield HEAL_POLL
            for g in sorted(w.topo.guests, key=lambda g: g.name):
                n = w.nodes[g.cf_name]
                if not n.alive and not active_on(w, g.name) and not migrating(w, g.name):
                    self._clear_leftcluster(g.cf_name)
                if n.alive:
                    if n.services == "refused" and self._up(n.hosted_by) and not migrating(w, g.name):
                        self.note(f"{g.name}: cluster services refused: stopping it again (documented recovery)")
                        yield w.ldm_command(n.hosted_by, "stop-domain", g.name)
                    continue
                if (
                    w.sched.now < self.hold.get(g.name, -math.inf)
                    or migrating(w, g.name)
                    or active_on(w, g.name)
                    or self._recovering(g.name)
                ):
                    continue
                holders = [h for h in sorted(w.ldm) if h not in w.ldm_down and w.ldm[h].domain(g.name) is not None]
                if not holders:
                    continue
                host = n.hosted_by if n.hosted_by in holders else holders[0]
                if not self._up(host):
                    continue
                early = g.name in self.early
                if not early and not self._down_everywhere(g.cf_name):
                    continue
                self.early.discard(g.name)
                r = yield w.ldm_command(host, "start-domain", g.name)
                self.note(
                    f"{host} # ldm start-domain {g.name}{' (too early)' if early else ''}: rc {r.rc} {r.stderr.strip()}"
                )
            self._reinit_sf()

    def _reinit_sf(self) -> None:
        """sdtool -r where sdtool -s shows an agent InitFailed or TestFailed (the seed's step 2 check)."""
        w = self.w
        for cf in guest_nodes(w):
            n = w.nodes[cf]
            if (
                n.node is None
                or n.suspended
                or not n.node.sf_running
                or w.sched.now < self._reinit.get(cf, -60.0) + 60.0
            ):
                continue
            assert n.node.sf is not None  # (sf_running)
            if any(r.init_state == "InitFailed" or r.test_state == "TestFailed" for r in n.node.sf.rows()):
                self._reinit[cf] = w.sched.now
                w.ask(cf, "sdtool", {"flag": "-r"})
                self.note(f"{cf} # sdtool -r (sdtool -s showed an agent InitFailed or TestFailed)")
