"""Integration tests of the ldmd daemon: two real ldmd processes on loopback, real guest processes.

The guest domain command is replaced (``CLOVM_DOMAIN_CMD``) by a sleeping Python process, so
these tests do not depend on the node agent. The first server's xscfd is a fake unix server
(in a thread) that records the pushes; the second server has no xscfd (pushes only log).
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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clovm import formats, settings
from clovm.core.ldm import MigrationOffer, OfferRejected
from clovm.runtime import pki
from clovm.runtime.home import Home
from clovm.runtime.ldmd import DOMAIN_CMD_ENV, decode_peer_msg, encode_peer_msg
from clovm.runtime.rpc import RpcError, call_tls, call_unix, serve_unix
from helpers import wait_until_async

CD1, CD2 = "cd1", "cd2"
ADDR = {CD1: "127.67.0.1", CD2: "127.67.0.2"}
GUEST = "g1"
LDM_PASSWORD = "s3cret-ldm"

# memory 2048 MB dirtied at 900 MB/s over 1000 MB/s never converges: 5 pre-copy rounds (8.4 s
# emulated), then ~1.3 s emulated suspended; at time scale 10 that is ~0.85 s + ~130 ms real.
TOPOLOGY = f"""
[migration]
bandwidth_mb_s = 1000

[[server]]
name = "srv1"
lan0 = "127.67.1.10"
lan1 = "127.67.2.10"
ppars = [0]

[[server]]
name = "srv2"
lan0 = "127.67.1.20"
lan1 = "127.67.2.20"
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
sf_weight = 2

[[guest]]
name = "{GUEST}"
control_domain = "{CD1}"
cf_name = "cfg1"
address = "127.67.0.11"
memory_mb = 2048
vcpu = 2
dirty_rate_mb_s = 900
"""


class FakeXscfd:
    """A unix-socket xscfd in its own thread that records every request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _handler(self, op: str, args: dict[str, Any], peer: str) -> Any:
        with self._lock:
            self.calls.append((op, args))
        return None

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            srv = await serve_unix(self.path, self._handler)
            self._started.set()
            await self._stop.wait()
            srv.close()

        self._loop.run_until_complete(main())

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(10)

    def stop(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.calls)


@dataclass
class Dc:
    home: Home
    xscf: FakeXscfd
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def _make_home(root: Path) -> Home:
    home = Home(root)
    home.topology_file.parent.mkdir(parents=True, exist_ok=True)
    home.topology_file.write_text(TOPOLOGY)
    home.secrets_file.write_text(
        json.dumps(
            {
                "xscf_user": "xuser",
                "xscf_password": "xpass",
                "snmp_auth": "authkey123",
                "snmp_priv": "privkey123",
                "cluster_key": "00" * 32,
                "ldm_password": LDM_PASSWORD,
            }
        )
    )
    os.chmod(home.secrets_file, 0o600)
    home.clock_file.parent.mkdir(parents=True, exist_ok=True)
    home.clock_file.write_text(json.dumps({"epoch": 1764000000.0, "start": time.monotonic(), "time_scale": 10.0}))
    pki.ensure_pki(home, dict(ADDR))
    hosts = {CD1: ADDR[CD1], CD2: ADDR[CD2], GUEST: "127.67.0.11", "xscf1": "127.67.1.10"}
    for cd in (CD1, CD2):
        path = home.hosts_file(cd)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(formats.render_hosts(hosts))
    return home


def _start_ldmd(home: Home, name: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env[DOMAIN_CMD_ENV] = json.dumps([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open(home.root / f"{name}.stderr", "ab") as err:  # the child keeps its own copy
        p = subprocess.Popen(
            [sys.executable, "-m", "clovm.runtime.ldmd", "--home", str(home.root), "--name", name],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert p.stdout is not None
    deadline = time.monotonic() + 30
    buf = b""
    while b"READY" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None:
            p.kill()
            log = home.log_file(f"ldmd-{name}")
            raise AssertionError(
                f"ldmd {name} not ready: {buf!r} "
                f"{(home.root / f'{name}.stderr').read_text()} "
                f"{log.read_text()[-1500:] if log.exists() else ''}"
            )
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            buf += os.read(p.stdout.fileno(), 4096)
    return p


def _placement(home: Home, domain: str) -> dict[str, Any]:
    return json.loads(home.placement_file(domain).read_text())


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


@pytest.fixture
def dc() -> Iterator[Dc]:
    root = Path(tempfile.mkdtemp(prefix="clovm-ldmd-", dir="/tmp"))
    home = _make_home(root)
    xscf = FakeXscfd(home.xscf_socket("srv1"))
    xscf.start()
    d = Dc(home, xscf)
    try:
        for name in (CD1, CD2):
            d.procs[name] = _start_ldmd(home, name)
        yield d
    finally:
        rcs = {}
        for name, p in d.procs.items():
            p.send_signal(signal.SIGTERM)
        for name, p in d.procs.items():
            try:
                rcs[name] = p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                rcs[name] = p.wait()
            assert p.stdout is not None
            p.stdout.close()
        for f in home.placement_file("x").parent.glob("*.json"):
            try:
                os.kill(json.loads(f.read_text())["pid"], signal.SIGKILL)
            except (OSError, ValueError, KeyError):
                pass
        xscf.stop()
        sockets_left = [n for n in d.procs if home.ldmd_socket(n).exists()]
        shutil.rmtree(root, ignore_errors=True)
        assert rcs == {n: 0 for n in d.procs}, rcs
        assert not sockets_left


async def ldm(home: Home, cd: str, *argv: str, timeout: float = 60) -> dict[str, Any]:
    return await call_unix(home.ldmd_socket(cd), "ldm", timeout, argv=list(argv))


async def wait_until(
    check: Callable[[], Any],
    within: float = 10.0,
    what: str = "the condition",
    every: float = 0.02,
    detail: Callable[[], object] | None = None,
) -> Any:
    """helpers.wait_until_async with this module's default patience (10 s)."""
    return await wait_until_async(check, within, every, what, detail=detail)


def _row(listing: str, name: str) -> list[str] | None:
    for line in listing.splitlines():
        cols = line.split()
        if cols and cols[0] == name:
            return cols
    return None


async def _guest_alive_on(dc: Dc, cd: str) -> int:
    """Assert the guest is active on ``cd`` with a live process; return its pid."""
    r = await ldm(dc.home, cd, "list")
    assert r["rc"] == 0, r
    row = _row(r["stdout"], GUEST)
    assert row is not None and row[1] == "active", r["stdout"]
    pl = _placement(dc.home, GUEST)
    assert pl["host"] == cd
    assert _proc_state(pl["pid"]) in ("S", "R")
    return int(pl["pid"])


def _gone(pid: int) -> bool:
    return _proc_state(pid) is None


# ------------------------------------------------------------------------------------ tests
@pytest.mark.timeout(90)
def test_peer_message_round_trip() -> None:
    for msg in (MigrationOffer(3, "g1", 2048, 2, 900.0, "cd1", 12.5, 0.1, True), OfferRejected(3, "g1", "no room")):
        wire = encode_peer_msg(msg)
        assert wire["type"] == type(msg).__name__
        assert decode_peer_msg(json.loads(json.dumps(wire))) == msg
    with pytest.raises(RpcError) as e:
        decode_peer_msg({"type": "Nope"})
    assert e.value.code == "BAD_REQUEST"


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_list_placement_and_info(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    pl = _placement(dc.home, GUEST)
    assert pl == {"pid": pid, "host": CD1, "server": "srv1"}
    assert os.getsid(pid) == pid  # own session
    r2 = await ldm(dc.home, CD2, "list")
    assert _row(r2["stdout"], GUEST) is None and _row(r2["stdout"], "primary") is not None
    doms = await call_unix(dc.home.ldmd_socket(CD1), "domains")
    by_name = {d["name"]: d for d in doms}
    assert by_name[GUEST]["state"] == "active" and by_name[GUEST]["flags"] == "-n----"
    assert by_name[GUEST]["pid"] == pid and by_name["primary"]["flags"] == "-n-cv-"
    info = await call_unix(dc.home.ldmd_socket(CD2), "cd_info")
    assert info == {
        "host": CD2,
        "server": "srv2",
        "ppar": 0,
        "lan0": "127.67.1.20",
        "lan1": "127.67.2.20",
        "sf_weight": 2,
        "user": "xuser",
        "connection": "ssh",
    }
    tls_info = await call_tls(ADDR[CD1], settings.LDMD_PORT, pki.client_context(dc.home, CD2), "cd_info")
    assert tls_info["host"] == CD1 and tls_info["server"] == "srv1"
    # the fake xscfd of srv1 got the running guests of PPAR 0
    await wait_until(
        lambda: ("domains_running", {"ppar": 0, "running": [GUEST], "held": [GUEST]}) in dc.xscf.snapshot(),
        what="domains_running [guest] pushed to the xscfd",
        detail=dc.xscf.snapshot,
    )
    r = await ldm(dc.home, CD1, "no-such-subcommand")
    assert r["rc"] == 1 and "unknown subcommand" in r["stderr"]


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_spconfigs(dc: Dc) -> None:
    r = await ldm(dc.home, CD1, "list-spconfig")
    assert r == {"rc": 0, "stdout": "factory-default\nconfig1 [current]\n", "stderr": ""}
    # the installed configuration includes the guest, and the XSCF is told so at start
    await wait_until(
        lambda: ("spconfig_saved", {"ppar": 0, "domains": [GUEST]}) in dc.xscf.snapshot(),
        what="spconfig_saved [guest] pushed at start",
        detail=dc.xscf.snapshot,
    )
    r = await ldm(dc.home, CD1, "add-spconfig", "cfg2")
    assert r["rc"] == 0, r
    r = await ldm(dc.home, CD1, "list-spconfig")
    assert r["stdout"] == "factory-default\nconfig1\ncfg2 [current]\n"
    await wait_until(
        lambda: dc.xscf.snapshot().count(("spconfig_saved", {"ppar": 0, "domains": [GUEST]})) >= 2,
        what="a second spconfig_saved [guest] (add-spconfig)",
        detail=dc.xscf.snapshot,
    )
    r = await ldm(dc.home, CD1, "remove-spconfig", "cfg2")
    assert r["rc"] == 0, r
    r = await ldm(dc.home, CD1, "list-spconfig")
    assert r["stdout"] == "factory-default [next poweron]\nconfig1\n"  # removed the next one
    # remote ldm (as clovmmigrate on another control domain uses it)
    rr = await call_tls(ADDR[CD1], settings.LDMD_PORT, pki.client_context(dc.home, CD2), "ldm", argv=["list-spconfig"])
    assert rr["rc"] == 0 and rr["stdout"] == r["stdout"]


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_live_migration_there_and_back(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    task = asyncio.create_task(ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD2))
    states: set[str | None] = set()
    while not task.done():
        states.add(_proc_state(pid))
        await asyncio.sleep(0.002)
    r = task.result()
    assert r == {"rc": 0, "stdout": "", "stderr": ""}, r
    assert "T" in states, states  # really SIGSTOPped during the suspend phase
    assert await _guest_alive_on(dc, CD2) == pid  # same process, resumed
    assert _placement(dc.home, GUEST) == {"pid": pid, "host": CD2, "server": "srv2"}
    r1 = await ldm(dc.home, CD1, "list")
    assert _row(r1["stdout"], GUEST) is None
    doms = {d["name"]: d for d in await call_unix(dc.home.ldmd_socket(CD2), "domains")}
    assert doms[GUEST]["pid"] == pid and doms[GUEST]["flags"] == "-n----"
    # (the source holds the domain no more: its XSCF must not call it stopped)
    await wait_until(
        lambda: dc.xscf.snapshot()[-1] == ("domains_running", {"ppar": 0, "running": [], "held": []}),
        what="domains_running [] last pushed",
        detail=dc.xscf.snapshot,
    )
    # the spconfig of the source is no longer current (a domain left)
    r = await ldm(dc.home, CD1, "list-spconfig")
    assert "config1 [next poweron]" in r["stdout"]

    # and back, by address this time; cd1 spawned the process and owns it again
    r = await ldm(dc.home, CD2, "migrate-domain", "-c", GUEST, ADDR[CD1])
    assert r["rc"] == 0, r
    assert await _guest_alive_on(dc, CD1) == pid
    r = await ldm(dc.home, CD1, "stop-domain", GUEST)
    assert r["rc"] == 0, r
    await wait_until(lambda: _gone(pid), what=f"guest process {pid} gone")


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_migrate_password(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    wrong = dc.home.root / "wrong.pw"
    wrong.write_text("guess\n")
    r = await ldm(dc.home, CD1, "migrate-domain", "-p", str(wrong), GUEST, CD2)
    assert r["rc"] == 1 and "Error: authentication to target failed" in r["stderr"], r
    r = await ldm(dc.home, CD1, "migrate-domain", "-p", "/nonexistent/ldm.pw", GUEST, CD2)
    assert r["rc"] == 1 and "password file /nonexistent/ldm.pw not found" in r["stderr"], r
    assert await _guest_alive_on(dc, CD1) == pid
    assert _row((await ldm(dc.home, CD2, "list"))["stdout"], GUEST) is None
    # dry run changes nothing either
    r = await ldm(dc.home, CD1, "migrate-domain", "-n", "-c", GUEST, CD2)
    assert r["rc"] == 0 and "would succeed" in r["stdout"], r
    assert await _guest_alive_on(dc, CD1) == pid
    # the right password, from a file inside the emulated host's tree
    pw = dc.home.host_root(CD1) / "root" / "ldm.pw"
    pw.parent.mkdir(parents=True, exist_ok=True)
    pw.write_text(LDM_PASSWORD + "\n")
    r = await ldm(dc.home, CD1, "migrate-domain", "-p", "/root/ldm.pw", GUEST, f"root@{CD2}")
    assert r["rc"] == 0, r
    assert await _guest_alive_on(dc, CD2) == pid


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_migrate_bad_targets(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    r = await ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, "nosuchhost")
    assert r == {"rc": 1, "stdout": "", "stderr": "Error: cannot resolve target host nosuchhost\n"}
    r = await ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, "xscf1")
    assert r["rc"] == 1 and "xscf1 is not a control domain running ldmd" in r["stderr"], r
    r = await ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD1)
    assert r["rc"] == 1 and "is the source host" in r["stderr"], r
    r = await ldm(dc.home, CD1, "migrate-domain", "-c", "nosuchdomain", CD2)
    assert r["rc"] == 1 and "Domain nosuchdomain not found" in r["stderr"], r
    assert await _guest_alive_on(dc, CD1) == pid


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_stop_and_start_domain(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    r = await ldm(dc.home, CD1, "stop-domain", GUEST)
    assert r["rc"] == 0 and f"LDom {GUEST} stopped" in r["stdout"], r
    await wait_until(lambda: _gone(pid), what=f"guest process {pid} killed and reaped")
    row = _row((await ldm(dc.home, CD1, "list"))["stdout"], GUEST)
    assert row is not None and row[1] == "bound"
    await wait_until(
        lambda: dc.xscf.snapshot()[-1] == ("domains_running", {"ppar": 0, "running": [], "held": [GUEST]}),
        what="domains_running [] last pushed",
        detail=dc.xscf.snapshot,
    )
    r = await ldm(dc.home, CD1, "start-domain", GUEST)
    assert r["rc"] == 0, r
    new = await _guest_alive_on(dc, CD1)
    assert new != pid
    await wait_until(
        lambda: dc.xscf.snapshot()[-1] == ("domains_running", {"ppar": 0, "running": [GUEST], "held": [GUEST]}),
        what="domains_running [guest] last pushed",
        detail=dc.xscf.snapshot,
    )


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_kill_domain_op(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    assert await call_unix(dc.home.ldmd_socket(CD1), "kill_domain", domain=GUEST, how="panic") == {"pid": pid}
    await wait_until(lambda: _gone(pid), what=f"guest process {pid} gone")

    async def bound() -> bool:
        row = _row((await ldm(dc.home, CD1, "list"))["stdout"], GUEST)
        return row is not None and row[1] == "bound"

    await wait_until(bound, 5, f"{GUEST} bound on {CD1}", every=0.05)
    with pytest.raises(RpcError) as e:
        await call_unix(dc.home.ldmd_socket(CD1), "kill_domain", domain=GUEST, how="reset")
    assert e.value.code == "NOT_RUNNING"


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_kill_adopted_domain(dc: Dc) -> None:
    """A migrated-in process is not the target's child: its exit is still seen (pidfd)."""
    pid = await _guest_alive_on(dc, CD1)
    r = await ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD2)
    assert r["rc"] == 0, r
    await call_unix(dc.home.ldmd_socket(CD2), "kill_domain", domain=GUEST, how="panic")
    await wait_until(lambda: _gone(pid), what=f"guest process {pid} reaped")  # by the source, its parent

    async def bound_on_cd2() -> dict[str, Any] | None:
        doms = {d["name"]: d for d in await call_unix(dc.home.ldmd_socket(CD2), "domains")}
        return doms[GUEST] if doms[GUEST]["state"] == "bound" else None

    guest = await wait_until(bound_on_cd2, 5, f"{GUEST} bound on {CD2}", every=0.05)
    assert guest["state"] == "bound" and guest["pid"] is None


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_armed_abort_fails_migration(dc: Dc) -> None:
    pid = await _guest_alive_on(dc, CD1)
    assert await call_unix(dc.home.ldmd_socket(CD1), "arm_abort", domain=GUEST) is None
    r = await ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD2)
    assert r["rc"] == 1 and f"Domain Migration of LDom {GUEST} failed" in r["stderr"], r
    await wait_until(lambda: _gone(pid), what=f"guest process {pid} gone")
    row = _row((await ldm(dc.home, CD1, "list"))["stdout"], GUEST)
    assert row is not None and row[1] == "bound" and row[2][5] == "e", row

    async def gone_from_cd2() -> bool:
        return _row((await ldm(dc.home, CD2, "list"))["stdout"], GUEST) is None

    await wait_until(gone_from_cd2, 5, f"{GUEST} no longer listed on {CD2}", every=0.05)
    assert _placement(dc.home, GUEST)["host"] == CD1


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_tls_requires_control_domain_cert(dc: Dc) -> None:
    pki.ensure_pki(dc.home, {"intruder": None})
    with pytest.raises(RpcError) as e:
        await call_tls(ADDR[CD1], settings.LDMD_PORT, pki.client_context(dc.home, "intruder"), "ldm", argv=["list"])
    assert e.value.code == "FORBIDDEN"
    with pytest.raises(RpcError) as e:
        await call_tls(
            ADDR[CD1],
            settings.LDMD_PORT,
            pki.client_context(dc.home, "intruder"),
            "peer",
            msg={"type": "Handoff", "mig_id": 1, "domain": GUEST},
        )
    assert e.value.code == "FORBIDDEN"
    r = await call_tls(ADDR[CD1], settings.LDMD_PORT, pki.client_context(dc.home, CD2), "ldm", argv=["list"])
    assert r["rc"] == 0 and _row(r["stdout"], GUEST) is not None


@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_activity_and_where(dc: Dc) -> None:
    """clovm migrate's questions: journals and migrations on a control domain, where a domain is."""
    await _guest_alive_on(dc, CD1)
    sock1 = dc.home.ldmd_socket(CD1)
    tls = pki.client_context(dc.home, CD1)
    assert await call_unix(sock1, "activity") == {"journals": [], "migrating": []}
    d = dc.home.migrate_dir(CD1)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("g1.journal.json", "g1.migrate.json", "other.migrate.json", "g1.lock", "timeout.saved"):
        (d / name).write_text("{}\n")
    assert await call_unix(sock1, "activity") == {"journals": ["g1", "other"], "migrating": []}
    assert await call_unix(sock1, "where", domain=GUEST) == {"state": "active", "flags": "-n----", "migration": None}
    assert await call_tls(ADDR[CD2], settings.LDMD_PORT, tls, "where", domain=GUEST) is None
    with pytest.raises(RpcError) as e:
        await call_unix(sock1, "where")
    assert e.value.code == "BAD_REQUEST"

    task = asyncio.create_task(ldm(dc.home, CD1, "migrate-domain", "-c", GUEST, CD2))
    seen: list[Any] = []
    while not task.done():
        w1 = await call_unix(sock1, "where", domain=GUEST)
        a1 = await call_unix(sock1, "activity")
        a2 = await call_tls(ADDR[CD2], settings.LDMD_PORT, tls, "activity")
        w2 = await call_tls(ADDR[CD2], settings.LDMD_PORT, tls, "where", domain=GUEST)
        seen.append((w1, a1["migrating"], a2["migrating"], w2))
        await asyncio.sleep(0.01)
    assert task.result()["rc"] == 0
    during = [s for s in seen if s[0] is not None and s[0]["migration"] is not None]
    # in the checks phase the offer is still on its way: no flag yet (the target answers it)
    assert all(s[0]["flags"] == "-n----" for s in during if s[0]["migration"]["phase"] == "checks"), during
    during = [s for s in during if s[0]["migration"]["phase"] != "checks"]
    assert during, seen
    w1, m1, m2, w2 = during[0]
    assert w1["flags"].endswith("s") and w1["migration"]["phase"] in ("pre-copy", "suspend", "hand-off")
    assert m1 == [GUEST] and m2 == [GUEST]
    assert w2 == {"state": "bound", "flags": "-----t", "migration": None}
    assert await call_unix(sock1, "where", domain=GUEST) is None
    assert await call_unix(sock1, "activity") == {"journals": ["g1", "other"], "migrating": []}
    assert await call_unix(dc.home.ldmd_socket(CD2), "where", domain=GUEST) == {
        "state": "active",
        "flags": "-n----",
        "migration": None,
    }
    assert await call_unix(dc.home.ldmd_socket(CD2), "activity") == {"journals": [], "migrating": []}
