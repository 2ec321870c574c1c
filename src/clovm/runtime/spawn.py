"""Starting a daemon by forking an interpreter that has already imported clovm's runtime.

``clovm up`` used to exec one fresh ``python -m clovm.runtime.<module>`` per daemon. Each of those
spends most of its start-up importing asyncssh, pysnmp, cryptography and structlog (0.3 to 0.5 s of
CPU), and a 16-guest / 8-server datacenter starts 40 of them on 2 cores. Here the launcher imports
the runtime once (:func:`preload`), then forks: a child starts with every module in memory
(copy-on-write) and only runs its daemon's own start-up. ``ldmd`` forks its guest domains the same
way (it was itself forked from a preloaded launcher).

The child of :func:`fork_daemon` is a daemon as ``subprocess.Popen(..., start_new_session=True,
close_fds=True)`` would make it: a new session, stdin ``/dev/null``, stdout the READY pipe (or the
log), stderr the log, the launcher's working directory replaced, default signal dispositions, no
running event loop. Inherited descriptors are not closed but pointed at ``/dev/null``
(``dup2``): that releases the parent's sockets (an ldmd's listening port must not live on in its
guests) while no descriptor number is freed. A Python object of the parent (a socket, the log file)
that the child later drops then closes a ``/dev/null`` duplicate, never a file the child opened.

The child's ``/proc/PID/cmdline`` is set (``setproctitle``) to the shell-quoted argv it would
have had as its own interpreter, so ``ps`` and the home's process bookkeeping
(``api.datacenter``) see the same ``python -m clovm.runtime.nodeagent --home H --name N`` as before.
``CLOVM_SPAWN=exec`` in the environment restores the exec of one interpreter per daemon.

:class:`Forked` is the part of ``subprocess.Popen``'s interface that the launchers use (``pid``,
``args``, ``stdout``, ``poll``, ``wait``, ``returncode``).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import random
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import IO

import setproctitle

PRELOAD = (
    "clovm.runtime.nodeagent",
    "clovm.runtime.snmp",
    "clovm.runtime.ssh",
    "clovm.runtime.xscfd",
    "clovm.runtime.ldmd",
    "clovm.runtime.supervisor",
    # imported on first use by a guest's SNMP client and by asyncssh's first connection
    # (~0.2 s of CPU per guest, all at the same moment when a datacenter boots)
    "pysnmp.hlapi.v3arch.asyncio",
    "concurrent.futures.thread",
)
SPAWN_ENV = "CLOVM_SPAWN"  # "exec": one fresh interpreter per daemon, as before
_preloaded = False


def forking() -> bool:
    """Whether daemons and guest domains are forked (the default) rather than exec'd."""
    return os.environ.get(SPAWN_ENV, "fork") != "exec"


def preload() -> None:
    """Import every daemon's modules once, then move them out of the collector's sight (a child's
    garbage collections then neither scan nor copy-on-write the shared objects)."""
    global _preloaded
    if _preloaded:
        return
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    _preloaded = True


class Forked:
    """A forked daemon, seen from its parent (the subset of ``subprocess.Popen`` clovm uses)."""

    def __init__(self, pid: int, args: list[str], stdout: IO[bytes] | None) -> None:
        self.pid, self.args, self.stdout = pid, args, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = 255
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                import subprocess

                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


def daemon_args(module: str, home: Path | str, name: str) -> list[str]:
    """The argv the daemon would have had as its own interpreter (also its label in messages)."""
    return [sys.executable, "-m", f"clovm.runtime.{module}", "--home", str(home), "--name", name]


def fork_daemon(
    module: str, home: Path | str, name: str, log: Path, *, ready_pipe: bool, cwd: Path | str | None = None
) -> Forked:
    """Fork ``clovm.runtime.<module>.main(["--home", home, "--name", name])`` as a daemon.

    Args:
        module: ``nodeagent``, ``xscfd`` or ``ldmd``.
        home, name: the daemon's arguments.
        log: its stderr (appended); also its stdout unless ``ready_pipe``.
        ready_pipe: give the child a pipe as stdout; the parent reads it as ``Forked.stdout``.
        cwd: the child's working directory.
    """
    args = daemon_args(module, home, name)
    read_fd, write_fd = os.pipe() if ready_pipe else (-1, -1)
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):  # nothing of the parent's buffers may reach the child
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _child(module, args, log, write_fd, cwd)
    if ready_pipe:
        os.close(write_fd)
        return Forked(pid, args, os.fdopen(read_fd, "rb", buffering=0))
    return Forked(pid, args, None)


def _child(module: str, args: list[str], log: Path, stdout_fd: int, cwd: Path | str | None) -> None:
    rc = 1
    try:
        # what ps, `clovm down` and `clovm status` read in /proc/PID/cmdline (shlex-quoted: a
        # forked child keeps its parent's argv otherwise)
        setproctitle.setproctitle(shlex.join(args))
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        logfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(stdout_fd if stdout_fd >= 0 else logfd, 1)
        os.dup2(logfd, 2)
        for fd in _open_fds():
            if fd > 2:
                try:
                    os.dup2(null, fd)  # release what it was; keep the number taken (module docstring)
                except OSError:
                    pass
        # the standard streams of a fresh interpreter (the parent's may be anything: a test
        # runner's capture, a closed pipe)
        # (they stay open for the life of the child: SIM115 does not apply)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        asyncio.events._set_running_loop(None)  # forked from inside a running loop (ldmd)
        asyncio.set_event_loop_policy(None)
        random.seed()
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = [f"clovm.runtime.{module}", *args[3:]]
        rc = importlib.import_module(f"clovm.runtime.{module}").main(args[3:])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever the daemon raised, the child must _exit
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(rc)


def _open_fds() -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir("/proc/self/fd"))
    except OSError:
        return list(range(3, 256))
