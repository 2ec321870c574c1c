"""The cluster-node daemon as real processes: CF over UDP, RMS, the unix and TLS admin channels.

A hand-made home holds a 2-node guest cluster (guest1, guest2) and a 1-node control-domain cluster
(primary1) on 127.68.N.x (N differs per test), at time scale 10. No XSCF runs, so every shutdown
agent fails (connection refused) — which also proves that no fence ever reaches anything.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import helpers
from clovm import formats, settings
from clovm.core.defaults import RMS_SETTLE
from clovm.core.sfconfig import AgentRef, SfHost, XscfEntry
from clovm.fsutil import atomic_write
from clovm.runtime import pki, rpc
from clovm.runtime.home import Home
from clovm.runtime.nodeagent import decode_datagram, encode_datagram
from clovm.runtime.snmp import SnmpCredentials, XscfSnmpAgent
from clovm.runtime.ssh import XscfSshServer, add_known_host, host_key_line

SCALE = 10.0
CLUSTER_KEY = "test-cluster-key-0123456789"
_subnet = itertools.count(1)

TOPOLOGY = """
[[server]]
name = "srv1"
lan0 = "127.68.{n}.101"
lan1 = "127.68.{n}.102"
ppars = [0]

[[control_domain]]
name = "primary1"
server = "srv1"
ppar = 0
cf_name = "cfprimary1"
address = "127.68.{n}.1"

[[guest]]
name = "guest1"
control_domain = "primary1"
cf_name = "cfguest1"
address = "127.68.{n}.11"

[[guest]]
name = "guest2"
control_domain = "primary1"
cf_name = "cfguest2"
address = "127.68.{n}.12"

[[cluster]]
name = "ctl"
kind = "control"
nodes = ["cfprimary1"]

[[cluster]]
name = "gc"
kind = "guest"
nodes = ["cfguest1", "cfguest2"]

[[userapplication]]
name = "app1"
cluster = "gc"
nodes = ["cfguest1", "cfguest2"]
"""


class Datacenter:
    """The home plus the node-agent processes started in it."""

    def __init__(self, root: Path):
        self.n = next(_subnet)
        self.home = Home(root)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.all_procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self._build()

    def addr(self, host: str) -> str:
        return {"primary1": f"127.68.{self.n}.1", "guest1": f"127.68.{self.n}.11", "guest2": f"127.68.{self.n}.12"}[
            host
        ]

    def _build(self) -> None:
        h = self.home
        atomic_write(h.topology_file, TOPOLOGY.format(n=self.n))
        atomic_write(
            h.secrets_file,
            json.dumps(
                {
                    "xscf_user": "xuser",
                    "xscf_password": "xscf-pass",
                    "snmp_auth": "snmp-auth-key",
                    "snmp_priv": "snmp-priv-key",
                    "cluster_key": CLUSTER_KEY,
                    "ldm_password": "ldm-pass",
                }
            ),
            mode=0o600,
        )
        atomic_write(h.clock_file, json.dumps({"epoch": 1764000000.0, "start": time.monotonic(), "time_scale": SCALE}))
        pki.ensure_pki(h, {name: self.addr(name) for name in ("primary1", "guest1", "guest2")})
        lan0, lan1 = f"127.68.{self.n}.101", f"127.68.{self.n}.102"
        sf_hosts = [SfHost(f"cf{g}", weight=1, adm_ip=self.addr(g)) for g in ("guest1", "guest2")]
        entries = [XscfEntry(f"cf{g}", 0, g, lan0, lan1) for g in ("guest1", "guest2")]
        for host in ("primary1", "guest1", "guest2"):
            atomic_write(h.cluster_config(host), '# CF configuration\nCLUSTER_TIMEOUT "10"\n')
            names = ("primary1", "guest1", "guest2")
            atomic_write(h.hosts_file(host), formats.render_hosts({x: self.addr(x) for x in names}))
            if host != "primary1":
                atomic_write(h.rcsd_cfg(host), formats.render_rcsd(sf_hosts))
                atomic_write(h.sa_xscfsnmp_cfg(host), formats.render_sa_xscfsnmp(entries))
                atomic_write(h.placement_file(host), json.dumps({"pid": 0, "host": "primary1", "server": "srv1"}))
            h.migrate_dir(host).mkdir(parents=True, exist_ok=True)

    # ---- processes -----------------------------------------------------------------------
    def start(self, *hosts: str) -> None:
        for host in hosts:
            with open(self.home.root / f"{host}.stderr", "ab") as err:  # the child keeps its own copy
                p = subprocess.Popen(
                    [sys.executable, "-m", "clovm.runtime.nodeagent", "--home", str(self.home.root), "--name", host],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    start_new_session=True,
                )
            self.procs[host] = p
            self.all_procs.append(p)
        for host in hosts:
            self._await_ready(host, self.procs[host])

    def _await_ready(self, host: str, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 0.2)
            if ready:
                line = p.stdout.readline()
                if line.strip() == b"READY":
                    return
                if not line:
                    break
        raise AssertionError(
            f"{host} did not become READY: {(self.home.root / f'{host}.stderr').read_text()}"
            f"{self.home.log_file('nodeagent-' + host).read_text() if self.home.log_file('nodeagent-' + host).exists() else ''}"
        )

    def sigkill(self, host: str) -> None:
        p = self.procs.pop(host)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        self.killed.add(p.pid)

    def stop(self) -> dict[int, int | None]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {}
        for p in self.all_procs:
            try:
                codes[p.pid] = p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[p.pid] = p.wait(5)
            if p.stdout:
                p.stdout.close()
        return codes

    # ---- channels ------------------------------------------------------------------------
    def call(self, host: str, op: str, **args: Any) -> Any:
        return rpc.call_unix_sync(self.home.node_socket(host), op, timeout=10, **args)

    def tls(self, host: str, op: str, as_: str = "primary1", **args: Any) -> Any:
        ctx = pki.client_context(self.home, as_)
        return rpc.call_tls_sync(self.addr(host), settings.NODE_PORT, ctx, op, timeout=10, **args)

    def view(self, host: str) -> dict[str, str]:
        return {n: s for n, _, s in self.call(host, "cftool_n")}

    def messages(self, host: str) -> str:
        p = self.home.messages(host)
        return p.read_text() if p.exists() else ""


def wait_until(check: Callable[[], Any], within: float = 15.0, what: str = "the condition") -> Any:
    """helpers.wait_until with this module's defaults: 15 s, and an agent that is not (yet, or no
    longer) listening counts as "not yet"."""
    return helpers.wait_until(check, within, what=what, ignore=(rpc.RpcUnreachable,))


@pytest.fixture
def dc(tmp_path: Path) -> Iterator[Datacenter]:
    d = Datacenter(tmp_path)
    try:
        yield d
    finally:
        codes = d.stop()
    for pid, rc in codes.items():
        if pid not in d.killed:
            assert rc == 0, f"node agent {pid} exited with {rc}"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped: no process of this test is left
    for host, p in d.procs.items():
        if p.pid not in d.killed:  # a graceful stop removes the unix socket
            assert not d.home.node_socket(host).exists()


def both_up(dc: Datacenter) -> None:
    for host in ("guest1", "guest2"):
        wait_until(lambda h=host: dc.view(h) == {"cfguest1": "UP", "cfguest2": "UP"}, what=f"{host}: both UP")


# ---------------------------------------------------------------------------------------------
def test_datagram_mac_roundtrip() -> None:
    key = b"k"
    data = encode_datagram(key, {"t": "hb", "from": "cfguest1", "inc": 7, "clock": 1.5})
    assert decode_datagram(key, data) == {"t": "hb", "from": "cfguest1", "inc": 7, "clock": 1.5}
    assert decode_datagram(b"other", data) is None
    tampered = json.loads(data)
    tampered["inc"] = 8
    assert decode_datagram(key, json.dumps(tampered).encode()) is None
    del tampered["mac"]
    assert decode_datagram(key, json.dumps(tampered).encode()) is None
    assert decode_datagram(key, b"not json") is None
    assert decode_datagram(key, b"[1, 2]") is None


@pytest.mark.timeout(90)
def test_guests_join_app_online_once_and_logs(dc: Datacenter) -> None:
    dc.start("primary1", "guest1", "guest2")
    both_up(dc)
    assert dc.call("guest1", "cftool_n") == [["cfguest1", 1, "UP"], ["cfguest2", 2, "UP"]]
    assert dc.call("primary1", "cftool_n") == [["cfprimary1", 1, "UP"]]

    def online() -> list[str]:
        rows = {h: dc.call(h, "hvdisp") for h in ("guest1", "guest2")}
        return [h for h, rs in rows.items() if ["app1", "userApplication", f"cf{h}RMS", "Online"] in rs]

    owner = wait_until(online, what="app1 online")
    assert len(owner) == 1
    # Nothing may change: 10 emulated s is one CLUSTER_TIMEOUT and over 3 x RMS_SETTLE, time enough
    # for the other node's RMS to (wrongly) place app1 as well or take it over.
    waited = helpers.quiet_for(1.0, f"10 emulated s = one CLUSTER_TIMEOUT, > 3 x RMS_SETTLE {RMS_SETTLE:g} s")
    assert online() == owner, f"app1 not online exactly once on {owner} after {waited}"
    sysnodes = [r for r in dc.call("guest1", "hvdisp") if r[1] == "SysNode"]
    assert sysnodes == [["cfguest1RMS", "SysNode", "", "Online"], ["cfguest2RMS", "SysNode", "", "Online"]]
    for h in ("guest1", "guest2"):
        st = dc.call(h, "status")
        assert st["apps"] == {"app1": f"cf{owner[0]}"}
        assert (st["host"], st["cf"], st["local_state"], st["timeout"], st["server"], st["window"], st["services"]) == (
            h,
            f"cf{h}",
            "UP",
            10,
            "srv1",
            False,
            "started",
        )
        assert st["view"] == {"cfguest1": "UP", "cfguest2": "UP"}
    assert dc.call("guest1", "cfset_a") == {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": "10"}

    # SF and RMS do not exist on a control domain; its own ops exist only there.
    for op, args in (("sdtool", {"flag": "s"}), ("hvdisp", {}), ("clsnmpsetup_l", {})):
        with pytest.raises(rpc.RpcError) as ei:
            dc.call("primary1", op, **args)
        assert ei.value.code == "NOT_AVAILABLE"
    assert dc.call("primary1", "guest_nodes", domain="guest2") == {
        "node": "cfguest2",
        "nodes": ["cfguest1", "cfguest2"],
        "domains": {"cfguest1": "guest1", "cfguest2": "guest2"},
    }
    assert dc.call("primary1", "resolve", name="guest1") == dc.addr("guest1")
    assert dc.call("primary1", "cd_info")["lan0"] == f"127.68.{dc.n}.101"
    with pytest.raises(rpc.RpcError) as ei:
        dc.call("guest1", "cd_info")
    assert ei.value.code == "NOT_AVAILABLE"

    msgs = dc.messages("guest1")
    assert " guest1 CF: [ID 0 daemon.notice] cfguest1: COMINGUP" in msgs
    assert msgs.startswith("Nov 24 16:")  # emulated wall clock of srv1
    assert (
        "daemon.notice] cfguest2: joined the cluster" in msgs
        or "daemon.notice] cfguest2: accepted our join request" in msgs
    )
    assert "(BM, 1) RMS started on cfguest1" in dc.home.switchlog("guest1").read_text()
    assert "rcsd started on cfguest1" in dc.home.rcsd_log("guest1").read_text()


@pytest.mark.timeout(90)
def test_clovmmigrate_operations_over_tls(dc: Datacenter) -> None:
    dc.start("primary1", "guest1", "guest2")
    both_up(dc)
    with pytest.raises(rpc.RpcError) as ei:
        dc.tls("guest1", "set_timeout", as_="guest2", seconds=600)
    assert ei.value.code == "FORBIDDEN"
    assert dc.tls("guest1", "node_status") == {"timeout": 10, "sf": "running", "record": None, "window": False}

    assert dc.tls("guest1", "record_timeout") == 10
    assert dc.tls("guest1", "set_timeout", seconds=600) is None
    assert 'CLUSTER_TIMEOUT "600"' in dc.home.cluster_config("guest1").read_text()
    assert dc.home.cluster_config("guest1").read_text().startswith("# CF configuration\n")
    assert dc.call("guest1", "cfset_a")["CLUSTER_TIMEOUT"] == "600"
    assert dc.tls("guest1", "record_timeout") == 10  # kept: a second -p never records 600
    assert dc.tls("guest1", "node_status")["record"] == 10
    assert "CLUSTER_TIMEOUT changed from 10 to 600 seconds" in dc.messages("guest1")

    assert dc.tls("guest1", "window", open=True) is None
    assert (dc.home.migrate_dir("guest1") / "window").exists() and dc.call("guest1", "status")["window"] is True
    assert dc.tls("guest1", "sf_stop") is None
    assert (dc.home.migrate_dir("guest1") / "sf.disabled").exists()
    assert dc.call("guest1", "sdtool", flag="s")["running"] is False
    assert dc.tls("guest1", "node_status")["sf"] == "stopped"

    # -u: new XSCF entry + weight, timeout back, window closed, SF started, wait for its tests.
    entry = {
        "cf_name": "cfguest1",
        "ppar_id": 1,
        "domain": "guest1",
        "lan0": f"127.68.{dc.n}.111",
        "lan1": f"127.68.{dc.n}.112",
        "user": "xuser",
        "connection": "ssh",
    }
    assert dc.tls("guest1", "set_sf_entry", entry=entry, weight=2) is None
    listed = dc.call("guest1", "clsnmpsetup_l")
    assert listed[0] == {**entry, "device": "xscf"} and listed[1]["cf_name"] == "cfguest2"
    assert dc.home.rcsd_cfg("guest1").read_text().startswith("cfguest1,weight=2,")
    assert dc.tls("guest1", "set_timeout", seconds=10) is None
    assert dc.tls("guest1", "window", open=False) is None
    assert not (dc.home.migrate_dir("guest1") / "window").exists()
    assert dc.tls("guest1", "sf_start") is None
    assert not (dc.home.migrate_dir("guest1") / "sf.disabled").exists()
    t0 = time.monotonic()
    rows = dc.tls("guest1", "sf_wait", seconds=60, node="cfguest1")  # as -u asks: the changed entry's agents
    # answered when the last row settles (the agents fail at once: no XSCF runs), not at the
    # deadline of 60 emulated s = 6 real s
    assert time.monotonic() - t0 < 3.0
    assert len(rows) == 4 and all(r[4] == "TestFailed" and r[5] == "InitFailed" for r in rows), rows
    assert rows[0][:2] == ["cfguest1", "SA_xscfsnmpg0p"]
    msgs = dc.messages("guest1")
    assert f"SF: init of SA_xscfsnmpg0p for cfguest1 failed: XSCF 127.68.{dc.n}.111:{settings.XSCF_SSH_PORT}" in msgs
    assert " guest1 SMAWsf: [ID 0 " in msgs
    assert (dc.home.sa_log("guest1", "SA_xscfsnmpg0p")).read_text().count("init cfguest1: failed") >= 1
    assert dc.tls("guest1", "clear_record") is None
    # the sf_wait that found failures ended the hold on the other node's agents (_probe_once)
    t0 = time.monotonic()
    rows = dc.tls("guest1", "sf_wait", seconds=60)
    assert time.monotonic() - t0 < 3.0
    assert len(rows) == 8 and all(r[4] == "TestFailed" and r[5] == "InitFailed" for r in rows), rows
    assert dc.tls("guest1", "node_status") == {"timeout": 10, "sf": "running", "record": None, "window": False}
    assert not (dc.home.migrate_dir("guest1") / "timeout.saved").exists()

    # Local admin commands: sdtool -e / -b / -r, cfset -r after a hand edit.
    assert dc.call("guest2", "sdtool", flag="e") is None
    stopped = dc.call("guest2", "sdtool", flag="s")
    assert stopped["running"] is False and {r[4] for r in stopped["rows"]} == {"Unknown"}  # rows reset
    assert dc.call("guest2", "status")["sf"] == "stopped"
    assert dc.call("guest2", "sdtool", flag="b") is None
    assert dc.call("guest2", "sdtool", flag="s")["running"] is True
    assert dc.call("guest2", "sdtool", flag="r") is None
    atomic_write(dc.home.cluster_config("guest2"), 'CLUSTER_TIMEOUT "20"\n')
    assert dc.call("guest2", "cfset_r") == 20
    assert dc.call("guest2", "cfset_a")["CLUSTER_TIMEOUT"] == "20"
    with pytest.raises(rpc.RpcError) as ei:
        dc.call("guest2", "node_status")  # a clovmmigrate op is not on the local channel
    assert ei.value.code == "UNKNOWN_OP"


@pytest.mark.timeout(90)
def test_sigkill_leftcluster_then_refused_rejoin(dc: Datacenter) -> None:
    dc.start("primary1", "guest1", "guest2")
    both_up(dc)
    t0 = time.monotonic()
    dc.sigkill("guest2")
    wait_until(lambda: dc.view("guest1")["cfguest2"] == "LEFTCLUSTER", within=10, what="LEFTCLUSTER")
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed <= 5.0, elapsed  # CLUSTER_TIMEOUT 10 emulated s = 1 real s at scale 10
    assert "daemon.notice] cfguest2: LEFTCLUSTER (no heartbeat for" in dc.messages("guest1")
    # SF tries to fence it, but no XSCF answers: it stays LEFTCLUSTER, nothing is killed.
    wait_until(lambda: "failed to kill cfguest2" in dc.home.rcsd_log("guest1").read_text(), what="kill attempt")
    assert dc.view("guest1")["cfguest2"] == "LEFTCLUSTER"

    # The restarted guest2 is refused: cfguest1 still holds it LEFTCLUSTER.
    dc.start("guest2")
    st = wait_until(lambda: (s := dc.call("guest2", "status"))["local_state"] == "INVALID" and s, what="INVALID")
    assert st["sf"] == "refused" and st["services"] == "refused"
    with pytest.raises(rpc.RpcError) as ei:
        dc.call("guest2", "sdtool", flag="b")
    assert ei.value.code == "SF_REFUSED" and "cfguest1 still holds cfguest2 LEFTCLUSTER" in ei.value.message
    msgs = dc.messages("guest2")
    assert "SMAWsf: [ID 0 daemon.notice] SF failed to start: cfguest1 still holds cfguest2 LEFTCLUSTER" in msgs
    assert "RMS failed to start" in msgs and "CRM failed to start" in msgs


def test_real_time_floor_of_failure_detection_at_time_scale_60(dc: Datacenter) -> None:
    # At --time-scale 60 CLUSTER_TIMEOUT 10 s is 0.17 real s: a scheduling hiccup of a loaded
    # machine. The runtime floors failure detection at settings.CF_MIN_DETECTION_REAL (1 real s).
    clock = json.loads(dc.home.clock_file.read_text())
    atomic_write(dc.home.clock_file, json.dumps({**clock, "start": time.monotonic(), "time_scale": 60.0}))
    dc.start("primary1", "guest1", "guest2")
    both_up(dc)
    guest2 = dc.procs["guest2"]
    os.kill(guest2.pid, signal.SIGSTOP)  # 0.4 real s = 24 emulated s of silence: above 10, below 60
    try:
        time.sleep(0.4)  # the stimulus (how long guest2 is silent), not a wait for a result
    finally:
        os.kill(guest2.pid, signal.SIGCONT)
    # LEFTCLUSTER is sticky: a detection during the silence (due 10 emulated s = 0.17 real s into
    # it, were there no floor) stays in the view. 0.3 s more (18 emulated s, 18 heartbeat periods)
    # lets a late one reach the view and the messages.
    waited = helpers.quiet_for(0.3, "after 0.4 s of silence = 2.4 CLUSTER_TIMEOUTs at this scale")
    assert dc.view("guest1")["cfguest2"] == "UP", f"cfguest2 not UP {waited}"
    assert "cfguest2: LEFTCLUSTER" not in dc.messages("guest1"), f"LEFTCLUSTER logged within {waited}"
    t0 = time.monotonic()
    os.kill(guest2.pid, signal.SIGSTOP)  # a real silence still ends in LEFTCLUSTER, after the floor
    try:
        wait_until(lambda: dc.view("guest1")["cfguest2"] == "LEFTCLUSTER", within=10, what="LEFTCLUSTER")
    finally:
        os.kill(guest2.pid, signal.SIGCONT)
    assert 0.9 <= time.monotonic() - t0 <= 5.0
    assert "cfguest2: LEFTCLUSTER (no heartbeat for 6" in dc.messages("guest1")  # 60.x emulated s


@pytest.mark.timeout(90)
def test_datagram_with_wrong_mac_is_ignored(dc: Datacenter) -> None:
    dc.start("guest1", "guest2")
    both_up(dc)
    fields = {"t": "elim", "from": "cfguest2", "node": "cfguest2"}
    key = CLUSTER_KEY.encode()
    good = json.loads(encode_datagram(key, fields))
    forged = [
        json.dumps({**fields, "mac": "00" * 32}).encode(),
        json.dumps(fields).encode(),
        encode_datagram(b"wrong key", fields),
        json.dumps({**good, "node": "cfguest1"}).encode(),  # a valid mac over other fields
        b"\xff garbage",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((dc.addr("guest2"), 0))  # from the peer's own address: only the mac can tell
        for data in forged:
            s.sendto(data, (dc.addr("guest1"), settings.CF_PORT))
        # Loopback datagrams arrive at once and guest1 acts on an elim as it reads it: the control
        # below shows that an authentic one takes effect well within this wait.
        waited = helpers.quiet_for(1.0, "10 emulated s, longer than an authentic elim takes to act")
        assert dc.view("guest1") == {"cfguest1": "UP", "cfguest2": "UP"}, f"a forged datagram acted within {waited}"
        # Control: the same message with the right mac is acted upon.
        t0 = time.monotonic()
        s.sendto(encode_datagram(key, fields), (dc.addr("guest1"), settings.CF_PORT))
        wait_until(lambda: dc.view("guest1")["cfguest2"] == "DOWN", what="authentic elim")
        acted = time.monotonic() - t0
        assert acted < 1.0, f"the authentic elim took {acted:.2f} s: the quiet wait of {waited} proves nothing"


@pytest.mark.timeout(90)
def test_partition_splits_the_guests(dc: Datacenter) -> None:
    dc.start("guest1", "guest2")
    both_up(dc)
    atomic_write(dc.home.run_dir / "partition.json", json.dumps({"groups": [["guest1"], ["guest2"]]}))
    wait_until(
        lambda: dc.view("guest1")["cfguest2"] == "LEFTCLUSTER" and dc.view("guest2")["cfguest1"] == "LEFTCLUSTER",
        within=10,
        what="split",
    )
    assert "daemon.notice] cfguest1: LEFTCLUSTER" in dc.messages("guest2")


@pytest.mark.timeout(90)
def test_window_flag_survives_a_restart(dc: Datacenter) -> None:
    atomic_write(dc.home.migrate_dir("guest1") / "window", "")
    atomic_write(dc.home.migrate_dir("guest1") / "sf.disabled", "")
    atomic_write(dc.home.cluster_config("guest1"), 'CLUSTER_TIMEOUT "600"\n')
    dc.start("guest1")
    st = wait_until(lambda: (s := dc.call("guest1", "status"))["local_state"] == "UP" and s, what="UP")
    assert st["window"] is True and st["timeout"] == 600 and st["sf"] == "stopped"
    assert dc.call("guest1", "sdtool", flag="s")["running"] is False  # sf.disabled: not started at boot
    wait_until(lambda: "(SWT, 30) switchovers are held" in dc.home.switchlog("guest1").read_text(), what="hold")


class FakeXscf:
    """An XSCF for srv1 in a thread of the test process: SSH CLI + SNMP agent on both LANs.

    Every domain of PPAR 0 is "Solaris running"; a panic or reset SIGKILLs the domain's node agent
    (what the hypervisor would do to the domain) and is recorded.
    """

    def __init__(self, dc: Datacenter):
        self.dc = dc
        self.lans = [f"127.68.{dc.n}.101", f"127.68.{dc.n}.102"]
        self.fenced: list[tuple[str, str, int]] = []  # (how, domain, lan)
        self.status_calls = 0  # showdomainstatus over SSH: one per probe
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ssh = XscfSshServer(
            self._cli, self.lans, settings.XSCF_SSH_PORT, dc.home.root / "xscf_host_key", {"xuser": "xscf-pass"}
        )
        self.snmp = XscfSnmpAgent(
            self,
            [(a, settings.SNMP_PORT) for a in self.lans],
            SnmpCredentials("xuser", "snmp-auth-key", "snmp-priv-key"),
            name="srv1",
        )
        self._run(self.ssh.start())
        self._run(self.snmp.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def close(self) -> None:
        async def shut() -> None:
            self.snmp.close()
            await self.ssh.close()

        self._run(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def known_hosts_lines(self) -> list[str]:
        return [host_key_line(a, settings.XSCF_SSH_PORT, self.ssh.host_key) for a in self.lans]

    def _cli(self, argv: list[str]) -> tuple[int, str, str]:
        if argv[:2] == ["showdomainstatus", "-p"]:
            self.status_calls += 1
            return 0, "Logical Domain Name  Status\nguest1  Solaris running\nguest2  Solaris running\n", ""
        return 127, "", f"{argv[0]}: command not found\n"

    def status(self, lan: int, ppar: int, domain: str) -> tuple[bool, str, str]:
        if ppar == 0 and domain in ("guest1", "guest2"):
            return True, "Solaris running", ""
        return False, "", f"no domain {domain} in PPAR-ID {ppar}"

    def _fence(self, how: str, lan: int, domain: str) -> tuple[bool, str]:
        p = self.dc.procs.get(domain)
        if p is None:
            return False, f"{domain} is not running"
        self.fenced.append((how, domain, lan))
        self.dc.killed.add(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        return True, f"{how} of {domain} done"

    def panic(self, lan: int, ppar: int, domain: str) -> tuple[bool, str]:
        return self._fence("panic", lan, domain)

    def reset(self, lan: int, ppar: int, domain: str) -> tuple[bool, str]:
        return self._fence("reset", lan, domain)


@pytest.mark.timeout(90)
def test_shutdown_facility_against_a_fake_xscf(dc: Datacenter) -> None:
    """7245 until the first SSH connection is made; then the agents work and the heavier side of a
    split brain panics the other guest through the XSCF, which CF then holds DOWN."""
    agents = tuple(AgentRef(a.name, 60) for a in SfHost("x").agents)  # 6 real s each: room for SSH
    slow = [SfHost(f"cf{g}", weight=1, adm_ip=dc.addr(g), agents=agents) for g in ("guest1", "guest2")]
    for g in ("guest1", "guest2"):
        atomic_write(dc.home.rcsd_cfg(g), formats.render_rcsd(slow))
    xscf = FakeXscf(dc)
    try:
        dc.start("guest1", "guest2")
        both_up(dc)
        lan0 = f"127.68.{dc.n}.101"
        wait_until(
            lambda: (
                f"[ID 7245 daemon.err] 7245 The first SSH connection to XSCF {lan0} has not been made: "
                f"connect once with ssh xuser@{lan0} from guest1" in dc.messages("guest1")
            ),
            what="7245",
        )

        before = xscf.status_calls
        for g in ("guest1", "guest2"):
            for line in xscf.known_hosts_lines():
                add_known_host(dc.home.known_hosts(g), line)
            assert dc.call(g, "sdtool", flag="r") is None

        def working(g: str) -> bool:
            rows = dc.call(g, "sdtool", flag="s")["rows"]
            return len(rows) == 8 and all(r[2:] == ["Idle", "Unknown", "TestWorked", "InitWorked"] for r in rows)

        for g in ("guest1", "guest2"):
            wait_until(lambda g=g: working(g), within=30, what=f"{g}: agents work")
        # 8 rows x (init + test) per guest, but one probe per XSCF LAN and node: 2 x 2 per guest
        assert 8 <= xscf.status_calls - before <= 12, xscf.status_calls - before  # (32 without sharing)

        atomic_write(dc.home.run_dir / "partition.json", json.dumps({"groups": [["guest1"], ["guest2"]]}))
        # Equal weights, no app priority: the side with the alphabetically first node (cfguest1) wins.
        wait_until(lambda: dc.view("guest1")["cfguest2"] == "DOWN", within=20, what="cfguest2 fenced")
        assert xscf.fenced == [("panic", "guest2", 0)]
        assert dc.procs["guest2"].wait(5) == -signal.SIGKILL
        rows = dc.call("guest1", "sdtool", flag="s")["rows"]
        assert ["cfguest2", "SA_xscfsnmpg0p", "Idle", "KillWorked", "TestWorked", "InitWorked"] in rows
        assert "cfguest2 killed by SA_xscfsnmpg0p" in dc.home.rcsd_log("guest1").read_text()
        wait_until(
            lambda: ["app1", "userApplication", "cfguest1RMS", "Online"] in dc.call("guest1", "hvdisp"),
            what="app1 on cfguest1",
        )
    finally:
        xscf.close()


# ---------------------------------------------------------------------------------------------
# clovm migrate's node operations (docs/safe-migration.md)
@pytest.mark.timeout(90)
def test_cf_sample_and_sf_test(dc: Datacenter) -> None:
    dc.start("guest1", "guest2")
    both_up(dc)
    with pytest.raises(rpc.RpcError) as ei:
        dc.tls("guest1", "cf_sample", as_="guest2")
    assert ei.value.code == "FORBIDDEN"
    s = wait_until(
        lambda: (v := dc.tls("guest1", "cf_sample"))["clock_diff"]["cfguest2"] is not None and not v["rms_busy"] and v,
        what="a settled sample",
    )
    assert set(s) == {"t", "state", "sf", "peers", "clock_diff", "rms_busy", "rms_activity"}
    assert s["rms_activity"] is None  # settled: nothing to name
    assert s["state"] == "UP" and s["sf"] == "running" and s["t"] > 0
    assert list(s["peers"]) == ["cfguest2"]
    p = s["peers"]["cfguest2"]
    assert p["state"] == "UP" and p["timeout"] == 10.0 and 0.0 <= p["gap"] < 5.0
    assert 0.0 <= s["clock_diff"]["cfguest2"] < 5.0  # same server, same clock: only transit delay
    assert dc.call("guest1", "cf_sample")["peers"]["cfguest2"]["state"] == "UP"  # also local
    assert dc.call("guest1", "cf_sample")["t"] > s["t"]

    # sf_test: a fresh test of every agent now (they fail at once: no XSCF runs)
    dc.tls("guest1", "sf_wait", seconds=60)

    def tests_run() -> int:
        path = dc.home.sa_log("guest1", "SA_xscfsnmpg0p")
        return path.read_text().count("test cfguest1: failed") if path.exists() else 0

    before = tests_run()
    assert dc.tls("guest1", "sf_test") is None
    wait_until(lambda: tests_run() > before, what="a new test")
    assert "testing every shutdown agent on request" in dc.home.rcsd_log("guest1").read_text()
    assert dc.tls("guest1", "sf_stop") is None
    assert dc.tls("guest1", "cf_sample")["sf"] == "stopped"
    assert dc.tls("guest1", "sf_entry", node="cfguest2") == {
        "cf_name": "cfguest2",
        "ppar_id": 0,
        "domain": "guest2",
        "lan0": f"127.68.{dc.n}.101",
        "lan1": f"127.68.{dc.n}.102",
        "user": "xuser",
        "connection": "ssh",
    }
    assert dc.tls("guest1", "sf_entry", node="cfnobody") is None


@pytest.mark.timeout(90)
def test_widen_keeps_a_silent_peer_up_until_narrowed(dc: Datacenter) -> None:
    dc.start("guest1", "guest2")
    both_up(dc)
    widen = dc.home.migrate_dir("guest1") / "widen.json"
    t0 = dc.tls("guest1", "cf_sample")["t"]
    assert dc.tls("guest1", "widen", peers=["cfguest1", "cfguest2"], seconds=600, lease=1000, hypervisor=True) is None
    saved = json.loads(widen.read_text())["peers"]
    assert list(saved) == ["cfguest2"] and saved["cfguest2"]["seconds"] == 600.0
    assert saved["cfguest2"]["hypervisor"] is True and t0 + 1000 < saved["cfguest2"]["until"] < t0 + 1100
    assert dc.tls("guest1", "cf_sample")["peers"]["cfguest2"]["timeout"] == 600.0
    assert "failure detection of cfguest2 widened to 600 s" in dc.messages("guest1")
    with pytest.raises(rpc.RpcError) as ei:
        dc.tls("guest1", "widen", peers=["cfguest2"], seconds=0, lease=10, hypervisor=False)
    assert ei.value.code == "BAD_REQUEST"

    dc.sigkill("guest2")
    # 25 emulated s of silence (2.5 real s): far beyond CLUSTER_TIMEOUT 10
    s = wait_until(
        lambda: (v := dc.tls("guest1", "cf_sample"))["peers"]["cfguest2"]["gap"] > 25 and v,
        within=10,
        what="25 emulated s of silence from cfguest2",
    )
    assert s["peers"]["cfguest2"]["state"] == "UP" and s["peers"]["cfguest2"]["gap"] > 20
    assert dc.tls("guest1", "narrow") is None
    assert not widen.exists()
    t1 = time.monotonic()
    wait_until(lambda: dc.view("guest1")["cfguest2"] == "LEFTCLUSTER", within=10, what="LEFTCLUSTER")
    assert time.monotonic() - t1 >= 0.8  # silence counts from the narrowing (10 emulated s = 1 s)
    assert "failure detection of cfguest2 narrowed back to CLUSTER_TIMEOUT 10 s" in dc.messages("guest1")


@pytest.mark.timeout(90)
def test_widen_json_is_reapplied_at_start_unless_over(dc: Datacenter) -> None:
    widen = dc.home.migrate_dir("guest1") / "widen.json"
    atomic_write(widen, json.dumps({"peers": {"cfguest2": {"seconds": 300, "until": 1e9, "hypervisor": False}}}))
    atomic_write(
        dc.home.migrate_dir("guest2") / "widen.json",
        json.dumps({"peers": {"cfguest1": {"seconds": 300, "until": 1.0, "hypervisor": False}}}),
    )
    dc.start("guest1", "guest2")
    s = dc.tls("guest1", "cf_sample")
    assert s["peers"]["cfguest2"]["timeout"] == 300.0
    assert dc.tls("guest2", "cf_sample")["peers"]["cfguest1"]["timeout"] == 10.0
    assert not (dc.home.migrate_dir("guest2") / "widen.json").exists()  # the lease was over: dropped
    assert json.loads(widen.read_text())["peers"]["cfguest2"]["until"] == 1e9
    assert dc.tls("guest1", "narrow", peers=["cfguest2"]) is None and not widen.exists()
    assert dc.tls("guest1", "cf_sample")["peers"]["cfguest2"]["timeout"] == 10.0


@pytest.mark.timeout(90)
def test_clock_align_keeps_the_clock_across_a_change_of_server(dc: Datacenter) -> None:
    dc.start("guest1", "guest2")
    both_up(dc)
    atomic_write(dc.home.offsets_file, json.dumps({"srv2": 30.0}))

    def move(host: str, server: str) -> None:
        atomic_write(dc.home.placement_file(host), json.dumps({"pid": 0, "host": "primary2", "server": server}))

    def diff(observer: str, peer: str) -> float:
        return dc.tls(observer, "cf_sample")["clock_diff"][peer]

    assert dc.tls("guest1", "clock_align") is None
    move("guest1", "srv2")  # guest1 keeps srv1's time: its peer sees no jump
    wait_until(lambda: dc.call("guest1", "status")["server"] == "srv2", what="guest1 on srv2")
    # guest2 estimates guest1's clock over the last CLOCK_SAMPLES (5) heartbeats, one per emulated s:
    # 10 emulated s after guest1 saw the move, every one of them was sent from srv2.
    waited = helpers.quiet_for(1.0, f"10 emulated s = 2 x CLOCK_SAMPLES {settings.CLOCK_SAMPLES} heartbeats")
    assert diff("guest2", "cfguest1") < 5.0, f"guest1's clock jumped for guest2 within {waited}"
    move("guest2", "srv2")  # not aligned: guest2's clock jumps 30 s ahead
    wait_until(lambda: diff("guest1", "cfguest2") > 25.0, what="guest2's clock 30 s ahead")
    assert "(WRP, 34) Cluster host cfguest2 is no longer in time sync" in dc.messages("guest1")


@pytest.mark.timeout(90)
def test_xscf_check(dc: Datacenter) -> None:
    dc.start("guest1")
    lans = {"lan0": f"127.68.{dc.n}.101", "lan1": f"127.68.{dc.n}.102"}
    assert dc.tls("guest1", "xscf_check", **lans) == {"known_host": False, "snmp": {"lan0": False, "lan1": False}}
    xscf = FakeXscf(dc)
    try:
        assert dc.tls("guest1", "xscf_check", **lans) == {"known_host": False, "snmp": {"lan0": True, "lan1": True}}
        add_known_host(dc.home.known_hosts("guest1"), xscf.known_hosts_lines()[0])
        assert dc.tls("guest1", "xscf_check", **lans)["known_host"] is False  # lan1's key is still missing
        add_known_host(dc.home.known_hosts("guest1"), xscf.known_hosts_lines()[1])

        async def lan1_down() -> None:
            xscf.snmp.set_lan(1, False)

        xscf._run(lan1_down())
        assert dc.call("guest1", "xscf_check", **lans) == {"known_host": True, "snmp": {"lan0": True, "lan1": False}}
    finally:
        xscf.close()
