"""RMS says why it is busy (core.rms.Rms.activity): settling after its start, or a switchover
(pending, or held by clovmmigrate -p) — clovm migrate's preflight names the one it sees."""

from __future__ import annotations

from clovm.core._state import NodeState
from clovm.core.base import Ticked
from clovm.core.rms import (
    AppSpec,
    PeerNodeStateChanged,
    Rms,
    RmsStarted,
    SwitchoverHoldChanged,
)
from clovm.core.stacks.sparc import _rms_busy_problem


def rms() -> Rms:
    r = Rms("n1", ["n1", "n2"], [AppSpec("app1", ("n2", "n1"))], settle=3.0)
    return r


def test_settling_then_idle_then_a_switchover_held_and_released() -> None:
    r = rms()
    assert r.activity() is None  # not running
    r.handle(0.0, RmsStarted())
    r.handle(0.0, PeerNodeStateChanged("n2", NodeState.UP))
    assert r.busy() and r.activity() == "settling"
    r.handle(3.0, Ticked())  # settled: app1 placed on n2 (first UP node of its list)
    assert r.placement() == {"app1": "n2"} and not r.busy() and r.activity() is None
    r.handle(4.0, SwitchoverHoldChanged(True))
    r.handle(5.0, PeerNodeStateChanged("n2", NodeState.DOWN))
    assert r.busy() and r.activity() == "switchover held"
    r.handle(6.0, SwitchoverHoldChanged(False))
    assert r.placement() == {"app1": "n1"} and r.activity() is None


def test_the_preflight_names_what_rms_is_doing() -> None:
    assert "still settling" in _rms_busy_problem("cfguest1", "settling")
    assert "switchover is in progress" not in _rms_busy_problem("cfguest1", "settling")
    assert "a switchover is in progress on cfguest1" in _rms_busy_problem("cfguest1", "switchover")
    assert "deferred" in _rms_busy_problem("cfguest1", "switchover held")
    assert "a switchover is in progress" in _rms_busy_problem("cfguest1", None)  # an older node
