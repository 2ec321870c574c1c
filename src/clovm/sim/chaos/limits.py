"""The limits of a chaos run (:mod:`clovm.sim.chaos.run`), in virtual seconds, and the type of its
processes. :data:`LIVENESS_BOUND` is derived in :mod:`clovm.sim.chaos.run`'s docstring."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

LIVENESS_BOUND = 1200.0  # virtual s from the quiet point to a settled cluster (see clovm.sim.chaos.run's docstring)
START_TIMEOUT = 180.0  # virtual s for the datacenter to come up healthy
HEAL_POLL = 5.0
LEFT_STUCK = 30.0  # virtual s a stopped node may stay LEFTCLUSTER before the operator clears it (cftool -k)
RETRY_WAIT = 15.0  # the operator's pause before running a failed step again
OP_BUDGET = 2400.0  # virtual s the operator spends on one operation before it gives up
MAX_RUN = 12000.0  # virtual s: a run still going by then is a failure (the monitor's deadline is earlier)

Proc = Generator[Any, Any, Any]
