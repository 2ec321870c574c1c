"""``clovm migrate`` on the real Pacemaker topology (root): one cluster brought up with the CLI for
the module (``clovm up --topology pacemaker``, time scale 2: token 1500 ms), then, in file order,
the CLI's exec/shell/status, bad input refused with nothing changed, a migration SIGKILLed at
every journal step and resumed each time (the protection seen in force with the real commands
where it was killed with it in force; the last kill leaves the fence device on the old host: the
proof catches the missing-as-off trap; then the end checked with the real commands), a cancelled
and a failed migration recovering to a healthy cluster, the three maintenance findings, and
``clovm down`` leaving nothing. (The uninterrupted happy path is the demo's, in its own topology:
test_pcmk_cli.py.)

Each test leaves the cluster ready for the next one (and says so: ``ready()``). Measurements are
printed (``-s`` shows them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pcmk_helpers import Snapshot, leaks, log_lines, members, snapshot

from clovm.core import codes
from clovm.core.stacks import pacemaker as ps
from clovm.pacemaker import api, migrate_env
from clovm.pacemaker import layout as L
from helpers import wait_until

SCALE = 2.0
TOKEN_MS = L.token_ms(SCALE)
TOKEN_S = TOKEN_MS / 1000.0
FENCE = ["fence_virsh", "--username", "root", "--identity-file", L.FENCE_KEY]
PACEMAKER_LOG = "log/pacemaker/pacemaker.log"


class Cluster:
    def __init__(self, home: Path, up: subprocess.CompletedProcess[str], before: Snapshot) -> None:
        self.home, self.up, self.before = home, up, before
        self.lay = L.layout_for(home)

    def clovm(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 180, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``clovm CMD --home HOME ARGS...`` as a user runs it."""
        argv = [sys.executable, "-m", "clovm.cli.main", args[0], "--home", str(self.home), *args[1:]]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={**os.environ, **(env or {})},
            check=False,
        )

    def migrate(self, *args: str, kill_at: str = "", timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {"CLOVM_MIGRATE_KILL_AT": kill_at} if kill_at else {"CLOVM_MIGRATE_KILL_AT": ""}
        return self.clovm("migrate", *args, env=env, timeout=timeout)

    def run(self, host: str, *argv: str, timeout: float = 60) -> tuple[int, str, str]:
        return api.exec_in(self.home, host, list(argv), timeout=timeout)

    def ok(self, host: str, *argv: str) -> str:
        rc, out, err = self.run(host, *argv)
        assert rc == 0, f"{host} # {' '.join(argv)}: rc {rc}: {err or out}"
        return out

    def token(self, node: str) -> int:
        out = self.ok(node, "corosync-cmapctl", "-g", "runtime.config.totem.token")
        return int(out.split("=")[1])

    def device_ip(self) -> str:
        return self.ok("vm1", "crm_resource", "--resource", "fence-vm2", "--get-parameter", "ip").strip()

    def journal(self, host: str, last: bool = False) -> dict[str, Any]:
        d = migrate_env.Dirs(self.lay).migrate_dir(host)
        return json.loads((d / f"vm2.migrate{'-last' if last else ''}.json").read_text())

    def history(self) -> list[tuple[str, str, str]]:
        return [(e.action, e.target, e.status) for e in api.stonith_history(self.home)]

    def ready(self, within: float = 90) -> None:
        wait_until(
            lambda: api.wait_ready(self.home, timeout=1), within, every=0.3, what="a ready cluster", ignore=(Exception,)
        )

    def world(self, nodes: tuple[str, ...] = L.VMS) -> dict[str, Any]:
        """Everything clovm migrate could change: tokens (conf and runtime), node records, cluster
        properties, the fence devices, where vm2 runs, the journals (of ``nodes``: the running VMs)."""
        out: dict[str, Any] = {"where": api.where(self.home, "vm2")}
        for n in nodes:
            conf = self.ok(n, "cat", "/etc/corosync/corosync.conf")
            out[n] = (self.token(n), conf, self.run(n, "cat", migrate_env.TOKEN_RECORD)[0])
        out["props"] = self.ok("vm1", "cibadmin", "-Q", "-o", "crm_config")
        out["devices"] = self.ok("vm1", "cibadmin", "-Q", "-o", "resources")
        out["journals"] = {
            h: sorted(p.name for p in migrate_env.Dirs(self.lay).migrate_dir(h).glob("*.json")) for h in L.HOSTS
        }  # (a refused run may leave its lock file, nothing else)
        return out

    def assert_healthy(self, on: str) -> None:
        """vm2 runs on ``on`` alone, with its device there, the tokens as at up, nothing fenced."""
        assert api.where(self.home, "vm2") == on
        assert self.device_ip() == on
        assert [self.token(n) for n in L.VMS] == [TOKEN_MS, TOKEN_MS]
        out = self.ok("vm1", "crm_mon", "-1")
        assert "Online: [ vm1 vm2 ]" in out and "Failed" not in out and "unmanaged" not in out, out
        assert members(self.home) == ["vm1", "vm2"]


@pytest.fixture(scope="module")
def cluster(pcmk_stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("pcmkmig") / "h"
    before = snapshot(home)
    argv = [
        sys.executable,
        "-m",
        "clovm.cli.main",
        "up",
        "--home",
        str(home),
        "--topology",
        "pacemaker",
        "--time-scale",
        str(SCALE),
    ]
    up = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    c = Cluster(home, up, before)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield c
    finally:
        api.down(home)


@pytest.mark.timeout(120)
def test_up_exec_shell_status_run_the_real_commands(cluster: Cluster) -> None:
    c = cluster
    print(f"\n$ clovm up --topology pacemaker --time-scale {SCALE:g}\n{c.up.stdout}")
    assert f"token {TOKEN_MS} ms" in c.up.stdout and "fence-vm2 on vm1" in c.up.stdout
    r = c.clovm("exec", "vm1", "--", "crm_mon", "-1")
    assert r.returncode == 0 and "Online: [ vm1 vm2 ]" in r.stdout, r.stderr
    r = c.clovm("exec", "vm1", "--", "corosync-cmapctl", "-g", "runtime.config.totem.token")
    assert r.stdout.strip() == f"runtime.config.totem.token (u32) = {TOKEN_MS}"
    r = c.clovm("exec", "kvm3", "--", "virsh", "list", "--all")
    assert r.returncode == 0 and r.stdout.split()[:3] == ["Id", "Name", "State"] and "vm2" not in r.stdout
    r = c.clovm("exec", "kvm2", "--", "virsh", "domstate", "vm2")
    assert r.stdout.splitlines()[0] == "running"
    r = c.clovm("exec", "vm2", "--", "sh", "-c", "exit 7")
    assert r.returncode == 7  # the command's own exit status
    r = c.clovm("shell", "vm2", input="hostname\ncrm_mon -1 | grep -c Online\nexit 3\n")
    assert r.stdout.splitlines() == ["vm2", "1"] and r.returncode == 3, r.stdout + r.stderr
    r = c.clovm("status")
    assert r.returncode == 0 and "vm2    192.168.122.102  running      on kvm2" in r.stdout, r.stdout
    r = c.clovm("exec", "kvm9", "--", "true")
    assert r.returncode == 1 and "unknown host 'kvm9'" in r.stderr


@pytest.mark.timeout(180)
def test_bad_input_is_refused_with_nothing_changed(cluster: Cluster) -> None:
    c = cluster
    c.ready()
    before = c.world()
    for args, rc, code, text in [
        (["--host", "kvm2", "vm9", "kvm3"], 3, codes.NOT_A_CLUSTER_DOMAIN, "vm9 is not a node of the cluster"),
        (["--host", "kvm1", "vm2", "kvm3"], 3, codes.DOMAIN_NOT_HOSTED, "vm2 is not a domain of kvm1"),
        (["--host", "kvm2", "vm2", "kvm9"], 3, codes.UNKNOWN_TARGET, "'kvm9' is not a hypervisor host"),
        (["--host", "kvm2", "vm2", "kvm2"], 3, codes.SAME_HOST, "is the source host"),
        (["--host", "kvm2", "vm2", "kvm3", "--scoped"], 3, codes.SCOPED_NOT_POSSIBLE, "token is one cluster-wide"),
        (["--host", "kvm7", "vm2", "kvm3"], 3, codes.UNKNOWN_HOST, "'kvm7' is not a hypervisor host"),
        (["vm2", "kvm3"], 2, codes.BAD_USAGE, "no host given"),
        (["--host", "kvm2", "--resume"], 3, codes.NO_JOURNAL, "nothing to resume"),
    ]:
        r = c.migrate(*args, "--json")
        assert r.stdout.startswith("{"), f"{args}: rc {r.returncode}: {r.stdout}{r.stderr}"
        doc = json.loads(r.stdout)
        assert (r.returncode, doc["code"]) == (rc, code), r.stdout + r.stderr
        assert text in r.stderr, r.stderr
    assert c.world() == before
    # a cluster with a failed action
    c.ok("vm1", "crm_resource", "--resource", "fence-vm2", "--fail", "--node", "vm1")
    wait_until(lambda: "Failed Resource Actions" in c.ok("vm1", "crm_mon", "-1"), 20, what="the failed action")
    with_failure = c.world()
    r = c.migrate("--host", "kvm2", "vm2", "kvm3")
    print(f"\n$ clovm migrate --host kvm2 vm2 kvm3   (a failed action)\n{r.stderr}")
    assert r.returncode == 3 and "the preflight found" in r.stderr and "nothing was changed" in r.stderr
    assert (
        r.stderr.count(
            "  - the cluster shows a failed action (fence-vm2_asyncmon_0 on vm1: Simulated failure): "
            "fix its cause, then crm_resource --cleanup.\n"
        )
        == 1
    )
    assert c.world() == with_failure
    c.ok("vm1", "crm_resource", "--cleanup")
    c.ready()
    # a stopped VM (maintenance-mode keeps the cluster from fencing it meanwhile)
    c.ok("vm1", "crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--update", "true")
    rc, _out, err = api.run_virsh(c.home, "kvm2", "destroy", "vm2")
    assert rc == 0, err
    wait_until(lambda: "vm2: UNCLEAN" in c.ok("vm1", "crm_mon", "-1"), 30, every=0.2, what="vm1 holds vm2 lost")
    stopped = c.world(("vm1",))
    r = c.migrate("--host", "kvm2", "vm2", "kvm3", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["code"] == codes.DOMAIN_STOPPED, r.stderr
    assert "vm2 is shut off on kvm2, not running" in r.stderr
    assert c.world(("vm1",)) == stopped
    assert api.run_virsh(c.home, "kvm2", "start", "vm2")[0] == 0
    wait_until(lambda: "Online: [ vm1 vm2 ]" in c.ok("vm1", "crm_mon", "-1"), 60, every=0.3, what="vm2 back")
    c.ok("vm1", "crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--delete")
    c.ready()
    c.ok("vm1", "crm_resource", "--cleanup")
    assert c.history() == []


POINTS = ["prepare", "prepared", "protected", "migrate", "migrating", "complete", "updating", "prove"]


@pytest.mark.timeout(300)
def test_killed_at_every_journal_step_resumes_and_the_proof_catches_the_missing_as_off_trap(
    cluster: Cluster, tmp_path: Path
) -> None:
    """vm2 kvm2 -> kvm3, SIGKILLed right after the first journal write at every point and resumed
    each time (the happy path with the real commands is the demo's: test_pcmk_cli.py)."""
    c = cluster
    c.ready()
    fenced_lines = len(log_lines(c.lay, "vm1", PACEMAKER_LOG, "vm2 will be fenced"))
    args = ["--host", "kvm2", "vm2", "kvm3"]
    raised = 0
    for point in POINTS:
        r = c.migrate(*args, kill_at=point)
        assert r.returncode == -9, f"{point}: {r.stdout}{r.stderr}"
        j = c.journal("kvm2")
        assert point in migrate_env._Persist.points(j), (point, j["step"], j.get("marks"))
        print(f"killed at {point}: journal step {j['step']}, marks {j.get('marks')}")
        if point == "protected":  # the protection in force, seen with the real commands
            raised = j["token_raised"]
            assert raised == ps.protective_token_ms(TOKEN_MS, j["expected_suspend_s"], SCALE) > TOKEN_MS
            assert [c.token(n) for n in L.VMS] == [raised, raised]
            assert c.ok("vm2", "grep", "token:", "/etc/corosync/corosync.conf").strip() == f"token: {raised}"
            assert c.ok(
                "vm1", "crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--query"
            ).split() == ["scope=crm_config", "name=maintenance-mode", "value=true"]
            assert "Resource management is DISABLED" in c.ok("vm1", "crm_mon", "-1")
            assert c.ok("vm1", "cat", migrate_env.TOKEN_RECORD).strip() == str(TOKEN_MS)
        args = ["--host", "kvm2", "--resume"]
    assert c.journal("kvm2")["step"] == "prove"
    assert api.where(c.home, "vm2") == "kvm3" and c.device_ip() == "kvm3"
    # the trap: the device left on the old host, with missing_as_off
    c.ok("vm1", "pcs", "stonith", "update", "fence-vm2", "ip=kvm2", "missing_as_off=1")
    c.ready()
    rc, out, _ = c.run("vm1", *FENCE, "--ip", "kvm2", "--plug", "vm2", "--missing-as-off", "-o", "status")
    assert (rc, out.strip()) == (2, "Status: OFF"), "kvm2 answers OFF for vm2, which runs on kvm3"
    r = c.migrate("--host", "kvm2", "--resume", "--json")
    doc = json.loads(r.stdout)
    print(f"\n$ clovm migrate --host kvm2 --resume   (fence-vm2 left on kvm2)\n{r.stderr}")
    assert r.returncode == 4 and doc["code"] == codes.PROOF_FAILED, r.stderr
    failed = {p["name"]: p["detail"] for p in doc["proof"] if not p["ok"]}
    assert list(failed) == ["fence_virsh status"], doc["proof"]
    assert "through kvm2 says OFF" in failed["fence_virsh status"]
    assert (
        "fence-vm2 points at kvm2, but vm2 runs on kvm3 (fence_virsh's missing-as-off trap"
        in failed["fence_virsh status"]
    )
    c.ok("vm1", "pcs", "stonith", "update", "fence-vm2", "ip=kvm3", "missing_as_off=")
    c.ready()
    svg = tmp_path / "resumed.svg"
    r = c.migrate("--host", "kvm2", "--resume", "--timeline", str(svg))
    print(f"\n$ clovm migrate --host kvm2 --resume --timeline {svg.name}\n{r.stdout}{r.stderr}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming the migration of vm2 to kvm3 at step prove" in r.stdout
    assert r.stdout.count("clovm migrate: proof: ok") == 6 and "vm2 migrated to kvm3 and proven." in r.stderr + r.stdout
    j = c.journal("kvm2", last=True)
    starts = [e for e in j["events"] if e["what"] == "note" and e["text"].startswith("started:")]
    assert len(starts) == 1, "the migration was started once, whatever was killed"
    assert j["result"] == "ok" and j["token_raised"] == raised and j["suspend_s"] < raised / 1000 * SCALE / 4
    # the real commands agree
    c.assert_healthy("kvm3")
    assert "vm2" in c.ok("kvm3", "virsh", "list", "--all") and "vm2" not in c.ok("kvm2", "virsh", "list", "--all")
    assert c.run("kvm2", "virsh", "domstate", "vm2")[2] == "error: failed to get domain 'vm2'\n"
    assert c.ok("vm1", *FENCE, "--ip", "kvm3", "--plug", "vm2", "-o", "status").strip() == "Status: ON"
    assert "fence-vm2" in c.ok("vm1", "stonith_admin", "--list", "vm2")
    assert c.history() == []
    assert len(log_lines(c.lay, "vm1", PACEMAKER_LOG, "vm2 will be fenced")) == fenced_lines, "vm2 was never lost"
    assert c.run("vm1", "cat", migrate_env.TOKEN_RECORD)[0] != 0, "the node records are cleared"
    # --status and the timeline read the same journal
    st = c.migrate("--host", "kvm2", "--status")
    assert "vm2.migrate-last.json" in st.stdout and "result: ok" in st.stdout and "proof: 6/6 checks ok" in st.stdout
    assert "<svg" in svg.read_text() and "vm2" in svg.read_text()


@pytest.mark.timeout(180)
def test_cancelled_migration_recovers_to_a_healthy_cluster(cluster: Cluster) -> None:
    c = cluster
    c.ready()
    argv = [sys.executable, "-m", "clovm.cli.main", "migrate", "--home", str(c.home), "--host", "kvm3", "vm2", "kvm1"]
    p = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CLOVM_MIGRATE_KILL_AT": ""}
    )
    try:

        def precopy() -> bool:
            try:
                return any(x["phase"] == "pre-copy" for x in c.journal("kvm3").get("progress", []))
            except (OSError, ValueError):
                return False

        wait_until(precopy, 60, every=0.02, what="the pre-copy")
        rc, _out, err = api.run_virsh(c.home, "kvm3", "domjobabort", "vm2")
        assert rc == 0, err
        out, err = p.communicate(timeout=150)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(f"\n$ clovm migrate --host kvm3 vm2 kvm1   (virsh domjobabort vm2 during the pre-copy)\n{out}{err}")
    assert p.returncode == 5, out + err
    assert "vm2 was not migrated (cancelled); the cluster was restored on kvm3 and proven there." in err
    assert "Migration of domain vm2 was cancelled" in out
    j = c.journal("kvm3", last=True)
    assert j["result"] == "restored" and j["outcome"] == "cancelled" and all(x["ok"] for x in j["proof"])
    c.assert_healthy("kvm3")
    assert c.history() == []


@pytest.mark.timeout(240)
def test_failed_migration_killed_in_recover_resumes_and_recovers(cluster: Cluster) -> None:
    c = cluster
    c.ready()
    old_pid = api.status(c.home)["vms"]["vm2"]["init_pid"]
    r = c.clovm("fault", "migration-abort", "vm2")
    assert r.returncode == 0 and "will fail after the copy" in r.stdout, r.stderr
    r = c.migrate("--host", "kvm3", "vm2", "kvm2", kill_at="recover")
    assert r.returncode == -9, r.stdout + r.stderr
    assert c.journal("kvm3")["step"] == "recover" and c.journal("kvm3")["outcome"] == "stopped"
    r = c.migrate("--host", "kvm3", "--resume")
    print(f"\n$ clovm migrate --host kvm3 --resume   (the migration failed after the copy)\n{r.stdout}{r.stderr}")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "resuming the migration of vm2 to kvm2 at step recover" in r.stdout
    assert "recover: waiting until vm1 hold vm2 lost" in r.stdout and "kvm3 # virsh start vm2" in r.stdout
    j = c.journal("kvm3", last=True)
    assert j["outcome"] == "stopped" and j["result"] == "restored" and all(x["ok"] for x in j["proof"])
    assert api.status(c.home)["vms"]["vm2"]["init_pid"] != old_pid, "vm2 was started again"
    c.assert_healthy("kvm3")
    assert c.history() == [], "maintenance-mode kept the lost vm2 from being fenced"
    assert log_lines(c.lay, "vm1", PACEMAKER_LOG, "Node vm2 is unclean but cannot be fenced")


# ---------------------------------------------------------------------------------------------- the findings
def _freeze(c: Cluster, seconds: float) -> threading.Thread:
    """``clovm fault pause vm2 SECONDS`` in the background (the command blocks while vm2 is frozen)."""
    t = threading.Thread(target=lambda: c.clovm("fault", "pause", "vm2", f"{seconds:g}"))
    t.start()
    wait_until(lambda: api.status(c.home)["vms"]["vm2"]["frozen"], 5, every=0.02, what="vm2 frozen")
    return t


def _vm2_state(c: Cluster) -> str:
    out = c.ok("vm1", "crm_mon", "-1")
    return "UNCLEAN" if "vm2: UNCLEAN" in out else "online" if "Online: [ vm1 vm2 ]" in out else "offline"


@pytest.mark.timeout(120)
def test_finding_cluster_wide_maintenance_mode_stops_fencing(cluster: Cluster) -> None:
    c = cluster
    c.ready()
    c.ok("vm1", "crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--update", "true")
    t = _freeze(c, 3 * TOKEN_S)
    wait_until(lambda: _vm2_state(c) == "UNCLEAN", 3 * TOKEN_S, every=0.1, what="vm2 lost while frozen")
    t.join()
    wait_until(lambda: _vm2_state(c) == "online", 30, every=0.2, what="vm2 back after the thaw")
    assert c.history() == [], "nothing was fenced"
    assert log_lines(c.lay, "vm1", PACEMAKER_LOG, "Node vm2 is unclean but cannot be fenced")
    c.ok("vm1", "crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--delete")
    c.ready()
    assert c.history() == []


@pytest.mark.timeout(150)
def test_finding_node_maintenance_does_not_stop_fencing(cluster: Cluster) -> None:
    c = cluster
    c.ready()
    c.ok("vm1", "crm_attribute", "--node", "vm2", "--name", "maintenance", "--update", "true")
    try:
        wait_until(lambda: "Node vm2: maintenance" in c.ok("vm1", "crm_mon", "-1"), 20, what="vm2 in maintenance")
        t = _freeze(c, 3 * TOKEN_S)
        fenced = wait_until(
            lambda: [h for h in c.history() if h[2] == "success"],
            30,
            every=0.3,
            what="vm2 fenced although its node is in maintenance",
        )
        t.join()
        assert fenced == [("reboot", "vm2", "success")]
        assert log_lines(c.lay, "vm1", PACEMAKER_LOG, "Cluster node vm2 will be fenced")
    finally:
        c.ok("vm1", "crm_attribute", "--node", "vm2", "--name", "maintenance", "--delete")
    c.ready(120)
    c.ok("vm1", "stonith_admin", "--cleanup", "--history", "*")
    assert c.history() == []


@pytest.mark.timeout(150)
def test_finding_stonith_disabled_recovers_the_resources_elsewhere_at_once(cluster: Cluster) -> None:
    c = cluster
    c.ready()
    c.ok("vm1", "pcs", "resource", "create", "dummy", "ocf:pacemaker:Dummy", "op", "monitor", "interval=5s")
    try:
        c.ok("vm1", "pcs", "constraint", "location", "dummy", "prefers", "vm2=100")
        wait_until(
            lambda: "dummy\t(ocf:pacemaker:Dummy):\t Started vm2" in c.ok("vm1", "crm_mon", "-1"),
            30,
            every=0.2,
            what="dummy on vm2",
        )
        c.ok("vm1", "crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", "false")
        t = _freeze(c, 5 * TOKEN_S)
        moved = wait_until(
            lambda: (
                api.status(c.home)["vms"]["vm2"]["frozen"]
                and "dummy\t(ocf:pacemaker:Dummy):\t Started vm1" in (out := c.ok("vm1", "crm_mon", "-1"))
                and out
            ),
            5 * TOKEN_S,
            every=0.1,
            what="dummy recovered on vm1 while vm2 is frozen",
        )
        print(f"\nvm1 # crm_mon -1   (vm2 frozen, stonith-enabled=false)\n{moved}")
        assert "OFFLINE: [ vm2 ]" in moved
        t.join()
        assert c.history() == [], "nothing was fenced: the resource simply ran twice"
    finally:
        c.ok("vm1", "pcs", "resource", "delete", "dummy")
        c.ok("vm1", "crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--delete")
    c.ready()
    c.ok("vm1", "crm_resource", "--cleanup")


@pytest.mark.timeout(60)
def test_down_removes_everything(cluster: Cluster) -> None:
    r = cluster.clovm("down")
    assert r.returncode == 0 and "deleted namespace" in r.stdout, r.stdout + r.stderr
    assert leaks(cluster.before, cluster.home) == []
    r = cluster.clovm("exec", "vm1", "--", "true")
    assert r.returncode == 1, r.stdout + r.stderr
