"""One chaos run: a seed's schedule carried out in a :class:`~clovm.sim.world.World`.

Processes of the world (generators, see ``World.spawn``):

* the **operator** runs the operations one after the other, each as the seed's manual or the
  ``clovm migrate`` documentation says, reacting to every outcome the documented way: a killed
  command is run again (``clovmmigrate``) or resumed (``clovm migrate --resume``) after the kill
  item's delay; a step that failed part way (rc 4) is run again; ``-u`` names the control domain
  the guest runs on (the source after a cancel or a failure) and waits for the guest to run; a
  ``-u`` refused because of the saved configurations removes what the manual says (``config_tmp``,
  anything beyond 6) and runs again;
* one process per **fault**: it injects the fault at its time and heals it after its duration;
* the **healer** is the operator's documented recovery of stopped guests (every 5 s): a guest
  whose domain is stopped is started on the control domain that holds it once every running peer
  holds it DOWN (``cftool -n``) — or at once, for a crash item marked ``early`` (the seed's
  "started too early"); a guest whose cluster services were refused is stopped again; a node
  whose ``sdtool -s`` shows an agent InitFailed or TestFailed (a LAN that was down, an XSCF that did
  not know the domain yet) has SF re-initialised (``sdtool -r``, at most once a minute: an init
  that failed is never tried again by SF itself, and clovm migrate's proof tests, it does not
  re-initialise);
* the **monitor**: once every fault has healed and the last operation has begun (the *quiet
  point* Q), the cluster must be *settled* (:func:`settled`) by Q + :data:`LIVENESS_BOUND`.

Safety invariants are checked by the world itself, as they change (:mod:`clovm.sim.invariants`).

The liveness bound. From Q, the longest way to a settled cluster is the last operation begun
at Q, taking every slow branch with no fault left: ``-p`` run twice (a kill, ≤ 60 s before
the rerun), the operator's wait before migrating (≤ 60 s), the slowest migration of the
topologies (16 GiB at 500 MB/s never converging: 5 pre-copy rounds and the suspend, ≈ 200 s),
an abort that leaves the guest stopped: its peers hold it DOWN CLUSTER_TIMEOUT (600 s) after its
last heartbeat, plus one domain-status recheck (10 s), the healer's poll (5 s), the join (3 s)
and RMS settling (3 s); then ``-u`` run twice (a kill, ≤ 60 s; its ``sf_wait`` ≤ 60 s), SF's
first tests on every node (seconds). That is ≈ 60 + 60 + 200 + 621 + 60 + 60 + 10 ≈ 1071 s;
:data:`LIVENESS_BOUND` = 1200 s leaves ≈ 130 s for retries (15 s apart) and the one-second poll.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ...core import codes
from ...core import ldm as ldmmod
from ...core import sp as spmod
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
from .schedule import OPERATIONS, Item, Schedule, draw, topology_of

LIVENESS_BOUND = 1200.0  # virtual s from the quiet point to a settled cluster (see the module docstring)
START_TIMEOUT = 180.0  # virtual s for the datacenter to come up healthy
HEAL_POLL = 5.0
LEFT_STUCK = 30.0  # virtual s a stopped node may stay LEFTCLUSTER before the operator clears it (cftool -k)
RETRY_WAIT = 15.0  # the operator's pause before running a failed step again
OP_BUDGET = 2400.0  # virtual s the operator spends on one operation before it gives up
MAX_RUN = 12000.0  # virtual s: a run still going by then is a failure (the monitor's deadline is earlier)

Proc = Generator[Any, Any, Any]


@dataclass
class Outcome:
    seed: int
    schedule: Schedule
    keep: frozenset[int] | None
    failures: list[str]
    trace: list[str]
    virtual_seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# ---- what the cluster looks like ------------------------------------------------------------------
def guest_nodes(w: World) -> list[str]:
    return sorted(cf for cf, n in w.nodes.items() if n.kind == "guest")


def active_on(w: World, domain: str) -> list[str]:
    """The running ldmds that list ``domain`` active."""
    return [
        h
        for h, d in sorted(w.ldm.items())
        if h not in w.ldm_down and (x := d.domain(domain)) is not None and x.state == "active"
    ]


def migrating(w: World, domain: str) -> bool:
    return any(
        h not in w.ldm_down and ((m := d.migration(domain)) is not None and not m.dry_run or domain in d.incoming())
        for h, d in w.ldm.items()
    )


def under_procedure(w: World, domain: str) -> bool:
    """A clovmmigrate or clovm migrate journal of ``domain`` exists somewhere."""
    return any(d in (domain, journal_key(domain)) for _, d in w.journals)


def problems(w: World) -> list[str]:
    """Why the datacenter is not settled (empty: settled): every control domain and ldmd up, its
    node UP in every view; every guest node alive, joined, UP in every view, SF running with every
    agent TestWorked/InitWorked, its CLUSTER_TIMEOUT back at the configured value, no -p window,
    record or widening left; every guest domain running exactly once, where its process is, with
    no migration in progress and no journal left; every application online exactly once."""
    out: list[str] = []
    t = w.topo
    for c in t.control_domains:
        n = w.nodes[c.cf_name]
        if c.name in w.cd_down or c.name in w.ldm_down:
            out.append(f"{c.name}: {'down' if c.name in w.cd_down else 'ldmd down'}")
        elif not n.alive or n.node is None or any(v != "UP" for v in n.node.cf.view().values()):
            out.append(f"{c.cf_name}: not UP everywhere")
    for cf in guest_nodes(w):
        n = w.nodes[cf]
        if not n.alive or n.suspended or n.services != "started" or n.node is None:
            out.append(f"{cf}: {'suspended' if n.suspended else 'not running' if not n.alive else n.services}")
            continue
        bad = sorted(p for p, v in n.node.cf.view().items() if v != "UP")
        if bad:
            out.append(f"{cf} holds {' '.join(bad)} not UP")
        rows = n.node.sf.rows() if n.node.sf is not None else []
        if not n.node.sf_running or any(
            r.test_state != "TestWorked" or r.init_state != "InitWorked" or r.sa_state != "Idle" for r in rows
        ):
            out.append(f"{cf}: SF {'not running' if not n.node.sf_running else 'agents not all worked'}")
        f = n.files
        want = t.initial_disk(n.host).timeout
        if f.timeout != want or f.record is not None or f.window or f.widen or n.node.cf.widened():
            out.append(
                f"{cf}: timeout {f.timeout} (configured {want}), record {f.record}, window {f.window}, "
                f"widened {sorted(n.node.cf.widened())}"
            )
    for g in t.guests:
        on = active_on(w, g.name)
        n = w.nodes[g.cf_name]
        if on != [n.hosted_by] or migrating(w, g.name):
            out.append(
                f"{g.name}: active on {on or 'nothing'} (process on {n.hosted_by})"
                + (", migrating" if migrating(w, g.name) else "")
            )
    if w.journals:
        out.append(f"journals left: {sorted(w.journals)}")
    for app, online_on in sorted(w.online.items()):
        if len(online_on) != 1:
            out.append(f"{app} online on {sorted(online_on) or 'no node'}")
    return out


def settled(w: World) -> bool:
    return not problems(w)


# ---- the run --------------------------------------------------------------------------------------
class Chaos:
    """A seed's schedule (the items in ``keep``, or all) as processes of ``world``."""

    def __init__(self, world: World, schedule: Schedule, keep: frozenset[int] | None = None) -> None:
        self.w = world
        self.schedule = schedule
        self.items = [(i, it) for i, it in enumerate(schedule.items) if keep is None or i in keep]
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.done = False
        self.faults_left = 0
        self.last_op_started = False
        self.ops_done = False
        self.op_over: set[int] = set()
        self.op_where: dict[int, tuple[str, str, str]] = {}  # op -> (domain, source, target)
        self.hold: dict[str, float] = {}  # guest domain -> not started again before
        self.early: set[str] = set()
        self.t0 = 0.0
        self.quiet: float | None = None  # the quiet point, once reached
        self._reinit: dict[str, float] = {}  # node -> when sdtool -r was last run there
        self._left_since: dict[tuple[str, str], float] = {}  # (observer, node) -> held LEFTCLUSTER since
        self._mine: dict[str, object] = {}  # fault slot -> the item that holds it (overlaps)

    def note(self, text: str) -> None:
        self.notes.append(f"t={self.w.sched.now:.1f}: {text}")
        self.w.trace("chaos", "chaos", text)

    def fail(self, text: str) -> None:
        self.failures.append(f"t={self.w.sched.now:.3f}: {text}")

    def for_op(self, op: int, kind: str) -> list[Item]:
        return [it for _, it in self.items if it.kind == kind and it.get("op") == op]

    # ---- main ---------------------------------------------------------------------------------
    def main(self) -> Proc:
        w = self.w
        ok = yield WaitFor(lambda: settled(w), START_TIMEOUT)
        if not ok:
            self.fail("the datacenter did not come up settled: " + "; ".join(problems(w)))
            return self._end()
        self.t0 = w.sched.now
        self.note(f"settled at start; schedule of {len(self.items)} item(s) begins")
        for _, it in self.items:
            if it.kind not in OPERATIONS and "op" not in dict(it.args):
                self.faults_left += 1
                w.spawn(self._fault(it))
        w.spawn(self._healer())
        w.spawn(self._operator())
        yield WaitFor(lambda: self.faults_left == 0 and self.last_op_started, MAX_RUN)
        quiet = self.quiet = w.sched.now
        self.note(f"quiet point: every fault healed, the last operation begun; settled within {LIVENESS_BOUND:g} s?")
        ok = yield WaitFor(lambda: self.ops_done and settled(w), LIVENESS_BOUND)
        if not ok:
            self.fail(
                f"liveness: not settled {LIVENESS_BOUND:g} s after the quiet point t={quiet:.1f}"
                + ("" if self.ops_done else " (the operator is still busy)")
                + ": "
                + "; ".join(problems(w))
            )
        else:
            self.note(f"settled {w.sched.now - quiet:.1f} s after the quiet point")
        return self._end()

    def _end(self) -> None:
        self.done = True
        self.w.sched.halt()

    # ---- helpers ------------------------------------------------------------------------------
    def _up(self, cd: str) -> bool:
        w = self.w
        return cd not in w.cd_down and cd not in w.ldm_down and w._cd_node(cd).alive

    def _wait_up(self, cd: str, limit: float = OP_BUDGET) -> Proc:
        return (yield WaitFor(lambda: self._up(cd), limit))

    def _sleep_until(self, t: float) -> Proc:
        if t > self.w.sched.now:
            yield t - self.w.sched.now

    def _target(self, src: str, pick: int) -> str:
        cds = sorted(c.name for c in self.w.topo.control_domains if c.name != src)
        return cds[pick % len(cds)]

    def _records(self, domain: str) -> bool:
        """Does -p seem in force for ``domain``'s cluster (a record on a node, or a journal)?"""
        w = self.w
        cluster = w.topo.guest_cluster_of_domain(domain).nodes
        return under_procedure(w, domain) or any(w.nodes[cf].files.record is not None for cf in cluster)

    # ---- the operator -------------------------------------------------------------------------
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

    # ---- faults -------------------------------------------------------------------------------
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

    # ---- the healer ---------------------------------------------------------------------------
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


def run_seed(
    seed: int,
    keep: frozenset[int] | None = None,
    echo: Callable[[str], None] | None = None,
    schedule: Schedule | None = None,
) -> Outcome:
    """Run ``seed``'s schedule (only the items in ``keep``, if given)."""
    sched = schedule or draw(seed)
    w = World(topology_of(sched.topology), seed, echo=echo)
    chaos = Chaos(w, sched, keep)
    w.spawn(chaos.main())
    try:
        w.sched.run_until(MAX_RUN)
    except Exception as e:  # noqa: BLE001 (a machine that raises is a finding too)
        where = traceback.extract_tb(e.__traceback__)[-1]
        chaos.fail(f"exception: {type(e).__name__}: {e} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
    if not chaos.done and not chaos.failures:
        chaos.fail(f"the run did not end within {MAX_RUN:g} virtual seconds: " + "; ".join(problems(w)))
    failures = [f"invariant: {v}" for v in w.violations] + chaos.failures
    return Outcome(seed, sched, keep, failures, w.trace.lines, w.sched.now, chaos.notes)
