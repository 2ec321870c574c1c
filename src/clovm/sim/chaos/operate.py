"""The chaos run's operator (:class:`ChaosOperator`, mixed into :class:`~clovm.sim.chaos.run.Chaos`):
the schedule's operations one after the other, each as the seed's manual or the ``clovm migrate``
documentation says, with the documented reaction to every outcome — a killed command run again
(``clovmmigrate``) or resumed (``clovm migrate --resume``), a step that failed part way run again,
``-u`` naming where the guest runs, the saved configurations trimmed when ``-u`` is refused for
them (see :mod:`clovm.sim.chaos.run`'s docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import codes
from ...core import ldm as ldmmod
from ...core.migration import (
    CONFIG_TMP,
    MAX_SAVED_SPCONFIGS,
    RC_FAILED,
    RC_OK,
    RC_REFUSED,
    Finished,
)
from ...core.safemigrate import MigrateRequest, SafeMigrationRun, journal_key
from ..commands import KILLED
from ..hosts import WaitFor
from ..world import World
from .limits import OP_BUDGET, RETRY_WAIT, Proc
from .observe import active_on, migrating, under_procedure
from .schedule import OPERATIONS, Item


class ChaosOperator:
    """The operator half of :class:`~clovm.sim.chaos.run.Chaos` (which provides the attributes and
    the methods declared here)."""

    w: World
    items: list[tuple[int, Item]]
    t0: float
    faults_left: int
    last_op_started: bool
    ops_done: bool
    op_over: set[int]
    op_where: dict[int, tuple[str, str, str]]

    if TYPE_CHECKING:

        def note(self, text: str) -> None: ...
        def for_op(self, op: int, kind: str) -> list[Item]: ...
        def _up(self, cd: str) -> bool: ...
        def _sleep_until(self, t: float) -> Proc: ...
        def _relative(self, op: int, it: Item) -> Proc: ...

    def _wait_up(self, cd: str, limit: float = OP_BUDGET) -> Proc:
        return (yield WaitFor(lambda: self._up(cd), limit))

    def _target(self, src: str, pick: int) -> str:
        cds = sorted(c.name for c in self.w.topo.control_domains if c.name != src)
        return cds[pick % len(cds)]

    def _records(self, domain: str) -> bool:
        """Does -p seem in force for ``domain``'s cluster (a record on a node, or a journal)?"""
        w = self.w
        cluster = w.topo.guest_cluster_of_domain(domain).nodes
        return under_procedure(w, domain) or any(w.nodes[cf].files.record is not None for cf in cluster)

    def _operator(self) -> Proc:
        ops = [(i, it) for i, it in self.items if it.kind in OPERATIONS]
        for n, (i, it) in enumerate(ops):
            yield from self._sleep_until(self.t0 + it.at)
            if n == len(ops) - 1:
                self.last_op_started = True
            self.note(f"operation #{i}: {it}")
            for rel in self.for_op(i, "cancel") + self.for_op(i, "ldmd-crash-mig"):
                self.faults_left += 1
                self.w.spawn(self._relative(i, rel))
            try:
                yield from getattr(self, "_op_" + it.kind.replace("-", "_"))(i, it)
            finally:
                self.op_over.add(i)
        self.last_op_started = True
        self.ops_done = True
        self.note("operator: every operation done")

    def _op_spconfig_add(self, i: int, it: Item) -> Proc:
        cd = it.get("cd")
        if self._up(cd):
            r = yield self.w.ldm_command(cd, "add-spconfig", it.get("name"))
            self.note(f"{cd} # ldm add-spconfig {it.get('name')}: rc {r.rc} {r.stderr.strip()}")

    def _op_spconfig_remove(self, i: int, it: Item) -> Proc:
        cd = it.get("cd")
        if self._up(cd):
            names = [n for n in self.w.ldm[cd].spconfig_names() if n != ldmmod.FACTORY_DEFAULT]
            if names:
                name = names[it.get("pick") % len(names)]
                r = yield self.w.ldm_command(cd, "remove-spconfig", name)
                self.note(f"{cd} # ldm remove-spconfig {name}: rc {r.rc} {r.stderr.strip()}")

    def _kill_item(self, i: int, step: str) -> Item | None:
        return next((k for k in self.for_op(i, "kill") if k.get("step") == step), None)

    def _begin_migration_op(self, i: int, it: Item) -> tuple[str, str, str] | None:
        d = it.get("domain")
        on = active_on(self.w, d)
        if len(on) != 1 or migrating(self.w, d) or under_procedure(self.w, d):
            self.note(f"operation #{i} skipped: {d} is {'active on ' + ' '.join(on) if on else 'not running'}")
            return None
        src = on[0]
        if not self._up(src):
            self.note(f"operation #{i} skipped: {src} is not up")
            return None
        tgt = self._target(src, it.get("pick"))
        self.op_where[i] = (d, src, tgt)
        if self.for_op(i, "abort"):
            self.note(f"{src}: the next migration of {d} will fail after the copy (guest stopped)")
            self.w._ldm_feed(src, ldmmod.MigrationAbortArmed(d))
        return d, src, tgt

    def _clovmmigrate(self, src: str, mode: str, d: str, target: str = "", kill: Item | None = None) -> Proc:
        """clovmmigrate -p/-u until it finishes without being killed and without failing part way
        (at most 4 attempts, or OP_BUDGET); its last Finished."""
        deadline = self.w.sched.now + OP_BUDGET
        r: Finished | None = None
        for attempt in range(4):
            yield from self._wait_up(src, max(1.0, deadline - self.w.sched.now))
            k = kill.get("calls") if kill is not None and attempt == 0 else None
            r = yield self.w.clovmmigrate(src, mode, d, target, kill_after=k)
            if r.rc == KILLED:
                yield kill.get("delay") if kill is not None and attempt == 0 else RETRY_WAIT
                continue
            if r.rc != RC_FAILED or self.w.sched.now > deadline:
                return r
            yield RETRY_WAIT
        return r

    def _op_manual(self, i: int, it: Item) -> Proc:
        begun = self._begin_migration_op(i, it)
        if begun is None:
            return
        d, src, tgt = begun
        w = self.w
        r = yield from self._clovmmigrate(src, "prepare", d, kill=self._kill_item(i, "p"))
        if r.rc != RC_OK:
            self.note(f"clovmmigrate -p {d}: rc {r.rc} {r.message}")
            if self._records(d):
                yield from self._complete(i, d, src)
            return
        yield it.get("wait_migrate")
        if self._up(src):
            m = yield w.ldm_command(src, "migrate-domain", "-c", d, tgt)
            self.note(f"{src} # ldm migrate-domain -c {d} {tgt}: rc {m.rc} {' '.join(m.stderr.split())}")
        yield it.get("wait_update")
        yield from self._complete(i, d, src)

    def _complete(self, i: int, d: str, src: str) -> Proc:
        """clovmmigrate -u on the source, naming where the guest runs, until it completes."""
        w = self.w
        deadline = w.sched.now + OP_BUDGET
        kill = self._kill_item(i, "u")
        while w.sched.now < deadline:
            if not self._records(d):
                return
            yield from self._wait_up(src, max(1.0, deadline - w.sched.now))
            on = active_on(w, d)
            if len(on) != 1 or migrating(w, d):
                yield WaitFor(lambda: len(active_on(w, d)) == 1 and not migrating(w, d), 60.0)
                continue
            r = yield from self._clovmmigrate(src, "update", d, on[0], kill)
            kill = None
            if r.rc == RC_OK:
                return
            self.note(f"clovmmigrate -u {d} {on[0]}: rc {r.rc} {r.message}")
            if r.rc == RC_REFUSED and r.code == codes.SPCONFIG_LIMIT:
                yield from self._fix_spconfigs(sorted({src, on[0]}))
            elif r.rc == RC_REFUSED and r.code == codes.NOT_PREPARED:
                return
            else:
                yield RETRY_WAIT
        self.note(f"operator gave up completing {d}")

    def _fix_spconfigs(self, hosts: list[str]) -> Proc:
        """The manual's remedy: remove config_tmp, and saved configurations beyond 6 (the ones
        this campaign added first, never the one marked for next power-on)."""
        w = self.w
        for h in hosts:
            if not self._up(h):
                continue
            sp = w.ldm[h].sp_store()
            names = [n for n, _ in sp.configs if n != ldmmod.FACTORY_DEFAULT]
            drop = [CONFIG_TMP] if CONFIG_TMP in names else []
            rest = [n for n in names if n != CONFIG_TMP]
            extra = len(rest) - MAX_SAVED_SPCONFIGS
            victims = sorted((n for n in rest if n != sp.next), key=lambda n: (not n.startswith("chaos"), n))
            drop += victims[: max(0, extra)]
            for name in drop:
                r = yield w.ldm_command(h, "remove-spconfig", name)
                self.note(f"{h} # ldm remove-spconfig {name}: rc {r.rc}")

    def _op_oneshot(self, i: int, it: Item) -> Proc:
        begun = self._begin_migration_op(i, it)
        if begun is None:
            return
        d, src, tgt = begun
        w = self.w
        scoped = bool(it.get("scoped"))
        kill = self._kill_item(i, "run")
        run = SafeMigrationRun(MigrateRequest(d, src, tgt, scoped=scoped))
        label = f"clovm migrate{' --scoped' if scoped else ''} {d} {tgt}"
        r = yield w.run_machine(src, run, label, kill_after=kill.get("calls") if kill is not None else None)
        deadline = w.sched.now + OP_BUDGET
        first = True
        while r.rc in (KILLED, RC_FAILED) and w.sched.now < deadline:
            self.note(f"{label}: rc {r.rc} {r.message}")
            yield kill.get("delay") if kill is not None and first and r.rc == KILLED else RETRY_WAIT
            first = False
            yield from self._wait_up(src, max(1.0, deadline - w.sched.now))
            j = w.journals.get((src, journal_key(d)))
            if j is None:
                return  # killed before its first journal write: nothing was changed
            r = yield w.run_machine(
                src, SafeMigrationRun(MigrateRequest(d, src, "", resume=True), j), f"clovm migrate --resume {d}"
            )
        self.note(f"{label}: rc {r.rc} {r.message}")
