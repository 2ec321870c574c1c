"""The hermetic SSH client of the shutdown agents: ``xscf_exec``, ``XscfSshClient``, ``XscfSshPool``.

They never read ``~/.ssh``, an ssh-agent or ``ssh_config`` (:func:`_client_options`); the
server's host key must be in the given OpenSSH-format known_hosts file (:mod:`.known_hosts`), as
PRIMECLUSTER requires ("the first SSH connection to the XSCF must have been made"). Failures map
onto distinct exceptions: ``XscfHostKeyUnknown``, ``XscfHostKeyChanged``, ``XscfAuthFailed``,
``XscfUnreachable`` (all ``XscfSshError``).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh

from .common import CIPHERS, CliResult
from .known_hosts import has_entry, host_pattern

__all__ = [
    "XscfAuthFailed",
    "XscfHostKeyChanged",
    "XscfHostKeyError",
    "XscfHostKeyUnknown",
    "XscfSshClient",
    "XscfSshError",
    "XscfSshPool",
    "XscfUnreachable",
    "xscf_exec",
]


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

    async def exec(self, address: str, port: int, command: str | Sequence[str], timeout: float = 10.0) -> CliResult:
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
                async with await _connect(
                    self._user, self._password, self._client_keys, self._known_hosts_path, known, address, port, timeout
                ) as conn:
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


async def _connect(
    user: str,
    password: str | None,
    client_keys: Sequence[asyncssh.SSHKey] | None,
    known_hosts_path: Path,
    known_text: str,
    address: str,
    port: int,
    timeout: float,
) -> asyncssh.SSHClientConnection:
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
        if has_entry(known_hosts_path, address, port):
            raise XscfHostKeyChanged(
                f"{where}: host key does not match the entry for "
                f"{host_pattern(address, port)} in {known_hosts_path} (the XSCF host key "
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
        raise XscfAuthFailed(f"{where}: authentication failed for user {user!r} (wrong user name or password)") from exc
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

    def __init__(
        self,
        user: str,
        password: str | None,
        known_hosts_path: str | os.PathLike[str],
        *,
        client_keys: Sequence[asyncssh.SSHKey] | None = None,
    ) -> None:
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
            conn = await _connect(
                self._user, self._password, self._client_keys, self._known_hosts_path, known, key[0], key[1], timeout
            )
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
    return await XscfSshClient(user, password, known_hosts_path).exec(address, port, command, timeout)
