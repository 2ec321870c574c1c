"""The clients' trust store: OpenSSH known_hosts files (line format, edits, lookup).

``host_key_line`` formats a line; ``add_known_host`` / ``add_known_hosts`` / ``remove_known_hosts``
edit a file under an advisory lock (``FILE.lock``) and replace it atomically
(:func:`clovm.fsutil.atomic_write`, mode 0600); ``has_entry`` tells whether a file has a key for
an address and port (which turns a failed host-key check into "changed" rather than "unknown").
Hashed host names (``|1|salt|hmac``) are understood.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import asyncssh

from ...fsutil import atomic_write

__all__ = [
    "add_known_host",
    "add_known_hosts",
    "has_entry",
    "host_key_line",
    "host_pattern",
    "public_key_text",
    "remove_known_hosts",
]

FILE_MODE = 0o600
"""Mode of every known_hosts file written here (and of its lock file)."""


def public_key_text(public_key: asyncssh.SSHKey | str | bytes) -> str:
    """``TYPE BASE64`` of an ``SSHKey`` (private or public) or an OpenSSH public-key string,
    without the comment.

    Raises:
        ValueError: the string is not an OpenSSH public key.
    """
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


def host_pattern(address: str, port: int) -> str:
    """The known_hosts host pattern of ``address:port`` (bare address for port 22)."""
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
    return f"{host_pattern(address, port)} {public_key_text(public_key)}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
        return any(hmac.compare_digest(hmac.new(salt, c.encode(), hashlib.sha1).digest(), digest) for c in candidates)
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
            kept = [
                old
                for old in kept
                if not (
                    (entry := _split_entry(old)) is not None
                    and entry[1] == new[1]
                    and sorted(entry[0]) == sorted(new[0])
                )
            ]
            kept.append(text)
        atomic_write(p, "\n".join(kept) + "\n", mode=FILE_MODE)


def remove_known_hosts(path: str | os.PathLike[str], addresses: Iterable[str | tuple[str, int]]) -> int:
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
            candidates.append(host_pattern(a[0], int(a[1])))
        else:
            candidates.append(a)
            any_port.append(a)
    with _locked(p):
        if not p.exists():
            return 0
        kept, removed = [], 0
        for old in _read_lines(p):
            entry = _split_entry(old)
            if entry is not None and any(_pattern_matches(pat, candidates, any_port) for pat in entry[0]):
                removed += 1
                continue
            kept.append(old)
        if removed:
            atomic_write(p, "".join(f"{k}\n" for k in kept), mode=FILE_MODE)
        return removed


def has_entry(path: str | os.PathLike[str], address: str, port: int) -> bool:
    """Whether the known_hosts file ``path`` has a line for ``address:port`` (any key type;
    hashed names included; a missing file has none). Read without the lock: the file is only
    ever replaced whole, so a reader sees the old or the new one."""
    pattern = host_pattern(address, port)
    return any(
        entry is not None and any(_pattern_matches(p, [pattern], []) for p in entry[0])
        for entry in map(_split_entry, _read_lines(Path(path)))
    )
