"""hvd: the hypervisor daemon of one emulated host (``python -m clovm.pacemaker.hvd --home H --name kvmN``).

Runs inside the host's namespaces (started by :mod:`clovm.pacemaker.hostinit`) and drives the
sans-IO :class:`~clovm.pacemaker.hvcore.Hypervisor` (ldm's engine) with
:class:`clovm.runtime.driver.MachineDriver` on a clock that runs ``time_scale`` times faster than
real time. Its effects become real things:

* a domain is booted as ``nsenter --net=VM-NETNS unshare -m -i -p -f -u --mount-proc
  python -m clovm.pacemaker.vminit`` inside the VM's cgroup (frozen/thawed/killed through it,
  see :class:`clovm.pacemaker.platform.Freezer`); its veth is first put on this host's bridge;
* suspend/resume (a migration's final phase, a cancel) freeze/thaw the VM; kill = SIGKILL of
  every process of the VM, waited for;
* adopt (the target side of a hand-off) moves the VM's veth from the source host's namespace to
  this host's bridge, then the VM is thawed; release forgets it on the source;
* messages to a peer hypervisor go to that host's unix socket (``peer`` op, in order, one queue
  per peer); a failed send is ``PeerUnreachable``.

Socket ``HOME/run/pcmk/h-HOST`` (clovm.runtime.rpc's JSON lines): ``virsh {argv}`` → ``{rc,
stdout, stderr}`` (``migrate`` answers when the migration ends), ``peer {from, msg}``,
``status`` → ``{host, domains: [{name, state, id}], migrating: {domain: {target, phase, round,
percent, rounds_max}}, incoming: [domain], info}`` (``info``: :meth:`Hypervisor.info`),
``arm_abort {domain}`` (fault injection: the domain's next or running migration fails after the
copy, as ldm's ``MigrationAbortArmed``).

The domain table is written atomically to ``hosts/HOST/state/domains.json`` after every change
and read back at start: a restarted daemon takes running VMs back (their processes are found in
their cgroups; one left frozen by a migration in flight is thawed: migrations are not persisted,
the peer cancels or fails its side) and boots its autostart domains that do not run. Every action is also appended to
``hosts/HOST/state/events.log`` as ``WALLTIME EVENT DOMAIN [DETAIL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core import codes as core_codes
from ..core.base import Effect, Log
from ..core.ldm import (
    AdoptDomainProcess,
    DomainProcessExited,
    KillDomainProcess,
    MigrationAbortArmed,
    MigrationProgress,
    PeerMessageReceived,
    PeerMsg,
    PeerUnreachable,
    ReleaseDomain,
    ResumeDomainProcess,
    SendToPeer,
    StartDomainProcess,
    SuspendDomainProcess,
)
from ..fsutil import append_line, atomic_write
from ..runtime.driver import MachineDriver
from ..runtime.ldmd import decode_peer_msg, encode_peer_msg
from ..runtime.rpc import RpcError, call_unix, serve_unix
from . import layout as L
from . import net
from . import platform as P
from .hvcore import Hypervisor, VirshReceived, VirshReplied
from .layout import Layout
from .record import Record


class ScaledClock:
    """Emulated seconds since the daemon started, ``scale`` times faster than real ones."""

    def __init__(self, scale: float) -> None:
        self.scale, self.start = scale, time.monotonic()

    def now(self) -> float:
        return self.scale * (time.monotonic() - self.start)

    def real_delay(self, deadline: float) -> float:
        return max(0.0, (deadline - self.now()) / self.scale)


def launch_argv(lay: Layout, freezer: P.Freezer, vm: str) -> list[str]:
    return [
        *freezer.launch_prefix(vm),
        "nsenter",
        f"--net=/run/netns/{lay.ns(vm)}",
        "--",
        "unshare",
        "--mount",
        "--ipc",
        "--pid",
        "--fork",
        "--uts",
        "--mount-proc",
        "--propagation",
        "private",
        "--",
        sys.executable,
        "-m",
        "clovm.pacemaker.vminit",
        "--home",
        str(lay.home),
        "--name",
        vm,
    ]


def launcher_pid(pids: Sequence[int]) -> int | None:
    """Of a VM's processes, the launcher (``unshare``, outside the VM's PID namespace)."""
    for pid in pids:
        if len(P.nspid(pid)) == 1:
            return pid
    return None


class HvDaemon:
    def __init__(self, lay: Layout, host: str, record: dict[str, Any]) -> None:
        self.lay, self.host = lay, host
        base = record.get("cgroup_base")
        self.freezer = P.Freezer(Path(base) if base else None, {vm: lay.ns(vm) for vm in L.VMS})
        self.machine = Hypervisor(host)
        self.clock = ScaledClock(float(record.get("time_scale", 1.0)))
        self.driver = MachineDriver(self.machine, self.clock, self._on_effects)  # type: ignore[arg-type]
        self.loop = asyncio.get_running_loop()
        self._req = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watch: dict[str, tuple[int, int]] = {}  # domain -> (pid, pidfd) whose exit we feed
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # launchers we must reap
        self._queues: dict[str, asyncio.Queue[PeerMsg]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._saved: str = ""
        self._server: asyncio.AbstractServer | None = None

    # ---------------------------------------------------------------- life cycle
    async def start(self) -> None:
        state_file = self.lay.host_state(self.host)
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {"domains": []}
        running = [
            d["name"] for d in state.get("domains", []) if self.freezer.procs(d["name"]) and d.get("state") == "running"
        ]
        boot = self.machine.load(state, running, self.clock.now())
        for vm in running:
            self._watch_vm(vm)
            self.event("readopted", vm)
            if self.freezer.is_frozen(vm):  # a migration's suspend died with the old daemon
                self.freezer.thaw(vm)
                self.event("resumed", vm, "after restart")
        self._server = await serve_unix(self.lay.socket(self.host), self._handle)
        self._save()
        for vm in boot:
            self._spawn_task(self._autostart(vm))

    async def _autostart(self, vm: str) -> None:
        r = await self.virsh(["start", vm])
        self.log(f"autostart {vm}: rc {r['rc']} {r['stdout'].strip()}{r['stderr'].strip()}")

    async def close(self) -> None:
        self.driver.stop()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for vm in list(self._watch):
            self._unwatch(vm)

    def _spawn_task(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- logging
    def log(self, text: str) -> None:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} hvd {self.host}: {text}\n")
        sys.stderr.flush()

    def event(self, what: str, vm: str, detail: str = "") -> None:
        append_line(self.lay.host_events(self.host), f"{time.time():.6f} {what} {vm} {detail}".rstrip())

    # ---------------------------------------------------------------- requests
    async def _handle(self, op: str, args: dict[str, Any], peer: str) -> Any:
        if op == "virsh":
            argv = args.get("argv")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise RpcError(core_codes.BAD_REQUEST, "argv must be a list of strings")
            return await self.virsh(argv)
        if op == "peer":
            self.driver.feed(PeerMessageReceived(str(args.get("from")), decode_peer_msg(args.get("msg"))))
            return None
        if op == "status":
            return {
                "host": self.host,
                "migrating": self.machine.migrating(),
                "info": self.machine.info(),
                "incoming": sorted(self.machine.ldm.incoming()),
                "domains": [{"name": v.name, "state": v.state, "id": v.id} for v in self.machine.views()],
            }
        if op == "arm_abort":  # fault injection: the domain's next (or running) migration fails after the copy
            domain = str(args.get("domain", ""))
            if domain not in {v.name for v in self.machine.views()}:
                raise RpcError(core_codes.BAD_REQUEST, f"{domain!r} is not a domain of {self.host}")
            self.driver.feed(MigrationAbortArmed(domain))
            self.event("abort-armed", domain)
            return None
        raise RpcError(core_codes.UNKNOWN_OP, f"unknown op {op!r}")

    async def virsh(self, argv: Sequence[str]) -> dict[str, Any]:
        self._req += 1
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._pending[self._req] = fut
        self.driver.feed(VirshReceived(self._req, tuple(argv)))
        return await fut

    # ---------------------------------------------------------------- effects
    def _on_effects(self, effects: Sequence[Effect]) -> None:
        for e in effects:
            try:
                self._apply(e)
            except Exception as exc:  # noqa: BLE001 - one failed effect must not lose the others
                self.log(f"effect {e!r} failed: {type(exc).__name__}: {exc}")
        self._save()

    def _apply(self, e: Effect) -> None:
        match e:
            case VirshReplied(req_id=req_id, result=result):
                fut = self._pending.pop(req_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(result.to_dict())
            case SendToPeer(peer=peer, msg=msg):
                self._send(peer, msg)
            case StartDomainProcess(name=vm):
                self._boot(vm)
            case KillDomainProcess(name=vm):
                self._unwatch(vm)
                ok = self.freezer.kill(vm)
                self.event("killed", vm, "" if ok else "(processes left)")
            case SuspendDomainProcess(name=vm):
                self.freezer.freeze(vm)
                self.event("suspended", vm)
            case ResumeDomainProcess(name=vm):
                self.freezer.thaw(vm)
                self.event("resumed", vm)
            case AdoptDomainProcess(name=vm, from_host=src):
                was, took = net.ensure_vm_link(self.lay, vm, self.host)
                self.event("adopted", vm, f"from {src} link {was}->{self.host} {took * 1000:.1f}ms")
                self._watch_vm(vm)
            case ReleaseDomain(name=vm):
                self._unwatch(vm)
                self.event("released", vm)
            case MigrationProgress(domain=vm, phase=phase, percent=pct):
                self.event("migration", vm, f"{phase} {pct}%")
            case Log(text=text):
                self.log(text)
            case _:
                self.log(f"unknown effect {e!r}")

    def _save(self) -> None:
        text = json.dumps(self.machine.snapshot(), indent=2) + "\n"
        if text != self._saved:
            atomic_write(self.lay.host_state(self.host), text)
            self._saved = text

    # ---------------------------------------------------------------- VM processes
    def _boot(self, vm: str) -> None:
        if self.freezer.procs(vm):  # leftovers of an earlier incarnation
            self.freezer.kill(vm)
        self.freezer.prepare(vm)
        net.ensure_vm_link(self.lay, vm, self.host)
        logf = self.lay.log_file(f"vm-{vm}")
        logf.parent.mkdir(parents=True, exist_ok=True)
        with open(logf, "ab") as out:
            p = subprocess.Popen(
                launch_argv(self.lay, self.freezer, vm),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
            )
        self._children[p.pid] = p
        self.event("started", vm, f"pid {p.pid}")
        self._watch_pid(vm, p.pid)

    def _watch_vm(self, vm: str) -> None:
        pid = launcher_pid(self.freezer.procs(vm))
        if pid is None:
            self.log(f"{vm}: no launcher process found")
            self.loop.call_soon(self.driver.feed, DomainProcessExited(vm))
            return
        self._watch_pid(vm, pid)

    def _watch_pid(self, vm: str, pid: int) -> None:
        self._unwatch(vm)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.loop.call_soon(self.driver.feed, DomainProcessExited(vm))
            return
        self._watch[vm] = (pid, fd)
        self.loop.add_reader(fd, self._exited, vm, pid)

    def _unwatch(self, vm: str) -> None:
        w = self._watch.pop(vm, None)
        if w is not None:
            self.loop.remove_reader(w[1])
            os.close(w[1])

    def _exited(self, vm: str, pid: int) -> None:
        w = self._watch.get(vm)
        if w is not None and w[0] == pid:
            self._unwatch(vm)
            self.event("exited", vm, f"pid {pid}")
            self.driver.feed(DomainProcessExited(vm))

    def reap(self) -> None:
        for pid, p in list(self._children.items()):
            if p.poll() is not None:
                del self._children[pid]

    # ---------------------------------------------------------------- peers
    def _send(self, peer: str, msg: PeerMsg) -> None:
        q = self._queues.get(peer)
        if q is None:
            q = self._queues[peer] = asyncio.Queue()
            self._spawn_task(self._sender(peer, q))
        q.put_nowait(msg)

    async def _sender(self, peer: str, q: asyncio.Queue[PeerMsg]) -> None:
        while True:
            msg = await q.get()
            try:
                args: dict[str, Any] = {"from": self.host, "msg": encode_peer_msg(msg)}
                await call_unix(self.lay.socket(peer), "peer", **args)
            except RpcError as e:
                self.log(f"peer {peer} unreachable ({type(msg).__name__}): {e.message}")
                self.driver.feed(PeerUnreachable(peer))


async def amain(lay: Layout, host: str) -> None:
    rec = Record.load(lay.record_file)
    daemon = HvDaemon(lay, host, rec.data if rec else {})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGCHLD, daemon.reap)
    await daemon.start()
    daemon.log("ready")
    try:
        await stop.wait()
    finally:
        await daemon.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clovm-hvd")
    ap.add_argument("--home", required=True)
    ap.add_argument("--name", required=True, choices=L.HOSTS)
    a = ap.parse_args(argv)
    P.set_comm(f"hvd-{a.name}")
    asyncio.run(amain(L.layout_for(a.home), a.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
