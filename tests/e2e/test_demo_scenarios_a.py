"""`clovm demo --scenario` for abort-recovery, ssh-first-connection and cancelled (see demo_scenarios)."""

from __future__ import annotations

import pytest
from demo_scenarios import run_scenario


@pytest.mark.timeout(220)
def test_demo_abort_recovery_at_time_scale_60(tmp_path):
    out = run_scenario(tmp_path, "abort-recovery")
    after = float(out.split("(cfguest2 DOWN ")[1].split(" emulated")[0])
    silent = float(out.split(" emulated seconds after clovmmigrate -p, ")[1].split(" after")[0])
    assert after >= 600 and 560 <= silent <= 780, out  # not before the 600 s that -p set; about 600 s of silence


@pytest.mark.timeout(220)
def test_demo_ssh_first_connection(tmp_path):
    run_scenario(tmp_path, "ssh-first-connection")


@pytest.mark.timeout(220)
def test_demo_cancelled(tmp_path):
    run_scenario(tmp_path, "cancelled")
