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

Where things are: the limits (and the process type) in :mod:`.limits`; what the cluster looks
like and the monitor's verdict (:func:`problems`, :func:`settled`) in :mod:`.observe`; the
operator in :mod:`.operate`, the faults in :mod:`.faults`, the healer in :mod:`.healer` (mixins of
:class:`Chaos`); here :class:`Chaos` itself (its state, the monitor) and :func:`run_seed`. The
names that moved are still importable from here.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from ..hosts import WaitFor
from ..world import World
from .faults import ChaosFaults
from .healer import ChaosHealer
from .limits import HEAL_POLL, LEFT_STUCK, LIVENESS_BOUND, MAX_RUN, OP_BUDGET, RETRY_WAIT, START_TIMEOUT, Proc
from .observe import active_on, guest_nodes, migrating, problems, settled, under_procedure
from .operate import ChaosOperator
from .schedule import OPERATIONS, Item, Schedule, draw, topology_of

__all__ = [
    "HEAL_POLL",
    "LEFT_STUCK",
    "LIVENESS_BOUND",
    "MAX_RUN",
    "OP_BUDGET",
    "RETRY_WAIT",
    "START_TIMEOUT",
    "Chaos",
    "Outcome",
    "Proc",
    "active_on",
    "guest_nodes",
    "migrating",
    "problems",
    "run_seed",
    "settled",
    "under_procedure",
]


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


# ---- the run --------------------------------------------------------------------------------------
class Chaos(ChaosOperator, ChaosFaults, ChaosHealer):
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

    def _sleep_until(self, t: float) -> Proc:
        if t > self.w.sched.now:
            yield t - self.w.sched.now


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
