"""The simulator's safety invariants, checked where the state they are about changes.

:class:`Invariants` is held by the :class:`~clovm.sim.world.World` (``world.check``) and told of
exactly the changes an invariant depends on, so that checking costs O(small) per change and
nothing per heartbeat:

* **one running instance** — a domain runs on at most one control domain at any instant
  (:meth:`running`, after every ldmd event that had effects: the domains an ldmd runs are its
  active ones, minus the frozen source copy of a migration that is handing off);
* **one online instance** — a userApplication is online on at most one node (the world calls
  :meth:`violation` when a node brings one online that another holds);
* **fencing hits what it aims at** — an XSCF kill requested by node B's shutdown agent for node T
  kills T's domain, through the XSCF of the server that really runs it (:meth:`fenced`);
* **no fencing under -p** — no node is killed while ``clovmmigrate -p`` is in force for its own
  domain, unless its domain is really stopped (:meth:`fenced`, :meth:`journal`). In force, for the
  node whose SF asked for the kill: a journal of the domain's procedure exists (from the first
  journal write of ``-p`` to the end of ``-u``) and that node has the protection ``-p`` gives it:
  its view of the migrating node widened beyond CLUSTER_TIMEOUT under a running lease
  (``--scoped``), or the window open with CLUSTER_TIMEOUT raised and SF stopped (the manual
  window). A ``-p`` killed part way (some nodes' SF still running: run it again, the manual says),
  a ``-u`` that restored them and then stopped, or ``--scoped``'s narrowing after the hand-off
  leave no protection, as documented;
* **timeouts restored** — a completed procedure (``clovmmigrate -u`` rc 0, ``clovm migrate`` rc
  0 or 5) leaves every node of the guest cluster at the CLUSTER_TIMEOUT recorded before ``-p``
  (``recorded``, kept from the nodes' ``record`` writes) with the ``-p`` window closed
  (:meth:`finished`).

Each violation is one line in ``World.violations`` (``t=...: what``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core import migration as mig
from ..core.safemigrate import RC_RESTORED

if TYPE_CHECKING:
    from .commands import Command
    from .hosts import SimNode
    from .world import World


class Invariants:
    def __init__(self, world: World) -> None:
        self.w = world
        self.instances: dict[str, set[str]] = {}  # domain -> control domains running it
        self._running_on: dict[str, frozenset[str]] = {}  # control domain -> domains it runs
        self._under_p: dict[tuple[str, str], str] = {}  # journal (host, key) saying -p is in force -> domain
        self.recorded: dict[str, int] = {}  # CF node -> the timeout its last clovmmigrate record holds

    def violation(self, text: str) -> None:
        self.w.violations.append(f"t={self.w.sched.now:.3f}: {text}")

    # ---- one running instance ------------------------------------------------------------------
    def running(self, host: str, running: frozenset[str]) -> None:
        """Control domain ``host`` runs exactly ``running`` now."""
        prev = self._running_on.get(host, frozenset())
        if running == prev:
            return
        self._running_on[host] = running
        for d in prev - running:
            self.instances[d].discard(host)
        for d in sorted(running - prev):
            hosts = self.instances.setdefault(d, set())
            hosts.add(host)
            if len(hosts) > 1:
                self.violation(f"{d} runs on {' and '.join(sorted(hosts))} at once")

    # ---- -p in force -----------------------------------------------------------------------------
    def journal(self, host: str, key: str, journal: dict[str, Any] | None) -> None:
        """A journal was written (None: removed) on ``host``: ``-p`` is in force for a domain from
        its clovmmigrate journal's first write to its removal (for ``clovm migrate``, while its
        journal holds the embedded clovmmigrate journal)."""
        if key.endswith(".migrate"):
            domain, in_force = key.removesuffix(".migrate"), bool(journal and journal.get("clovmmigrate"))
        else:
            domain, in_force = key, journal is not None
        if in_force:
            self._under_p[(host, key)] = domain
        else:
            self._under_p.pop((host, key), None)

    def under_p(self, domain: str, by: str | None = None) -> bool:
        """Is ``-p`` in force for ``domain`` (on node ``by``: does it protect the domain's node there)?"""
        if domain not in self._under_p.values():
            return False
        if by is None or by not in self.w.nodes:
            return True
        n = self.w.nodes[by]
        f = n.files
        node = self.w.topo.guest(domain).cf_name
        wid = f.widen.get(node)
        widened = wid is not None and wid["seconds"] > f.timeout and wid["until"] > self.w.sched.now
        manual = f.window and f.record is not None and f.timeout != f.record and f.sf_disabled
        return widened or manual

    # ---- fencing ---------------------------------------------------------------------------------
    def fenced(
        self, server: str, ppar: int, by: str, target: str, domain: str, victim: SimNode | None, here: bool
    ) -> None:
        """The XSCF of ``server`` panicked or reset ``domain`` in ``ppar`` for the agent of node ``by``
        aimed at node ``target``; ``here``: the domain's process really runs there."""
        if victim is None or victim.cf != target:
            self.violation(f"agent of {by} aimed at {target} hit {domain}")
        if victim is not None and victim.alive and not here:
            self.violation(
                f"XSCF of {server} (PPAR-ID {ppar}) was asked by {by} to kill {domain}, which runs on "
                f"{victim.hosted_by}"
            )
        if victim is not None and victim.alive and self.under_p(domain, by):
            self.violation(f"{domain} fenced by {by} while its clovmmigrate -p is in force (it was running)")

    # ---- completed procedures --------------------------------------------------------------------
    def finished(self, cmd: Command, fin: mig.Finished) -> None:
        run = cmd.run
        if isinstance(run, mig.ClovmmigrateRun):
            completed = run.request.mode == "update" and fin.rc == mig.RC_OK
            journal = run.journal
        else:
            completed = fin.rc in (mig.RC_OK, RC_RESTORED)
            journal = getattr(run, "j", None)
        if not completed or not journal:
            return
        nodes = self.w.nodes
        for cf in journal.get("nodes", ()):
            files = nodes[cf].files
            want = self.recorded.get(cf)
            if want is not None and files.timeout != want:
                self.violation(
                    f"{cmd.label} completed, but {cf}'s CLUSTER_TIMEOUT is {files.timeout} s (recorded {want} s)"
                )
            if files.window:
                self.violation(f"{cmd.label} completed, but the -p window is still open on {cf}")
