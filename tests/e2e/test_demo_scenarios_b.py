"""`clovm demo --scenario` for early-start, spconfig-limit and time-sync (see demo_scenarios)."""

from __future__ import annotations

import pytest
from demo_scenarios import run_scenario


@pytest.mark.timeout(220)
def test_demo_early_start_at_time_scale_60(tmp_path):
    run_scenario(tmp_path, "early-start")


@pytest.mark.timeout(220)
def test_demo_spconfig_limit(tmp_path):
    run_scenario(tmp_path, "spconfig-limit")


@pytest.mark.timeout(220)
def test_demo_time_sync(tmp_path):
    run_scenario(tmp_path, "time-sync")
