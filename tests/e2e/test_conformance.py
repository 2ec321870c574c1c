"""Driver conformance: the same scripted cases on the simulator and on the running datacenter.

One script (:func:`script`) runs once on each driver (``conformance.SimDriver``,
``conformance.RuntimeDriver`` at time scale 10) over figure-17-1 with app1's ShutdownPriority
raised to 2 (so that a split brain is decided by weights *and* priorities). At each checkpoint it
records what the nodes show (``conformance.Observer``: the rows of ``cftool -n``, ``sdtool -s``,
``hvdisp -a`` and the new product log lines, without time stamps) and the commands' output.
Each test below compares one checkpoint between the two drivers. The cases, in order:

* ``boot`` — the datacenter's nodes boot together (rows only: which node's join answer comes
  first is the launch order, not a rule);
* ``prepare_migrate_update`` — ``clovmmigrate -p guest2``, ``ldm migrate-domain``, ``-u`` to primary3;
* ``split_brain`` — guest1 | guest2 with SF running: guest2 is heavier by SF weight (2, on
  primary3), guest1 by weight plus app1's priority (1 + 2): guest2 is fenced;
* ``rejoin`` — ``ldm start-domain guest2``: the restarted node joins again;
* ``message_7245`` — guest2 has forgotten m10-2's host key: ``-u`` to primary2 fails with 7245
  and, at once, guest1's own four rows for cfguest1 show TestWorked (no emulator "probe hold");
  after the first SSH connection and ``sdtool -r``, ``-u`` completes;
* ``wrp_34_35`` / ``wrp_silence`` — m10-2's clock is 30 s off: (WRP, 34) once, (WRP, 35) after
  the sync period; back in sync: silence;
* ``heartbeat_loss`` — guest2 frozen: LEFTCLUSTER, then fenced through the XSCF, then DOWN;
* ``join_answer_incarnation`` — guest1 boots alone while the test plays cfguest2: it answers
  guest1's join request, then sends its own, late (a reordered datagram): guest1 must take it as
  the incarnation it already holds UP and accept it again. Before core.node, the runtime dropped
  the incarnation from join answers and refused ("cfguest1 still holds cfguest2 UP").
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from conformance import Driver, Observer, RuntimeDriver, SimDriver, settled

from clovm.core import node as nodemod
from conftest import processes_mentioning
from xdist_net import net

SCALE = 10.0
ALL = ("cftool -n", "sdtool -s", "hvdisp -a")
CASES = [
    "boot",
    "prepare_migrate_update",
    "split_brain",
    "rejoin",
    "message_7245",
    "wrp_34_35",
    "wrp_silence",
    "heartbeat_loss",
    "join_answer_incarnation",
]


def conformance_topology() -> str:
    text = (resources.files("clovm.topologies") / "figure-17-1.toml").read_text()
    return net(text.replace("shutdown_priority = 0", "shutdown_priority = 2"))


def _rows_for(d: Driver, host: str, node: str) -> list[list[str]]:
    return [r for r in d.ask(host, "sdtool", flag="s")["rows"] if r[0] == node]


def script(d: Driver) -> dict[str, Any]:
    """The cases, in order; what each checkpoint saw (and facts each case must show by itself)."""
    obs, seen = Observer(d), {}

    def checkpoint(
        name: str,
        hosts: tuple[str, ...] | None = None,
        views: tuple[str, ...] = ALL,
        unlogged: tuple[str, ...] = (),
        **extra: Any,
    ) -> None:
        seen[name] = {**obs.observe(logs=name != "boot", hosts=hosts, views=views, unlogged=unlogged), **extra}

    assert d.until(settled(d), 120.0), "the datacenter did not settle after boot"
    checkpoint("boot")

    p = d.command("primary2", "clovmmigrate", "-p", "guest2")
    m = d.command("primary2", "ldm", "migrate-domain", "-c", "guest2", "primary3")
    u = d.command("primary2", "clovmmigrate", "-u", "guest2", "primary3")
    assert (p.rc, m.rc, u.rc) == (0, 0, 0), (p, m, u)
    assert d.until(settled(d), 120.0)
    checkpoint("prepare_migrate_update", p=p.lines, u=u.lines)

    d.partition(["guest1"], ["guest2"])
    assert d.until(lambda: not d.alive("guest2"), 120.0), "nobody fenced in the split brain"
    assert d.until(lambda: {r[0]: r[2] for r in d.ask("guest1", "cftool_n")}["cfguest2"] == "DOWN", 60.0)
    d.heal()
    # (the last lines guest2 wrote race with its killer: whether its own LEFTCLUSTER of guest1
    # came before the panic depends on the phase of the two nodes' heartbeats)
    checkpoint("split_brain", unlogged=("guest2",))

    r = d.command("primary3", "ldm", "start-domain", "guest2")
    assert r.rc == 0, r
    assert d.until(settled(d), 120.0), "guest2 did not join again"
    checkpoint("rejoin")

    d.forget_key("guest2", "m10-2")
    p = d.command("primary3", "clovmmigrate", "-p", "guest2")
    m = d.command("primary3", "ldm", "migrate-domain", "-c", "guest2", "primary2")
    u = d.command("primary3", "clovmmigrate", "-u", "guest2", "primary2")
    assert (p.rc, m.rc, u.rc) == (0, 0, 4) and any("7245" in ln for ln in u.lines), (p, m, u)
    own = _rows_for(d, "guest1", "cfguest1")  # at once, right after -u returned
    d.learn_key("guest2", "m10-2")
    assert d.ask("guest2", "sdtool", flag="r") is None
    u2 = d.command("primary3", "clovmmigrate", "-u", "guest2", "primary2")
    assert u2.rc == 0, u2
    assert d.until(settled(d), 120.0)
    checkpoint("message_7245", u=u.lines, own_rows_at_once=own, u2=u2.lines)

    d.clock("m10-2", +30.0)
    d.advance(75.0)
    checkpoint("wrp_34_35")
    d.clock("m10-2", -30.0)
    d.advance(15.0)
    obs.observe()  # (the lines of the return to sync: how many heartbeats that takes is timing)
    d.advance(90.0)
    checkpoint("wrp_silence")

    d.pause("guest2")
    assert d.until(lambda: {r[0]: r[2] for r in d.ask("guest1", "cftool_n")}["cfguest2"] == "DOWN", 120.0)
    assert d.until(lambda: not d.alive("guest2"), 30.0)
    checkpoint("heartbeat_loss", unlogged=("guest2",))

    # guest1 boots alone; the test plays cfguest2 (whose domain is down).
    r = d.command("primary1", "ldm", "stop-domain", "guest1")
    assert r.rc == 0, r
    obs.observe()
    peer = d.play_peer("cfguest2")
    try:
        r = d.command("primary1", "ldm", "start-domain", "guest1")
        assert r.rc == 0, r
        assert peer.wait_for(nodemod.JoinRequest, 30.0) is not None, "guest1 sent no join request"
        inc = 424242
        peer.send("cfguest1", nodemod.JoinAnswer(True, "", inc))  # our answer to its request ...
        peer.send("cfguest1", nodemod.JoinRequest(inc))  # ... and our own request, arriving late
        answer = peer.wait_for(nodemod.JoinAnswer, 10.0)
    finally:
        peer.close()
    assert d.until(lambda: d.alive("guest1") and d.ask("guest1", "status")["local_state"] == "UP", 30.0)
    # (only guest1, and not its SF rows, which are being tested: it has just started)
    checkpoint(
        "join_answer_incarnation",
        hosts=("guest1",),
        views=("cftool -n",),
        answer=None if answer is None else (answer.accepted, answer.reason),
        view=d.ask("guest1", "cftool_n"),
    )
    return seen


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    text = conformance_topology()
    sim = script(SimDriver(text, seed=1))
    root = tmp_path_factory.mktemp("conformance")
    topo_file = root / "figure-17-1-conformance.toml"
    topo_file.write_text(text)
    rt = RuntimeDriver(root / "home", topo_file, SCALE)
    try:
        runtime = script(rt)
    finally:
        rt.down()
        left = processes_mentioning(str(root) + "/")
        for pid in left:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        assert not left, f"processes left running: {left}"
    yield {"sim": sim, "runtime": runtime}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", CASES)
def test_both_drivers_show_the_same(outcomes: dict[str, dict[str, Any]], case: str) -> None:
    sim, runtime = outcomes["sim"][case], outcomes["runtime"][case]
    assert runtime == sim


@pytest.mark.timeout(600)
def test_cases_show_what_the_product_does(outcomes: dict[str, dict[str, Any]]) -> None:
    """Facts of the cases on both drivers, so equal-but-wrong cannot pass."""
    for side in ("sim", "runtime"):
        o = outcomes[side]
        assert o["split_brain"]["guest2"] == "not running"
        assert [r[2] for r in o["split_brain"]["guest1"]["cftool -n"]] == ["UP", "DOWN"]
        assert all(r[4] == "TestWorked" and r[5] == "InitWorked" for r in o["message_7245"]["own_rows_at_once"])
        assert any("ID 7245 " in ln for ln in o["message_7245"]["guest2 messages"])
        msgs = o["wrp_34_35"]["guest1 messages"]
        assert sum("(WRP, 34) Cluster host cfguest2" in ln for ln in msgs) == 1
        assert sum("(WRP, 35) Cluster host cfguest2" in ln for ln in msgs) == 1
        assert not any("WRP" in ln for ln in o["wrp_silence"].get("guest1 messages", []))
        assert o["heartbeat_loss"]["guest2"] == "not running"
        assert o["join_answer_incarnation"]["answer"] == (True, "")
        assert [r[2] for r in o["join_answer_incarnation"]["view"]] == ["UP", "UP"]
