"""The journal files of a migration run on a host, and the lock that lets one run at a time touch them.

Shared by both drivers of ``clovm migrate`` (:mod:`clovm.runtime.migrate_env` on the SPARC stack,
:mod:`clovm.pacemaker.migrate_env` on the Pacemaker one) and by ``clovmmigrate``; each gives the
directory its host keeps them in (``Home.migrate_dir``, ``hosts/HOST/clovm/``) and what differs
between them as arguments. In that directory, for each domain:

``DOMAIN.lock``
    :func:`locked` holds its ``flock`` for the whole run (another run of the same domain is
    refused with :data:`~clovm.core.codes.LOCKED`); a run that wrote no journal removes it again,
    and the directories made for it.
``DOMAIN.migrate.json`` / ``DOMAIN.migrate-last.json``
    The journal of a ``clovm migrate`` in progress (or stopped part way) and of the last finished
    one (:func:`active_path`, :func:`last_path`), written atomically with mode 0600 by
    :class:`JournalWriter` (with the ``CLOVM_MIGRATE_KILL_AT`` fault-injection hook), listed by
    :func:`recorded`, read by :func:`load` and :func:`load_first`.

:class:`Refused` is a run that cannot start; :func:`refuse` prints and returns it as a
:class:`~clovm.core.migration.Finished`, as :func:`run_interruptible` does for a ``clovm migrate``
stopped by ^C (its journal lets ``--resume`` continue).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ..core import codes
from ..core import migration as mig
from ..core import safemigrate as sm
from ..fsutil import atomic_write, read_text_or

__all__ = [
    "ACTIVE_SUFFIX",
    "KILL_AT_ENV",
    "LAST_SUFFIX",
    "JournalWriter",
    "Refused",
    "active_path",
    "last_path",
    "load",
    "load_first",
    "locked",
    "recorded",
    "refuse",
    "run_interruptible",
    "write",
]

KILL_AT_ENV = "CLOVM_MIGRATE_KILL_AT"  # fault injection: see JournalWriter
ACTIVE_SUFFIX = ".migrate.json"
LAST_SUFFIX = ".migrate-last.json"


def active_path(directory: Path, domain: str) -> Path:
    """The journal of a ``clovm migrate`` of ``domain`` in progress (or stopped part way)."""
    return directory / f"{domain}{ACTIVE_SUFFIX}"


def last_path(directory: Path, domain: str) -> Path:
    """The journal of the last finished ``clovm migrate`` of ``domain`` (for --status and timelines)."""
    return directory / f"{domain}{LAST_SUFFIX}"


def load(path: Path) -> dict[str, Any] | None:
    """The journal at ``path``, None if there is none; ValueError if it is no JSON object."""
    text = read_text_or(path, None)
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - callers catch ValueError, as for bad JSON
    return value


def write(path: Path, journal: dict[str, Any] | None) -> None:
    """Write ``journal`` at ``path`` atomically (mode 0600), or remove the file when it is None."""
    if journal is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, json.dumps(journal, indent=1, sort_keys=True) + "\n", mode=0o600)


def load_first(directory: Path, domain: str) -> tuple[Path, dict[str, Any]] | None:
    """(path, journal) of ``domain``'s run in progress, else of its last finished one, else None
    (ValueError if the one found does not parse)."""
    for path in (active_path(directory, domain), last_path(directory, domain)):
        j = load(path)
        if j is not None:
            return path, j
    return None


def recorded(directory: Path, *, finished: bool = False) -> list[str]:
    """Domains with a journal in progress in ``directory`` (with ``finished``: or a finished one)."""
    suffixes = (ACTIVE_SUFFIX, LAST_SUFFIX) if finished else (ACTIVE_SUFFIX,)
    names = [p.name for p in directory.iterdir()] if directory.is_dir() else []
    return sorted({n[: -len(s)] for n in names for s in suffixes if n.endswith(s)})


# ---- refusals -------------------------------------------------------------------------------------------
class Refused(Exception):
    """The run cannot start; ``str()`` is the message (without the program name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def refuse(err: TextIO, prog: str, code: str, text: str) -> mig.Finished:
    """Print ``PROG: TEXT`` to ``err`` (flushed) and return it as a refusal."""
    line = f"{prog}: {text}"
    err.write(line + "\n")
    err.flush()
    return mig.Finished(mig.RC_REFUSED, code, line)


def run_interruptible(
    main: Coroutine[Any, Any, tuple[mig.Finished, dict[str, Any] | None]], err: TextIO | None, domain: str
) -> tuple[mig.Finished, dict[str, Any] | None]:
    """``asyncio.run(main)`` (a ``clovm migrate`` of ``domain``): its result, or on ^C how it ended,
    printed (flushed) to ``err`` (default: stderr) and with no journal."""
    err_stream = err if err is not None else sys.stderr
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        text = f"clovm migrate: interrupted; clovm migrate --resume {domain} continues from the journal"
        err_stream.write(text + "\n")
        err_stream.flush()
        return mig.Finished(mig.RC_FAILED, codes.INTERRUPTED, text), None


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".")


# ---- the lock -------------------------------------------------------------------------------------------
def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def locked(
    directory: Path,
    domain: str,
    path: Path,
    *,
    host: str,
    holders: str,
    root: Path | None = None,
    keep: Iterable[Path] = (),
) -> Iterator[dict[str, Any] | None]:
    """Hold ``DOMAIN.lock`` in ``directory`` (flock: one run per domain) and yield the journal at
    ``path`` (None if there is none); :class:`Refused` if locked (the message says ``another
    HOLDERS for DOMAIN is running on HOST``) or if the journal is unreadable.

    A run that left the journal at ``path`` as it found it, while none of ``keep`` exists, leaves
    no lock file behind, nor the directories made for it: those inside ``root`` (default: only
    ``directory`` itself).
    """
    root = directory if root is None else root
    new_dirs = [p for p in (directory, *directory.parents) if not p.exists() and p.is_relative_to(root)]
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / f"{domain}.lock"
    made = not lock.exists()
    journal_before = _stamp(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            made = False  # (another run's lock)
            raise Refused(
                codes.LOCKED,
                f"another {holders} for {domain} is running on {host}; wait for it to finish. Nothing was changed.",
            ) from None
        try:
            journal = load(path)
        except ValueError as e:
            raise Refused(
                codes.BAD_JOURNAL,
                f"the journal {path} is unreadable ({_one_line(str(e))}); move it "
                f"away and run the command again. Nothing was changed.",
            ) from None
        yield journal
    finally:
        if made and _stamp(path) == journal_before and not any(p.exists() for p in keep):
            lock.unlink(missing_ok=True)
            for p in new_dirs:  # (innermost first)
                with contextlib.suppress(OSError):
                    p.rmdir()
        os.close(fd)  # releases the flock


# ---- the writer -----------------------------------------------------------------------------------------
class JournalWriter:
    """Writes the Persist effects of one ``clovm migrate`` of ``domain``: its own journal as
    ``DOMAIN.migrate.json`` in ``directory`` while in progress, as ``DOMAIN.migrate-last.json``
    once at step ``done`` (the first then removed); :attr:`journal` is the last one written.

    ``CLOVM_MIGRATE_KILL_AT=POINT`` makes the process SIGKILL itself right after the first journal
    write at POINT, one of :meth:`points` of that journal (here: its step name; each stack's
    subclass adds its own). A journal of another key (one the run embeds) goes to :meth:`other`,
    and the points of each journal written to :meth:`reached`.
    """

    def __init__(self, directory: Path, domain: str) -> None:
        self.directory, self.domain = directory, domain
        self.journal: dict[str, Any] | None = None
        self.kill_at = os.environ.get(KILL_AT_ENV, "")

    @staticmethod
    def points(j: dict[str, Any]) -> set[str]:
        return {str(j.get("step"))}

    def other(self, e: mig.Persist) -> None:
        """A Persist of an embedded journal: not written (unless a subclass does)."""

    def reached(self, points: set[str]) -> None:
        """The run's journal was written at ``points`` (and the process was not killed there)."""

    def __call__(self, e: mig.Persist) -> None:
        if e.domain != sm.journal_key(self.domain):
            self.other(e)
            return
        self.journal = e.journal
        active = active_path(self.directory, self.domain)
        if e.journal is not None and e.journal.get("step") == "done":
            write(last_path(self.directory, self.domain), e.journal)
            active.unlink(missing_ok=True)
        else:
            write(active, e.journal)
        if e.journal is not None:
            points = self.points(e.journal)
            if self.kill_at and self.kill_at in points:
                os.kill(os.getpid(), signal.SIGKILL)
            self.reached(points)
