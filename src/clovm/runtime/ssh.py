"""SSH adapter of the emulated XSCF: CLI server (service-processor side) and hermetic client.

Server: ``XscfSshServer`` listens on every LAN address of one XSCF with the same port, proves its
identity with a persistent ed25519 host key (so known_hosts files stay valid across emulator
restarts), authenticates configured users by password (and optionally public key), and hands every
command line to a ``cli(argv) -> (rc, stdout, stderr)`` callback. Both exec requests
(``ssh xuser@xscf showdomainstatus -p 0``) and an interactive shell with the ``XSCF> `` prompt are
served; ``exit``/``logout`` are built in.

Client: ``xscf_exec`` / ``XscfSshClient`` never read ``~/.ssh``, an ssh-agent or ``ssh_config``;
the server's host key must be in the given OpenSSH-format known_hosts file, as PRIMECLUSTER
requires ("the first SSH connection to the XSCF must have been made"). Failures map onto distinct
exceptions: ``XscfHostKeyUnknown``, ``XscfHostKeyChanged``, ``XscfAuthFailed``, ``XscfUnreachable``.

known_hosts helpers (``host_key_line``, ``add_known_host``, ``remove_known_hosts``) edit the file
atomically (temporary file, fsync, ``os.replace``; mode 0600) under an advisory lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import inspect
import os
import shlex
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncssh

__all__ = [
    "CliCallback",
    "XscfAuthFailed",
    "XscfHostKeyChanged",
    "XscfHostKeyError",
    "XscfHostKeyUnknown",
    "XscfSshClient",
    "XscfSshError",
    "XscfSshPool",
    "XscfSshServer",
    "XscfUnreachable",
    "add_known_host",
    "host_key_line",
    "load_or_create_host_key",
    "remove_known_hosts",
    "xscf_exec",
]

CliResult = tuple[int, str, str]
CliCallback = Callable[[list[str]], "CliResult | Awaitable[CliResult]"]
"""``cli(argv) -> (rc, stdout, stderr)``, plain or async."""

PROMPT = "XSCF> "
# Ciphers, most preferred first, offered by both ends. AES-GCM first: asyncssh's ChaCha20-Poly1305
# (its default) builds cipher objects per packet, and a command on a kept connection then costs
# about twice the CPU (measured: 2.96 against 1.52 ms per ``showdomainstatus``, both ends). The
# rest keep any OpenSSH client able to connect (an operator's first connection).
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
           "chacha20-poly1305@openssh.com")


# --------------------------------------------------------------------------------------------
# Errors


class XscfSshError(Exception):
    """Base class of the XSCF SSH client errors."""


class XscfUnreachable(XscfSshError):
    """No SSH session could be established or completed (refused, timed out, connection lost)."""


class XscfAuthFailed(XscfSshError):
    """The XSCF rejected the user name or password (or key)."""


class XscfHostKeyError(XscfSshError):
    """The XSCF's host key could not be verified against the known_hosts file."""


class XscfHostKeyUnknown(XscfHostKeyError):
    """No host key for this XSCF address and port is in the known_hosts file."""


class XscfHostKeyChanged(XscfHostKeyError):
    """The known_hosts file has a key for this XSCF, but the XSCF presented a different one."""


# --------------------------------------------------------------------------------------------
# Host keys and known_hosts


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
    _atomic_write(p, key.export_private_key("openssh"))
    return key


def _public_text(public_key: asyncssh.SSHKey | str | bytes) -> str:
    if isinstance(public_key, asyncssh.SSHKey):
        text = public_key.export_public_key("openssh").decode()
    elif isinstance(public_key, bytes):
        text = public_key.decode()
    else:
        text = public_key
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key: {text!r}")
    return f"{fields[0]} {fields[1]}"  # drop the comment


def _host_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def host_key_line(address: str, port: int, public_key: asyncssh.SSHKey | str | bytes) -> str:
    """Format a known_hosts line for a host key.

    Args:
        address: host address as the client will connect to it.
        port: SSH port (port 22 gives a bare address, any other ``[address]:port``).
        public_key: an ``SSHKey`` (private or public) or an OpenSSH public-key string.

    Returns:
        For example ``[127.20.30.73]:10022 ssh-ed25519 AAAA...`` (no trailing newline).
    """
    return f"{_host_pattern(address, port)} {_public_text(public_key)}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _split_entry(line: str) -> tuple[list[str], str] | None:
    """``(host patterns, key type)`` of a known_hosts entry; ``None`` for comments/blank lines."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    if fields[0].startswith("@"):  # @cert-authority / @revoked marker
        fields = fields[1:]
    if len(fields) < 3:
        return None
    return fields[0].split(","), fields[1]


def _pattern_matches(pattern: str, candidates: Sequence[str], any_port_of: Sequence[str]) -> bool:
    if pattern.startswith("|1|"):  # hashed host name: HMAC-SHA1(salt, name)
        try:
            _, _, salt_b64, digest_b64 = pattern.split("|")
            salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        except ValueError:
            return False
        return any(
            hmac.compare_digest(hmac.new(salt, c.encode(), hashlib.sha1).digest(), digest)
            for c in candidates
        )
    if pattern in candidates:
        return True
    return any(pattern.startswith(f"[{a}]:") for a in any_port_of)


def add_known_host(path: str | os.PathLike[str], line: str) -> None:
    """Add a host-key line to a known_hosts file (created with mode 0600 if missing).

    An existing entry with the same host pattern and key type is replaced (the host key was
    regenerated); an identical line is not duplicated.

    Args:
        path: known_hosts file.
        line: a line as made by ``host_key_line``.
    """
    add_known_hosts(path, [line])


def add_known_hosts(path: str | os.PathLike[str], lines: Sequence[str]) -> None:
    """``add_known_host`` for each line in turn, with one lock and one write of the file
    (``clovm up`` adds two lines per server to every host's known_hosts)."""
    p = Path(path)
    news = []
    for line in lines:
        new = _split_entry(line.strip())
        if new is None:
            raise ValueError(f"not a known_hosts entry: {line!r}")
        news.append((new, line.strip()))
    with _locked(p):
        kept = _read_lines(p)
        for new, text in news:
            kept = [old for old in kept
                    if not ((entry := _split_entry(old)) is not None and entry[1] == new[1]
                            and sorted(entry[0]) == sorted(new[0]))]
            kept.append(text)
        _atomic_write(p, "\n".join(kept) + "\n")


def remove_known_hosts(
    path: str | os.PathLike[str], addresses: Iterable[str | tuple[str, int]]
) -> int:
    """Remove every known_hosts entry for the given hosts.

    Args:
        path: known_hosts file (a missing file is left missing).
        addresses: ``"addr"`` removes the address on every port; ``("addr", port)`` only that
            port. Hashed entries (``|1|...``) are matched for ``addr`` and ``[addr]:port``.

    Returns:
        The number of lines removed.
    """
    p = Path(path)
    candidates: list[str] = []
    any_port: list[str] = []
    for a in addresses:
        if isinstance(a, tuple):
            candidates.append(_host_pattern(a[0], int(a[1])))
        else:
            candidates.append(a)
            any_port.append(a)
    with _locked(p):
        if not p.exists():
            return 0
        kept, removed = [], 0
        for old in _read_lines(p):
            entry = _split_entry(old)
            if entry is not None and any(
                _pattern_matches(pat, candidates, any_port) for pat in entry[0]
            ):
                removed += 1
                continue
            kept.append(old)
        if removed:
            _atomic_write(p, "".join(f"{k}\n" for k in kept))
        return removed


def _has_entry(path: Path, address: str, port: int) -> bool:
    pattern = _host_pattern(address, port)
    return any(
        entry is not None and any(_pattern_matches(p, [pattern], []) for p in entry[0])
        for entry in map(_split_entry, _read_lines(path))
    )


# --------------------------------------------------------------------------------------------
# Server


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
        return expected is not None and hmac.compare_digest(
            expected.encode(), password.encode()
        )

    def public_key_auth_supported(self) -> bool:
        return bool(self._owner._user_keys)

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return _public_text(key) in self._owner._user_keys.get(username, set())


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
        self._user_keys = {
            u: {_public_text(k) for k in keys} for u, keys in (authorized_keys or {}).items()
        }
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

    async def __aenter__(self) -> XscfSshServer:
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
            rc, out, err = result  # type: ignore[misc]
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


# --------------------------------------------------------------------------------------------
# Client


def _client_options(
    known_hosts: asyncssh.SSHKnownHosts, client_keys: Sequence[asyncssh.SSHKey] | None
) -> dict[str, Any]:
    """Options that make asyncssh ignore ~/.ssh, ssh-agent, ssh_config, GSS and X.509 stores."""
    return {
        "known_hosts": known_hosts,
        "client_keys": list(client_keys) if client_keys else None,
        "agent_path": None,
        "config": None,
        "encryption_algs": list(CIPHERS),
        "x509_trusted_certs": None,
        "x509_trusted_cert_paths": None,
        "gss_auth": False,
        "gss_kex": False,
        "host_based_auth": False,
        "kbdint_auth": False,
    }


class XscfSshClient:
    """Hermetic SSH client for XSCF commands (one connection per call).

    Args:
        user: XSCF user name.
        password: password (may be ``None`` if ``client_keys`` are given).
        known_hosts_path: OpenSSH known_hosts file holding the XSCF host keys; read on every call
            so that ``add_known_host``/``remove_known_hosts`` take effect at once.
        client_keys: optional private keys for public-key authentication.
    """

    def __init__(
        self,
        user: str,
        password: str | None,
        known_hosts_path: str | os.PathLike[str],
        *,
        client_keys: Sequence[asyncssh.SSHKey] | None = None,
    ) -> None:
        self._user = user
        self._password = password
        self._known_hosts_path = Path(known_hosts_path)
        self._client_keys = list(client_keys) if client_keys else None

    async def exec(
        self, address: str, port: int, command: str | Sequence[str], timeout: float = 10.0
    ) -> CliResult:
        """Run one XSCF command.

        Args:
            address: XSCF LAN address.
            port: XSCF SSH port.
            command: command line, or argv (quoted with ``shlex.join``).
            timeout: seconds for connect, authentication and the command together.

        Returns:
            ``(rc, stdout, stderr)`` of the command.

        Raises:
            XscfHostKeyUnknown: the known_hosts file has no key for ``[address]:port``.
            XscfHostKeyChanged: the XSCF presented a key other than the known one.
            XscfAuthFailed: user name or password (or key) rejected.
            XscfUnreachable: connection refused, timed out or lost.
        """
        line = command if isinstance(command, str) else shlex.join(command)
        known = _read_known(self._known_hosts_path)
        try:
            async with asyncio.timeout(timeout):
                async with await _connect(self._user, self._password, self._client_keys, self._known_hosts_path,
                                          known, address, port, timeout) as conn:
                    result = await conn.run(line, check=False)
        except TimeoutError as exc:
            raise XscfUnreachable(f"XSCF {address}:{port}: no SSH answer within {timeout:g} s") from exc
        except (OSError, asyncssh.Error) as exc:
            raise XscfUnreachable(f"XSCF {address}:{port}: SSH connection failed: {exc}") from exc
        return _result(result)


def _read_known(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


async def _connect(user: str, password: str | None, client_keys: Sequence[asyncssh.SSHKey] | None,
                   known_hosts_path: Path, known_text: str, address: str, port: int,
                   timeout: float) -> asyncssh.SSHClientConnection:
    """Connect and authenticate, the host key checked against ``known_text`` (the content of
    ``known_hosts_path``); failures mapped onto the ``XscfSshError`` classes."""
    where = f"XSCF {address}:{port}"
    try:
        async with asyncio.timeout(timeout):
            return await asyncssh.connect(
                address,
                port,
                username=user,
                password=password,
                connect_timeout=timeout,
                login_timeout=timeout,
                **_client_options(asyncssh.import_known_hosts(known_text), client_keys),
            )
    except asyncssh.HostKeyNotVerifiable as exc:
        if _has_entry(known_hosts_path, address, port):
            raise XscfHostKeyChanged(
                f"{where}: host key does not match the entry for "
                f"{_host_pattern(address, port)} in {known_hosts_path} (the XSCF host key "
                "changed, or another host answers); remove the stale entry and make the first "
                "SSH connection again"
            ) from exc
        raise XscfHostKeyUnknown(
            f"{where}: host key is not in {known_hosts_path}: the first SSH connection "
            "to this XSCF has not been made; connect once interactively "
            f"(ssh -p {port} {user}@{address}) and accept the key, or add "
            "its line to the known_hosts file (clovm.runtime.ssh.add_known_host)"
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise XscfAuthFailed(
            f"{where}: authentication failed for user {user!r} "
            "(wrong user name or password)"
        ) from exc
    except TimeoutError as exc:
        raise XscfUnreachable(f"{where}: no SSH answer within {timeout:g} s") from exc
    except (OSError, asyncssh.Error) as exc:
        raise XscfUnreachable(f"{where}: SSH connection failed: {exc}") from exc


def _result(result: asyncssh.SSHCompletedProcess) -> CliResult:
    rc = result.exit_status
    if rc is None:  # killed by a signal or channel closed without a status
        rc = 255
    return int(rc), _as_text(result.stdout), _as_text(result.stderr)


class XscfSshPool:
    """Like :class:`XscfSshClient`, but keeps one authenticated connection per XSCF address and
    runs each command on a new channel of it (a node's shutdown agents test the same XSCFs over
    and over: the key exchange is most of an exec's cost).

    A kept connection is used only while the known_hosts file has the content it had when the
    connection was made; any change (a key accepted, ``clovm fault forget-xscf-key``) closes it,
    and the next command connects again and so checks the host key again. A connection the XSCF
    dropped (its LAN went down, it restarted) is replaced once, transparently; if that fails the
    command fails as ``XscfSshClient.exec`` would.

    Args: as ``XscfSshClient``.
    """

    def __init__(self, user: str, password: str | None, known_hosts_path: str | os.PathLike[str], *,
                 client_keys: Sequence[asyncssh.SSHKey] | None = None) -> None:
        self._user, self._password = user, password
        self._known_hosts_path = Path(known_hosts_path)
        self._client_keys = list(client_keys) if client_keys else None
        self._conns: dict[tuple[str, int], tuple[asyncssh.SSHClientConnection, str]] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def exec(self, address: str, port: int, command: str | Sequence[str], timeout: float = 10.0) -> CliResult:
        """Run one XSCF command (see ``XscfSshClient.exec``; the same exceptions)."""
        line = command if isinstance(command, str) else shlex.join(command)
        key = (address, port)
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    conn = await self._connection(key, timeout)
                    try:
                        return _result(await conn.run(line, check=False))
                    except (OSError, asyncssh.Error):
                        self._drop(key, conn)
                        if attempt == 2:
                            raise
        except TimeoutError as exc:
            raise XscfUnreachable(f"XSCF {address}:{port}: no SSH answer within {timeout:g} s") from exc
        except (OSError, asyncssh.Error) as exc:
            raise XscfUnreachable(f"XSCF {address}:{port}: SSH connection failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def _connection(self, key: tuple[str, int], timeout: float) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one key exchange per XSCF address at a time
            known = _read_known(self._known_hosts_path)
            held = self._conns.get(key)
            if held is not None:
                conn, known_then = held
                if known_then == known and not conn.is_closed():
                    return conn
                self._drop(key, conn)
            conn = await _connect(self._user, self._password, self._client_keys, self._known_hosts_path, known,
                                  key[0], key[1], timeout)
            self._conns[key] = (conn, known)
            return conn

    def _drop(self, key: tuple[str, int], conn: asyncssh.SSHClientConnection) -> None:
        if self._conns.get(key, (None, ""))[0] is conn:
            del self._conns[key]
        conn.close()

    def close(self) -> None:
        """Close every kept connection."""
        for conn, _ in self._conns.values():
            conn.close()
        self._conns.clear()


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def xscf_exec(
    address: str,
    port: int,
    user: str,
    password: str | None,
    command: str | Sequence[str],
    known_hosts_path: str | os.PathLike[str],
    timeout: float = 10.0,
) -> CliResult:
    """Run one XSCF command over SSH (see ``XscfSshClient.exec``).

    Args:
        address: XSCF LAN address.
        port: XSCF SSH port.
        user: XSCF user name.
        password: password.
        command: command line or argv.
        known_hosts_path: OpenSSH known_hosts file.
        timeout: seconds for the whole exchange.

    Returns:
        ``(rc, stdout, stderr)``.

    Raises:
        XscfHostKeyUnknown, XscfHostKeyChanged, XscfAuthFailed, XscfUnreachable: see
        ``XscfSshClient.exec``.
    """
    return await XscfSshClient(user, password, known_hosts_path).exec(
        address, port, command, timeout
    )
