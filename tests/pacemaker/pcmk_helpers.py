"""Helpers of the Pacemaker topology tests: what a topology could leave behind on the machine
(``ip netns list``, ``/proc/self/mountinfo``, the root namespace's ``ip link``, cgroups, the stack's
processes: of that home's topology, others may run beside it) as a :class:`Snapshot` to compare
before ``up`` and after ``down``; ring ids and
members from corosync; the hypervisors' event logs; lines of a VM's logs; :class:`Pair`, two
sans-IO hypervisors wired together.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from clovm.core.base import Ticked
from clovm.core.ldm import PeerMessageReceived, SendToPeer
from clovm.pacemaker import api, virsh
from clovm.pacemaker import layout as L
from clovm.pacemaker import platform as P
from clovm.pacemaker.hvcore import Hypervisor, VirshReplied

STACK_COMMS = (
    "corosync",
    "pacemakerd",
    "pacemaker-based",
    "pacemaker-fenced",
    "pacemaker-execd",
    "pacemaker-attrd",
    "pacemaker-schedu",
    "pacemaker-contro",
)
OUR_COMMS = ("hostinit-", "hvd-", "vminit-")


@dataclass(frozen=True)
class Snapshot:
    netns: frozenset[str]
    mounts: Counter[tuple[str, str, str]]
    links: frozenset[str]
    cgroups: frozenset[str]
    procs: dict[int, str]


def _ours(pid: int, lay: L.Layout, cmd: str) -> bool:
    """Is ``pid`` (an HA-stack or clovm process) one of this home's topology? Its command line names
    the home (inits, hvd, sshd), or it lives in one of the home's VM cgroups or namespaces."""
    if str(lay.home) in cmd:
        return True
    try:
        if f"/{lay.cgroup_name}/" in Path(f"/proc/{pid}/cgroup").read_text():
            return True
    except OSError:
        return False
    ino = P.pid_netns_inode(pid)
    return ino is not None and ino in {P.netns_inode(ns) for ns in lay.namespaces}


def _procs(home: Path) -> dict[int, str]:
    """The processes a topology of ``home`` could leave: the HA stack, sshd of the home, clovm's
    inits (other homes' topologies on this machine, e.g. a test module running beside this one,
    are not this one's leaks)."""
    lay = L.layout_for(home)
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if (comm in STACK_COMMS or comm.startswith(OUR_COMMS) or str(home) in cmd) and _ours(int(d.name), lay, cmd):
            out[int(d.name)] = f"{comm}: {cmd}"
    return out


def snapshot(home: Path) -> Snapshot:
    """Everything of the machine a topology of ``home`` could leave behind. Namespaces, their
    /run/netns mounts and cgroups of *other* homes are left out (they are theirs); /run/netns
    itself too while another home's namespaces keep it mounted (the last one's ``down`` unmounts it)."""
    lay = L.layout_for(home)
    all_ns = P.netns_list()
    others = [n for n in all_ns if not n.startswith(lay.ns_prefix)]
    mounts: Counter[tuple[str, str, str]] = Counter()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, source = right.split()[:2]
        point = left.split()[4]
        if point.startswith(f"{P.RUN_NETNS}/") and not point.startswith(f"{P.RUN_NETNS}/{lay.ns_prefix}"):
            continue
        if point == str(P.RUN_NETNS) and others:
            continue
        mounts[(point, fstype, source)] += 1
    root = P.cgroup2_root()
    cgroups = (
        frozenset(
            p.name
            for p in root.iterdir()
            if p.is_dir() and (not p.name.startswith("clovm-") or p.name == lay.cgroup_name)
        )
        if root
        else frozenset()
    )
    netns = frozenset(n for n in all_ns if n.startswith(lay.ns_prefix))
    return Snapshot(netns, mounts, frozenset(P.link_names(None)), cgroups, _procs(home))


def leaks(before: Snapshot, home: Path, wait: float = 6.0) -> list[str]:
    """What of ``home``'s topology exists now and did not before (waits a little for exiting
    processes to be reaped)."""
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


class Pair:
    """Two hypervisors wired together; time advances to the next deadline."""

    def __init__(self) -> None:
        self.hv = {"kvm2": Hypervisor("kvm2"), "kvm3": Hypervisor("kvm3")}
        dom = {
            "name": "vm2",
            "memory_mb": L.VM_MEMORY_MB,
            "vcpu": 2,
            "dirty_rate_mb_s": L.VM_DIRTY_MB_S,
            "state": "running",
            "autostart": True,
            "id": 1,
        }
        assert self.hv["kvm2"].load({"domains": [dom], "next_id": 2}, running=["vm2"]) == []
        assert self.hv["kvm3"].load({"domains": []}, running=[]) == []
        self.now = 0.0
        self.log: list[tuple[float, str, object]] = []
        self.queue: deque[tuple[str, object]] = deque()

    def send(self, host: str, event: object) -> None:
        self.queue.append((host, event))
        while self.queue:
            h, ev = self.queue.popleft()
            for e in self.hv[h].handle(self.now, ev):  # type: ignore[arg-type]
                self.log.append((self.now, h, e))
                if isinstance(e, SendToPeer):
                    self.queue.append((e.peer, PeerMessageReceived(h, e.msg)))

    def step(self) -> bool:
        due = [(d, h) for h, m in self.hv.items() if (d := m.next_deadline()) is not None]
        if not due:
            return False
        self.now, host = min(due)
        self.send(host, Ticked())
        return True

    def replies(self, req_id: int) -> list[virsh.Result]:
        return [e.result for _, _, e in self.log if isinstance(e, VirshReplied) and e.req_id == req_id]

    def effects(self, host: str, kind: type) -> list[tuple[float, object]]:
        return [(t, e) for t, h, e in self.log if h == host and isinstance(e, kind)]
