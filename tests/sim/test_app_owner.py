"""Migrating, and aborting the migration of, the node that owns app1 (cfguest1) — in the simulator.

The built-in scenarios all move guest2, which owns nothing; the seed's "until this operation
completes, the cluster performs no switchover" only matters for the owner. Here:

* ``owner_migration`` — guest1 (app1 Online on cfguest1) moves primary1 → primary3 under -p/-u:
  app1 never moves, nobody leaves or is fenced;
* ``owner_abort_recovery`` — guest1's migration fails and guest1 stops: cfguest2 sees cfguest1
  DOWN about 600 s after -p, and app1 is *not* switched over to cfguest2 while -p is in force
  (the hold); after the documented recovery (start guest1, -u to the source) app1 is Online on
  exactly one node. A mutation test shows the scenario fails when RMS ignores the hold.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from clovm import topology
from clovm.core import ldm as ldmmod
from clovm.core import rms as rmsmod
from clovm.sim import scenarios as sc
from clovm.sim.world import WaitFor


def owner_migration(ctx: sc.Ctx) -> Generator:
    w = ctx.world
    yield from sc.wait_healthy(ctx, "at start")
    ctx.expect(w.online.get("app1") == {"cfguest1"}, "app1 Online on cfguest1 at start")
    yield from sc.prepare(ctx, "primary1", "guest1")
    yield w.rng.uniform(1.0, 20.0)
    r = yield w.ldm_command("primary1", "migrate-domain", "-c", "guest1", "primary3")
    ctx.expect(r.rc == 0, f"migration to succeed: {r.stderr.strip()}")
    yield w.rng.uniform(1.0, 20.0)
    yield from sc.update(ctx, "primary1", "guest1", "primary3")
    sc.entry_points_at(ctx, "cfguest1", "primary3")
    yield from sc.wait_healthy(ctx, "after -u")
    ctx.expect(not sc.ever(w, "LEFTCLUSTER"), "nobody to leave the cluster")
    ctx.expect(not w.kills, f"nothing fenced, got {w.kills}")
    ctx.expect(
        w.online.get("app1") == {"cfguest1"} and not sc.ever(w, "cfguest2    RMS    app1 Online"),
        "app1 never to move from cfguest1 while its node migrates",
    )


def owner_abort_recovery(ctx: sc.Ctx) -> Generator:
    w = ctx.world
    yield from sc.wait_healthy(ctx, "at start")
    t_p = w.sched.now
    yield from sc.prepare(ctx, "primary1", "guest1")
    yield w.rng.uniform(1.0, 30.0)
    w._ldm_feed("primary1", ldmmod.MigrationAbortArmed("guest1"))
    r = yield w.ldm_command("primary1", "migrate-domain", "-c", "guest1", "primary3")
    ctx.expect(r.rc != 0 and not w.nodes["cfguest1"].alive, "the aborted migration to leave guest1 stopped")
    ok = yield WaitFor(lambda: w.view("cfguest2").get("cfguest1") == "DOWN", 900.0, poll=0.25)
    ctx.expect(
        ok and w.sched.now - t_p >= 600.0, f"cfguest1 DOWN, not before 600 s after -p ({w.sched.now - t_p:.0f} s)"
    )
    yield 30.0  # well after DOWN: a failover would have happened by now if switchovers were not held
    ctx.expect(not w.online.get("app1"), f"no switchover while -p is in force, app1 on {w.online.get('app1')}")
    ctx.expect(not w.kills, "nobody fenced while -p is in force")
    r = yield w.ldm_command("primary1", "start-domain", "guest1")
    ctx.expect(r.rc == 0, f"ldm start-domain guest1: {r.stderr.strip()}")
    yield WaitFor(lambda: w.nodes["cfguest1"].services == "started", 60.0)
    yield from sc.update(ctx, "primary1", "guest1", "primary1")
    yield from sc.wait_healthy(ctx, "after recovery")
    ctx.expect(len(w.online.get("app1", set())) == 1, f"app1 Online on exactly one node, got {w.online.get('app1')}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("proc", [owner_migration, owner_abort_recovery])
def test_the_owner_of_app1(proc, seed: int) -> None:
    out = sc.run_process(proc.__name__, proc, 4000.0, topology.load(), seed)
    assert out.ok, "\n".join(out.failures)


@pytest.mark.timeout(120)
def test_without_the_switchover_hold_the_owner_abort_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation: RMS that ignores clovmmigrate -p's hold switches app1 over to cfguest2 at DOWN."""
    monkeypatch.setattr(rmsmod.Rms, "_on_hold", lambda self, held: [])
    out = sc.run_process("owner_abort_recovery", owner_abort_recovery, 4000.0, topology.load(), 0)
    assert not out.ok
    assert any("no switchover while -p is in force" in f for f in out.failures), out.failures
