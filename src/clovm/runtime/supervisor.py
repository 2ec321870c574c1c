"""supervisor: SMF's restarter for one datacenter's daemons, as a real daemon.

``python -m clovm.runtime.supervisor --home H --name datacenter`` watches every xscfd, ldmd and
control-domain node agent of the home (``clovm up`` starts it once they are all READY) and starts
again the ones that die, as svc.startd restarts the services of a Solaris control domain. The
policy — the restart delay, the limit against flapping — is :class:`clovm.core.supervision.
Supervision`; this module only translates:

* a daemon's process is watched with a pidfd (the daemons ``clovm up`` started are not its
  children: their exit status is unknown; the ones it restarted are, and are reaped here);
* :class:`~clovm.core.supervision.StartDaemon` forks the daemon from this preloaded interpreter
  (:func:`clovm.runtime.spawn.fork_daemon`) and waits for its ``READY``;
* a control domain's node agent is a cluster node: before it is started again, its cluster must
  let the old incarnation go. CF refuses the join of a restarted node that a peer still holds UP
  or LEFTCLUSTER, and the control-domain cluster has no shutdown facility to take a LEFTCLUSTER
  node DOWN; the supervisor *knows* the old process is dead, so it waits until no peer holds the
  node UP (its CF timeout) and then declares it DOWN on each peer that holds it LEFTCLUSTER
  (``cftool -k``, what the operator would do) — then the node joins with a new incarnation.
  Guest domains are never restarted here: a guest's process is the domain.

Every decision is logged (``log/supervisor-NAME.log``) and the state of every daemon is written
to ``Home.supervisor_file`` (``{"pid", "daemons": {key: {"state", "pid", "restarts", "last_exit",
"since"}}}``) for ``clovm status``. SIGTERM ends supervision; the daemons keep running (``clovm
down`` stops the supervisor first, then them).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import structlog

from .. import settings
from ..core.base import Effect, Log, Ticked
from ..core.supervision import DaemonExited, DaemonReady, StartDaemon, Supervision
from ..fsutil import atomic_write
from . import rpc, spawn
from .home import Home
from .proc import Ready, daemon_key, daemon_main

log = structlog.get_logger()

SUPERVISED = ("xscfd", "ldmd", "nodeagent")


def supervised_keys(home: Home) -> list[str]:
    """Every daemon the supervisor of ``home`` watches: each server's xscfd, each control domain's
    ldmd and node agent."""
    t = home.topology()
    return (
        [daemon_key("xscfd", s.name) for s in t.servers]
        + [daemon_key("ldmd", c.name) for c in t.control_domains]
        + [daemon_key("nodeagent", c.name) for c in t.control_domains]
    )


def _split(key: str) -> tuple[str, str]:
    module, _, name = key.partition("-")
    return module, name


def _how(status: int | None) -> str:
    if status is None:
        return "exited"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


class SupervisorDaemon:
    def __init__(self, home: Home, name: str) -> None:
        self.home, self.name = home, name
        self.keys = supervised_keys(home)
        self.policy = Supervision(
            self.keys,
            delay=settings.SUPERVISOR_RESTART_DELAY,
            limit=settings.SUPERVISOR_RESTART_LIMIT,
            window=settings.SUPERVISOR_RESTART_WINDOW,
        )
        self._loop = asyncio.get_running_loop()
        self._pids: dict[str, int | None] = dict.fromkeys(self.keys)
        self._fds: dict[str, int] = {}
        self._children: dict[int, spawn.Forked] = {}
        self._last_exit: dict[str, str] = {}
        self._since: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if spawn.forking():
            spawn.preload()
        gone = []
        for key in self.keys:
            pid = self._pid_from_file(key)
            if pid is None or not self._watch(key, pid):
                gone.append(key)
        self._write_state()
        for key in gone:
            self.feed(DaemonExited(key, "not running when the supervisor started"))

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for key in list(self._fds):
            self._unwatch(key)

    def _pid_from_file(self, key: str) -> int | None:
        try:
            return int(self.home.pid_file(key).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # ---- processes ----------------------------------------------------------------------------
    def _watch(self, key: str, pid: int) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            return False
        self._unwatch(key)
        self._pids[key], self._fds[key] = pid, fd
        self._since[key] = time.time()
        self._loop.add_reader(fd, self._exited, key, pid)
        return True

    def _unwatch(self, key: str) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)

    def _exited(self, key: str, pid: int) -> None:
        self._unwatch(key)
        status: int | None = None
        child = self._children.pop(pid, None)
        if child is not None:
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got != pid:
                    status = None
            except ChildProcessError:
                status = None
        how = _how(status)
        self._last_exit[key] = how
        self._pids[key] = None
        log.warning("daemon exited", daemon=key, pid=pid, how=how)
        self.feed(DaemonExited(key, f"pid {pid} {how}"))

    # ---- the policy ---------------------------------------------------------------------------
    def feed(self, event: Any) -> None:
        if self._closed:
            return
        effects = self.policy.handle(time.monotonic(), event)
        self._apply(effects)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.policy.next_deadline()
        if due is not None:
            self._timer = self._loop.call_later(max(0.0, due - time.monotonic()), self.feed, Ticked())
        self._write_state()

    def _apply(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Log):
                log.info("decision", text=e.text)
            elif isinstance(e, StartDaemon):
                task = self._loop.create_task(self._start(e.key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _start(self, key: str) -> None:
        module, name = _split(key)
        try:
            if module == "nodeagent":
                await self._let_go(name)
            f = spawn.fork_daemon(
                module, self.home.root, name, self.home.log_file(key), ready_pipe=True, cwd=self.home.root
            )
            self._children[f.pid] = f
            ready = await self._await_ready(f, settings.READY_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a failed start is one more exit for the policy
            log.exception("start failed", daemon=key)
            self._last_exit[key] = f"could not be started: {e}"
            self.feed(DaemonExited(key, f"could not be started: {e}"))
            return
        if ready and self._watch(key, f.pid):
            self.feed(DaemonReady(key, f.pid))
            return
        f.poll()
        self._children.pop(f.pid, None)
        how = "did not get ready" if f.returncode is None else f"exited with status {f.returncode} before it was ready"
        if f.returncode is None:
            try:
                os.kill(f.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._last_exit[key] = how
        self.feed(DaemonExited(key, how))

    async def _let_go(self, host: str) -> None:
        """Before a control domain's node agent starts again: wait until no peer of its cluster
        holds it UP, then declare it DOWN where it is LEFTCLUSTER (see the module docstring)."""
        t = self.home.topology()
        me = t.node_spec(host)
        peers = [h.name for h in t.hosts() if h.cf_name in me.peers]
        deadline = time.monotonic() + settings.SUPERVISOR_REJOIN_TIMEOUT
        while True:
            held: dict[str, str] = {}
            for p in peers:
                try:
                    rows = await rpc.call_unix(self.home.node_socket(p), "cftool_n", timeout=2.0)
                except rpc.RpcError:
                    continue  # a peer that does not answer holds nothing against the join
                held[p] = next((str(r[2]) for r in rows if r and r[0] == me.cf), "DOWN")
            if not any(v == "UP" for v in held.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for p, state in sorted(held.items()):
            if state == "LEFTCLUSTER":
                try:
                    await rpc.call_unix(self.home.node_socket(p), "cftool_k", timeout=2.0, node=me.cf)
                    log.info(
                        "decision",
                        text=f"{me.cf}: declared DOWN on {p} (its old process is dead) so that "
                        f"the restarted node may join",
                    )
                except rpc.RpcError as e:
                    log.warning("cftool -k failed", peer=p, node=me.cf, error=e.message)

    async def _await_ready(self, f: spawn.Forked, timeout: float) -> bool:
        """Read the READY line of a forked daemon from its pipe; False on exit or timeout."""
        assert f.stdout is not None
        fd = f.stdout.fileno()
        done: asyncio.Future[bool] = self._loop.create_future()
        buf = bytearray()

        def readable() -> None:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            buf.extend(chunk)
            if not done.done() and (not chunk or b"READY" in buf):
                done.set_result(bool(chunk))

        self._loop.add_reader(fd, readable)
        try:
            return await asyncio.wait_for(done, timeout)
        except TimeoutError:
            return False
        finally:
            self._loop.remove_reader(fd)
            f.stdout.close()

    # ---- the state file -----------------------------------------------------------------------
    def _write_state(self) -> None:
        daemons = {}
        for key in self.keys:
            daemons[key] = {
                "state": str(self.policy.state(key)),
                "pid": self._pids.get(key),
                "restarts": self.policy.restarts(key),
                "last_exit": self._last_exit.get(key),
                "since": self._since.get(key),
            }
        atomic_write(self.home.supervisor_file, json.dumps({"pid": os.getpid(), "daemons": daemons}, indent=1) + "\n")


async def run(home: Home, name: str, ready: Ready, stop: asyncio.Event) -> None:
    daemon = SupervisorDaemon(home, name)
    try:
        daemon.start()
        ready()
        await stop.wait()
    finally:
        daemon.close()
        home.supervisor_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    return daemon_main("supervisor", run, argv)


if __name__ == "__main__":
    sys.exit(main())
