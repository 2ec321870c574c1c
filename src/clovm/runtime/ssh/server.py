"""The SSH server of one emulated XSCF: :class:`XscfSshServer`, its host key and its user auth.

``XscfSshServer`` listens on every LAN address of one XSCF with the same port, proves its
identity with a persistent ed25519 host key (``load_or_create_host_key``, so known_hosts files
stay valid across emulator restarts), authenticates configured users by password (and optionally
public key), and hands every command line to a ``cli(argv) -> (rc, stdout, stderr)`` callback.
Both exec requests (``ssh xuser@xscf showdomainstatus -p 0``) and an interactive shell with the
``XSCF> `` prompt are served; ``exit``/``logout`` are built in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import os
import shlex
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import asyncssh

from ...fsutil import atomic_write
from .common import CIPHERS, CliResult
from .known_hosts import host_key_line, public_key_text

__all__ = ["PROMPT", "CliCallback", "XscfSshServer", "load_or_create_host_key"]

CliCallback = Callable[[list[str]], "CliResult | Awaitable[CliResult]"]
"""``cli(argv) -> (rc, stdout, stderr)``, plain or async."""

PROMPT = "XSCF> "


def load_or_create_host_key(path: str | os.PathLike[str]) -> asyncssh.SSHKey:
    """Load an OpenSSH private host key, or generate an ed25519 key and save it (mode 0600).

    Args:
        path: key file; its directory is created if missing.

    Returns:
        The private key.
    """
    p = Path(path)
    if p.exists():
        return asyncssh.read_private_key(str(p))
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"clovm-xscf@{p.stem}")
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, key.export_private_key("openssh"), mode=0o600)
    return key


class _ServerAuth(asyncssh.SSHServer):
    def __init__(self, owner: XscfSshServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._owner._users.get(username)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def public_key_auth_supported(self) -> bool:
        return bool(self._owner._user_keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return public_key_text(key) in self._owner._user_keys.get(username, set())


class XscfSshServer:
    """SSH server with the XSCF command-line interface, on every LAN address of one XSCF.

    Example::

        server = XscfSshServer(cli, ["127.20.30.73", "127.20.40.73"], 10022,
                               host_key_path=state_dir / "m10-3.ssh_host_ed25519_key",
                               users={"xuser": "xpass"})
        await server.start()
        ...
        await server.close()

    Args:
        cli: ``cli(argv) -> (rc, stdout, stderr)``, plain or async; ``argv`` is the command line
            split like a POSIX shell (``["showdomainstatus", "-p", "0"]``).
        addresses: one listen address per LAN (LAN#0 first).
        port: TCP port on every address; 0 picks a free port on LAN#0 and reuses it on the others.
        host_key_path: persistent host key (generated as ed25519, mode 0600, if missing).
        users: user name -> password.
        authorized_keys: optional user name -> OpenSSH public keys (strings or ``SSHKey``).
        prompt: interactive prompt.
        login_timeout: seconds a client has to authenticate.
    """

    def __init__(
        self,
        cli: CliCallback,
        addresses: Sequence[str],
        port: int,
        host_key_path: str | os.PathLike[str],
        users: Mapping[str, str],
        *,
        authorized_keys: Mapping[str, Iterable[asyncssh.SSHKey | str]] | None = None,
        prompt: str = PROMPT,
        login_timeout: float = 30.0,
    ) -> None:
        if not addresses:
            raise ValueError("at least one listen address is required")
        self._cli = cli
        self._addresses = list(addresses)
        self._port = int(port)
        self._host_key_path = Path(host_key_path)
        self._users = dict(users)
        self._user_keys = {u: {public_key_text(k) for k in keys} for u, keys in (authorized_keys or {}).items()}
        self._prompt = prompt
        self._login_timeout = login_timeout
        self._host_key: asyncssh.SSHKey | None = None
        self._acceptors: list[Any] = [None] * len(self._addresses)
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._started = False

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load or create the host key and listen on every address.

        Raises:
            OSError: an address/port cannot be bound (nothing is left listening then).
        """
        if self._started:
            raise RuntimeError("XscfSshServer.start() called twice")
        self._host_key = load_or_create_host_key(self._host_key_path)
        self._started = True
        try:
            for lan in range(len(self._addresses)):
                await self._listen(lan)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and drop every open session. Idempotent."""
        for lan in range(len(self._addresses)):
            await self._unlisten(lan)
        for conn in list(self._connections):
            conn.close()
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
        self._connections.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def set_lan(self, lan: int, up: bool) -> None:
        """Stop listening on one LAN (and drop its sessions), or listen again on the same port.

        Args:
            lan: LAN number (index into ``addresses``).
            up: the new state; setting the current state again does nothing.
        """
        if up and self._acceptors[lan] is None:
            await self._listen(lan)
        elif not up:
            await self._unlisten(lan)
            address = self._addresses[lan]
            for conn in list(self._connections):
                if (conn.get_extra_info("sockname") or ("",))[0] == address:
                    conn.close()

    def lan_up(self, lan: int) -> bool:
        """Whether the server listens on the LAN."""
        return self._acceptors[lan] is not None

    @property
    def port(self) -> int:
        """The listening port (resolved after ``start()`` when 0 was given)."""
        return self._port

    @property
    def addresses(self) -> list[str]:
        """Listen address per LAN."""
        return list(self._addresses)

    @property
    def host_key(self) -> asyncssh.SSHKey:
        """The server's private host key (after ``start()``)."""
        if self._host_key is None:
            raise RuntimeError("XscfSshServer is not started")
        return self._host_key

    def known_hosts_lines(self) -> list[str]:
        """known_hosts lines for every LAN address of this server (after ``start()``)."""
        return [host_key_line(a, self._port, self.host_key) for a in self._addresses]

    async def _listen(self, lan: int) -> None:
        acceptor = await asyncssh.create_server(
            lambda: _ServerAuth(self),
            self._addresses[lan],
            self._port,
            server_host_keys=[self.host_key],
            process_factory=self._session,
            encoding="utf-8",
            login_timeout=self._login_timeout,
            keepalive_interval=0,
            config=None,
            reuse_address=True,
            encryption_algs=list(CIPHERS),
        )
        if self._port == 0:
            self._port = int(acceptor.sockets[0].getsockname()[1])
        self._acceptors[lan] = acceptor

    async def _unlisten(self, lan: int) -> None:
        acceptor, self._acceptors[lan] = self._acceptors[lan], None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()

    # ---- sessions -------------------------------------------------------------------------

    async def _run(self, argv: list[str]) -> CliResult:
        try:
            result = self._cli(argv)
            if inspect.isawaitable(result):
                result = await result
            rc, out, err = result
            return int(rc), str(out), str(err)
        except Exception as exc:  # noqa: BLE001 - the CLI must survive a failing command
            return 1, "", f"Error: internal error while running {argv[0]}: {exc}\n"

    @staticmethod
    def _split(line: str) -> list[str] | str:
        try:
            return shlex.split(line)
        except ValueError as exc:
            return f"Error: invalid command line: {exc}\n"

    async def _session(self, process: asyncssh.SSHServerProcess[str]) -> None:
        try:
            if process.command is not None:
                await self._exec(process, process.command)
            else:
                await self._shell(process)
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            process.exit(0)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            process.close()

    async def _exec(self, process: asyncssh.SSHServerProcess[str], command: str) -> None:
        argv = self._split(command)
        if isinstance(argv, str):
            process.stderr.write(argv)
            process.exit(2)
            return
        if not argv or argv[0] in ("exit", "logout"):
            process.exit(0)
            return
        rc, out, err = await self._run(argv)
        if out:
            process.stdout.write(out)
        if err:
            process.stderr.write(err)
        process.exit(rc)

    async def _shell(self, process: asyncssh.SSHServerProcess[str]) -> None:
        while True:
            process.stdout.write(self._prompt)
            line = await process.stdin.readline()
            if not line:  # EOF
                break
            argv = self._split(line.strip())
            if isinstance(argv, str):
                process.stderr.write(argv)
                continue
            if not argv:
                continue
            if argv[0] in ("exit", "logout"):
                break
            _, out, err = await self._run(argv)
            if out:
                process.stdout.write(out if out.endswith("\n") else out + "\n")
            if err:
                process.stderr.write(err if err.endswith("\n") else err + "\n")
        process.exit(0)
