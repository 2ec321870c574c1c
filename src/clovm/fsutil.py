"""Crash-safe file helpers for the emulated hosts' file trees.

* :func:`atomic_write` replaces a file so that a reader (or a crash) sees either the old or the
  new contents, never a torn mix: write a temporary file in the same directory, fsync it,
  ``os.replace`` it over the target, fsync the directory; :func:`atomic_write_many` does
  several files with one directory fsync.
* :func:`append_line` appends one line to a log with a single ``write`` (no fsync: logs).
* :func:`read_text_or` reads a text file, or returns a default when it does not exist.
* :class:`WatchedJson` is a small JSON file re-read only when it changes.

Text is always UTF-8.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

StrPath = str | os.PathLike[str]
T = TypeVar("T")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: StrPath, data: str | bytes, mode: int = 0o644) -> None:
    """Atomically replace ``path`` with ``data`` and give it exactly ``mode`` (umask ignored).

    Parent directories are created as needed. The temporary file lives in the target's
    directory (so ``os.replace`` is a rename within one file system) and is removed on failure.
    """
    atomic_write_many({path: data}, mode)


def atomic_write_many(files: Mapping[StrPath, str | bytes], mode: int = 0o644) -> None:
    """:func:`atomic_write` for several files, one after the other, with one fsync per directory.

    Each file is replaced atomically on its own (a crash may leave the first new and the second
    old, as with two calls); the directories are synced once after the last rename, so a
    file's rename is durable when this returns.
    """
    parents: dict[Path, None] = {}
    for path, data in files.items():
        target = Path(path)
        parent = target.parent
        parent.mkdir(parents=True, exist_ok=True)
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            try:
                os.fchmod(fd, mode)
                view = memoryview(payload)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, target)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        parents[parent] = None
    for parent in parents:
        _fsync_dir(parent)


def append_line(path: StrPath, line: str) -> None:
    """Append ``line`` (a newline is added unless it ends with one) to ``path``.

    The file (mode 0644 before umask) and its parent directories are created if missing. The
    line is written with one ``write`` on an ``O_APPEND`` descriptor, so concurrent appenders
    do not interleave within a line, and a line written survives its writer being killed (it is
    in the kernel's page cache). It is not fsynced, as syslogd does not sync its log files by
    default: these are logs (messages, switchlog, rcsd.log), not state the cluster relies on,
    and 16 node agents fsyncing each log line while they start together stalled their event
    loops long enough to miss CF heartbeats. State goes through :func:`atomic_write`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = (line if line.endswith("\n") else line + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)


def read_text_or(path: StrPath, default: T) -> str | T:
    """Return the UTF-8 text of ``path``, or ``default`` if the file does not exist."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default


class WatchedJson:
    """A small JSON file re-read only when its mtime changes (None while it does not exist, or
    while it does not parse: half-written by hand).

    Its mtime is looked at most every ``interval`` real seconds: a node agent asks on every
    heartbeat it sends or receives (the partition file, its placement, the clock offsets), which
    with 15 peers was ~300 stat calls a second per node, most of its CPU in a 16-guest datacenter.
    """

    def __init__(self, path: StrPath, interval: float = 0.05):
        self.path = Path(path)
        self._name = str(path)
        self._interval = interval
        self._mtime: int | None = None
        self._value: Any = None
        self._next_look = -1.0

    def get(self) -> Any:
        now = time.monotonic()
        if now < self._next_look:
            return self._value
        self._next_look = now + self._interval
        try:
            m = os.stat(self._name).st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._value = None, None
            return None
        if m != self._mtime:
            try:
                self._value = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._value = None
            self._mtime = m
        return self._value
