"""Crash matrix, second half: the ldmd of the target, the node agent of the source control domain
and the ``clovm migrate`` process itself, each SIGKILLed in every phase of a migration
(crash_matrix.py says how and what is checked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from crash_matrix import run_row

from conftest import Datacenter

ROWS = {
    "ldmd of the target": (("ldmd", "TARGET"), {"hand-off": "taken-over"}),
    "node agent of the source control domain": (("nodeagent", "SOURCE"), {}),
    "clovm migrate": (None, {"hand-off": "handed-off"}),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("row", list(ROWS))
def test_crash_matrix(row: str, datacenter: Callable[..., Datacenter], tmp_path: Path) -> None:
    victim, points = ROWS[row]
    run_row(datacenter, tmp_path, row, victim, points)
