"""Built-in scenarios of ``clovm sim``: the seed's procedure and its branches in virtual time.

A scenario is a generator run as a process of the :class:`~clovm.sim.world.World`: it yields a
number (sleep that many virtual seconds), a ``Pending`` (an ldm command or a clovmmigrate run;
the value comes back) or a ``WaitFor``. It records failed expectations in ``ctx.failures``.
Randomised fault timing (operator delays, when the partition or the abort happens) comes from
the world's seeded RNG, so ``--seeds N`` explores N timings and every one is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..core import ldm as ldmmod
from ..core.messages import WRP_34, WRP_35
from ..core.migration import RC_FAILED, Finished
from ..core.safemigrate import MigrateRequest, SafeMigrationRun, journal_key
from ..topology import Topology
from .hosts import WaitFor
from .world import World

HEALTH_TIMEOUT = 120.0
RECHECK = 10.0  # membership recheck_interval: how often a LEFTCLUSTER domain's status is asked


@dataclass
class Ctx:
    world: World
    failures: list[str] = field(default_factory=list)
    pre_timeouts: dict[str, int] = field(default_factory=dict)
    done: bool = False
    metrics: dict[str, float] = field(default_factory=dict)  # measured values (bench/exposure.py)

    def expect(self, cond: bool, what: str) -> bool:
        if not cond:
            self.failures.append(f"t={self.world.sched.now:.3f}: expected {what}")
        return cond


# ---- helpers ------------------------------------------------------------------------------------
def guests(w: World) -> list[str]:
    return sorted(cf for cf, n in w.nodes.items() if n.kind == "guest")


def healthy(w: World) -> bool:
    """Every guest node alive, joined, all peers UP, SF all TestWorked/InitWorked, apps online
    once, and every guest node agreeing where each app runs (``clovm up``'s readiness rule, so
    that SF weighs a split brain alike on every node)."""
    # (The states are str enums: comparing them with their spelling is comparing str() of them.)
    for cf in guests(w):
        n = w.nodes[cf]
        if not n.alive or n.suspended or n.services != "started":
            return False
        cfm = n.machines.get("cf")  # w.view(cf), without building the str dict
        if cfm is not None and any(v != "UP" for v in cfm.view().values()):
            return False
        rows = w.sf_rows(cf)
        if not rows or any(
            r.test_state != "TestWorked" or r.init_state != "InitWorked" or r.sa_state != "Idle" for r in rows
        ):
            return False
    if w.placement_disagreement() is not None:
        return False
    return all(len(on) == 1 for on in w.online.values())


def ever(w: World, text: str) -> bool:
    return any(text in ln for ln in w.trace.lines)


def timeouts(w: World) -> dict[str, int]:
    return {cf: w.nodes[cf].files.timeout for cf in guests(w)}


def sf_running(w: World, cf: str) -> bool:
    sf = w.nodes[cf].machines.get("sf")
    return sf is not None and str(sf.daemon) == "running"


def prepare(ctx: Ctx, host: str, domain: str) -> Generator[Any, Any, Finished]:
    ctx.pre_timeouts = timeouts(ctx.world)
    r: Finished = yield ctx.world.clovmmigrate(host, "prepare", domain)
    ctx.expect(r.rc == 0, f"clovmmigrate -p {domain} to succeed, got rc={r.rc} {r.message}")
    ctx.expect(
        all(t == 600 for t in timeouts(ctx.world).values()), f"timeout 600 everywhere, got {timeouts(ctx.world)}"
    )
    ctx.expect(not any(sf_running(ctx.world, cf) for cf in guests(ctx.world)), "SF stopped on every guest node")
    return r


def update(ctx: Ctx, host: str, domain: str, target: str) -> Generator[Any, Any, Finished]:
    r: Finished = yield ctx.world.clovmmigrate(host, "update", domain, target)
    ctx.expect(r.rc == 0, f"clovmmigrate -u {domain} {target} to succeed, got rc={r.rc} {r.message}")
    ctx.expect(
        timeouts(ctx.world) == ctx.pre_timeouts, f"timeouts back to {ctx.pre_timeouts}, got {timeouts(ctx.world)}"
    )
    return r


def entry_points_at(ctx: Ctx, cf: str, host: str) -> None:
    w, t = ctx.world, ctx.world.topo
    cd = t.control_domain(host)
    srv = t.server(cd.server)
    for g in guests(w):
        cfg = w.nodes[g].files.sf_config
        e = cfg.entry(cf)
        ctx.expect(
            (e.lan0, e.lan1, e.ppar_id) == (srv.lan0, srv.lan1, cd.ppar),
            f"{g}: SF entry of {cf} -> {srv.lan0}/{srv.lan1} PPAR-ID {cd.ppar}, got {e}",
        )
        ctx.expect(cfg.weight(cf) == cd.sf_weight, f"{g}: SF weight of {cf} = {cd.sf_weight}")


def wait_healthy(ctx: Ctx, what: str) -> Generator[Any, Any, bool]:
    ok: bool = yield WaitFor(lambda: healthy(ctx.world), HEALTH_TIMEOUT)
    ctx.expect(ok, f"cluster healthy ({what})")
    return ok


# ---- scenarios -----------------------------------------------------------------------------------
def live_migration(ctx: Ctx) -> Generator[Any, Any, None]:
    w = ctx.world
    yield from wait_healthy(ctx, "at start")
    yield from prepare(ctx, "primary2", "guest2")
    yield w.rng.uniform(1.0, 20.0)
    r = yield w.ldm_command("primary2", "migrate-domain", "-c", "guest2", "primary3")
    ctx.expect(r.rc == 0, f"migration to succeed: {r.stderr.strip()}")
    ctx.expect(
        w.where("guest2") == [("primary3", "active")], f"guest2 active on primary3 only, got {w.where('guest2')}"
    )
    longest = max((e - s for d, s, e in w.suspends if d == "guest2"), default=0.0)
    ctx.expect(longest > 10.0, f"the suspend to last well over 10 s, got {longest:.1f} s")
    yield w.rng.uniform(1.0, 30.0)
    yield from update(ctx, "primary2", "guest2", "primary3")
    entry_points_at(ctx, "cfguest2", "primary3")
    for h in ("primary2", "primary3"):
        out = (yield w.ldm_command(h, "list-spconfig")).stdout
        ctx.expect("config_tmp" not in out and "[current]" in out, f"{h}: configuration saved, no config_tmp: {out!r}")
    yield from wait_healthy(ctx, "after -u")
    ctx.expect(not ever(w, "LEFTCLUSTER"), "nobody to leave the cluster")
    ctx.expect(not w.kills, f"nothing fenced, got {w.kills}")
    ctx.expect(
        w.online.get("app1") == {"cfguest1"} and not ever(w, "cfguest2    RMS    app1 Online"),
        "app1 never to move from cfguest1",
    )


def no_prepare(ctx: Ctx) -> Generator[Any, Any, None]:
    w = ctx.world
    yield from wait_healthy(ctx, "at start")
    yield w.rng.uniform(1.0, 20.0)
    yield w.ldm_command("primary2", "migrate-domain", "-c", "guest2", "primary3")
    ok = yield WaitFor(lambda: any(k[2] == "cfguest2" for k in w.kills), 120.0)
    ctx.expect(ever(w, "cfguest2: LEFTCLUSTER"), "cfguest2 to go LEFTCLUSTER without -p")
    ctx.expect(ok, "cfguest2 to be fenced without -p")
    ctx.expect(all(k[2] == "cfguest2" for k in w.kills), f"only cfguest2 fenced, got {w.kills}")
    ctx.expect(w.online.get("app1") == {"cfguest1"}, "app1 still on cfguest1")


def _abort(ctx: Ctx) -> Generator[Any, Any, tuple[float, float]]:
    """-p, then a migration that fails after the copy and leaves guest2 stopped.

    Returns (time of -p, time cfguest2 went silent)."""
    w = ctx.world
    yield from wait_healthy(ctx, "at start")
    t_p = w.sched.now
    yield from prepare(ctx, "primary2", "guest2")
    yield w.rng.uniform(1.0, 30.0)
    w._ldm_feed("primary2", ldmmod.MigrationAbortArmed("guest2"))
    r = yield w.ldm_command("primary2", "migrate-domain", "-c", "guest2", "primary3")
    ctx.expect(r.rc != 0, "the aborted migration to fail")
    ctx.expect(not w.nodes["cfguest2"].alive, "guest2 to have stopped")
    return t_p, w.silent_since.get("cfguest2", w.sched.now)


def _recover(ctx: Ctx, t_p: float, t_silent: float, t_stopped: float) -> Generator[Any, Any, None]:
    w = ctx.world
    ok = yield WaitFor(lambda: w.view("cfguest1").get("cfguest2") == "DOWN", 900.0, poll=0.25)
    ctx.expect(ok, "cfguest1 to see cfguest2 DOWN")
    ctx.expect(w.sched.now - t_p >= 600.0, f"DOWN not before 600 s after -p, got {w.sched.now - t_p:.1f} s")
    # cfguest1 last heard cfguest2 at most one heartbeat interval before it went silent; DOWN
    # follows LEFTCLUSTER at the first domain-status check that finds the domain stopped.
    earliest = t_silent + 600.0 - 1.0
    latest = max(t_silent + 600.0, t_stopped) + RECHECK + 1.0
    ctx.expect(
        earliest <= w.sched.now <= latest,
        f"DOWN about 600 s after cfguest2 went silent at {t_silent:.1f}, got {w.sched.now:.1f}",
    )
    ctx.expect(not w.kills, "nobody fenced while -p is in force")
    r = yield w.ldm_command("primary2", "start-domain", "guest2")
    ctx.expect(r.rc == 0, f"ldm start-domain guest2: {r.stderr.strip()}")
    yield WaitFor(lambda: w.nodes["cfguest2"].services == "started", 60.0)
    yield from update(ctx, "primary2", "guest2", "primary2")
    entry_points_at(ctx, "cfguest2", "primary2")
    yield from wait_healthy(ctx, "after recovery")


def abort_recovery(ctx: Ctx) -> Generator[Any, Any, None]:
    t_p, t_silent = yield from _abort(ctx)
    yield from _recover(ctx, t_p, t_silent, t_silent)


def early_start(ctx: Ctx) -> Generator[Any, Any, None]:
    w = ctx.world
    t_p, t_silent = yield from _abort(ctx)
    yield w.rng.uniform(10.0, 200.0)
    ctx.expect(w.view("cfguest1").get("cfguest2") != "DOWN", "cfguest2 not yet DOWN")
    r = yield w.ldm_command("primary2", "start-domain", "guest2")
    ctx.expect(r.rc == 0, "ldm start-domain guest2 (too early)")
    refused = yield WaitFor(lambda: w.nodes["cfguest2"].services == "refused", 30.0)
    ctx.expect(refused, "SF, CRM and RMS to refuse to start on cfguest2")
    msgs = w.nodes["cfguest2"].files.logs.get("messages", [])
    for what in ("SF", "CRM", "RMS"):
        ctx.expect(
            any(f"] {what} failed to start: " in m and "cfguest1" in m for m in msgs),
            f"messages to say {what} failed to start because of cfguest1",
        )
    ctx.expect(not sf_running(w, "cfguest2"), "SF not running on cfguest2")
    r = yield w.ldm_command("primary2", "stop-domain", "guest2")
    ctx.expect(r.rc == 0, "ldm stop-domain guest2")
    yield from _recover(ctx, t_p, t_silent, w.sched.now)


def split_brain(ctx: Ctx) -> Generator[Any, Any, None]:
    w = ctx.world
    yield from wait_healthy(ctx, "at start")
    yield w.rng.uniform(1.0, 60.0)
    w.net.partition({"cfguest1"}, {"cfguest2"})
    w.trace("net", "fault", "interconnect partition: cfguest1 | cfguest2")
    ok = yield WaitFor(lambda: bool(w.kills), 120.0)
    ctx.expect(ok, "one side to be fenced")
    yield 60.0
    ctx.expect(
        [k[2] for k in w.kills][:1] == ["cfguest2"],
        f"tie (weights 1+0 each): cfguest2 fenced, alphabetically first cfguest1 survives; got {w.kills}",
    )
    ctx.expect(w.nodes["cfguest1"].alive and not w.nodes["cfguest2"].alive, "cfguest1 survives, cfguest2 stopped")
    ctx.expect(w.view("cfguest1").get("cfguest2") == "DOWN", "cfguest1 sees cfguest2 DOWN")
    ctx.expect(w.online.get("app1") == {"cfguest1"}, "app1 on cfguest1")
    w.net.heal()


def time_sync(ctx: Ctx) -> Generator[Any, Any, None]:
    w = ctx.world
    skew = 30.0 + w.rng.uniform(0.0, 30.0)
    w.set_clock_offset("m10-3", skew)
    w.trace("m10-3", "fault", f"XSCF clock {skew:+.1f} s")
    yield from wait_healthy(ctx, "at start")
    yield from prepare(ctx, "primary2", "guest2")
    r = yield w.ldm_command("primary2", "migrate-domain", "-c", "guest2", "primary3")
    ctx.expect(r.rc == 0, "migration to succeed")
    yield from update(ctx, "primary2", "guest2", "primary3")
    yield 200.0
    sw = w.log_texts("cfguest1", "switchlog")
    w34 = WRP_34.format(host="cfguest2")
    w35 = WRP_35.format(host="cfguest2")
    msgs = [m.split("] ", 1)[-1] for m in w.log_texts("cfguest1", "messages")]
    ctx.expect(sw.count(w34) == 1 and msgs.count(w34) == 1, "(WRP, 34) once in switchlog and messages")
    ctx.expect("Further out-of-sync messages will appear in the syslog." in sw, "the 'Further out-of-sync' line")
    n35 = msgs.count(w35)
    ctx.expect(n35 >= 2, f"(WRP, 35) periodically while out of sync, got {n35}")
    w.set_clock_offset("m10-3", 0.0)
    w.trace("m10-3", "fault", "XSCF clock back in sync")
    yield 120.0
    n35_after_sync = msgs.count(w35)
    yield 300.0
    msgs = [m.split("] ", 1)[-1] for m in w.log_texts("cfguest1", "messages")]
    ctx.expect(msgs.count(w35) == n35_after_sync, "silence once the clocks agree")
    ctx.expect(w.log_texts("cfguest1", "switchlog").count(w34) == 1, "no second (WRP, 34)")


# ---- clovm migrate ----------------------------------------------------------------------------------
NORMAL_TIMEOUT = 10.0  # CLUSTER_TIMEOUT of the topologies' guest clusters
HEARTBEAT_INTERVAL = 1.0  # core.membership default


def one_shot_with_a_crash(ctx: Ctx, scoped: bool) -> Generator[Any, Any, Finished]:
    """``clovm migrate [--scoped] guest2 primary3`` on figure-17-1-3g while cfguest1 crashes during
    the migration. Records ``detection`` (crash → cfguest3 no longer holds cfguest1 UP) in
    ``ctx.metrics``; returns the run's Finished effect."""
    w = ctx.world
    yield from wait_healthy(ctx, "at start")
    ctx.pre_timeouts = timeouts(w)
    run = SafeMigrationRun(MigrateRequest("guest2", "primary2", "primary3", scoped=scoped))
    done = w.run_machine("primary2", run, f"clovm migrate{' --scoped' if scoped else ''} guest2 primary3")
    yield w.rng.uniform(5.0, 30.0)  # the 16 GiB pre-copy alone takes over 30 s
    ctx.expect(bool(w.where("guest2")) and w.where("guest2")[0][0] == "primary2", "guest2 still migrating")
    t_crash = w.sched.now
    w.kill(w.nodes["cfguest1"], "crashed (fault injected during the migration of guest2)")
    seen = yield WaitFor(lambda: w.view("cfguest3").get("cfguest1") != "UP", 1200.0, poll=0.05)
    ctx.expect(seen, "cfguest3 to notice that cfguest1 is gone")
    ctx.metrics["detection"] = w.sched.now - t_crash
    w.trace("cfguest3", "metric", f"cfguest1's crash detected after {ctx.metrics['detection']:.2f} s")
    r: Finished = yield done
    return r


def scoped_migration(ctx: Ctx) -> Generator[Any, Any, None]:
    w = ctx.world
    r = yield from one_shot_with_a_crash(ctx, scoped=True)
    detection = ctx.metrics["detection"]
    ctx.expect(
        detection <= NORMAL_TIMEOUT + HEARTBEAT_INTERVAL,
        f"cfguest1's crash detected within the normal timeout + one interval, got {detection:.2f} s",
    )
    ctx.expect(w.where("guest2") == [("primary3", "active")], f"guest2 active on primary3, got {w.where('guest2')}")
    moved = yield WaitFor(lambda: w.online.get("app1") == {"cfguest3"}, 60.0)
    ctx.expect(moved, f"app1 to fail over to cfguest3, got {w.online.get('app1')}")
    # cfguest1's domain is already stopped when cfguest3's SF acts, so the XSCF has nothing to kill
    ctx.expect(all(k[2] == "cfguest1" for k in w.kills), f"nobody but cfguest1 fenced, got {w.kills}")
    if r.rc != 0:  # completing needs every node: start guest1 again, then resume
        ctx.expect(r.rc == RC_FAILED, f"clovm migrate to stop resumably (rc 4), got rc={r.rc} {r.message}")
        down = yield WaitFor(lambda: w.view("cfguest3").get("cfguest1") == "DOWN", 120.0)
        ctx.expect(down, "cfguest1 DOWN before it is started again")
        s = yield w.ldm_command("primary1", "start-domain", "guest1")
        ctx.expect(s.rc == 0, f"ldm start-domain guest1: {s.stderr.strip()}")
        yield WaitFor(lambda: w.nodes["cfguest1"].services == "started", 60.0)
        journal = w.journals.get(("primary2", journal_key("guest2")))
        ctx.expect(journal is not None and journal["step"] != "done", "the journal kept for --resume")
        run = SafeMigrationRun(MigrateRequest("guest2", "primary2", "", resume=True), journal)
        r = yield w.run_machine("primary2", run, "clovm migrate --resume guest2")
    ctx.expect(r.rc == 0, f"clovm migrate to finish with rc 0, got rc={r.rc} {r.message}")
    ctx.expect(timeouts(w) == ctx.pre_timeouts, f"timeouts back to {ctx.pre_timeouts}, got {timeouts(w)}")
    entry_points_at(ctx, "cfguest2", "primary3")
    yield from wait_healthy(ctx, "after clovm migrate")


SCENARIO_TOPOLOGY = {"scoped-migration": "figure-17-1-3g"}  # the rest run on the given topology


def topology_for(name: str, given: str | None) -> str:
    """The topology a scenario runs on: ``given``, else its own, else the default."""
    from ..topology import DEFAULT

    return given or SCENARIO_TOPOLOGY.get(name, DEFAULT)


SCENARIOS: dict[str, tuple[Callable[[Ctx], Generator[Any, Any, Any]], float]] = {
    # name: (process, virtual seconds to run at most)
    "live-migration": (live_migration, 1500.0),
    "no-prepare": (no_prepare, 600.0),
    "abort-recovery": (abort_recovery, 2400.0),
    "early-start": (early_start, 3000.0),
    "split-brain": (split_brain, 600.0),
    "time-sync": (time_sync, 2000.0),
    "scoped-migration": (scoped_migration, 3000.0),
}


def check_invariants(ctx: Ctx) -> None:
    w = ctx.world
    for v in w.violations:
        ctx.failures.append(f"invariant: {v}")


@dataclass
class Outcome:
    scenario: str
    seed: int
    failures: list[str]
    trace: list[str]
    virtual_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def run(name: str, topo: Topology, seed: int = 0, echo: Callable[[str], None] | None = None) -> Outcome:
    proc, limit = SCENARIOS[name]
    return run_process(name, proc, limit, topo, seed, echo)


def run_process(
    name: str,
    proc: Callable[[Ctx], Generator[Any, Any, Any]],
    limit: float,
    topo: Topology,
    seed: int = 0,
    echo: Callable[[str], None] | None = None,
) -> Outcome:
    """Run ``proc`` as a scenario called ``name`` for at most ``limit`` virtual seconds."""
    w = World(topo, seed, echo=echo)
    ctx = Ctx(w)

    def main() -> Generator[Any, Any, None]:
        yield from proc(ctx)
        ctx.done = True
        w.sched.halt()  # = run_until(limit, stop=lambda: ctx.done), without a call per event

    w.spawn(main())
    w.sched.run_until(limit)
    ctx.expect(ctx.done, f"scenario {name} to finish within {limit:.0f} virtual seconds")
    check_invariants(ctx)
    return Outcome(name, seed, ctx.failures, w.trace.lines, w.sched.now, ctx.metrics)
