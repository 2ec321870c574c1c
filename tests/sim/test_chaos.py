"""``clovm sim chaos``: 1,000 seeds pass; schedules, traces and the shrinker are deterministic; a
failing seed prints its schedule and a replay line; bad input is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clovm.cli import main as cli
from clovm.core import rms as rmsmod
from clovm.core._state import NodeState
from clovm.sim.chaos import campaign, draw, run_seed
from clovm.sim.chaos.schedule import (
    FAULTS,
    KINDS,
    OP_FAULTS,
    OPERATIONS,
    TOPOLOGIES,
    Item,
    Schedule,
)
from clovm.sim.chaos.shrink import category, ddmin, shrink

CAMPAIGN_SEEDS = 1000


@pytest.mark.timeout(240)
def test_one_thousand_seeds_pass() -> None:
    results = campaign.run_many(range(CAMPAIGN_SEEDS), jobs=2)
    failed = [r for r in results if not r.ok]
    assert not failed, "\n".join(
        f"seed {r.seed}: {r.failures[0]}\n  {r.replay()}\n    " + "\n    ".join(r.schedule) for r in failed[:5]
    )


def test_the_schedules_cover_every_kind_and_topology() -> None:
    seen_kinds, seen_topos, biggest = set(), set(), 0
    for s in range(400):
        sched = draw(s)
        seen_kinds |= {it.kind for it in sched.items}
        seen_topos.add(sched.topology.split(":")[0])
        if sched.topology.startswith("generated:"):
            biggest = max(biggest, int(sched.topology.split(":")[1]))
    assert seen_kinds == set(KINDS) and seen_topos == set(TOPOLOGIES) and biggest == 8
    assert set(KINDS) == set(OPERATIONS) | set(OP_FAULTS) | set(FAULTS)


def test_a_seed_names_its_schedule_and_its_trace() -> None:
    assert draw(41) == draw(41) and draw(41) != draw(42)
    a, b = run_seed(41), run_seed(41)
    assert a.trace == b.trace and a.ok and run_seed(42).trace != a.trace


def test_ddmin_finds_a_one_minimal_subset() -> None:
    calls: list[frozenset[int]] = []

    def fails(keep: list[int]) -> bool:
        calls.append(frozenset(keep))
        return {3, 7} <= set(keep)

    assert ddmin(list(range(12)), fails) == [3, 7]
    assert ddmin(list(range(5)), lambda keep: True) == []


def mutant_resolve_pending(self: rmsmod.Rms) -> list:
    """RMS as it was before the campaign: it placed applications while a node of their list was
    LEFTCLUSTER (so a node that started while the interconnect was cut brought app1 up twice)."""
    if not self._running or self._held or self._settle_at is not None:
        return []
    out: list = []
    for app in [a for a in self._placement if a in self._pending]:
        self._pending.pop(app)
        succ = next((n for n in self._apps[app].nodes if self.node_state(n) is NodeState.UP), None)
        self._placement[app] = succ
        if succ == self._me:
            out += [rmsmod.BringAppOnline(app), rmsmod.AnnounceAppState(app, self._me, True)]
    return out


# seed 1304 of the campaign, as the shrinker left it: a cut that left cfguest1 alone against
# cfguest2 and cfguest3 (generated topology, three guests on two servers).
CUT = Schedule(
    1304,
    "generated:3:2",
    (
        Item("manual", 150.0, (("domain", "guest3"), ("pick", 1), ("wait_migrate", 5.0), ("wait_update", 5.0))),
        Item("partition", 43.7, (("side", ("cfguest2", "cfguest3")), ("for", 35.3))),
        Item("skew", 300.0, (("server", "m10-1"), ("seconds", 3.0), ("for", 30.0))),
    ),
)


def test_the_shrinker_keeps_what_fails_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_seed(CUT.seed, schedule=CUT).ok  # fixed
    monkeypatch.setattr(rmsmod.Rms, "_resolve_pending", mutant_resolve_pending)
    out = run_seed(CUT.seed, schedule=CUT)
    assert not out.ok and category(out.failures[0]) == "an application online on two nodes", out.failures
    kept, shrunk = shrink(CUT.seed, out, CUT)
    assert kept == frozenset({1}) and not shrunk.ok
    assert shrink(CUT.seed, out, CUT)[0] == kept  # deterministic


def test_a_failing_seed_prints_its_shrunk_schedule_and_a_replay_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rmsmod.Rms, "_resolve_pending", mutant_resolve_pending)
    monkeypatch.setattr(campaign, "run_seed", lambda seed: run_seed(seed, schedule=CUT))
    monkeypatch.setattr(campaign, "shrink", lambda seed, out: shrink(seed, out, CUT))
    rc = cli.main(["sim", "chaos", "--seeds", "2", "--seed", "1304", "--jobs", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 1 and lines[-1] == "0 passed, 2 failed"
    assert lines[0].startswith("seed 1304: FAILED: invariant: ") and "app1 online on" in lines[0]
    assert lines[1] == "  topology generated:3:2, schedule (shrunk to 1 of 3 items):"
    assert lines[2].startswith("    [1] partition")
    assert lines[3] == "  replay: clovm sim chaos --seed 1304 --replay --keep 1"


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clovm.cli.main", "sim", *args], capture_output=True, text=True, check=False
    )


def test_cli_campaign_and_one_seed() -> None:
    r = sim("chaos", "--seeds", "6", "--seed", "40", "--jobs", "2")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "6 passed, 0 failed", r.stdout + r.stderr
    assert "seeds/s" in r.stderr
    r = sim("chaos", "--seed", "41", "--replay", "--keep", "0")
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("chaos seed 41: passed (")
    assert "[0] " in r.stdout and "[1] " not in r.stdout and "settled at start" in r.stdout  # the trace
    r = sim("chaos", "--seed", "41", "--quiet")
    assert r.returncode == 0 and r.stdout.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("chaos", "--seeds", "-1"),
        ("chaos", "--seed", "x"),
        ("chaos", "--jobs", "-2", "--seeds", "3"),
        ("live-migration", "--seeds", "-5"),
        ("chaos", "--seed", "5", "--keep", "1,99"),
        ("chaos", "--seed", "5", "--keep", "a,b"),
        ("chaos", "--seeds", "3", "--replay"),
        ("chaos", "--topology", "figure-17-1"),
        ("live-migration", "--replay"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(args: tuple[str, ...]) -> None:
    r = sim(*args)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r


def test_a_replay_is_byte_identical_across_processes() -> None:
    import os

    def replay(hashseed: str) -> bytes:
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        return subprocess.run(
            [sys.executable, "-m", "clovm.cli.main", "sim", "chaos", "--seed", "7", "--replay"],
            capture_output=True,
            check=True,
            env=env,
        ).stdout

    one, two = replay("1"), replay("2")
    assert one == two and b"chaos seed 7: passed" in one
