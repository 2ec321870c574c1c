"""The run record of a home's Pacemaker topology, and the teardown plan derived from it.

``up`` writes an entry *before* it creates each thing (write-ahead, atomically replaced file in
``HOME/run/pcmk/record.json``), so after a crash at any point the record names a superset of what
exists, and ``down`` removes exactly that: :func:`teardown_plan` turns a record into ordered steps
(pure; the api executes them, and a step on something already gone is a no-op).

Entry kinds: ``netns`` (name), ``cgroup`` (path of the per-home cgroup directory), ``host``
(hypervisor host whose init was started), ``vm`` (VM whose cgroup lives in that directory),
``run_netns_mount`` (``/run/netns`` was no mount point before this ``up``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write

VERSION = 1


class RecordExists(Exception):
    pass


@dataclass
class Record:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, path: Path, **meta: Any) -> Record:
        """A new record, created exclusively (RecordExists if one is there)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": VERSION,
            "state": "starting",
            "pid": os.getpid(),
            "started": time.time(),
            **meta,
            "entries": [],
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise RecordExists(str(path)) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        return cls(path, data)

    @classmethod
    def load(cls, path: Path) -> Record | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = {"version": VERSION, "state": "corrupt", "entries": []}
        if not isinstance(data, dict):
            data = {"version": VERSION, "state": "corrupt", "entries": []}
        data.setdefault("entries", [])
        return cls(path, data)

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2) + "\n")

    def add(self, kind: str, **fields: Any) -> None:
        """Record that ``kind`` is about to be created (idempotent for equal entries)."""
        entry = {"kind": kind, **fields}
        if entry not in self.data["entries"]:
            self.data["entries"].append(entry)
            self.save()

    def set(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def names(self, kind: str, key: str = "name") -> list[str]:
        return [e[key] for e in self.data["entries"] if e.get("kind") == kind and key in e]

    def has(self, kind: str) -> bool:
        return any(e.get("kind") == kind for e in self.data["entries"])

    @property
    def state(self) -> str:
        return str(self.data.get("state", ""))


def teardown_plan(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The steps that remove everything an ``up`` recorded, in a safe order.

    VMs first (their processes are killed through their cgroup, or their namespace's pids), then
    the host inits (SIGTERM, then SIGKILL: sshd, the hypervisor daemon), the VMs once more (a
    hypervisor may have booted one meanwhile), then whatever process is
    still inside any recorded namespace, then the namespaces (which takes their veths and
    bridges with them), the cgroups, and /run/netns if this topology made it a mount point.
    """

    def of(kind: str, key: str = "name") -> list[str]:
        return [str(e[key]) for e in entries if e.get("kind") == kind and key in e]

    steps: list[tuple[str, str]] = []
    steps += [("kill_vm", vm) for vm in of("vm")]
    steps += [("stop_host", h) for h in of("host")]
    steps += [("kill_vm", vm) for vm in of("vm")]  # again: one booted while its host was stopping
    netns = of("netns")
    steps += [("kill_netns", ns) for ns in netns]
    steps += [("delete_netns", ns) for ns in reversed(netns)]
    steps += [("remove_cgroup", p) for p in of("cgroup", "path")]
    if any(e.get("kind") == "run_netns_mount" for e in entries):
        steps.append(("umount_run_netns", "/run/netns"))
    steps.append(("remove_run_files", ""))
    return steps
