"""The Pacemaker topology for real (root): one cluster brought up for the module, then, in order,
its shape and isolation, virsh against the real fence_virsh through the hosts' sshd, pauses
below the token, a live migration vm2 kvm2 -> kvm3, an unprotected freeze that Pacemaker fences
through fence_virsh, ``down`` with a leak check, and ``down`` after ``up`` crashed part way.

The tests run in file order and share the cluster (each leaves it ready for the next one).
Measurements are printed (``-s`` shows them).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pcmk_helpers import Snapshot, events, leaks, log_lines, members, ring_id, snapshot

from clovm.api.errors import ClovmError
from clovm.core import codes
from clovm.pacemaker import api
from clovm.pacemaker import layout as L
from clovm.pacemaker import platform as P

FENCE = ["fence_virsh", "--username", "root", "--identity-file", L.FENCE_KEY]
NET = ipaddress.ip_network(L.SUBNET)


class Cluster:
    def __init__(self, home: Path, summary: dict[str, Any], before: Snapshot) -> None:
        self.home, self.summary, self.before = home, summary, before
        self.lay = L.layout_for(home)
        self.token_s = summary["token_ms"] / 1000.0

    def run(self, host: str, *argv: str, timeout: float = 60.0) -> tuple[int, str, str]:
        return api.exec_in(self.home, host, list(argv), timeout=timeout)

    def fence_virsh(self, node: str, host: str, *args: str) -> tuple[int, str, str]:
        return self.run(node, *FENCE, "--ip", host, *args)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["cgroup2", "sigstop"])
def test_freezer_stops_every_process_then_thaws_and_kills(pcmk_stack: None, tmp_path: Path, mode: str) -> None:
    """Both ways of freezing a VM (cgroup v2 here; SIGSTOP of ``ip netns pids`` where it is missing)."""
    tag = f"clovm-fz{os.getpid()}"
    base = None
    if mode == "cgroup2":
        root = P.cgroup2_root()
        if root is None or not P.Freezer.probe(root / tag):
            pytest.skip("no cgroup v2 freezer on this machine")
        base = root / tag
    with P.run_netns_guard():  # as a topology's up does: another one may come or go meanwhile
        P.mark_run_netns_unless_mounted()
        P.netns_add(tag)
    fr = P.Freezer(base, {"vmx": tag})
    tick = tmp_path / "ticks"
    try:
        fr.prepare("vmx")
        proc = subprocess.Popen(
            [
                *fr.launch_prefix("vmx"),
                "nsenter",
                f"--net=/run/netns/{tag}",
                "--",
                "sh",
                "-c",
                f"(while :; do echo x >> {tick}; sleep 0.02; done) & sleep 60 & wait",
            ]
        )
        assert _until(lambda: len(fr.procs("vmx")) >= 3 and tick.exists(), 5)
        fr.freeze("vmx")
        assert fr.is_frozen("vmx")
        time.sleep(0.1)
        n = len(tick.read_text())
        time.sleep(0.5)
        assert len(tick.read_text()) == n, "a frozen process ran"
        fr.thaw("vmx")
        assert _until(lambda: len(tick.read_text()) > n, 2) and not fr.is_frozen("vmx")
        fr.freeze("vmx")
        assert fr.kill("vmx") and fr.procs("vmx") == []  # killing works on a frozen VM too
        proc.wait(5)
    finally:
        fr.kill("vmx")
        with P.run_netns_guard():  # as a topology's down does
            P.netns_delete(tag)
            P.umount_run_netns_if_ours()
        if base is not None:
            fr.remove_base()


@pytest.fixture(scope="module")
def cluster(pcmk_stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("pcmk") / "home"
    before = snapshot(home)
    summary = api.up(home)
    try:
        yield Cluster(home, summary, before)
    finally:
        api.down(home)


@pytest.mark.timeout(180)
def test_up_brings_a_ready_cluster(cluster: Cluster) -> None:
    s = cluster.summary
    print(f"\nup took {s['up_seconds']} s ({s['timings']}); token {s['token_ms']} ms; freezer {s['freezer']}")
    assert s["up_seconds"] < 90
    assert s["stonith"] == {"fence-vm1": "vm2", "fence-vm2": "vm1"}
    rc, out, err = cluster.run("vm1", "crm_mon", "-1")
    print(out)
    assert rc == 0, err
    assert "Online: [ vm1 vm2 ]" in out
    assert "fence-vm1\t(stonith:fence_virsh):\t Started vm2" in out
    assert "fence-vm2\t(stonith:fence_virsh):\t Started vm1" in out
    assert "Failed" not in out
    for node in L.VMS:
        rc, out, _ = cluster.run(node, "corosync-cmapctl", "-g", "runtime.config.totem.token")
        assert out.strip().endswith(f"= {s['token_ms']}")
        rc, out, _ = cluster.run(node, "corosync-cmapctl", "-g", "totem.cluster_name")
        assert out.strip().endswith(f"= {L.CLUSTER_NAME}")
    assert members(cluster.home) == ["vm1", "vm2"]
    st = api.status(cluster.home)
    assert st["state"] == "ready" and all(st["hosts"][h]["running"] for h in L.HOSTS)
    assert {vm: st["vms"][vm]["link_on"] for vm in L.VMS} == L.INITIAL_PLACEMENT


@pytest.mark.timeout(60)
def test_addresses_exist_only_inside_our_namespaces(cluster: Cluster) -> None:
    lay = cluster.lay
    assert set(P.netns_list()) >= set(lay.namespaces)
    for name in ("dc", *L.HOSTS, *L.VMS):
        ns = lay.ns(name)
        for family in ("-4", "-6"):
            defaults = [r for r in P.routes(ns, family) if r.get("dst") == "default"]
            assert defaults == [], f"{ns} has a default route: {defaults}"
        for link in P.links(ns):
            assert link["ifname"] in L.expected_links(name), f"{ns}: unexpected link {link['ifname']}"
            kind = link.get("linkinfo", {}).get("info_kind")
            assert link["link_type"] == "loopback" or kind in ("veth", "bridge"), f"{ns}: {link}"
        for cidr in P.addresses(ns):
            addr = ipaddress.ip_interface(cidr).ip
            assert addr.is_loopback or addr.is_link_local or addr in NET, f"{ns}: address {cidr}"
    # the machine's own namespace got no link: every veth has both ends in our namespaces
    assert P.link_names(None) == set(cluster.before.links)
    # the VMs reach each other across hosts (corosync does), and the hosts' sshd, but nothing else
    rc, out, _ = cluster.run("vm1", "ip", "route", "get", "8.8.8.8")
    assert rc != 0 and "unreachable" in (out + _).lower()


@pytest.mark.timeout(60)
def test_vms_have_their_own_namespaces_and_files(cluster: Cluster) -> None:
    st = api.status(cluster.home)
    vm_pid, host_pid = st["vms"]["vm1"]["init_pid"], st["hosts"]["kvm1"]["init_pid"]
    for kind in ("net", "mnt", "pid", "ipc", "uts"):
        mine = os.readlink(f"/proc/self/ns/{kind}")
        vm = os.readlink(f"/proc/{vm_pid}/ns/{kind}")
        assert vm != mine, f"vm1 shares the {kind} namespace"
        if kind in ("net", "mnt", "uts"):
            assert os.readlink(f"/proc/{host_pid}/ns/{kind}") not in (mine, vm)
    assert cluster.run("vm1", "hostname")[1].strip() == "vm1"
    assert cluster.run("kvm1", "hostname")[1].strip() == "kvm1"
    assert "clovm.pacemaker.vminit" in cluster.run("vm1", "cat", "/proc/1/cmdline")[1]
    for path in ("/run", "/dev/shm", "/tmp"):
        assert cluster.run("vm1", "stat", "-f", "-c", "%T", path)[1].strip() == "tmpfs"
    assert cluster.run("vm1", "stat", "-f", "-c", "%T", "/etc")[1].strip() == "overlayfs"
    assert "two_node: 1" in cluster.run("vm2", "cat", "/etc/corosync/corosync.conf")[1]
    cg = cluster.run("vm1", "cat", "/proc/self/cgroup")[1]
    assert f"0::/{cluster.lay.cgroup_name}/vm1" in cg.splitlines(), "a command run in a VM is one of its processes"
    assert cluster.run("kvm2", "sh", "-c", "command -v virsh")[1].strip() == "/usr/local/sbin/virsh"
    assert cluster.run("vm2", "sh", "-c", "command -v virsh")[0] != 0  # the host's virsh is not in the VM


@pytest.mark.timeout(90)
def test_virsh_formats_against_the_real_fence_virsh(cluster: Cluster) -> None:
    rc, out, err = api.run_virsh(cluster.home, "kvm2", "list", "--all")
    print(f"\nkvm2 # virsh list --all\n{out}")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["Id", "Name", "State"] and lines[2].split()[1:] == ["vm2", "running"]
    assert api.run_virsh(cluster.home, "kvm2", "domstate", "vm2")[1].splitlines()[0] == "running"
    assert api.run_virsh(cluster.home, "kvm3", "domstate", "vm2") == (1, "", "error: failed to get domain 'vm2'\n")
    assert api.run_virsh(cluster.home, "kvm3", "list", "--all")[1].splitlines()[2:] == [""]
    rc, out, err = cluster.fence_virsh("vm1", "kvm2", "--plug", "vm2", "-o", "status")
    print(f"vm1 # fence_virsh --ip kvm2 --plug vm2 -o status\n{out}{err}")
    assert (rc, out.strip()) == (0, "Status: ON"), err
    rc, out, err = cluster.fence_virsh("vm2", "kvm1", "--plug", "vm1", "-o", "status")
    assert (rc, out.strip()) == (0, "Status: ON"), err
    rc, out, err = cluster.fence_virsh("vm1", "kvm2", "-o", "list")
    assert rc == 0 and out.strip() == "vm2,", err
    rc, out, err = cluster.fence_virsh("vm1", "kvm3", "-o", "list")
    assert rc == 0 and out.strip() == "", err
    rc, out, err = cluster.fence_virsh("vm1", "kvm3", "--plug", "vm2", "-o", "status")
    assert rc == 1 and "existing name/UUID" in err  # a host that does not run vm2
    rc, out, err = cluster.fence_virsh("vm1", "kvm3", "--plug", "vm2", "--missing-as-off", "-o", "status")
    assert out.strip() == "Status: OFF"  # the trap: "off" although vm2 runs elsewhere


@pytest.mark.timeout(60)
def test_bad_input_on_a_running_cluster_changes_nothing(cluster: Cluster) -> None:
    before = api.status(cluster.home)
    for call, code in [
        (lambda: api.exec_in(cluster.home, "kvm9", ["true"]), codes.UNKNOWN_HOST),
        (lambda: api.pause(cluster.home, "kvm2", 1.0), codes.NOT_A_VM),
        (lambda: api.pause(cluster.home, "vm2", 10_000), codes.BAD_ARGUMENT),
        (lambda: api.up(cluster.home), codes.HOME_IN_USE),
    ]:
        with pytest.raises(ClovmError) as e:
            call()
        assert e.value.code == code and "\n" not in e.value.message
    rc, _out, err = api.run_virsh(cluster.home, "kvm2", "migrate", "--live", "vm2", "qemu+ssh://kvm9/system")
    assert rc == 1 and err.startswith("error: Failed to migrate domain 'vm2'")
    rc, _out, err = api.run_virsh(cluster.home, "kvm2", "frobnicate")
    assert rc == 1 and err == "error: unknown command: 'frobnicate'\n"
    after = api.status(cluster.home)
    assert after["vms"] == before["vms"] and after["hosts"] == before["hosts"]


@pytest.mark.timeout(60)
def test_pause_far_below_the_token_is_invisible(cluster: Cluster) -> None:
    ring = ring_id(cluster.home)
    downs = len(log_lines(cluster.lay, "vm1", "log/corosync/corosync.log", "is down"))
    r = api.pause(cluster.home, "vm2", 0.15 * cluster.token_s)
    assert (
        r["freezer"] == cluster.summary["freezer"]
        and 0.15 * cluster.token_s <= r["frozen_s"] < 0.15 * cluster.token_s + 0.5
    )
    time.sleep(cluster.token_s * 1.5)
    assert ring_id(cluster.home) == ring == ring_id(cluster.home, "vm2")
    assert len(log_lines(cluster.lay, "vm1", "log/corosync/corosync.log", "is down")) == downs
    assert api.stonith_history(cluster.home) == []
    api.wait_ready(cluster.home, timeout=10)


@pytest.mark.timeout(60)
def test_pause_of_half_a_token_loses_no_node(cluster: Cluster) -> None:
    ring = ring_id(cluster.home)
    api.pause(cluster.home, "vm2", 0.5 * cluster.token_s)
    time.sleep(cluster.token_s * 2.5)
    new_ring = ring_id(cluster.home)
    print(
        f"\nhalf-token pause: ring {ring} -> {new_ring} (knet declares the link down after "
        f"token/knet_pong_count; the membership may re-form with the same members)"
    )
    assert members(cluster.home) == ["vm1", "vm2"] == members(cluster.home, "vm2")
    assert not log_lines(cluster.lay, "vm1", "log/pacemaker/pacemaker.log", "will be fenced")
    assert api.stonith_history(cluster.home) == []
    api.wait_ready(cluster.home, timeout=30)


@pytest.mark.timeout(60)
def test_hypervisor_crash_loses_nothing(cluster: Cluster) -> None:
    lay = cluster.lay
    vm_pid = api.status(cluster.home)["vms"]["vm1"]["init_pid"]
    listing = api.run_virsh(cluster.home, "kvm1", "list", "--all")[1]
    (hvd,) = [p for p in P.netns_pids(lay.ns("kvm1")) if Path(f"/proc/{p}/comm").read_text().strip() == "hvd-kvm1"]
    os.kill(hvd, 9)

    def restarted() -> bool:
        pids = [
            p
            for p in P.netns_pids(lay.ns("kvm1"))
            if P.alive(p) and Path(f"/proc/{p}/comm").read_text().strip() == "hvd-kvm1"
        ]
        return bool(pids) and pids != [hvd] and api.run_virsh(cluster.home, "kvm1", "list", "--all")[0] == 0

    assert _until(restarted, 20), "hostinit did not restart the hypervisor daemon"
    assert api.run_virsh(cluster.home, "kvm1", "list", "--all")[1] == listing  # same domains, same ids
    assert api.status(cluster.home)["vms"]["vm1"]["init_pid"] == vm_pid  # the VM itself never noticed
    assert events(lay, "kvm1", "readopted", "vm1")
    api.wait_ready(cluster.home, timeout=10)


@pytest.mark.timeout(120)
def test_live_migration_keeps_the_cluster_and_moves_the_veth(cluster: Cluster) -> None:
    lay = cluster.lay
    api.wait_ready(cluster.home, timeout=30)
    ring = ring_id(cluster.home)
    t0 = time.time()
    rc, out, err = api.run_virsh(
        cluster.home, "kvm2", "migrate", "--live", "--verbose", "vm2", "qemu+ssh://kvm3/system"
    )
    took = time.time() - t0
    assert (rc, out, err) == (0, "Migration: [100 %]\n", "")
    (suspended,) = events(lay, "kvm2", "suspended", "vm2")
    (resumed,) = events(lay, "kvm3", "resumed", "vm2")
    print(
        f"\nmigration took {took:.2f} s; vm2 frozen {1000 * (resumed - suspended):.0f} ms "
        f"(token {cluster.summary['token_ms']} ms)"
    )
    assert 0 < resumed - suspended < 1.0
    assert api.where(cluster.home, "vm2") == "kvm3"
    assert "vm2" in P.link_names(lay.ns("kvm3")) and "vm2" not in P.link_names(lay.ns("kvm2"))
    (link,) = [x for x in P.links(lay.ns("kvm3")) if x["ifname"] == "vm2"]
    assert link.get("master") == L.BRIDGE and "UP" in link["flags"]
    assert f"{L.ADDRESSES['vm2']}/{L.PREFIX_LEN}" in P.addresses(lay.ns("vm2"))
    assert api.run_virsh(cluster.home, "kvm3", "domstate", "vm2")[1].splitlines()[0] == "running"
    assert api.run_virsh(cluster.home, "kvm2", "domstate", "vm2")[0] == 1
    assert cluster.fence_virsh("vm1", "kvm3", "--plug", "vm2", "-o", "status")[1].strip() == "Status: ON"
    time.sleep(cluster.token_s)
    assert ring_id(cluster.home) == ring, "the membership changed during the migration"
    assert members(cluster.home) == ["vm1", "vm2"]
    assert api.stonith_history(cluster.home) == []
    api.wait_ready(cluster.home, timeout=30)


@pytest.mark.timeout(180)
def test_unprotected_freeze_of_three_tokens_is_fenced_through_fence_virsh(cluster: Cluster) -> None:
    lay, home = cluster.lay, cluster.home
    # vm2 now runs on kvm3: point its fence device there (as the orchestration will)
    rc, _out, err = cluster.run(
        "vm1", "crm_resource", "--resource", "fence-vm2", "--set-parameter", "ip", "--parameter-value", "kvm3"
    )
    assert rc == 0, err
    api.wait_ready(home, timeout=60)
    assert api.stonith_history(home) == []
    r = api.pause(home, "vm2", 3 * cluster.token_s)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        hist = [e for e in api.stonith_history(home) if e.target == "vm2" and e.status != "pending"]
        if hist:
            break
        time.sleep(0.5)
    rc, text, _ = cluster.run("vm1", "stonith_admin", "--history", "*")
    print(f"\nvm1 # stonith_admin --history '*'\n{text}")
    assert [(e.action, e.target, e.status, e.delegate) for e in hist] == [("reboot", "vm2", "success", "vm1")]
    killed = [t for t in events(lay, "kvm3", "killed", "vm2") if t > r["frozen_at"]]
    started = [t for t in events(lay, "kvm3", "started", "vm2") if t > r["frozen_at"]]
    assert killed and started and started[0] > killed[0]
    ratio = (killed[0] - r["frozen_at"]) / cluster.token_s
    print(f"freeze -> fence_virsh destroyed vm2 after {killed[0] - r['frozen_at']:.2f} s = {ratio:.2f} tokens")
    assert 1.0 < ratio < 4.5, "fenced after the token and the consensus (and the agent's ssh login)"
    assert log_lines(lay, "vm1", "log/pacemaker/pacemaker.log", "vm2 will be fenced")
    assert not events(lay, "kvm2", "killed", "vm2"), "the fence went to the host that runs vm2"
    view = api.wait_ready(home, timeout=120)
    assert view.online == ("vm1", "vm2")
    assert api.where(home, "vm2") == "kvm3"


@pytest.mark.timeout(60)
def test_down_leaves_nothing(cluster: Cluster) -> None:
    t0 = time.time()
    lines = api.down(cluster.home)
    took = time.time() - t0
    print(f"\ndown took {took:.2f} s:\n  " + "\n  ".join(lines))
    assert any(line.startswith("deleted namespace") for line in lines)
    assert leaks(cluster.before, cluster.home) == []
    assert api.down(cluster.home) == []
    with pytest.raises(ClovmError) as e:
        api.exec_in(cluster.home, "vm1", ["true"])
    assert e.value.code == codes.NOT_RUNNING


def _until(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(120)
def test_up_that_fails_removes_what_it_made(pcmk_stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    before = snapshot(home)
    monkeypatch.setattr(api, "CIB_TIMEOUT_S", 0.5)
    with pytest.raises(ClovmError) as e:
        api.up(home)
    assert e.value.code == codes.CLUSTER_NOT_READY and "\n" not in e.value.message
    assert e.value.message.startswith("up failed (everything made was removed)")
    assert leaks(before, home) == []
    assert not L.layout_for(home).record_file.exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("crash_at", ["first-namespace", "hosts-up"])
def test_down_after_up_crashed_part_way(pcmk_stack: None, tmp_path: Path, crash_at: str) -> None:
    home = tmp_path / "home"
    lay = L.layout_for(home)
    before = snapshot(home)
    up = subprocess.Popen(
        [sys.executable, "-c", f"from clovm.pacemaker import api; api.up({str(home)!r})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if crash_at == "first-namespace":
            reached = _until(lambda: any(n.startswith(lay.ns_prefix) for n in P.netns_list()), 30)
        else:
            reached = _until(
                lambda: all(lay.ready_file(h).exists() for h in L.HOSTS) and events(lay, "kvm2", "started", "vm2"), 60
            )
        assert reached, f"up never reached {crash_at}"
    finally:
        up.kill()
        up.wait()
    if crash_at == "hosts-up":
        time.sleep(1.0)  # let the VMs get as far as corosync/pacemaker
        assert snapshot(home).procs, "nothing of the stack was running"
    lines = api.down(home)
    print(f"\ndown after a crash at {crash_at}:\n  " + "\n  ".join(lines))
    assert leaks(before, home) == []
    assert not lay.record_file.exists()
