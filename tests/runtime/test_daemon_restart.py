"""Daemons that come back (issue 12): a real ldmd or xscfd SIGKILLed and started again recovers from
its own files.

* ldmd: the SP's saved configurations (``Home.sp_file``) and the guests' placements survive; a
  domain whose process still runs is adopted again (same pid, running), one whose process died
  meanwhile is ``bound``; a migration whose source or target ldmd died ends on both sides — the
  guest resumed on the source, no bound copy (``-----t``) left on the target — and one whose target
  died right after taking the guest over ends migrated.
* xscfd: the saved configuration of its PPARs comes back from the SP's store, and its SNMP agent
  keeps its engine ID, so a manager that talked to it before is answered at once.

Two ldmds on 127.78.x (this module's own block), a sleeping Python process as each guest domain
(``CLOVM_DOMAIN_CMD``), a fake xscfd for the first server (test_ldmd.py's ``FakeXscfd``).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_ldmd import FakeXscfd

from clovm import formats, settings
from clovm.runtime import pki
from clovm.runtime.home import Home
from clovm.runtime.ldmd import DOMAIN_CMD_ENV
from clovm.runtime.rpc import call_unix
from clovm.runtime.snmp import SnmpCredentials, XscfSnmpClient
from helpers import wait_until_async

CD1, CD2, GUEST = "cd1", "cd2", "g1"
ADDR = {CD1: "127.78.0.1", CD2: "127.78.0.2"}
LAN = {"srv1": ("127.78.1.10", "127.78.2.10"), "srv2": ("127.78.1.20", "127.78.2.20")}

# 2048 MB dirtied at 900 MB/s over 1000 MB/s: five pre-copy rounds (8.4 emulated s), then ~1.3 s
# suspended; at time scale 10 under a second of real time.
TOPOLOGY = f"""
[migration]
bandwidth_mb_s = 1000

[[server]]
name = "srv1"
lan0 = "{LAN["srv1"][0]}"
lan1 = "{LAN["srv1"][1]}"
ppars = [0]

[[server]]
name = "srv2"
lan0 = "{LAN["srv2"][0]}"
lan1 = "{LAN["srv2"][1]}"
ppars = [0]

[[control_domain]]
name = "{CD1}"
server = "srv1"
ppar = 0
cf_name = "cfcd1"
address = "{ADDR[CD1]}"
memory_mb = 16384

[[control_domain]]
name = "{CD2}"
server = "srv2"
ppar = 0
cf_name = "cfcd2"
address = "{ADDR[CD2]}"
memory_mb = 16384

[[guest]]
name = "{GUEST}"
control_domain = "{CD1}"
cf_name = "cfg1"
address = "127.78.0.11"
memory_mb = 2048
vcpu = 2
dirty_rate_mb_s = 900
"""
SECRETS = {
    "xscf_user": "xuser",
    "xscf_password": "xpass",
    "snmp_auth": "authkey123",
    "snmp_priv": "privkey123",
    "cluster_key": "00" * 32,
    "ldm_password": "pw-12345678",
}


def _make_home(root: Path) -> Home:
    home = Home(root)
    home.topology_file.parent.mkdir(parents=True, exist_ok=True)
    home.topology_file.write_text(TOPOLOGY)
    home.secrets_file.write_text(json.dumps(SECRETS))
    os.chmod(home.secrets_file, 0o600)
    home.clock_file.parent.mkdir(parents=True, exist_ok=True)
    home.clock_file.write_text(
        json.dumps({"epoch": 1764000000.0, "start": time.monotonic(), "time_scale": 10.0, "boot": "b1"})
    )
    pki.ensure_pki(home, dict(ADDR))
    for cd in (CD1, CD2):
        home.hosts_file(cd).parent.mkdir(parents=True, exist_ok=True)
        home.hosts_file(cd).write_text(formats.render_hosts({CD1: ADDR[CD1], CD2: ADDR[CD2]}))
    return home


def _start(home: Home, module: str, name: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # the guest's command line names the home and the domain, as a real domain process's does
    env[DOMAIN_CMD_ENV] = json.dumps([sys.executable, "-c", "import time; time.sleep(3600)", "{home}", "{name}"])
    with open(home.root / f"{name}.stderr", "ab") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", f"clovm.runtime.{module}", "--home", str(home.root), "--name", name],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert p.stdout is not None
    deadline, buf = time.monotonic() + 30, b""
    while b"READY" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None:
            p.kill()
            raise AssertionError(f"{module} {name} not ready: {(home.root / f'{name}.stderr').read_text()[-2000:]}")
        if select.select([p.stdout], [], [], left)[0]:
            buf += os.read(p.stdout.fileno(), 4096)
    return p


@dataclass
class Dc:
    home: Home
    xscf: FakeXscfd
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kill(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert p.stdout is not None
        p.stdout.close()

    def restart(self, name: str) -> None:
        self.procs[name] = _start(self.home, "ldmd", name)


@pytest.fixture
def dc() -> Iterator[Dc]:
    root = Path(tempfile.mkdtemp(prefix="clovm-restart-", dir="/tmp"))
    home = _make_home(root)
    xscf = FakeXscfd(home.xscf_socket("srv1"))
    xscf.start()
    d = Dc(home, xscf)
    try:
        for name in (CD1, CD2):
            d.procs[name] = _start(home, "ldmd", name)
        yield d
    finally:
        for p in d.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in d.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            assert p.stdout is not None
            p.stdout.close()
        for f in home.placement_file("x").parent.glob("*.json"):
            try:
                os.kill(json.loads(f.read_text())["pid"], signal.SIGKILL)
            except (OSError, ValueError, KeyError):
                pass
        xscf.stop()
        shutil.rmtree(root, ignore_errors=True)


async def ldm(home: Home, cd: str, *argv: str) -> dict[str, Any]:
    return await call_unix(home.ldmd_socket(cd), "ldm", 60, argv=list(argv))


def _row(listing: str, name: str) -> list[str] | None:
    return next((ln.split() for ln in listing.splitlines() if ln.split()[:1] == [name]), None)


def _state(pid: int) -> str | None:
    try:
        s = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None
    return None if s in ("Z", "X") else s


def _placement(home: Home) -> dict[str, Any]:
    return json.loads(home.placement_file(GUEST).read_text())


async def _listed(home: Home, cd: str) -> list[str] | None:
    return _row((await ldm(home, cd, "list"))["stdout"], GUEST)


def _arm(home: Home, point: str, victim: str) -> None:
    home.armed_kills_file.write_text(json.dumps([{"point": point, "daemon": victim}]))


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_a_restarted_ldmd_keeps_its_configurations_and_readopts_its_guest(dc: Dc) -> None:
    assert (await ldm(dc.home, CD1, "add-spconfig", "cfg2"))["rc"] == 0
    assert (await ldm(dc.home, CD1, "set-spconfig", "config1"))["rc"] == 0
    configs = (await ldm(dc.home, CD1, "list-spconfig"))["stdout"]
    assert configs == "factory-default\nconfig1 [next poweron]\ncfg2\n"
    pid = _placement(dc.home)["pid"]
    up_before = await _listed(dc.home, CD1)
    dc.kill(CD1)
    assert _state(pid) in ("S", "R")  # the domain does not die with its ldmd
    dc.restart(CD1)
    assert (await ldm(dc.home, CD1, "list-spconfig"))["stdout"] == configs
    row = await _listed(dc.home, CD1)
    assert row is not None and row[1:3] == ["active", "-n----"] and up_before is not None
    assert _placement(dc.home) == {"pid": pid, "host": CD1, "server": "srv1"}
    doms = {d["name"]: d for d in await call_unix(dc.home.ldmd_socket(CD1), "domains")}
    assert doms[GUEST]["pid"] == pid
    # it watches the re-adopted process: its crash makes the domain bound
    os.kill(pid, signal.SIGKILL)

    async def bound() -> bool:
        row = await _listed(dc.home, CD1)
        return row is not None and row[1] == "bound"

    await wait_until_async(bound, 10, 0.05, f"{GUEST} bound after its process died")
    # and a domain that died while its ldmd was away is bound, not started again
    assert (await ldm(dc.home, CD1, "start-domain", GUEST))["rc"] == 0
    pid2 = _placement(dc.home)["pid"]
    dc.kill(CD1)
    os.kill(pid2, signal.SIGKILL)
    await wait_until_async(lambda: _state(pid2) is None, 10, 0.05, "the guest process reaped")
    dc.restart(CD1)
    row = await _listed(dc.home, CD1)
    assert row is not None and row[1] == "bound", row
    assert (await ldm(dc.home, CD1, "list-spconfig"))["stdout"] == configs


@pytest.mark.timeout(90)
@pytest.mark.asyncio
@pytest.mark.parametrize("point", ["pre-copy", "suspend", "hand-off"])
async def test_a_migration_whose_source_ldmd_died_ends_on_the_source(dc: Dc, point: str) -> None:
    pid = _placement(dc.home)["pid"]
    _arm(dc.home, point, f"ldmd-{CD1}")
    try:
        r = await ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD2)
    except Exception as e:  # noqa: BLE001 - the ldmd answering the command died
        r = {"error": str(e)}
    assert "rc" not in r or r["rc"] != 0, r
    dc.procs[CD1].wait(10)
    dc.kill(CD1)
    dc.restart(CD1)

    async def settled() -> bool:
        return await _listed(dc.home, CD2) is None and (await _listed(dc.home, CD1) or [""])[1:3] == [
            "active",
            "-n----",
        ]

    await wait_until_async(settled, 10, 0.1, "no copy left on cd2, the guest active on cd1")
    assert _state(pid) in ("S", "R"), "the guest is running again (not frozen)"
    assert _placement(dc.home) == {"pid": pid, "host": CD1, "server": "srv1"}


@pytest.mark.timeout(90)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "point, outcome", [("pre-copy", CD1), ("suspend", CD1), ("hand-off", CD1), ("taken-over", CD2)]
)
async def test_a_migration_whose_target_ldmd_died_ends_consistently(dc: Dc, point: str, outcome: str) -> None:
    pid = _placement(dc.home)["pid"]
    _arm(dc.home, point, f"ldmd-{CD2}")
    task = asyncio.ensure_future(ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD2))
    await wait_until_async(lambda: dc.procs[CD2].poll() is not None, 20, 0.02, "cd2's ldmd killed at " + point)
    dc.kill(CD2)
    r = await task
    dc.restart(CD2)
    assert (r["rc"] == 0) == (outcome == CD2), r
    other = CD2 if outcome == CD1 else CD1

    async def settled() -> bool:
        row = await _listed(dc.home, outcome)
        return row is not None and row[1:3] == ["active", "-n----"] and await _listed(dc.home, other) is None

    await wait_until_async(settled, 10, 0.1, f"the guest active on {outcome} only")
    assert _state(pid) in ("S", "R") and _placement(dc.home)["host"] == outcome


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_a_restarted_xscfd_knows_the_saved_configuration_and_answers_its_managers(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="clovm-xr-", dir="/tmp"))
    try:
        home = _make_home(root)
        sp = home.sp_file("srv2", 0)
        sp.parent.mkdir(parents=True, exist_ok=True)
        sp.write_text(
            json.dumps(
                {
                    "configs": [["factory-default", ["primary"]], ["config1", ["g1", "primary"]]],
                    "next": "config1",
                    "booted": "config1",
                    "changed": False,
                    "saved": [GUEST],
                }
            )
        )
        p = _start(home, "xscfd", "srv2")
        client = XscfSnmpClient.from_credentials(SnmpCredentials("xuser", "authkey123", "privkey123"))
        try:
            r = await client.status(LAN["srv2"][0], settings.SNMP_PORT, 0, GUEST, timeout=2.0)
            assert r.ok and r.status == "Host stopped", r  # known (saved), not running
            p.send_signal(signal.SIGKILL)
            p.wait(10)
            assert p.stdout is not None
            p.stdout.close()
            p = _start(home, "xscfd", "srv2")
            r = await client.status(LAN["srv2"][0], settings.SNMP_PORT, 0, GUEST, timeout=2.0)
            assert r.ok and r.status == "Host stopped", r  # the same manager, answered at once
        finally:
            client.close()
            p.send_signal(signal.SIGTERM)
            p.wait(15)
            assert p.stdout is not None
            p.stdout.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
