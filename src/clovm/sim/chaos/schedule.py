"""A chaos schedule: the topology and the list of operations and faults one seed draws.

``draw(seed)`` is a pure function of the seed (its own ``random.Random``, not the world's), so a
seed names its schedule on every machine, and removing items (the shrinker) leaves every other
item exactly as drawn. Times are virtual seconds after the cluster was first healthy
(operations and absolute faults) or after the migration of the operation an item refers to
started (``op`` items: ``cancel``, ``ldmd-crash-mig``); ``abort`` and ``kill`` items change how
their operation runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from typing import Any

from ...topology import Topology, generate, load

OPERATIONS = ("manual", "oneshot", "spconfig-add", "spconfig-remove")  # run one after the other
OP_FAULTS = ("abort", "cancel", "kill", "ldmd-crash-mig")  # refer to an operation (``op``)
FAULTS = ("crash-guest", "crash-cd", "pause", "partition", "loss", "lan", "skew", "ldmd-crash")
KINDS = OPERATIONS + OP_FAULTS + FAULTS
TOPOLOGIES = ("figure-17-1", "figure-17-1-3g", "generated")
MAX_GUESTS = 8

OPS_HORIZON = 200.0  # operations are scheduled in [0, OPS_HORIZON] s (they run one after the other)
FAULT_HORIZON = 250.0  # absolute faults begin in [0, FAULT_HORIZON] s


@dataclass(frozen=True, slots=True)
class Item:
    """One operation or fault. ``args`` are (name, value) pairs, in a fixed order."""

    kind: str
    at: float
    args: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str, default: Any = None) -> Any:
        for k, v in self.args:
            if k == name:
                return v
        return default

    def __str__(self) -> str:
        when = f"op#{self.get('op')} +{self.at:.1f}s" if self.kind in OP_FAULTS else f"t+{self.at:.1f}s"
        args = " ".join(f"{k}={_show(v)}" for k, v in self.args if k != "op")
        return f"{self.kind:<15} {when:<14} {args}".rstrip()


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}" if v == int(v) else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    topology: str  # "figure-17-1", "figure-17-1-3g" or "generated:GUESTS:SERVERS"
    items: tuple[Item, ...]

    def lines(self, keep: frozenset[int] | None = None) -> list[str]:
        return [f"[{i}] {it}" for i, it in enumerate(self.items) if keep is None or i in keep]


@cache
def topology_of(spec: str) -> Topology:
    """The topology named by a schedule (loaded once per process)."""
    if spec.startswith("generated:"):
        _, g, s = spec.split(":")
        return generate(int(g), int(s))
    return load(spec)


def _r(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 1)


def draw(seed: int) -> Schedule:
    """The schedule of ``seed``."""
    rng = random.Random(f"clovm-chaos-schedule:{seed}")
    kind = rng.choice(TOPOLOGIES)
    if kind == "generated":
        n_guests = rng.randint(2, MAX_GUESTS)
        spec = f"generated:{n_guests}:{rng.randint(2, min(n_guests, 4))}"
    else:
        spec = kind
    topo = topology_of(spec)
    guests = sorted(g.name for g in topo.guests)
    cds = sorted(c.name for c in topo.control_domains)
    servers = sorted(s.name for s in topo.servers)
    guest_cfs = sorted(g.cf_name for g in topo.guests)
    items: list[Item] = []
    n_ops = rng.choice((1, 1, 2, 2, 2, 3))
    ops_at = sorted(_r(rng, 0.0, OPS_HORIZON) for _ in range(n_ops))
    for at in ops_at:
        k = rng.choices(OPERATIONS, weights=(40, 40, 10, 10))[0]
        if k in ("manual", "oneshot"):
            args: list[tuple[str, Any]] = [("domain", rng.choice(guests)), ("pick", rng.randrange(8))]
            if k == "manual":
                args += [("wait_migrate", _r(rng, 0.0, 60.0)), ("wait_update", _r(rng, 0.0, 60.0))]
            else:
                args.append(("scoped", rng.random() < 0.5))
            op = len(items)
            items.append(Item(k, at, tuple(args)))
            if rng.random() < 0.15:
                items.append(Item("abort", 0.0, (("op", op),)))
            if rng.random() < 0.15:
                items.append(Item("cancel", _r(rng, 0.0, 90.0), (("op", op),)))
            if rng.random() < 0.25:
                step = rng.choice(("p", "u")) if k == "manual" else "run"
                calls = rng.randrange(0, 400) if step == "run" else rng.randrange(0, 40)
                items.append(
                    Item("kill", 0.0, (("op", op), ("step", step), ("calls", calls), ("delay", _r(rng, 1.0, 60.0))))
                )
            if rng.random() < 0.12:
                items.append(
                    Item(
                        "ldmd-crash-mig",
                        _r(rng, 0.0, 120.0),
                        (("op", op), ("side", rng.choice(("source", "target"))), ("down", _r(rng, 0.5, 60.0))),
                    )
                )
        elif k == "spconfig-add":
            items.append(Item(k, at, (("cd", rng.choice(cds)), ("name", f"chaos{len(items)}"))))
        else:
            items.append(Item(k, at, (("cd", rng.choice(cds)), ("pick", rng.randrange(8)))))
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
        k = rng.choice(FAULTS)
        at = _r(rng, 0.0, FAULT_HORIZON)
        if k == "crash-guest":
            args = [("domain", rng.choice(guests)), ("down", _r(rng, 0.0, 120.0)), ("early", rng.random() < 0.25)]
        elif k == "crash-cd":
            args = [("cd", rng.choice(cds)), ("down", _r(rng, 5.0, 120.0))]
        elif k == "pause":
            args = [("domain", rng.choice(guests)), ("for", _r(rng, 1.0, 40.0))]
        elif k == "partition":
            side = tuple(sorted(rng.sample(guest_cfs, rng.randint(1, len(guest_cfs) - 1))))
            args = [("side", side), ("for", _r(rng, 2.0, 90.0))]
        elif k == "loss":
            args = [("rate", round(rng.uniform(0.05, 0.6), 2)), ("for", _r(rng, 5.0, 120.0))]
        elif k == "lan":
            args = [("server", rng.choice(servers)), ("lan", rng.randrange(2)), ("for", _r(rng, 5.0, 200.0))]
        elif k == "skew":
            args = [("server", rng.choice(servers)), ("seconds", _r(rng, -60.0, 60.0)), ("for", _r(rng, 30.0, 300.0))]
        else:  # ldmd-crash
            args = [("cd", rng.choice(cds)), ("down", _r(rng, 0.5, 60.0))]
        items.append(Item(k, at, tuple(args)))
    return Schedule(seed, spec, tuple(items))
