"""ldmd's domain processes: a guest domain is a process, and its placement file says who owns it.

:class:`DomainProcesses` is mixed into :class:`~clovm.runtime.ldmd.LdmdDaemon`. A guest domain
runs as ``python -m clovm.runtime.nodeagent --home H --name DOMAIN`` (forked, or
:func:`domain_command` — ``CLOVM_DOMAIN_CMD`` overrides it), in its own session, its output
appended to ``Home.log_file("nodeagent-DOMAIN")``; its placement file ``{"pid", "host",
"server"}`` names the control domain that owns it. Suspend/resume are SIGSTOP/SIGCONT, a kill is
SIGKILL, and the process's exit (watched with a pidfd) is fed back as
:class:`~clovm.core.ldm.DomainProcessExited`. Exactly one ldmd *owns* a domain's pid (feeds its
exit); an ldmd that released a migrated-out process it spawned keeps only reaping it (so it never
lingers as a zombie), without feeding anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.base import Event
from ..core.ldm import DomainProcessExited
from ..fsutil import atomic_write
from ..topology import ControlDomain
from . import spawn
from .home import Home
from .proc import daemon_key

DOMAIN_CMD_ENV = "CLOVM_DOMAIN_CMD"


def domain_command(home: Home, name: str) -> list[str]:
    """The argv of guest domain ``name`` (``CLOVM_DOMAIN_CMD`` overrides it)."""
    env = os.environ.get(DOMAIN_CMD_ENV)
    if not env:
        return [sys.executable, "-m", "clovm.runtime.nodeagent", "--home", str(home.root), "--name", name]
    argv = json.loads(env) if env.lstrip().startswith("[") else shlex.split(env)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"{DOMAIN_CMD_ENV} must be a non-empty list of strings")
    return [a.replace("{home}", str(home.root)).replace("{name}", name) for a in argv]


def _alive_session_leader(pid: int) -> bool:
    """True if ``pid`` runs (not a zombie) and leads its own session, as a domain process does."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z" and os.getsid(pid) == pid
    except (OSError, IndexError):
        return False


@dataclass(slots=True)
class _Proc:
    """A watched domain process. ``popen`` is set when it is our child (we must reap it);
    ``owned`` is False once released to another ldmd (then we only reap it)."""

    name: str
    pid: int
    pidfd: int
    popen: subprocess.Popen[bytes] | spawn.Forked | None
    owned: bool = True


class DomainProcesses:
    """The domain-process half of :class:`~clovm.runtime.ldmd.LdmdDaemon` (which provides the
    attributes and the methods declared here)."""

    home: Home
    name: str
    cd: ControlDomain
    log: Any
    _loop: asyncio.AbstractEventLoop
    _procs: dict[str, _Proc]
    _reaping: dict[int, _Proc]

    if TYPE_CHECKING:

        def feed(self, event: Event) -> None: ...
        def _feed_soon(self, event: Event) -> None: ...

    def _read_placement(self, name: str) -> dict[str, Any] | None:
        try:
            value = json.loads(self.home.placement_file(name).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _write_placement(self, name: str, pid: int) -> None:
        atomic_write(
            self.home.placement_file(name), json.dumps({"pid": pid, "host": self.name, "server": self.cd.server}) + "\n"
        )

    def _is_domain_process(self, pid: int, name: str) -> bool:
        """``pid`` runs guest domain ``name`` of this home (not a recycled pid)."""
        if not _alive_session_leader(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        return name in argv.split() and str(self.home.root) in argv

    def _spawn(self, name: str) -> None:
        old = self._procs.get(name)
        if old is not None:  # must not happen; never let a stale exit crash the new process
            self.log.warning("domain_process_replaced", domain=name, pid=old.pid)
            self._disown(old)
            self._kill_pid(old.pid, signal.SIGKILL)
        logf = self.home.log_file(daemon_key("nodeagent", name))
        logf.parent.mkdir(parents=True, exist_ok=True)
        popen: subprocess.Popen[bytes] | spawn.Forked
        if spawn.forking() and not os.environ.get(DOMAIN_CMD_ENV):
            popen = spawn.fork_daemon("nodeagent", self.home.root, name, logf, ready_pipe=False)
        else:
            with open(logf, "ab") as out:
                popen = subprocess.Popen(
                    domain_command(self.home, name),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    close_fds=True,
                )
        self._write_placement(name, popen.pid)
        self.log.info("domain_process_started", domain=name, pid=popen.pid)
        self._watch(name, popen.pid, popen)

    def _watch(self, name: str, pid: int, popen: subprocess.Popen[bytes] | spawn.Forked | None) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.log.warning("domain_process_gone", domain=name, pid=pid)
            if popen is not None:
                popen.poll()
            self._feed_soon(DomainProcessExited(name))
            return
        p = _Proc(name, pid, pidfd, popen)
        self._procs[name] = p
        self._loop.add_reader(pidfd, self._on_exit, p)

    def _unwatch(self, p: _Proc) -> None:
        if p.pidfd >= 0:
            self._loop.remove_reader(p.pidfd)
            os.close(p.pidfd)
            p.pidfd = -1

    def _disown(self, p: _Proc) -> None:
        """Stop owning ``p``: keep reaping it if it is our child, else forget it."""
        if self._procs.get(p.name) is p:
            del self._procs[p.name]
        p.owned = False
        if p.popen is not None:
            self._reaping[p.pid] = p
        else:
            self._unwatch(p)

    def _on_exit(self, p: _Proc) -> None:
        self._unwatch(p)
        if p.popen is not None:
            p.popen.poll()  # waitpid(pid, WNOHANG): reap our child
        self._reaping.pop(p.pid, None)
        if p.owned and self._procs.get(p.name) is p:
            del self._procs[p.name]
            self.log.info(
                "domain_process_exited", domain=p.name, pid=p.pid, rc=None if p.popen is None else p.popen.returncode
            )
            self.feed(DomainProcessExited(p.name))

    def _kill_pid(self, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def _signal(self, name: str, sig: signal.Signals) -> None:
        p = self._procs.get(name)
        if p is None:
            self.log.warning("no_domain_process", domain=name, signal=sig.name)
            return
        self.log.info("domain_process_signal", domain=name, pid=p.pid, signal=sig.name)
        self._kill_pid(p.pid, sig)

    def _adopt(self, name: str, from_host: str) -> None:
        placed = self._read_placement(name)
        pid = placed.get("pid") if placed else None
        if not isinstance(pid, int):
            self.log.error("adopt_failed", domain=name, from_host=from_host, why="no placement file")
            self._feed_soon(DomainProcessExited(name))
            return
        self._write_placement(name, pid)
        self.log.info("domain_process_adopted", domain=name, pid=pid, from_host=from_host)
        back = self._reaping.pop(pid, None)  # migrated back to the ldmd that spawned it
        if back is not None and back.pidfd >= 0:
            back.owned = True
            back.name = name
            self._procs[name] = back
        else:
            self._watch(name, pid, None)

    def _release(self, name: str) -> None:
        p = self._procs.get(name)
        if p is not None:
            self.log.info("domain_process_released", domain=name, pid=p.pid)
            self._disown(p)
