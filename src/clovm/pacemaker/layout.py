"""The shape of the Pacemaker topology (Figure 17.1 on the open HA stack) and where it lives.

Pure data, no I/O: host and VM names, addresses, namespace, interface and cgroup names, and every
path in the home. Everything a home creates carries the home's *tag* (a short hash of its path),
so two homes never share a namespace or a cgroup.

Network (every address exists only inside namespaces of this topology; no default route)::

    netns clovm-TAG-dc     bridge br0 <- veth kvm1 / kvm2 / kvm3        (the datacenter's L2)
    netns clovm-TAG-kvmN   bridge br0 192.168.122.1N/24 <- veth uplink (peer kvmN in dc)
                                                      <- veth vmM (peer eth0 in the VM)
    netns clovm-TAG-vmM    eth0 192.168.122.10M/24

A VM's veth peer ``vmM`` sits in the namespace of the host that runs it; a live migration moves
it to the target host's bridge at the hand-off, the VM keeps its address.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

HOSTS: tuple[str, ...] = ("kvm1", "kvm2", "kvm3")
VMS: tuple[str, ...] = ("vm1", "vm2")
INITIAL_PLACEMENT: dict[str, str] = {"vm1": "kvm1", "vm2": "kvm2"}
ADDRESSES: dict[str, str] = {
    "kvm1": "192.168.122.11",
    "kvm2": "192.168.122.12",
    "kvm3": "192.168.122.13",
    "vm1": "192.168.122.101",
    "vm2": "192.168.122.102",
}
PREFIX_LEN = 24
SUBNET = "192.168.122.0/24"
NODE_IDS: dict[str, int] = {"vm1": 1, "vm2": 2}
CLUSTER_NAME = "pcmkcluster"

BRIDGE = "br0"  # in the dc namespace and in every host namespace
UPLINK = "uplink"  # a host's veth to the dc bridge (its peer in dc is named after the host)
VM_IFACE = "eth0"  # inside a VM (its peer in the host is named after the VM)

BASE_TOKEN_MS = 3000  # corosync 3's default token, at time scale 1
MIN_TOKEN_MS = 500
VM_MEMORY_MB = 1024
VM_VCPU = 2
VM_DIRTY_MB_S = 64.0  # pre-copy converges in 2 rounds; the final suspend is ~0.13 s
HOST_MEMORY_MB = 16384
MIGRATION_BANDWIDTH_MB_S = 500.0

FENCE_KEY = "/root/.ssh/id_fence"  # inside a VM (its private /root)
STONITH_ID = "fence-{vm}"


def token_ms(time_scale: float) -> int:
    """The corosync token for a time scale (emulated time runs ``time_scale`` times faster)."""
    return max(MIN_TOKEN_MS, round(BASE_TOKEN_MS / time_scale))


def home_tag(home: Path) -> str:
    return hashlib.sha1(os.path.realpath(home).encode()).hexdigest()[:6]


def is_host(name: str) -> bool:
    return name in HOSTS


def is_vm(name: str) -> bool:
    return name in VMS


@dataclass(frozen=True, slots=True)
class Layout:
    """Names and paths of one home's topology."""

    home: Path
    tag: str

    # ---- namespaces, cgroups
    def ns(self, name: str) -> str:
        """The network namespace of ``dc``, a host or a VM."""
        return f"clovm-{self.tag}-{name}"

    @property
    def ns_prefix(self) -> str:
        return f"clovm-{self.tag}-"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(n) for n in ("dc", *HOSTS, *VMS))

    @property
    def cgroup_name(self) -> str:
        """The directory under the cgroup v2 mount that holds one cgroup per VM."""
        return f"clovm-{self.tag}"

    # ---- the home
    @property
    def run_dir(self) -> Path:
        return self.home / "run" / "pcmk"

    @property
    def record_file(self) -> Path:
        return self.run_dir / "record.json"

    def socket(self, host: str) -> Path:
        return self.run_dir / f"h-{host}"

    def pid_file(self, host: str) -> Path:
        return self.run_dir / f"{host}.pid"

    def ready_file(self, host: str) -> Path:
        return self.run_dir / f"{host}.ready"

    def host_dir(self, host: str) -> Path:
        return self.home / "hosts" / host

    def host_state(self, host: str) -> Path:
        """The hypervisor's domain table (atomically replaced after every change)."""
        return self.host_dir(host) / "state" / "domains.json"

    def host_events(self, host: str) -> Path:
        """One line per hypervisor action (``TIME EVENT DOMAIN ...``), for measurements."""
        return self.host_dir(host) / "state" / "events.log"

    def host_key(self, host: str) -> Path:
        return self.host_dir(host) / "ssh" / "ssh_host_ed25519_key"

    def sshd_config(self, host: str) -> Path:
        return self.host_dir(host) / "ssh" / "sshd_config"

    def authorized_keys(self, host: str) -> Path:
        return self.host_dir(host) / "ssh" / "authorized_keys"

    def host_sbin(self, host: str) -> Path:
        """Bind-mounted on the host's /usr/local/sbin (holds ``virsh``)."""
        return self.host_dir(host) / "sbin"

    def host_varlog(self, host: str) -> Path:
        """Bind-mounted on the host's /var/log (sshd's wtmp/lastlog stay in the home)."""
        return self.host_dir(host) / "varlog"

    def vm_dir(self, vm: str) -> Path:
        return self.home / "hosts" / vm

    def vm_upper(self, vm: str, tree: str) -> Path:
        """The overlay upper directory of the VM's /etc or /var (its disk: survives a reboot)."""
        return self.vm_dir(vm) / f"{tree}.upper"

    def vm_work(self, vm: str, tree: str) -> Path:
        return self.vm_dir(vm) / f"{tree}.work"

    def vm_root_home(self, vm: str) -> Path:
        """Bind-mounted on the VM's /root (fence key, known_hosts)."""
        return self.vm_dir(vm) / "root"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def fence_key(self) -> Path:
        return self.keys_dir / "id_fence"

    def log_file(self, name: str) -> Path:
        return self.home / "log" / f"{name}.log"


def layout_for(home: Path | str) -> Layout:
    h = Path(home).absolute()
    return Layout(h, home_tag(h))


def is_pacemaker_home(home: Path | str) -> bool:
    """True if ``home`` holds a Pacemaker topology (running, or left by a crashed ``up``)."""
    return layout_for(home).record_file.exists()


def expected_links(name: str) -> frozenset[str]:
    """Every link a namespace of this topology may hold (VM peers may be in any host)."""
    if name == "dc":
        return frozenset({"lo", BRIDGE, *HOSTS})
    if is_host(name):
        return frozenset({"lo", BRIDGE, UPLINK, *VMS})
    if is_vm(name):
        return frozenset({"lo", VM_IFACE})
    raise ValueError(name)
