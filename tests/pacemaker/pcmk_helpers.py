"""Helpers of the Pacemaker topology tests: what a topology could leave behind on the machine
(``ip netns list``, ``/proc/self/mountinfo``, the root namespace's ``ip link``, cgroups, the stack's
processes) as a :class:`Snapshot` to compare before ``up`` and after ``down``; ring ids and
members from corosync; the hypervisors' event logs; lines of a VM's logs.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from clovm.pacemaker import api
from clovm.pacemaker import layout as L
from clovm.pacemaker import platform as P

STACK_COMMS = ("corosync", "pacemakerd", "pacemaker-based", "pacemaker-fenced", "pacemaker-execd",
               "pacemaker-attrd", "pacemaker-schedu", "pacemaker-contro")
OUR_COMMS = ("hostinit-", "hvd-", "vminit-")


@dataclass(frozen=True)
class Snapshot:
    netns: frozenset[str]
    mounts: Counter[tuple[str, str, str]]
    links: frozenset[str]
    cgroups: frozenset[str]
    procs: dict[int, str]


def _procs(home: Path) -> dict[int, str]:
    """The processes a topology could leave: the HA stack, sshd of a home, clovm's inits."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if comm in STACK_COMMS or comm.startswith(OUR_COMMS) or str(home) in cmd:
            out[int(d.name)] = f"{comm}: {cmd}"
    return out


def snapshot(home: Path) -> Snapshot:
    mounts: Counter[tuple[str, str, str]] = Counter()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, source = right.split()[:2]
        mounts[(left.split()[4], fstype, source)] += 1
    root = P.cgroup2_root()
    cgroups = frozenset(p.name for p in root.iterdir() if p.is_dir()) if root else frozenset()
    return Snapshot(frozenset(P.netns_list()), mounts, frozenset(P.link_names(None)), cgroups, _procs(home))


def leaks(before: Snapshot, home: Path, wait: float = 6.0) -> list[str]:
    """What exists now and did not before (waits a little for exiting processes to be reaped)."""
    deadline = time.monotonic() + wait
    while True:
        after = snapshot(home)
        found = [f"netns {n}" for n in sorted(after.netns - before.netns)]
        found += [f"mount {m}" for m in sorted((after.mounts - before.mounts).elements())]
        found += [f"link {n}" for n in sorted(after.links - before.links)]
        found += [f"cgroup {c}" for c in sorted(after.cgroups - before.cgroups)]
        found += [f"process {pid} {cmd}" for pid, cmd in sorted(after.procs.items()) if pid not in before.procs]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def ring_id(home: Path, node: str = "vm1") -> str:
    rc, out, err = api.exec_in(home, node, ["corosync-quorumtool", "-s"])
    assert rc == 0, err
    return out.split("Ring ID:")[1].split()[0]


def members(home: Path, node: str = "vm1") -> list[str]:
    rc, out, err = api.exec_in(home, node, ["corosync-quorumtool", "-l"])
    assert rc == 0, err
    return sorted(line.split()[2] for line in out.splitlines() if line.strip()[:1].isdigit())


def events(lay: L.Layout, host: str, what: str, vm: str) -> list[float]:
    """Times of ``what`` for ``vm`` in a host's hypervisor event log."""
    try:
        lines = lay.host_events(host).read_text().splitlines()
    except OSError:
        return []
    return [float(ln.split()[0]) for ln in lines if ln.split()[1:3] == [what, vm]]


def log_lines(lay: L.Layout, vm: str, rel: str, needle: str) -> list[str]:
    try:
        text = (lay.vm_upper(vm, "var") / rel).read_text(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if needle in ln]
