"""The Pacemaker topology's pure parts (no root, no processes): virsh's command line and formats,
the hypervisor's migration through ldm's engine (two machines wired together, virtual time),
the readiness verdicts, the record's teardown order, the generated configs, and bad input to
the API (one ClovmError line, nothing changed)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pcmk_helpers import Pair

from clovm.api.errors import ClovmError
from clovm.core import codes
from clovm.core.ldm import (
    AdoptDomainProcess,
    KillDomainProcess,
    ReleaseDomain,
    ResumeDomainProcess,
    SendToPeer,
    StartDomainProcess,
    SuspendDomainProcess,
)
from clovm.pacemaker import api, configs, readiness, virsh
from clovm.pacemaker import layout as L
from clovm.pacemaker import platform as P
from clovm.pacemaker.hvcore import Hypervisor, VirshReceived, VirshReplied
from clovm.pacemaker.record import teardown_plan

# fence_virsh's own parsing of `virsh list --all` (agents/virsh/fence_virsh.py, get_outlets_status)
FENCE_VIRSH_ROW = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+).*$")
ON_STATES = ["running", "blocked", "idle", "no state", "paused"]


def fence_virsh_list(text: str) -> dict[str, str]:
    result, seen_header = {}, False
    for line in text.splitlines():
        m = FENCE_VIRSH_ROW.search(line)
        if m is None:
            continue
        if not seen_header and m.group(1).lower() == "id" and m.group(2).lower() == "name":
            seen_header = True
        elif seen_header:
            result[m.group(2)] = "on" if m.group(3).lower() in ON_STATES else "off"
    return result


# ------------------------------------------------------------------------------------ virsh
@pytest.mark.timeout(10)
def test_virsh_parse() -> None:
    assert virsh.parse(["list", "--all"]) == virsh.Command("list", all=True)
    assert virsh.parse(["-c", "qemu:///system", "domstate", "vm2"]) == virsh.Command("domstate", "vm2")
    for uri in ("qemu+ssh://kvm3/system", "qemu+ssh://root@kvm3/system", "kvm3", "qemu+tcp://kvm3:16509/system"):
        assert virsh.parse(["migrate", "--live", "vm2", uri]).target == "kvm3"
    assert virsh.parse(["migrate", "--live", "--verbose", "vm2", "kvm3"]).verbose
    for bad in (
        ["bogus"],
        ["domstate"],
        ["domstate", "a", "b"],
        ["migrate", "vm2", "kvm3"],
        ["migrate", "--live", "vm2"],
        ["list", "--name"],
        ["-c", "qemu+ssh://kvm3/system", "list"],
    ):
        with pytest.raises(virsh.UsageError):
            virsh.parse(bad)


@pytest.mark.timeout(10)
def test_virsh_formats_parse_as_fence_virsh_does() -> None:
    views = [
        virsh.DomainView("vm2", "running", 1),
        virsh.DomainView("vm9", "paused", 4),
        virsh.DomainView("vm3", "shut off"),
    ]
    text = virsh.render_list(views, all=True)
    assert text.splitlines()[0].split() == ["Id", "Name", "State"]
    assert fence_virsh_list(text) == {"vm2": "on", "vm9": "on", "vm3": "off"}
    assert fence_virsh_list("virsh list --all\n" + text) == {"vm2": "on", "vm9": "on", "vm3": "off"}
    assert "vm3" not in virsh.render_list(views, all=False)
    table = {v.name: v for v in views}
    assert virsh.render_domstate(table, "vm2").stdout.splitlines()[0] == "running"
    assert virsh.render_domstate(table, "vm3").stdout.splitlines()[0] == "shut off"
    unknown = virsh.render_domstate(table, "nope")
    assert (unknown.rc, unknown.stderr) == (1, "error: failed to get domain 'nope'\n")


# ------------------------------------------------------------------------------------ hypervisor
@pytest.mark.timeout(10)
def test_live_migration_runs_ldms_engine_end_to_end() -> None:
    p = Pair()
    p.send("kvm2", VirshReceived(1, ("migrate", "--live", "vm2", "qemu+ssh://kvm3/system")))
    while not p.replies(1) and p.step():
        pass
    assert p.replies(1) == [virsh.Result(0, "", "")]
    ((t_susp, _),) = p.effects("kvm2", SuspendDomainProcess)
    ((_t_adopt, adopt),) = p.effects("kvm3", AdoptDomainProcess)
    ((t_res, _),) = p.effects("kvm3", ResumeDomainProcess)
    assert adopt == AdoptDomainProcess("vm2", "kvm2")
    assert p.effects("kvm2", ReleaseDomain)
    assert 0 < t_res - t_susp < 0.5, "the final suspend must stay far below a token"
    assert t_susp > 1.0, "pre-copy rounds come first"
    kinds = [type(e).__name__ for _, h, e in p.log if h == "kvm3" and not isinstance(e, SendToPeer)]
    assert kinds.index("AdoptDomainProcess") < kinds.index("ResumeDomainProcess")
    assert [v.name for v in p.hv["kvm2"].views()] == []
    assert p.hv["kvm3"].views() == [virsh.DomainView("vm2", "running", 1)]
    snap = p.hv["kvm3"].snapshot()
    assert snap["domains"][0]["state"] == "running" and snap["domains"][0]["autostart"] is False
    p.send("kvm2", VirshReceived(2, ("domstate", "vm2")))
    assert p.replies(2)[0].stderr == "error: failed to get domain 'vm2'\n"


@pytest.mark.timeout(10)
def test_migration_cancelled_during_precopy_keeps_the_source() -> None:
    p = Pair()
    p.send("kvm2", VirshReceived(1, ("migrate", "--live", "vm2", "kvm3")))
    assert p.hv["kvm3"].views() == [virsh.DomainView("vm2", "paused")]  # the incoming copy
    p.send("kvm2", VirshReceived(2, ("domjobabort", "vm2")))
    assert p.replies(2)[0].rc == 0
    r = p.replies(1)[0]
    assert r.rc == 1 and "Migration of domain vm2 was cancelled" in r.stderr
    assert r.stderr.startswith("error: Failed to migrate domain 'vm2'\n")
    assert p.hv["kvm3"].views() == []
    assert p.hv["kvm2"].views() == [virsh.DomainView("vm2", "running", 1)]
    assert not p.effects("kvm2", SuspendDomainProcess) and not p.effects("kvm2", ReleaseDomain)


@pytest.mark.timeout(10)
def test_destroy_start_reboot_and_errors() -> None:
    p = Pair()
    p.send("kvm2", VirshReceived(1, ("reboot", "vm2")))
    kinds = [type(e) for _, h, e in p.log if h == "kvm2" and not isinstance(e, VirshReplied)]
    assert kinds[:2] == [KillDomainProcess, StartDomainProcess]
    assert p.replies(1)[0].stdout.startswith("Domain 'vm2' is being rebooted")
    p.send("kvm2", VirshReceived(2, ("destroy", "vm2")))
    assert p.replies(2)[0].stdout.startswith("Domain 'vm2' destroyed")
    p.send("kvm2", VirshReceived(3, ("list", "--all")))
    assert fence_virsh_list(p.replies(3)[0].stdout) == {"vm2": "off"}
    p.send("kvm2", VirshReceived(4, ("destroy", "vm2")))
    assert p.replies(4)[0].rc == 1 and p.replies(4)[0].stderr.startswith("error: Failed to destroy domain 'vm2'")
    p.send("kvm2", VirshReceived(5, ("start", "vm2")))
    assert p.replies(5)[0].stdout.startswith("Domain 'vm2' started")
    p.send("kvm2", VirshReceived(6, ("start", "nope")))
    assert p.replies(6)[0].stderr == "error: failed to get domain 'nope'\n"
    p.send("kvm2", VirshReceived(7, ("migrate", "--live", "vm2", "qemu+ssh://kvm9/system")))
    assert p.replies(7)[0].rc == 1 and "kvm9" in p.replies(7)[0].stderr
    p.send("kvm2", VirshReceived(8, ("migrate", "--live", "vm2", "kvm2")))
    assert p.replies(8)[0].rc == 1
    p.send("kvm2", VirshReceived(9, ("migrate", "--live", "vm2", L.ADDRESSES["kvm3"])))  # by address
    while not p.replies(9) and p.step():
        pass
    assert p.replies(9)[0].rc == 0 and p.hv["kvm3"].running() == ["vm2"]


@pytest.mark.timeout(10)
def test_hypervisor_restart_readopts_or_autostarts() -> None:
    snap = {
        "domains": [
            {
                "name": "vm1",
                "memory_mb": 1024,
                "vcpu": 2,
                "dirty_rate_mb_s": 64.0,
                "state": "running",
                "autostart": True,
                "id": 3,
            }
        ],
        "next_id": 4,
    }
    hv = Hypervisor("kvm1")
    assert hv.load(snap, running=["vm1"]) == []
    assert hv.views() == [virsh.DomainView("vm1", "running", 3)]
    hv2 = Hypervisor("kvm1")
    assert hv2.load(snap, running=[]) == ["vm1"]  # it died with the daemon down: boot it again
    assert hv2.views() == [virsh.DomainView("vm1", "shut off")]


# ------------------------------------------------------------------------------------ readiness
CRM_MON = """<pacemaker-result api-version="2.25" request="crm_mon -1 --output-as=xml">
  <summary><current_dc present="true" name="vm2" id="2" with_quorum="true"/></summary>
  <nodes>
    <node name="vm1" id="1" online="true" pending="false" unclean="false" shutdown="false"/>
    <node name="vm2" id="2" online="true" pending="false" unclean="false" shutdown="false"/>
  </nodes>
  <resources>
    <resource id="fence-vm1" role="Started" active="true" failed="false"{P1}><node name="vm2" id="2"/></resource>
    <resource id="fence-vm2" role="Started" active="true" failed="false"><node name="vm1" id="1"/></resource>
  </resources>
  <node_history>
    <node name="vm1"><resource_history id="fence-vm2">
      <operation_history task="start" rc="0"/><operation_history task="monitor" rc="0" interval="60000ms"/>
    </resource_history></node>
    <node name="vm2"><resource_history id="fence-vm1">
      <operation_history task="start" rc="0"/><operation_history task="monitor" rc="{RC}" interval="60000ms"/>
    </resource_history></node>
  </node_history>
  {FAIL}
  <status code="0" message="OK"/>
</pacemaker-result>"""


@pytest.mark.timeout(10)
def test_readiness_verdicts() -> None:
    devices = ["fence-vm1", "fence-vm2"]
    ok = readiness.parse_crm_mon(CRM_MON.format(P1="", RC="0", FAIL=""))
    assert ok.ready(L.VMS, devices) and ok.started == {"fence-vm1": "vm2", "fence-vm2": "vm1"}
    pending = readiness.parse_crm_mon(CRM_MON.format(P1=' pending="Monitoring"', RC="0", FAIL=""))
    assert pending.problems(L.VMS, devices) == ["not started: fence-vm1"]
    bad_monitor = readiness.parse_crm_mon(CRM_MON.format(P1="", RC="1", FAIL=""))
    assert bad_monitor.problems(L.VMS, devices) == ["no successful monitor yet: fence-vm1"]
    failed = readiness.parse_crm_mon(
        CRM_MON.format(
            P1="",
            RC="0",
            FAIL=(
                '<failures><failure op_key="fence-vm1_monitor_60000" node="vm2" exitreason="ssh failed"/></failures>'
            ),
        )
    )
    assert failed.problems(L.VMS, devices) == ["failed actions: fence-vm1_monitor_60000 on vm2: ssh failed"]
    lost = readiness.parse_crm_mon(
        CRM_MON.format(P1="", RC="0", FAIL="").replace(
            'name="vm2" id="2" online="true"', 'name="vm2" id="2" online="false"'
        )
    )
    assert "not online: vm2" in lost.problems(L.VMS, devices)
    with pytest.raises(readiness.BadXml):
        readiness.parse_crm_mon("crm_mon: Error: cluster is not available on this node")
    hist = readiness.parse_stonith_history(
        '<pacemaker-result><fence_history><fence_event action="reboot" target="vm2" status="success" '
        'delegate="vm1" origin="vm1" completed="2026-12-03 12:36:13Z"/></fence_history></pacemaker-result>'
    )
    assert hist == [readiness.FenceEvent("reboot", "vm2", "success", "vm1", "vm1", "2026-12-03 12:36:13Z")]


# ------------------------------------------------------------------------------------ record, configs
@pytest.mark.timeout(10)
def test_teardown_plan_order() -> None:
    entries = [
        {"kind": "cgroup", "path": "/cg/x"},
        {"kind": "vm", "name": "vm1"},
        {"kind": "netns", "name": "a"},
        {"kind": "netns", "name": "b"},
        {"kind": "host", "name": "kvm1"},
        {"kind": "run_netns_mount"},
    ]
    steps = [s for s, _ in teardown_plan(entries)]
    assert steps == [
        "kill_vm",
        "stop_host",
        "kill_vm",
        "kill_netns",
        "kill_netns",
        "delete_netns",
        "delete_netns",
        "remove_cgroup",
        "umount_run_netns",
        "remove_run_files",
    ]
    assert [a for s, a in teardown_plan(entries) if s == "delete_netns"] == ["b", "a"]
    assert teardown_plan([]) == [("remove_run_files", "")]


@pytest.mark.timeout(10)
def test_layout_and_configs() -> None:
    lay = L.layout_for(Path("/tmp/some/home"))
    assert lay.ns("kvm1") == f"clovm-{lay.tag}-kvm1" and len(lay.tag) == 6
    assert all(len(name) <= 15 for name in (L.BRIDGE, L.UPLINK, L.VM_IFACE, *L.HOSTS, *L.VMS))
    assert L.token_ms(1.0) == 3000 and L.token_ms(2.0) == 1500 and L.token_ms(100) == L.MIN_TOKEN_MS
    conf = configs.corosync_conf(3000)
    for needle in (
        "cluster_name: pcmkcluster",
        "transport: knet",
        "token: 3000",
        "two_node: 1",
        "name: vm1",
        "name: vm2",
        f"ring0_addr: {L.ADDRESSES['vm2']}",
    ):
        assert needle in conf
    cmds = configs.cib_commands("/x/cib.xml")
    creates = [c for c in cmds if c[:4] == ["pcs", "-f", "/x/cib.xml", "stonith"]]
    assert len(creates) == 2 and "pcmk_host_list=vm2" in creates[1] and "ip=kvm2" in creates[1]
    assert ["pcs", "-f", "/x/cib.xml", "constraint", "location", "fence-vm2", "avoids", "vm2"] in cmds
    kh = configs.known_hosts({"kvm1": "ssh-ed25519 AAAA root@kvm1"})
    assert kh == f"kvm1,{L.ADDRESSES['kvm1']} ssh-ed25519 AAAA\n"
    sshd = configs.sshd_config(lay, "kvm2")
    assert f"ListenAddress {L.ADDRESSES['kvm2']}" in sshd and "PermitRootLogin prohibit-password" in sshd


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.timeout(20)
def test_bad_input_is_one_error_line_and_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cases = [
        (lambda: api.exec_in(home, "kvm9", ["true"]), codes.UNKNOWN_HOST),
        (lambda: api.exec_in(home, "vm1", []), codes.BAD_ARGUMENT),
        (lambda: api.exec_in(home, "vm1", ["true"]), codes.NOT_RUNNING),
        (lambda: api.pause(home, "kvm1", 1.0), codes.NOT_A_VM),
        (lambda: api.pause(home, "vm2", 0), codes.BAD_ARGUMENT),
        (lambda: api.pause(home, "vm2", -3), codes.BAD_ARGUMENT),
        (lambda: api.pause(home, "vm7", 1), codes.UNKNOWN_HOST),
        (lambda: api.up(home, time_scale=0), codes.BAD_ARGUMENT),
        (lambda: api.up(home, time_scale=100.0), codes.BAD_ARGUMENT),
        (lambda: api.status(home), codes.NOT_RUNNING),
        (lambda: api.where(home, "kvm1"), codes.NOT_A_VM),
        (lambda: api.run_virsh(home, "vm1", "list"), codes.UNKNOWN_HOST),
    ]
    for call, code in cases:
        with pytest.raises(ClovmError) as e:
            call()
        assert e.value.code == code
        assert "\n" not in e.value.message and e.value.message
    assert not home.exists()
    assert all(hasattr(codes, c) and getattr(codes, c) == c for c in vars(codes) if c.isupper())


@pytest.mark.timeout(30)
def test_run_netns_guard_lets_one_process_at_a_time_touch_run_netns() -> None:
    """While one process holds the guard (a topology between its look at /run/netns and its
    namespaces existing), another's up or down waits for it."""
    child = "from clovm.pacemaker import platform as P\nwith P.run_netns_guard():\n    print('got it', flush=True)\n"
    with P.run_netns_guard():
        p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # ample for an interpreter start and an flock that would not block
        assert p.poll() is None, "the other process got the guard while this one held it"
    out, _ = p.communicate(timeout=20)
    assert out == "got it\n" and p.returncode == 0
