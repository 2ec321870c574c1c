"""``clovm sim chaos``: a randomised campaign over everything (operations, faults, invariants).

Each seed draws a topology and a schedule (:mod:`.schedule`), which :mod:`.run` carries out in
a :class:`~clovm.sim.world.World` (its operator in :mod:`.operate`, its faults in :mod:`.faults`,
its healer in :mod:`.healer`, its limits in :mod:`.limits`) while the world checks the safety
invariants as they change (:mod:`clovm.sim.invariants`) and a monitor checks liveness
(:mod:`.observe`: is the datacenter settled); :mod:`.shrink` reduces a failing
schedule to a minimal one (delta debugging); :mod:`.campaign` runs many seeds in parallel.
"""

from .run import LIVENESS_BOUND, Outcome, problems, run_seed, settled
from .schedule import Item, Schedule, draw

__all__ = ["LIVENESS_BOUND", "Item", "Outcome", "Schedule", "draw", "problems", "run_seed", "settled"]
