"""Fixtures of the Pacemaker topology tests.

* ``pcmk_stack`` (session): skips when not root (namespaces, mounts and cgroups need it; CI runs
  as root), and installs the Debian packages with the project's ``tools/pcmk-deps`` when any tool
  is missing (idempotent; it does nothing when everything is there).

Helpers (snapshots for leak checks, ring ids, event logs) are in ``pcmk_helpers.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clovm.pacemaker import api

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pcmk_stack() -> None:
    if os.geteuid() != 0:
        pytest.skip("the pacemaker topology needs root (network/mount/PID namespaces, cgroups); CI runs as root")
    if any(shutil.which(t) is None for t in api.REQUIRED_TOOLS):
        cp = subprocess.run(
            [str(REPO / "tools" / "pcmk-deps")], check=False, capture_output=True, text=True, timeout=900
        )
        if cp.returncode != 0:
            pytest.fail(f"tools/pcmk-deps failed: {(cp.stderr or cp.stdout).strip()}")
        missing = [t for t in api.REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            pytest.fail(f"still missing after tools/pcmk-deps: {' '.join(missing)}")
