"""The supervisor's restart policy (core.supervision): restart after a delay, maintenance when flapping."""

from __future__ import annotations

import pytest

from clovm.core._state import SupervisedState
from clovm.core.base import Log, Ticked
from clovm.core.supervision import DaemonExited, DaemonReady, StartDaemon, Supervision


def machine() -> Supervision:
    return Supervision(["ldmd-p1", "xscfd-s1"], delay=0.5, limit=2, window=60.0)


def test_an_exited_daemon_is_started_again_after_the_delay() -> None:
    s = machine()
    out = s.handle(10.0, DaemonExited("ldmd-p1", "pid 7 killed by SIGKILL"))
    assert s.state("ldmd-p1") is SupervisedState.RESTARTING and s.next_deadline() == 10.5
    assert any(isinstance(e, Log) and "restarting it in 0.5 s" in e.text and "SIGKILL" in e.text for e in out)
    assert s.handle(10.4, Ticked()) == [] and s.state("ldmd-p1") is SupervisedState.RESTARTING
    out = s.handle(10.5, Ticked())
    assert StartDaemon("ldmd-p1", 1) in out and s.state("ldmd-p1") is SupervisedState.STARTING
    assert s.next_deadline() is None
    s.handle(11.0, DaemonReady("ldmd-p1", 8))
    assert s.state("ldmd-p1") is SupervisedState.RUNNING and s.restarts("ldmd-p1") == 1
    assert s.state("xscfd-s1") is SupervisedState.RUNNING


def test_a_flapping_daemon_goes_to_maintenance() -> None:
    s = machine()
    t = 0.0
    for _ in range(2):
        s.handle(t, DaemonExited("ldmd-p1", "exited"))
        s.handle(t + 0.5, Ticked())
        s.handle(t + 0.6, DaemonReady("ldmd-p1", 1))
        t += 1.0
    out = s.handle(t, DaemonExited("ldmd-p1", "exited"))
    assert s.state("ldmd-p1") is SupervisedState.MAINTENANCE and s.next_deadline() is None
    assert any(isinstance(e, Log) and "maintenance" in e.text for e in out)
    assert s.handle(t + 5, DaemonExited("ldmd-p1", "exited")) == []
    assert s.handle(t + 5, Ticked()) == []


def test_exits_older_than_the_window_do_not_count() -> None:
    s = machine()
    for t in (0.0, 70.0, 140.0, 210.0):
        s.handle(t, DaemonExited("ldmd-p1", "exited"))
        assert s.state("ldmd-p1") is SupervisedState.RESTARTING
        s.handle(t + 0.5, Ticked())
        s.handle(t + 1.0, DaemonReady("ldmd-p1", 1))


def test_a_start_that_never_gets_ready_counts_as_an_exit() -> None:
    s = machine()
    s.handle(0.0, DaemonExited("xscfd-s1", "exited"))
    s.handle(0.5, Ticked())
    s.handle(1.0, DaemonExited("xscfd-s1", "did not get ready"))
    assert s.state("xscfd-s1") is SupervisedState.RESTARTING
    s.handle(1.5, Ticked())
    s.handle(2.0, DaemonExited("xscfd-s1", "did not get ready"))
    assert s.state("xscfd-s1") is SupervisedState.MAINTENANCE


def test_unknown_daemons_and_bad_parameters() -> None:
    s = machine()
    assert s.handle(0.0, DaemonExited("nodeagent-x", "exited")) == []
    assert s.handle(0.0, DaemonReady("ldmd-p1", 3)) == []  # not starting: nothing to do
    with pytest.raises(ValueError):
        Supervision([], delay=-1, limit=1, window=1)
