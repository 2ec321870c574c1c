"""Launching a datacenter's daemons: spawn each as soon as what it needs exists, await READY.

Every XSCF (``xscfd``), ldmd and control-domain cluster node (``nodeagent``) is a background
process started here in its own session (forked from a preloaded interpreter where
:mod:`clovm.runtime.spawn` can, else a fresh ``python -m``); guest cluster nodes are domain
processes started by their ldmd. :func:`claim` and :func:`write_lock` record in ``run/lock`` who
is starting the home and what it started; :func:`start_supervisor` then starts the home's
supervisor, which restarts any of those daemons that dies.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from typing import Any

from .. import settings, topology
from ..core import codes
from ..fsutil import atomic_write
from ..runtime import rpc, spawn
from ..runtime.home import Home
from ..runtime.proc import daemon_key
from .errors import ClovmError
from .processes import home_pids, log_tail, starting_pid
from .provision import provision, provision_base, provision_xscf_keys


def _spawn(home: Home, module: str, name: str) -> subprocess.Popen[bytes] | spawn.Forked:
    log = home.log_file(daemon_key(module, name))
    if spawn.forking():
        spawn.preload()
        return spawn.fork_daemon(module, home.root, name, log, ready_pipe=True, cwd=home.root)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", f"clovm.runtime.{module}", "--home", str(home.root), "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            cwd=str(home.root),
        )


class _ReadyWaiter:
    """The ``READY`` lines of spawned daemons, read from their stdout pipes with one selector.

    Each daemon has :data:`settings.READY_TIMEOUT` seconds from its spawn; an exit or a timeout is
    DAEMON_FAILED. A pipe is closed once its READY is seen (the daemons print nothing after it).
    """

    def __init__(self, home: Home) -> None:
        self.home = home
        self.sel = selectors.DefaultSelector()
        self.procs: dict[str, subprocess.Popen[bytes] | spawn.Forked] = {}  # daemon key -> process, not ready yet
        self.buf: dict[str, bytes] = {}
        self.deadline: dict[str, float] = {}
        self.all: list[subprocess.Popen[bytes] | spawn.Forked] = []

    def add(self, p: subprocess.Popen[bytes] | spawn.Forked) -> str:
        assert p.stdout is not None
        key = _key(p)
        self.procs[key], self.buf[key] = p, b""
        self.deadline[key] = time.monotonic() + settings.READY_TIMEOUT
        self.all.append(p)
        self.sel.register(p.stdout, selectors.EVENT_READ, key)
        return key

    def pending(self) -> bool:
        return bool(self.procs)

    def wait(self) -> list[str]:
        """Block until at least one daemon is ready; returns the keys of those that became ready."""
        done: list[str] = []
        while not done:
            key = min(self.deadline, key=self.deadline.__getitem__)
            left = self.deadline[key] - time.monotonic()
            if left <= 0:
                raise ClovmError(
                    codes.DAEMON_FAILED,
                    f"{_label(self.procs[key])} not ready within {settings.READY_TIMEOUT:g} s; "
                    f"see {self.home.log_file(key)}",
                    log_tail(self.home, key),
                )
            for sk, _ in self.sel.select(timeout=min(left, 0.5)):
                key = sk.data
                p = self.procs[key]
                chunk = os.read(sk.fd, 4096)
                if not chunk:
                    rc = p.wait(timeout=5)
                    raise ClovmError(
                        codes.DAEMON_FAILED,
                        f"{_label(p)} exited with rc {rc} before it was ready; see {self.home.log_file(key)}",
                        log_tail(self.home, key),
                    )
                self.buf[key] += chunk
                if any(line.strip().startswith(b"READY") for line in self.buf[key].split(b"\n")[:-1]):
                    self.sel.unregister(sk.fileobj)
                    assert p.stdout is not None
                    p.stdout.close()
                    for d in (self.procs, self.buf, self.deadline):
                        del d[key]
                    done.append(key)
        return done

    def close(self) -> None:
        self.sel.close()
        for p in self.all:
            if p.stdout is not None:
                p.stdout.close()


def launch(home: Home, t: topology.Topology, time_scale: float, started: dict[str, int]) -> list[str]:
    """Provision the home and start every daemon, each as soon as what it needs exists, with
    every pending READY awaited at once. Records each spawned pid in ``started`` (``up`` stops
    them on failure). Returns the provisioning warnings.

    Order (2 cores serve ~11 to ~40 Python daemons, so no core should idle on a barrier):
    every xscfd right after :func:`~clovm.api.provision.provision_base` (it loads its SSH host key or creates it, as
    it always did, and reads nothing else of the home), every control domain's node agent right
    after :func:`~clovm.api.provision.provision` (it needs the PKI, hosts file and cluster.config, nothing else); then, once every xscfd is READY, the
    known_hosts files (:func:`~clovm.api.provision.provision_xscf_keys`, whose asyncssh import overlaps the daemons'
    start) and the ldmds, as before: an ldmd pushes its PPAR's domains to its xscfd right after
    READY (an absent xscfd is retried every 0.5 s) and spawns its guests, whose shutdown
    agents test the XSCFs of every node of their cluster. Guests are awaited afterwards by
    :func:`await_guests`.
    """
    waiter = _ReadyWaiter(home)

    def spawn(module: str, name: str) -> str:
        p = _spawn(home, module, name)
        started[f"{module}:{name}"] = p.pid
        return waiter.add(p)

    try:
        provision_base(home, t, time_scale)
        xscfds = {spawn("xscfd", s.name) for s in t.servers}
        warnings = provision(home, t)
        for c in t.control_domains:
            spawn("nodeagent", c.name)
        from ..runtime import ssh  # noqa: F401 - for provision_xscf_keys, imported while xscfds start

        ldmds = [c.name for c in t.control_domains]
        while ldmds or waiter.pending():
            if ldmds and not xscfds:
                provision_xscf_keys(home, t)
                for name in ldmds:
                    spawn("ldmd", name)
                ldmds = []
                continue
            xscfds.difference_update(waiter.wait())
    finally:
        waiter.close()
    return warnings


SUPERVISOR_NAME = "datacenter"  # the supervisor's --name (one per home)


def start_supervisor(home: Home, started: dict[str, int]) -> None:
    """Start the home's supervisor (``runtime/supervisor.py``) once every daemon is READY, and
    wait for its READY (it then watches them all). Recorded in ``started`` as the others."""
    waiter = _ReadyWaiter(home)
    try:
        p = _spawn(home, "supervisor", SUPERVISOR_NAME)
        started[f"supervisor:{SUPERVISOR_NAME}"] = p.pid
        waiter.add(p)
        while waiter.pending():
            waiter.wait()
    finally:
        waiter.close()


def _key(p: subprocess.Popen[bytes] | spawn.Forked) -> str:
    argv = [str(a) for a in p.args]  # type: ignore[union-attr]
    return daemon_key(argv[2].rsplit(".", 1)[-1], argv[-1])


def _label(p: subprocess.Popen[bytes] | spawn.Forked) -> str:
    argv = [str(a) for a in p.args]  # type: ignore[union-attr]
    return f"{argv[2].rsplit('.', 1)[-1]} {argv[-1]} (pid {p.pid})"


def await_guests(home: Home, t: topology.Topology, deadline: float) -> None:
    """Wait until every guest's node socket answers ``status``."""
    waiting = [g.name for g in t.guests]
    last: dict[str, str] = {}
    while waiting:
        for g in list(waiting):
            try:
                rpc.call_unix_sync(home.node_socket(g), "status", timeout=2.0)
                waiting.remove(g)
            except rpc.RpcError as e:
                last[g] = e.message
        if not waiting:
            return
        if time.monotonic() > deadline:
            g = waiting[0]
            raise ClovmError(
                codes.DAEMON_FAILED,
                f"cluster node of guest {g} not answering after {settings.READY_TIMEOUT:g} s "
                f"({last.get(g, '?')}); see {home.log_file(daemon_key('nodeagent', g))}",
                log_tail(home, daemon_key("nodeagent", g)),
            )
        time.sleep(0.1)


def write_lock(home: Home, record: dict[str, Any]) -> None:
    atomic_write(home.run_dir / "lock", json.dumps(record, indent=2) + "\n")


def claim(home: Home, ref: str | None, time_scale: float) -> None:
    """Create ``run/lock`` for a starting ``up`` (exclusively), or fail with HOME_IN_USE."""
    home.run_dir.mkdir(parents=True, exist_ok=True)
    lock = home.run_dir / "lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if starting_pid(home) is not None or home_pids(home):
                raise ClovmError(
                    codes.HOME_IN_USE, f"home {home.root} is already up (run 'clovm down --home {home.root}' first)"
                ) from None
            lock.unlink(missing_ok=True)  # stale: nothing of it runs
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(
                {
                    "starting": os.getpid(),
                    "home": str(home.root),
                    "topology": ref,
                    "time_scale": time_scale,
                    "daemons": {},
                },
                f,
            )
        return
    raise ClovmError(codes.HOME_IN_USE, f"home {home.root} is being started by someone else")
