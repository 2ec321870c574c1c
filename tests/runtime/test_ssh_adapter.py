"""Integration tests of the XSCF SSH adapter (real asyncssh server and client on loopback)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
import pytest_asyncio

from clovm.runtime.ssh import (
    XscfAuthFailed,
    XscfHostKeyChanged,
    XscfHostKeyUnknown,
    XscfSshClient,
    XscfSshPool,
    XscfSshServer,
    XscfUnreachable,
    add_known_host,
    host_key_line,
    load_or_create_host_key,
    remove_known_hosts,
    xscf_exec,
)

LAN0 = "127.77.0.1"
LAN1 = "127.77.1.1"
USER, PASSWORD = "xuser", "xpass-secret"
STATUS_TEXT = (
    "Logical Domain Name   Status\nprimary               Solaris running\nguest1                Solaris running\n"
)


class Cli:
    """Records argv; ``showdomainstatus`` succeeds, ``fail`` exits 3, anything else 127."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        if argv[0] == "showdomainstatus":
            return 0, STATUS_TEXT, ""
        if argv[0] == "fail":
            return 3, "partial\n", "fail: something went wrong\n"
        if argv[0] == "crash":
            raise RuntimeError("boom")
        return 127, "", f"{argv[0]}: command not found\n"


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest_asyncio.fixture
async def server(cli: Cli, tmp_path: Path) -> AsyncIterator[XscfSshServer]:
    s = XscfSshServer(cli, [LAN0, LAN1], 0, tmp_path / "keys" / "xscf_host_key", {USER: PASSWORD})
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def known_hosts(tmp_path: Path) -> Path:
    return tmp_path / "known_hosts"


def trust(server: XscfSshServer, known_hosts: Path) -> None:
    for line in server.known_hosts_lines():
        add_known_host(known_hosts, line)


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_exec_returns_cli_output_and_rc(server: XscfSshServer, cli: Cli, known_hosts: Path) -> None:
    trust(server, known_hosts)
    rc, out, err = await xscf_exec(LAN0, server.port, USER, PASSWORD, "showdomainstatus -p 0", known_hosts, timeout=10)
    assert (rc, out, err) == (0, STATUS_TEXT, "")
    rc, out, err = await xscf_exec(LAN1, server.port, USER, PASSWORD, ["fail", "a b"], known_hosts, timeout=10)
    assert (rc, out, err) == (3, "partial\n", "fail: something went wrong\n")
    client = XscfSshClient(USER, PASSWORD, known_hosts)
    assert (await client.exec(LAN0, server.port, "nosuch"))[0] == 127
    assert (await client.exec(LAN0, server.port, "crash"))[0] == 1
    assert (await client.exec(LAN0, server.port, "exit"))[0] == 0
    assert cli.calls == [
        ["showdomainstatus", "-p", "0"],
        ["fail", "a b"],
        ["nosuch"],
        ["crash"],
    ]


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_interactive_shell_prompt(server: XscfSshServer, cli: Cli) -> None:
    async with asyncssh.connect(
        LAN1,
        server.port,
        username=USER,
        password=PASSWORD,
        known_hosts=asyncssh.import_known_hosts("\n".join(server.known_hosts_lines())),
        client_keys=None,
        agent_path=None,
        config=None,
    ) as conn:
        proc = await conn.create_process(None, encoding="utf-8")
        assert await asyncio.wait_for(proc.stdout.readuntil("XSCF> "), 5) == "XSCF> "
        proc.stdin.write("showdomainstatus -p 0\n")
        out = await asyncio.wait_for(proc.stdout.readuntil("XSCF> "), 5)
        assert out == STATUS_TEXT + "XSCF> "
        proc.stdin.write("\n")
        assert await asyncio.wait_for(proc.stdout.readuntil("XSCF> "), 5) == "XSCF> "
        proc.stdin.write("exit\n")
        result = await asyncio.wait_for(proc.wait(), 5)
        assert result.exit_status == 0
    assert cli.calls == [["showdomainstatus", "-p", "0"]]


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_wrong_password_is_auth_failed(server: XscfSshServer, cli: Cli, known_hosts: Path) -> None:
    trust(server, known_hosts)
    with pytest.raises(XscfAuthFailed, match="authentication failed for user 'xuser'"):
        await xscf_exec(LAN0, server.port, USER, "wrong", "showdomainstatus", known_hosts, 10)
    with pytest.raises(XscfAuthFailed):
        await xscf_exec(LAN0, server.port, "root", PASSWORD, "showdomainstatus", known_hosts, 10)
    assert cli.calls == []


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_known_hosts_lifecycle(server: XscfSshServer, cli: Cli, known_hosts: Path) -> None:
    port = server.port
    # no file at all, then an empty file: the first SSH connection has not been made
    for _ in range(2):
        with pytest.raises(XscfHostKeyUnknown, match="first SSH connection"):
            await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 10)
        known_hosts.write_text("")
    line = host_key_line(LAN0, port, server.host_key)
    assert line.startswith(f"[{LAN0}]:{port} ssh-ed25519 AAAA")
    add_known_host(known_hosts, line)
    add_known_host(known_hosts, line)  # no duplicate
    assert known_hosts.read_text() == line + "\n"
    assert stat.S_IMODE(os.stat(known_hosts).st_mode) == 0o600
    assert (await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 10))[0] == 0
    # LAN#1 is a different known_hosts name
    with pytest.raises(XscfHostKeyUnknown):
        await xscf_exec(LAN1, port, USER, PASSWORD, "showdomainstatus", known_hosts, 10)
    assert remove_known_hosts(known_hosts, [LAN0]) == 1
    with pytest.raises(XscfHostKeyUnknown):
        await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 10)
    assert len(cli.calls) == 1


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_host_key_persists_across_restarts(cli: Cli, tmp_path: Path, known_hosts: Path) -> None:
    key_path = tmp_path / "xscf_host_key"
    first = XscfSshServer(cli, [LAN0], 0, key_path, {USER: PASSWORD})
    await first.start()
    try:
        port = first.port
        key1 = first.host_key.export_public_key()
        trust(first, known_hosts)
    finally:
        await first.close()
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    second = XscfSshServer(cli, [LAN0], port, key_path, {USER: PASSWORD})
    await second.start()
    try:
        assert second.host_key.export_public_key() == key1
        rc, out, _ = await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 10)
        assert (rc, out) == (0, STATUS_TEXT)
    finally:
        await second.close()
    # a server with another key on the same address/port is detected
    third = XscfSshServer(cli, [LAN0], port, tmp_path / "other_key", {USER: PASSWORD})
    await third.start()
    try:
        with pytest.raises(XscfHostKeyChanged, match="does not match"):
            await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 10)
    finally:
        await third.close()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_unreachable_closed_port_and_lan_down(server: XscfSshServer, known_hosts: Path) -> None:
    trust(server, known_hosts)
    port = server.port
    await server.set_lan(1, False)
    assert not server.lan_up(1) and server.lan_up(0)
    with pytest.raises(XscfUnreachable, match=f"XSCF {LAN1}:{port}"):
        await xscf_exec(LAN1, port, USER, PASSWORD, "showdomainstatus", known_hosts, 5)
    assert (await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 5))[0] == 0
    await server.set_lan(1, True)
    assert (await xscf_exec(LAN1, port, USER, PASSWORD, "showdomainstatus", known_hosts, 5))[0] == 0


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_unresponsive_peer_times_out(known_hosts: Path) -> None:
    # a TCP listener that never speaks SSH
    writers: list[asyncio.StreamWriter] = []
    srv = await asyncio.start_server(lambda r, w: writers.append(w), LAN0, 0)
    try:
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(XscfUnreachable, match="no SSH answer within 0.5 s"):
            await xscf_exec(LAN0, port, USER, PASSWORD, "showdomainstatus", known_hosts, 0.5)
    finally:
        for w in writers:
            w.close()
        srv.close()
        await srv.wait_closed()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_public_key_auth_and_async_cli(tmp_path: Path, known_hosts: Path) -> None:
    client_key = asyncssh.generate_private_key("ssh-ed25519")

    async def cli(argv: list[str]) -> tuple[int, str, str]:
        await asyncio.sleep(0)
        return 0, " ".join(argv) + "\n", ""

    s = XscfSshServer(
        cli,
        [LAN0],
        0,
        tmp_path / "hk",
        {USER: PASSWORD},
        authorized_keys={USER: [client_key.export_public_key().decode()]},
    )
    await s.start()
    try:
        trust(s, known_hosts)
        client = XscfSshClient(USER, None, known_hosts, client_keys=[client_key])
        assert await client.exec(LAN0, s.port, ["showhardconf", "-M"]) == (0, "showhardconf -M\n", "")
        stranger = XscfSshClient(USER, None, known_hosts, client_keys=[asyncssh.generate_private_key("ssh-ed25519")])
        with pytest.raises(XscfAuthFailed):
            await stranger.exec(LAN0, s.port, "showhardconf")
    finally:
        await s.close()


@pytest.mark.timeout(30)
def test_known_hosts_helpers(tmp_path: Path) -> None:
    kh = tmp_path / "sub" / "known_hosts"
    k1 = asyncssh.generate_private_key("ssh-ed25519")
    k2 = asyncssh.generate_private_key("ssh-ed25519")
    assert host_key_line("127.20.30.73", 22, k1).startswith("127.20.30.73 ssh-ed25519 ")
    pub = k1.export_public_key().decode()
    assert host_key_line("127.20.30.73", 10022, pub) == ("[127.20.30.73]:10022 " + " ".join(pub.split()[:2]))
    add_known_host(kh, host_key_line("127.20.30.73", 10022, k1))
    add_known_host(kh, host_key_line("127.20.40.73", 10022, k1))
    add_known_host(kh, host_key_line("127.20.30.73", 10023, k1))
    add_known_host(kh, host_key_line("127.20.30.73", 10022, k2))  # regenerated key replaces
    lines = kh.read_text().splitlines()
    assert len(lines) == 3 and lines[-1] == host_key_line("127.20.30.73", 10022, k2)
    assert stat.S_IMODE(os.stat(kh).st_mode) == 0o600
    # a hashed entry (ssh-keygen -H style) for [127.20.40.73]:10023
    salt = os.urandom(20)
    digest = hmac.new(salt, b"[127.20.40.73]:10023", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    with kh.open("a") as f:
        f.write(f"# comment\n{hashed} {' '.join(pub.split()[:2])}\n")
    assert remove_known_hosts(kh, [("127.20.30.73", 10023)]) == 1
    assert remove_known_hosts(kh, [("127.20.40.73", 10023)]) == 1  # the hashed one
    assert remove_known_hosts(kh, ["127.20.30.73", "127.20.40.73"]) == 2
    assert kh.read_text() == "# comment\n"
    assert remove_known_hosts(tmp_path / "missing", ["127.0.0.1"]) == 0
    assert not (tmp_path / "missing").exists()
    # leftover temporaries: none
    assert sorted(p.name for p in kh.parent.iterdir()) == ["known_hosts", "known_hosts.lock"]


@pytest.mark.timeout(30)
def test_load_or_create_host_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "hk"
    key = load_or_create_host_key(path)
    assert key.get_algorithm() == "ssh-ed25519"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_host_key(path)
    assert again.export_public_key() == key.export_public_key()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_pool_keeps_one_connection_per_address_and_rechecks_known_hosts_and_lan(
    server: XscfSshServer, cli: Cli, known_hosts: Path
) -> None:
    made: list[object] = []

    class Counting(set):  # the server's set of live connections, counting every one it adds
        def add(self, conn: object) -> None:
            made.append(conn)
            super().add(conn)

    server._connections = Counting(server._connections)
    trust(server, known_hosts)
    pool = XscfSshPool(USER, PASSWORD, known_hosts)
    try:
        for _ in range(3):
            assert (await pool.exec(LAN0, server.port, "showdomainstatus -p 0"))[:2] == (0, STATUS_TEXT)
        results = await asyncio.gather(
            *(pool.exec(LAN1, server.port, ["showdomainstatus", "-p", "0"]) for _ in range(4))
        )  # concurrent commands: channels of one connection
        assert all(r[0] == 0 for r in results)
        assert len(made) == 2  # one key exchange per address
        assert len(cli.calls) == 7

        # known_hosts changed (the key forgotten): the kept connection is not used, the host key is
        # checked again, and the first SSH connection is missing again
        remove_known_hosts(known_hosts, [LAN0, LAN1])
        with pytest.raises(XscfHostKeyUnknown):
            await pool.exec(LAN0, server.port, "showdomainstatus -p 0")
        trust(server, known_hosts)
        assert (await pool.exec(LAN0, server.port, "showdomainstatus -p 0"))[0] == 0
        assert len(made) == 4  # (the refused attempt was a connection too, up to the key check)

        # the XSCF's LAN#1 goes down: its sessions are dropped, the pool cannot reconnect
        await server.set_lan(1, False)
        with pytest.raises(XscfUnreachable):
            await pool.exec(LAN1, server.port, "showdomainstatus -p 0", timeout=3)
        await server.set_lan(1, True)
        assert (await pool.exec(LAN1, server.port, "showdomainstatus -p 0"))[0] == 0  # a new connection
        assert len(made) == 5
    finally:
        pool.close()
