"""The ldmd machine across power cycles and crashes (issue 12): power-on from placements and the SP
store, a hand-off the target took over without acknowledging it, and the migration's progress as
``ldm list -o status`` shows it."""

from __future__ import annotations

from test_ldm import DST, SRC, Pair, make_pair, phase_of

from clovm.core._state import DomainState, MigrationPhase
from clovm.core.ldm import (
    CommandReceived,
    FoundDomain,
    Ldmd,
    MigrationProgress,
    PlacementMoved,
    ReleaseDomain,
    SpStore,
    StartDomainProcess,
)


def test_power_on_boots_every_placed_guest_and_keeps_the_sp_store() -> None:
    before = Ldmd(DST, 1, "m10-3")
    before.add_domain("guest2", 8192, 8, 2000.0)
    before.handle(0.0, CommandReceived(1, ("add-spconfig", "config1")))
    sp = before.sp_store()
    placed = [FoundDomain("guest2", 8192, 8, 2000.0, alive=False)]
    d, effects = Ldmd.powered_on(DST, 1, "m10-3", placed, sp, 500.0)
    assert [e for e in effects if isinstance(e, StartDomainProcess)] == [StartDomainProcess("guest2")]
    g = d.domain("guest2")
    assert g.state is DomainState.ACTIVE and g.flags == "-n----" and g.started_at == 500.0
    assert d.sp_store() == sp  # the saved configurations and their labels, as they were
    assert [(c.name, c.label) for c in d.spconfigs()] == [("factory-default", ""), ("config1", "current")]


def test_power_on_with_nothing_placed_boots_nothing() -> None:
    d, effects = Ldmd.powered_on(
        SRC,
        0,
        "m10-2",
        [],
        SpStore((("factory-default", frozenset({"primary"})),), "factory-default", "factory-default", False),
        0.0,
    )
    assert not [e for e in effects if isinstance(e, StartDomainProcess)]
    assert [x.name for x in d.domains()] == ["primary"]


def _to_handoff(p: Pair) -> int:
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.SUSPENDED)
    p.hold = True  # the Handoff is never delivered: the target "took it over and died"
    p.run_until(lambda: phase_of(p) is MigrationPhase.HANDOFF)
    return req


def test_a_hand_off_placed_on_the_target_counts_as_acknowledged() -> None:
    p = make_pair()
    req = _to_handoff(p)
    effects = p.feed(SRC, PlacementMoved("guest2", DST))
    assert p.replies[req].rc == 0
    assert "guest2" not in [d.name for d in p.nodes[SRC].domains()]
    assert ReleaseDomain("guest2") in effects


def test_placement_moved_means_nothing_outside_a_hand_off_to_that_host() -> None:
    p = make_pair()
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY)
    assert p.feed(SRC, PlacementMoved("guest2", DST)) == []  # still copying
    p2 = make_pair()
    _to_handoff(p2)
    assert p2.feed(SRC, PlacementMoved("guest2", "elsewhere")) == []
    assert p2.feed(SRC, PlacementMoved("guest1", DST)) == []
    assert req not in p.replies


def test_progress_advances_steadily_through_every_round_and_the_suspend() -> None:
    p = make_pair()  # 8 GiB dirtied at 2000 MB/s over 500 MB/s: never converges, 5 rounds
    p.cmd(SRC, "migrate-domain", "guest2", DST)
    src = p.nodes[SRC]
    assert src.migration_status("guest1", 0.0) is None
    seen: list[tuple[str, int, int]] = []
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY)
    while phase_of(p) in (MigrationPhase.PRECOPY, MigrationPhase.SUSPENDED):
        deadline = src.next_deadline()
        assert deadline is not None
        for t in (p.now + (deadline - p.now) * f for f in (0.0, 0.25, 0.5, 0.75)):
            st = src.migration_status("guest2", t)
            assert st is not None and st["rounds_max"] == 5
            seen.append((str(st["phase"]), int(st["round"]), int(st["percent"])))  # type: ignore[call-overload]
        p.step()
    percents = [pc for _, _, pc in seen]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] >= 95
    assert [r for ph, r, _ in seen if ph == "pre-copy"][-1] == 5
    assert {ph for ph, _, _ in seen} == {"pre-copy", "suspend"}
    # within one round the percentage moves (the copy never converges, yet the migration advances)
    round1 = [pc for ph, r, pc in seen if ph == "pre-copy" and r == 1]
    assert len(set(round1)) == len(round1) > 1
    assert all(e.round >= 1 for _, _, e in p.effects(MigrationProgress) if e.phase == "pre-copy")


def test_ldm_list_o_status() -> None:
    p = make_pair()
    p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY)
    out = p.run(SRC, "list", "-o", "status", "guest2").stdout
    assert out.splitlines()[:4] == ["NAME", "guest2", "", "STATUS"]
    assert out.splitlines()[4].split() == ["OPERATION", "PROGRESS", "TARGET"]
    assert out.splitlines()[5].split() == ["migration", "0%", DST]
    there = p.run(DST, "list", "-o", "status", "guest2").stdout
    assert there.splitlines()[5].split() == ["migration", "-", SRC]
    idle = p.run(SRC, "list", "-o", "status", "guest1").stdout
    assert idle.splitlines()[4:] == ["    OPERATION    PROGRESS"]
    assert p.run(SRC, "list", "-o", "status", "nosuch").rc == 1
