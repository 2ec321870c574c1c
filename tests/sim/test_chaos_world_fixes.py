"""What the chaos campaign found in the simulator's world and in clovm migrate's recovery, as
deterministic regressions (each names the campaign seed whose shrunk schedule showed it)."""

from __future__ import annotations

from collections.abc import Generator

from clovm import topology
from clovm.core import ldm as ldmmod
from clovm.core import sp as spmod
from clovm.core.migration import Finished
from clovm.core.safemigrate import (
    RC_OK,
    RC_RESTORED,
    MigrateRequest,
    SafeMigrationRun,
    journal_key,
)
from clovm.sim import scenarios as sc
from clovm.sim.commands import KILLED
from clovm.sim.world import WaitFor, World

TOPO = topology.load()
TOPO3 = topology.load("figure-17-1-3g")


def healthy_world(topo=TOPO, seed: int = 0) -> World:
    w = World(topo, seed)
    w.run(30.0)
    assert sc.healthy(w)
    return w


def wait(w: World, pred, limit: float, poll: float = 0.25) -> bool:
    end = w.sched.now + limit
    while not pred() and w.sched.now < end:
        w.run(w.sched.now + poll)
    return pred()


def finish(w: World, p, limit: float = 3000.0) -> Finished:
    w.sched.run_until(w.sched.now + limit, stop=lambda: p.done)
    assert p.done
    return p.value


def oneshot(w: World, domain: str, source: str, target: str, **kw) -> object:
    return w.run_machine(
        source, SafeMigrationRun(MigrateRequest(domain, source, target, **kw)), f"clovm migrate {domain} {target}"
    )


def resume(w: World, domain: str, source: str) -> object:
    j = w.journals[(source, journal_key(domain))]
    return w.run_machine(
        source, SafeMigrationRun(MigrateRequest(domain, source, "", resume=True), j), f"clovm migrate --resume {domain}"
    )


# ---- the world -----------------------------------------------------------------------------------------
def test_a_node_frozen_for_less_than_the_timeout_does_not_count_its_peers_silence_meanwhile() -> None:
    # seed 1786: a 9.1 s pause; when it ran again the node had not heard its four peers for over
    # 10 s (its own freeze), held them all LEFTCLUSTER and, as the lighter side, killed them 24 s
    # later (one of them under clovm migrate --scoped's -p). Their view of it was fine.
    w = healthy_world()
    g2 = w.nodes["cfguest2"].node.cf
    w.run(g2._next_hb + 0.001)  # cfguest2 has just sent a heartbeat: cfguest1 heard it a moment ago
    x = w.sched.now - g2.last_heard("cfguest1")  # cfguest2 last heard cfguest1 x s ago
    assert 0.01 < x < 1.0
    pause = 10.0 - x / 2  # cfguest1 sees cfguest2 silent for < 10 s, cfguest2 sees cfguest1 for > 10 s
    w.pause("guest2")
    w.run(w.sched.now + pause)
    w.resume("guest2")
    w.run(w.sched.now + 5.0)
    assert all(v == "UP" for v in w.view("cfguest2").values()) and all(v == "UP" for v in w.view("cfguest1").values())
    assert not w.kills


def test_a_finished_clovm_migrate_is_no_migration_in_progress() -> None:
    # found at once by the campaign: the finished journal stayed where activity() looks, so every
    # later clovm migrate on that control domain was refused ("in progress or recorded").
    w = healthy_world()
    assert finish(w, oneshot(w, "guest2", "primary2", "primary3")).rc == RC_OK
    assert ("primary2", "guest2.migrate") in w.last_journals and ("primary2", "guest2.migrate") not in w.journals
    r = finish(w, oneshot(w, "guest2", "primary3", "primary2"))
    assert r.rc == RC_OK, r.message


def test_an_xscf_kills_only_what_runs_on_its_server() -> None:
    w = healthy_world()
    # a stale report makes m10-1's XSCF believe guest2 runs there; guest2 runs on m10-2
    w._xscf_feed("m10-1", spmod.SpconfigSaved(0, frozenset({"guest1", "guest2"})))
    w._xscf_feed("m10-1", spmod.DomainsRunningReported(0, frozenset({"guest1", "guest2"})))
    w._xscf_feed(
        "m10-1", spmod.DomainPanicRequested(999, "127.20.30.71", 0, "guest2"), by="cfguest1", target="cfguest2"
    )
    assert w.nodes["cfguest2"].alive
    assert any("XSCF of m10-1" in v and "runs on primary2" in v for v in w.violations)


def test_a_killed_command_resolves_and_its_calls_go_nowhere() -> None:
    w = healthy_world()
    p = w.clovmmigrate("primary2", "prepare", "guest2", kill_after=3)
    r = finish(w, p, 60.0)
    assert r.rc == KILLED and not w.commands
    r = finish(w, w.clovmmigrate("primary2", "prepare", "guest2"), 120.0)  # the rerun completes it
    assert r.rc == 0 and all(w.nodes[n].files.timeout == 600 for n in ("cfguest1", "cfguest2"))


# ---- ldmd crashes ----------------------------------------------------------------------------------
def migrating_guest2(phase: str) -> World:
    w = healthy_world()
    w.ldm_command("primary2", "migrate-domain", "-c", "guest2", "primary3")
    assert wait(w, lambda: (m := w.ldm["primary2"].migration("guest2")) is not None and str(m.phase) == phase, 200)
    return w


def test_source_ldmd_crash_while_the_guest_is_frozen_resumes_it_once_restarted() -> None:
    w = migrating_guest2("suspend")
    assert w.nodes["cfguest2"].suspended
    w.crash_ldmd("primary2")
    w.run(w.sched.now + 5.0)
    assert "guest2" not in w.ldm["primary3"].incoming()  # its connection broke: the copy is gone
    w.restart_ldmd("primary2")
    assert not w.nodes["cfguest2"].suspended and w.where("guest2") == [("primary2", "active")]
    assert w.check.instances["guest2"] == {"primary2"} and not w.violations


def test_target_ldmd_crash_during_the_precopy_cancels_the_migration() -> None:
    w = migrating_guest2("pre-copy")
    w.crash_ldmd("primary3")
    w.run(w.sched.now + 1.0)
    assert w.ldm["primary2"].migration("guest2") is None and w.where("guest2") == [("primary2", "active")]
    w.restart_ldmd("primary3")
    assert w.where("guest2") == [("primary2", "active")] and not w.violations
    assert w.ldm["primary3"].domain_names() == frozenset()  # its bound copy did not survive


def test_a_pending_ldm_command_gets_an_error_when_ldmd_stops_and_a_stopped_ldmd_refuses() -> None:
    w = migrating_guest2("pre-copy")
    p = w._background.get(("primary2", "guest2"))  # (none: started by ldm_command directly)
    assert p is None
    q = w.ldm_command("primary1", "list")
    assert q.done and q.value.rc == 0
    w.crash_ldmd("primary1")
    r = w.ldm_command("primary1", "list")
    assert r.done and r.value.rc == 1 and "connection refused" in r.value.stderr


# ---- clovm migrate's recovery ---------------------------------------------------------------------
def aborted_oneshot(w: World) -> object:
    w._ldm_feed("primary2", ldmmod.MigrationAbortArmed("guest2"))
    p = oneshot(w, "guest2", "primary2", "primary3")
    assert wait(w, lambda: not w.nodes["cfguest2"].alive, 300)
    return p


def test_resume_after_the_domain_was_started_does_not_wait_for_a_down_that_never_comes() -> None:
    # seed 2: clovm migrate killed in its recover step after guest2 had been started again; the
    # resumed run waited RECOVER_LIMIT (1800 s) for a DOWN that could not come, and stopped rc 4.
    w = healthy_world()
    aborted_oneshot(w)
    assert wait(w, lambda: w.nodes["cfguest2"].alive, 900)  # the run started it after DOWN
    w.kill_commands("primary2", "killed")
    t = w.sched.now
    r = finish(w, resume(w, "guest2", "primary2"))
    assert r.rc == RC_RESTORED and w.sched.now - t < 120, (r, w.sched.now - t)


def test_recover_notices_that_the_operator_started_the_domain_meanwhile() -> None:
    # seed 853: the operator started guest2 as soon as cfguest1 held it DOWN, between two of the
    # run's looks; the run then waited for a DOWN that could not come (1800 s, rc 4).
    w = healthy_world()
    p = aborted_oneshot(w)
    assert wait(w, lambda: w.view("cfguest1").get("cfguest2") == "DOWN", 900, poll=0.05)
    w.ldm_command("primary2", "start-domain", "guest2")
    t = w.sched.now
    r = finish(w, p)
    assert r.rc == RC_RESTORED and w.sched.now - t < 120, (r, w.sched.now - t)


def test_recover_stops_a_guest_its_peers_refused_and_starts_it_again_once_down() -> None:
    # seed 5178: a guest started too early (refused, INVALID) while the run waited for it to join:
    # the run waited until its deadline. The documented recovery: stop it, wait DOWN, start it.
    w = healthy_world()
    p = aborted_oneshot(w)
    w.run(w.sched.now + 30.0)
    w.ldm_command("primary2", "start-domain", "guest2")  # too early: cfguest1 still holds it UP
    r = finish(w, p)
    assert r.rc == RC_RESTORED, r.message
    assert sc.ever(w, "was refused by its peers") and sc.ever(w, "primary2 # ldm stop-domain guest2")
    assert sc.healthy(w) or wait(w, lambda: sc.healthy(w), 60)


def test_a_guest_that_stops_on_the_target_after_the_hand_off_is_recovered_there() -> None:
    # seed 714: guest2 died on the target right after the hand-off, before the run looked; the run
    # tried to start it on the source, where it no longer was (rc 4 on every resume).
    # (Its peers' SF entries still name the source's XSCF, which no longer holds the domain: nothing
    # confirms it DOWN, and the operator clears the LEFTCLUSTER state with cftool -k.)
    w = healthy_world()
    p = oneshot(w, "guest2", "primary2", "primary3")
    assert wait(w, lambda: w.where("guest2") == [("primary3", "active")], 400, poll=0.01)
    w.kill(w.nodes["cfguest2"], "crashed right after the hand-off")
    assert wait(w, lambda: w.view("cfguest1").get("cfguest2") == "LEFTCLUSTER", 700, poll=1.0)
    w.run(w.sched.now + 30.0)
    assert w.view("cfguest1").get("cfguest2") == "LEFTCLUSTER"  # (not "Host stopped": it is not there)
    w.ask("cfguest1", "cftool_k", {"node": "cfguest2"})
    r = finish(w, p)
    assert r.rc == RC_OK, r.message
    assert w.where("guest2") == [("primary3", "active")]


def test_scoped_the_migrating_node_may_take_a_dead_peer_down_on_the_hypervisors_word() -> None:
    # seed 202: with its SF stopped and no hypervisor permission, the migrating node held a peer
    # that died meanwhile LEFTCLUSTER for good; -u needs every node: the migration never completed.
    w = healthy_world(TOPO3)
    oneshot(w, "guest2", "primary2", "primary3", scoped=True)
    assert wait(w, lambda: w.nodes["cfguest2"].node.cf.widened(), 30, poll=0.01)
    assert all(hyp for _, _, hyp in w.nodes["cfguest2"].node.cf.widened().values())


def scenario_passes(proc: Generator, topo=TOPO, limit: float = 3000.0) -> None:
    out = sc.run_process("regression", lambda ctx: proc(ctx), limit, topo, 0)
    assert out.ok, "\n".join(out.failures)


def test_a_guest_restarted_while_the_interconnect_is_cut_does_not_bring_the_application_up_twice() -> None:
    # seed 5 (and 279, 1304, 572...): guest1 (app1) and guest2 partitioned; guest2 fenced and
    # restarted while the cut lasted: its join went unanswered, CF held cfguest1 DOWN, RMS brought
    # app1 online a second time.
    def proc(ctx: sc.Ctx) -> Generator:
        w = ctx.world
        yield from sc.wait_healthy(ctx, "at start")
        w.net.partition({"cfguest1"}, {"cfguest2"})
        ok = yield WaitFor(lambda: not w.nodes["cfguest2"].alive, 60.0)
        ctx.expect(ok, "cfguest2 fenced (the lighter side)")
        yield 10.0
        yield w.ldm_command("primary2", "start-domain", "guest2")  # still cut off
        yield 30.0
        ctx.expect(w.online["app1"] == {"cfguest1"}, f"app1 on cfguest1 only, got {w.online['app1']}")
        w.net.heal()
        ok = yield WaitFor(lambda: sc.healthy(w), 60.0)
        ctx.expect(ok, "healthy once the interconnect is back")

    scenario_passes(proc)


def test_u_completes_a_p_that_was_killed_while_it_recorded_the_timeouts() -> None:
    # seed 13633: -p killed in the middle of its record_timeout batch (before its journal and before
    # any change); guest1 then crashed, so -p could not be run again and the operator ran -u: it
    # refused for good, the node without a record having a timeout "recorded neither on the node nor
    # in the journal" — although -p had never changed it.
    w = healthy_world()
    r = finish(w, w.clovmmigrate("primary2", "prepare", "guest2", kill_after=5), 60.0)  # 1 record of 2
    assert r.rc == KILLED
    w.run(w.sched.now + 1.0)  # (the call it had sent arrives)
    records = {cf: w.nodes[cf].files.record for cf in ("cfguest1", "cfguest2")}
    assert sorted(records.values(), key=str) == [10, None]
    r = finish(w, w.clovmmigrate("primary2", "update", "guest2", "primary2"), 300.0)
    assert r.rc == 0, r.message
    assert all(w.nodes[cf].files.timeout == 10 and w.nodes[cf].files.record is None for cf in records)
