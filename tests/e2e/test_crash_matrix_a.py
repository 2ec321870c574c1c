"""Crash matrix, first half: the XSCF of the target and the ldmd of the source, each SIGKILLed in
every phase of a migration (crash_matrix.py says how and what is checked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from crash_matrix import run_row

from conftest import Datacenter

ROWS = {
    "xscfd of the target": (("xscfd", "TARGET_SERVER"), {}),
    "ldmd of the source": (("ldmd", "SOURCE"), {}),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("row", list(ROWS))
def test_crash_matrix(row: str, datacenter: Callable[..., Datacenter], tmp_path: Path) -> None:
    victim, points = ROWS[row]
    run_row(datacenter, tmp_path, row, victim, points)
