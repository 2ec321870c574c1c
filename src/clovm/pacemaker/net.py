"""The topology's network: the datacenter bridge, the hosts' bridges, and each VM's veth.

Built with the platform adapter only; every namespace is recorded (write-ahead) before it is
created. A VM's link is a veth pair ``eth0`` (in the VM) / ``vmN`` (in the namespace of the host
that runs it, on that host's bridge): :func:`ensure_vm_link` makes it so for a host (creating the
pair if it is missing, moving the host end from wherever it is otherwise), which is both the
boot-time wiring and the hand-off of a live migration.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import layout as L
from . import platform as P
from .layout import Layout

Recorder = Callable[[str], None]  # called with a namespace name before it is created


def create_fabric(lay: Layout, record_netns: Recorder) -> None:
    """Every namespace (dc, hosts, VMs), the bridges, the uplinks and the hosts' addresses."""
    existing = set(P.netns_list())
    for name in ("dc", *L.HOSTS, *L.VMS):
        ns = lay.ns(name)
        record_netns(ns)
        if ns not in existing:
            P.netns_add(ns)
        P.loopback_up(ns)
    dc = lay.ns("dc")
    if L.BRIDGE not in P.link_names(dc):
        P.bridge_add(dc, L.BRIDGE)
    for host in L.HOSTS:
        ns = lay.ns(host)
        have = P.link_names(ns)
        if L.BRIDGE not in have:
            P.bridge_add(ns, L.BRIDGE)
            # A bridge without an address of its own takes its lowest port's: when a VM's veth
            # leaves with a live migration the host's address would change its MAC under the
            # neighbours' ARP caches (fence_virsh's ssh to the old host then fails for ~30 s).
            P.ip("link", "set", L.BRIDGE, "address", bridge_mac(host), ns=ns)
            P.addr_add(ns, L.BRIDGE, f"{L.ADDRESSES[host]}/{L.PREFIX_LEN}")
        if L.UPLINK not in have:
            P.veth_add(ns, L.UPLINK, dc, host)
        P.link_up(ns, L.UPLINK, L.BRIDGE)
        P.link_up(dc, host, L.BRIDGE)


def bridge_mac(host: str) -> str:
    """The fixed, locally administered MAC of a host's bridge (unique within a home's L2)."""
    return f"02:c1:0b:00:00:{L.HOSTS.index(host) + 1:02x}"


def where_is_vm_link(lay: Layout, vm: str) -> str | None:
    """The host whose namespace holds the host end of ``vm``'s veth, if any."""
    for host in L.HOSTS:
        if vm in P.link_names(lay.ns(host)):
            return host
    return None


def ensure_vm_link(lay: Layout, vm: str, host: str) -> tuple[str | None, float]:
    """Put ``vm``'s link on ``host``'s bridge. Returns (the host it came from, seconds taken)."""
    t0 = time.monotonic()
    vm_ns, host_ns = lay.ns(vm), lay.ns(host)
    was = where_is_vm_link(lay, vm)
    if was is None:
        if L.VM_IFACE in P.link_names(vm_ns):  # a stale end without its peer cannot exist; be safe
            P.ip("link", "del", L.VM_IFACE, ns=vm_ns)
        P.veth_add(host_ns, vm, vm_ns, L.VM_IFACE)
        P.link_up(host_ns, vm, L.BRIDGE)
    elif was != host:
        P.link_move(lay.ns(was), vm, host_ns, L.BRIDGE)
    else:
        P.link_up(host_ns, vm, L.BRIDGE)
    want = f"{L.ADDRESSES[vm]}/{L.PREFIX_LEN}"
    if want not in P.addresses(vm_ns):
        P.addr_add(vm_ns, L.VM_IFACE, want)
    P.link_up(vm_ns, L.VM_IFACE)
    return was, time.monotonic() - t0
