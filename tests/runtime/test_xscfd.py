"""End-to-end tests of xscfd: the daemon runs as a real subprocess on 127.66.x.y loopback addresses."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from clovm import settings, topology
from clovm.runtime import rpc
from clovm.runtime.home import Home
from clovm.runtime.snmp import SnmpAuthError, SnmpUnreachable, XscfSnmpClient
from clovm.runtime.ssh import (
    XscfAuthFailed,
    XscfUnreachable,
    host_key_line,
    load_or_create_host_key,
    xscf_exec,
)
from helpers import quiet_for_async, wait_until_async

SERVER = "m10-x"
LAN0, LAN1 = "127.66.1.10", "127.66.2.10"
SECRETS = {
    "xscf_user": "xuser",
    "xscf_password": "xpass-secret",
    "snmp_auth": "authpass123",
    "snmp_priv": "privpass123",
    "cluster_key": "0123456789abcdef",
    "ldm_password": "ldmpass",
}
TOPOLOGY = topology.Topology(
    servers=[
        topology.Server(name=SERVER, lan0=LAN0, lan1=LAN1, ppars=[0, 1]),
        topology.Server(name="m10-y", lan0="127.66.1.11", lan1="127.66.2.11", ppars=[0]),
    ],
    control_domains=[
        topology.ControlDomain(name="cdx0", server=SERVER, ppar=0, cf_name="cfcdx0", address="127.66.3.1"),
        topology.ControlDomain(name="cdx1", server=SERVER, ppar=1, cf_name="cfcdx1", address="127.66.3.2"),
        topology.ControlDomain(name="cdy0", server="m10-y", ppar=0, cf_name="cfcdy0", address="127.66.3.3"),
    ],
    guests=[
        topology.Guest(name="guest1", control_domain="cdx0", cf_name="cfguest1", address="127.66.4.1"),
        topology.Guest(name="guest2", control_domain="cdx0", cf_name="cfguest2", address="127.66.4.2"),
        topology.Guest(name="guest3", control_domain="cdx1", cf_name="cfguest3", address="127.66.4.3"),
    ],
)
SNMP_TIMEOUT = 1.0


@dataclass
class Xscfd:
    """A running xscfd subprocess and its home."""

    home: Home
    proc: subprocess.Popen[str]
    known_hosts: Path
    calls: list[dict] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.home.xscf_socket(SERVER)

    async def call(self, op: str, **args: object) -> object:
        return await rpc.call_unix(self.socket, op, timeout=5, **args)

    async def ssh(self, lan: str, command: str, password: str = SECRETS["xscf_password"]) -> tuple[int, str, str]:
        return await xscf_exec(
            lan, settings.XSCF_SSH_PORT, SECRETS["xscf_user"], password, command, self.known_hosts, timeout=10
        )


def _make_home(root: Path) -> Home:
    home = Home(root)
    home.topology_file.write_text(topology.dumps(TOPOLOGY))
    home.secrets_file.write_text(json.dumps(SECRETS))
    home.secrets_file.chmod(0o600)
    home.run_dir.mkdir(parents=True)
    home.clock_file.write_text(json.dumps({"epoch": 1764000000.0, "start": time.monotonic(), "time_scale": 1.0}))
    load_or_create_host_key(home.server_dir(SERVER) / "ssh_host_key")  # as `clovm up` does
    return home


def _wait_ready(proc: subprocess.Popen[str], home: Home, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == "READY":
                return
            if not line:
                break
    log = home.log_file(f"xscfd-{SERVER}")
    pytest.fail(f"xscfd not READY (rc={proc.poll()}); log:\n{log.read_text() if log.exists() else ''}")


@pytest.fixture
def xscfd() -> Iterator[Xscfd]:
    with tempfile.TemporaryDirectory(prefix="xscfd-") as tmp:  # short: AF_UNIX paths are limited
        home = _make_home(Path(tmp))
        key = load_or_create_host_key(home.server_dir(SERVER) / "ssh_host_key")
        known_hosts = Path(tmp) / "known_hosts"
        known_hosts.write_text("".join(host_key_line(a, settings.XSCF_SSH_PORT, key) + "\n" for a in (LAN0, LAN1)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "clovm.runtime.xscfd", "--home", str(home.root), "--name", SERVER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, home)
            yield Xscfd(home, proc, known_hosts)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                assert proc.stdout is not None and proc.stderr is not None
                proc.stdout.close()
                proc.stderr.close()
        assert rc == 0, home.log_file(f"xscfd-{SERVER}").read_text()
        assert not home.xscf_socket(SERVER).exists()
        assert not home.pid_file(f"xscfd-{SERVER}").exists()


@pytest_asyncio.fixture
async def snmp() -> AsyncIterator[XscfSnmpClient]:
    client = XscfSnmpClient(SECRETS["xscf_user"], SECRETS["snmp_auth"], SECRETS["snmp_priv"])
    try:
        yield client
    finally:
        client.close()


async def _configure(x: Xscfd) -> None:
    """PPAR 0 saved {guest1, guest2}; guest1 running, guest2 migrated away, guest9 migrated in."""
    await x.call("spconfig_saved", ppar=0, domains=["guest1", "guest2"])
    await x.call("domains_running", ppar=0, running=["guest1", "guest9"])


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_ready_pid_file_and_socket_mode(xscfd: Xscfd) -> None:
    assert int(xscfd.home.pid_file(f"xscfd-{SERVER}").read_text()) == xscfd.proc.pid
    assert xscfd.socket.stat().st_mode & 0o777 == 0o600
    assert await xscfd.call("status", ppar=0) == {}
    assert await xscfd.call("status", ppar=1) == {}


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_rpc_feeds_the_core_and_rejects_bad_input(xscfd: Xscfd) -> None:
    await _configure(xscfd)
    assert await xscfd.call("status", ppar=0) == {
        "guest1": "Solaris running",
        "guest2": "Host stopped",
        "guest9": "Unknown",
    }
    with pytest.raises(rpc.RpcError) as e:
        await xscfd.call("status", ppar=5)
    assert e.value.code == "NO_SUCH_PPAR"
    with pytest.raises(rpc.RpcError) as e:
        await xscfd.call("domains_running", ppar=7, running=["guest1"])
    assert e.value.code == "BAD_REQUEST" and "PPAR-ID 7" in e.value.message
    with pytest.raises(rpc.RpcError) as e:
        await xscfd.call("spconfig_saved", ppar=0, domains="guest1")
    assert e.value.code == "BAD_REQUEST"
    with pytest.raises(rpc.RpcError) as e:
        await xscfd.call("lan", lan=2, up=False)
    assert e.value.code == "BAD_REQUEST"
    with pytest.raises(rpc.RpcError) as e:
        await xscfd.call("nonsense")
    assert e.value.code == "UNKNOWN_OP"


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_snmp_status_on_both_lans(xscfd: Xscfd, snmp: XscfSnmpClient) -> None:
    await _configure(xscfd)
    for lan in (LAN0, LAN1):
        r = await snmp.status(lan, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
        assert (r.ok, r.status) == (True, "Solaris running")
        r = await snmp.status(lan, settings.SNMP_PORT, 0, "guest2", timeout=SNMP_TIMEOUT)
        assert (r.ok, r.status) == (True, "Host stopped")
        r = await snmp.status(lan, settings.SNMP_PORT, 0, "guest9", timeout=SNMP_TIMEOUT)
        assert (r.ok, r.status) == (True, "Unknown") and "not in the saved" in r.text
        r = await snmp.status(lan, settings.SNMP_PORT, 0, "nosuch", timeout=SNMP_TIMEOUT)
        assert not r.ok and "does not exist" in r.text
        r = await snmp.status(lan, settings.SNMP_PORT, 3, "guest1", timeout=SNMP_TIMEOUT)
        assert not r.ok and "PPAR-ID 3 is not on this server" in r.text


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_snmp_wrong_credentials(xscfd: Xscfd) -> None:
    client = XscfSnmpClient(SECRETS["xscf_user"], "wrongauth123", SECRETS["snmp_priv"])
    try:
        with pytest.raises(SnmpAuthError):
            await client.status(LAN0, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
    finally:
        client.close()


class FakeLdmd:
    """Serves ``kill_domain`` on a control domain's ldmd socket and records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.called = asyncio.Event()

    def __call__(self, op: str, args: dict, peer: str) -> object:
        self.calls.append((op, args))
        self.called.set()
        return {"killed": args.get("domain")}


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_snmp_panic_and_reset_reach_the_ldmd_of_the_ppar(xscfd: Xscfd, snmp: XscfSnmpClient) -> None:
    await _configure(xscfd)
    await xscfd.call("spconfig_saved", ppar=1, domains=["guest3"])
    await xscfd.call("domains_running", ppar=1, running=["guest3"])
    ldmd0, ldmd1 = FakeLdmd(), FakeLdmd()
    srv0 = await rpc.serve_unix(xscfd.home.ldmd_socket("cdx0"), ldmd0)
    srv1 = await rpc.serve_unix(xscfd.home.ldmd_socket("cdx1"), ldmd1)
    try:
        r = await snmp.panic(LAN0, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
        assert r.ok and "panic requested for guest1" in r.text
        await asyncio.wait_for(ldmd0.called.wait(), 10)
        assert ldmd0.calls == [("kill_domain", {"domain": "guest1", "how": "panic"})]

        r = await snmp.reset(LAN1, settings.SNMP_PORT, 1, "guest3", timeout=SNMP_TIMEOUT)
        assert r.ok and "reset requested for guest3" in r.text
        await asyncio.wait_for(ldmd1.called.wait(), 10)
        assert ldmd1.calls == [("kill_domain", {"domain": "guest3", "how": "reset"})]

        # Killed domains are stopped until the hypervisor reports them again; a stopped one is
        # "already stopped" without a new order, an unsaved one is refused.
        assert (await xscfd.call("status", ppar=0))["guest1"] == "Host stopped"
        r = await snmp.panic(LAN0, settings.SNMP_PORT, 0, "guest2", timeout=SNMP_TIMEOUT)
        assert r.ok and r.text == "already stopped"
        r = await snmp.panic(LAN0, settings.SNMP_PORT, 0, "guest9", timeout=SNMP_TIMEOUT)
        assert not r.ok and "ldm add-spconfig" in r.text
        # No new order may reach an ldmd. The xscfd starts an order's kill_domain task as its core
        # decides, before it answers the agent; the task is one unix-socket call to a fake ldmd in
        # this process: milliseconds, against 0.3 s.
        waited = await quiet_for_async(
            0.3, "an order starts before its SNMP answer and is one local unix-socket call, ms"
        )
        assert len(ldmd0.calls) == 1 and len(ldmd1.calls) == 1, (
            f"an order reached an ldmd within {waited}",
            ldmd0.calls,
            ldmd1.calls,
        )
    finally:
        for srv in (srv0, srv1):
            srv.close()
            await srv.wait_closed()


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_panic_without_ldmd_is_answered_and_logged(xscfd: Xscfd, snmp: XscfSnmpClient) -> None:
    await _configure(xscfd)
    r = await snmp.panic(LAN1, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
    assert r.ok
    log = xscfd.home.log_file(f"xscfd-{SERVER}")
    await wait_until_async(
        lambda: "kill_domain failed" in log.read_text(),
        5,
        0.1,
        "kill_domain failed logged",
        detail=lambda: log.read_text()[-2000:],
    )
    assert await xscfd.call("status", ppar=0)  # still serving


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_lan_down_silences_snmp_and_ssh_on_that_lan_only(xscfd: Xscfd, snmp: XscfSnmpClient) -> None:
    await _configure(xscfd)
    assert await xscfd.call("lan", lan=0, up=False) == {"lan0": False, "lan1": True}
    with pytest.raises(SnmpUnreachable):
        await snmp.status(LAN0, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
    r = await snmp.status(LAN1, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
    assert (r.ok, r.status) == (True, "Solaris running")
    with pytest.raises(XscfUnreachable):
        await xscfd.ssh(LAN0, "showdomainstatus -p 0")
    assert (await xscfd.ssh(LAN1, "showdomainstatus -p 0"))[0] == 0

    assert await xscfd.call("lan", lan=0, up=True) == {"lan0": True, "lan1": True}
    r = await snmp.status(LAN0, settings.SNMP_PORT, 0, "guest1", timeout=SNMP_TIMEOUT)
    assert (r.ok, r.status) == (True, "Solaris running")
    assert (await xscfd.ssh(LAN0, "showdomainstatus -p 0"))[0] == 0


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_ssh_showdomainstatus(xscfd: Xscfd) -> None:
    await _configure(xscfd)
    expected = (
        "Logical Domain Name      Status\n"
        "primary                  Solaris running\n"
        "guest1                   Solaris running\n"
        "guest2                   Host stopped\n"
        "guest9                   Unknown\n"
    )
    assert await xscfd.ssh(LAN0, "showdomainstatus -p 0") == (0, expected, "")
    assert await xscfd.ssh(LAN1, "showdomainstatus -p 0") == (0, expected, "")
    assert await xscfd.ssh(LAN0, "showdomainstatus -p 1") == (
        0,
        "Logical Domain Name      Status\nprimary                  Solaris running\n",
        "",
    )
    assert await xscfd.ssh(LAN0, "showdomainstatus -p 0 -g guest2") == (
        0,
        "Logical Domain Name      Status\nguest2                   Host stopped\n",
        "",
    )
    assert await xscfd.ssh(LAN0, "showdomainstatus -p 5") == (1, "", "PPAR-ID 5 is not configured\n")
    rc, _, err = await xscfd.ssh(LAN0, "showdomainstatus")
    assert rc == 1 and err.startswith("usage: showdomainstatus")


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_ssh_other_commands(xscfd: Xscfd) -> None:
    assert await xscfd.ssh(LAN0, "showpparstatus -a") == (
        0,
        "PPAR-ID        PPAR Status\n00             Running\n01             Running\n",
        "",
    )
    rc, out, _ = await xscfd.ssh(LAN0, "version -c xcp")
    assert rc == 0 and "XCP0 (Current): " in out
    rc, out, _ = await xscfd.ssh(LAN1, "showhostkey")
    key = load_or_create_host_key(xscfd.home.server_dir(SERVER) / "ssh_host_key")
    public = " ".join(key.export_public_key("openssh").decode().split()[:2])
    assert rc == 0 and public in out.splitlines()
    assert await xscfd.ssh(LAN0, "poweroff -a") == (1, "", "poweroff: command not found\n")


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_ssh_wrong_password(xscfd: Xscfd) -> None:
    with pytest.raises(XscfAuthFailed):
        await xscfd.ssh(LAN0, "showdomainstatus -p 0", password="wrong")
