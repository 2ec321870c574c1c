"""The platform adapter: every call of ``ip``, ``nsenter``, ``mount``, cgroup files and /proc.

Nothing else in the package touches namespaces, links, mounts or cgroups directly. Failures
raise :class:`PlatformError` with one line (the tool's first error line).

Freezing a VM: the cgroup v2 freezer (``cgroup.freeze`` / ``cgroup.kill`` of one cgroup per VM
under the cgroup2 mount, ``/sys/fs/cgroup/unified`` on this hybrid machine) when it is there,
else SIGSTOP/SIGCONT/SIGKILL of every pid ``ip netns pids`` lists for the VM's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

RUN_NETNS = Path("/run/netns")
PR_SET_CHILD_SUBREAPER = 36


class PlatformError(Exception):
    """A platform tool or file refused: one line."""


# --------------------------------------------------------------------------------- commands
def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        cp = subprocess.run(
            list(argv),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise PlatformError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise PlatformError(f"{' '.join(argv[:4])}: no answer within {timeout:g} s") from None
    if check and cp.returncode != 0:
        first = (cp.stderr.strip() or cp.stdout.strip() or f"exit status {cp.returncode}").splitlines()[0]
        raise PlatformError(f"{' '.join(argv[:6])}: {first}")
    return cp


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return run(argv, check=check).stdout


# --------------------------------------------------------------------------------- namespaces
def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_add(name: str) -> None:
    run(["ip", "netns", "add", name])


def netns_delete(name: str) -> None:
    if name in netns_list():
        run(["ip", "netns", "delete", name])


def netns_pids(name: str) -> list[int]:
    cp = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in cp.stdout.split() if p.isdigit()]


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(RUN_NETNS / name).st_ino
    except OSError:
        return None


def pid_netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def run_netns_is_mountpoint() -> bool:
    """True if /run/netns is a mount point of this mount namespace (``ip netns add`` makes it one)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == str(RUN_NETNS):
            return True
    return False


def umount_run_netns() -> bool:
    """Unmount /run/netns if it is a mount point with no namespace left in it."""
    if run_netns_is_mountpoint() and not any(RUN_NETNS.iterdir()):
        run(["umount", str(RUN_NETNS)])
        RUN_NETNS_MARK.unlink(missing_ok=True)
        return True
    return False


RUN_NETNS_MARK = Path("/run/clovm-pcmk-run-netns")  # a clovm topology made /run/netns a mount point


def mark_run_netns() -> None:
    """Say that a clovm topology is about to make /run/netns a mount point (``ip netns add``
    does on first use): whichever topology leaves last unmounts it, also when that is not the
    one that made it (topologies of several homes may come and go in any order)."""
    RUN_NETNS_MARK.touch()


def mark_run_netns_unless_mounted() -> bool:
    """Mark /run/netns as a clovm topology's to make a mount point if it is none yet (call it
    under :func:`run_netns_guard`, before the first ``ip netns add``); True if it marked it."""
    if run_netns_is_mountpoint():
        return False
    mark_run_netns()
    return True


def umount_run_netns_if_ours() -> bool:
    """Unmount /run/netns if a clovm topology made it a mount point and no namespace is left."""
    return RUN_NETNS_MARK.exists() and umount_run_netns()


@contextlib.contextmanager
def run_netns_guard() -> Iterator[None]:
    """Hold the machine-wide lock under which /run/netns may become, or stop being, a mount point.

    A topology's ``up`` holds it from looking at /run/netns until its namespaces exist, ``down``
    while it deletes its namespaces and unmounts /run/netns if it is the last. Without it, two
    topologies (or a test) coming and going at once could unmount /run/netns between another's
    look and its ``ip netns add``, and take the other's mark with it: that one's ``down`` then
    left the mount behind. The lock is an ``flock`` of /run itself, so nothing is left on disk."""
    fd = os.open("/run", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (closing releases the lock)


# --------------------------------------------------------------------------------- links
def links(ns: str | None) -> list[dict[str, Any]]:
    """``ip -d -j link`` of a namespace (None: this one)."""
    out = ip("-d", "-j", "link", "show", ns=ns)
    return cast("list[dict[str, Any]]", json.loads(out or "[]"))


def link_names(ns: str | None) -> set[str]:
    return {link["ifname"] for link in links(ns)}


def has_link(ns: str, name: str) -> bool:
    return name in link_names(ns) if ns in netns_list() else False


def routes(ns: str, family: str = "-4") -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", json.loads(ip(family, "-j", "route", "show", "table", "all", ns=ns) or "[]"))


def addresses(ns: str) -> list[str]:
    out = json.loads(ip("-j", "addr", "show", ns=ns) or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link.get("addr_info", [])]


def bridge_add(ns: str, name: str) -> None:
    ip("link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0", ns=ns)
    ip("link", "set", name, "up", ns=ns)


def veth_add(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace (never in this one)."""
    ip("link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b, ns=ns_a)


def link_up(ns: str, name: str, master: str | None = None) -> None:
    if master:
        ip("link", "set", name, "master", master, ns=ns)
    ip("link", "set", name, "up", ns=ns)


def addr_add(ns: str, name: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", name, ns=ns)


def loopback_up(ns: str) -> None:
    ip("link", "set", "lo", "up", ns=ns)


def link_move(src_ns: str, name: str, dst_ns: str, master: str) -> None:
    """Move link ``name`` to ``dst_ns`` and attach it to bridge ``master`` there."""
    ip("link", "set", name, "netns", dst_ns, ns=src_ns)
    link_up(dst_ns, name, master)


# --------------------------------------------------------------------------------- processes
def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid``; None if it is gone (reaps it first if it is our child)."""
    if pid <= 0:
        return None
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def starttime(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def nspid(pid: int) -> list[int]:
    """The pid of ``pid`` in each PID namespace it belongs to, outermost first."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def vm_init_pid(pids: Sequence[int]) -> int | None:
    """Of a VM's processes, the one that is pid 1 of the VM's PID namespace."""
    for pid in pids:
        ns = nspid(pid)
        if len(ns) >= 2 and ns[-1] == 1:
            return pid
    return None


def kill(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def nsenter_argv(pid: int, *, pidns: bool) -> list[str]:
    """Enter the network, mount, UTS (and IPC and PID, for a VM) namespaces of ``pid``."""
    flags = ["-n", "-m", "-u"] + (["-i", "-p"] if pidns else [])
    return ["nsenter", "-t", str(pid), *flags, "--wd=/", "--"]


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def set_comm(name: str) -> None:
    """The process name ``ps``/``pgrep`` show (at most 15 characters)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def sethostname(name: str) -> None:
    socket.sethostname(name)


# --------------------------------------------------------------------------------- mounts
def mount(
    source: str,
    target: str | Path,
    *,
    fstype: str | None = None,
    options: str | None = None,
    bind: bool = False,
    rbind: bool = False,
    move: bool = False,
) -> None:
    argv = ["mount"]
    if bind:
        argv.append("--bind")
    if rbind:
        argv.append("--rbind")
    if move:
        argv.append("--move")
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", options]
    run([*argv, source, str(target)])


def bind_fd(fd: int, target: str | Path) -> None:
    """Bind-mount (recursively) the directory open as ``fd`` on ``target`` (mount(2) itself: a
    ``/proc/self/fd/N`` source must not be canonicalised into a path that is covered by now)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind, ms_rec = 4096, 16384
    src, dst = f"/proc/self/fd/{fd}".encode(), str(target).encode()
    if libc.mount(src, dst, None, ms_bind | ms_rec, None) != 0:
        err = ctypes.get_errno()
        raise PlatformError(f"bind mount of fd {fd} on {target}: {os.strerror(err)}")


def umount(target: str | Path, *, lazy: bool = False, recursive: bool = False) -> None:
    run(["umount", *(["-l"] if lazy else []), *(["-R"] if recursive else []), str(target)])


def mountpoints() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


# --------------------------------------------------------------------------------- freezer
def cgroup2_root() -> Path | None:
    """The cgroup v2 mount point where this process sits at the root (``0::/``), else None."""
    try:
        mine = next(
            (line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")), None
        )
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                root = Path(left.split()[4]) / (mine or "/").lstrip("/")
                if (root / "cgroup.procs").exists():
                    return root
    except OSError:
        pass
    return None


class Freezer:
    """Freeze, thaw, kill and list every process of a VM.

    ``base`` is the cgroup directory holding one child cgroup per VM (cgroup v2), or None to fall
    back to signals over ``ip netns pids`` of the VM's namespace ``netns[vm]``.
    """

    def __init__(self, base: Path | None, netns: dict[str, str]):
        self.base, self.netns = base, netns

    @property
    def mode(self) -> str:
        return "cgroup2" if self.base is not None else "sigstop"

    @staticmethod
    def probe(base: Path) -> bool:
        """Create ``base`` and check that a child cgroup of it can be frozen."""
        try:
            base.mkdir(exist_ok=True)
            probe = base / "probe"
            probe.mkdir(exist_ok=True)
            ok = (probe / "cgroup.freeze").exists() and (probe / "cgroup.kill").exists()
            probe.rmdir()
            return ok
        except OSError:
            return False

    def cgroup(self, vm: str) -> Path | None:
        return None if self.base is None else self.base / vm

    def prepare(self, vm: str) -> None:
        """Before a VM boots: its cgroup exists and is not frozen."""
        cg = self.cgroup(vm)
        if cg is not None:
            cg.mkdir(parents=True, exist_ok=True)
            self._write(cg / "cgroup.freeze", "0")

    def launch_prefix(self, vm: str) -> list[str]:
        """An argv prefix that puts the launched command (and all it forks) into the VM's cgroup."""
        cg = self.cgroup(vm)
        if cg is None:
            return []
        return ["/bin/sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', str(cg)]

    def procs(self, vm: str) -> list[int]:
        cg = self.cgroup(vm)
        if cg is None:
            return netns_pids(self.netns[vm])
        try:
            return [int(p) for p in (cg / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def freeze(self, vm: str, *, wait: float = 2.0) -> None:
        cg = self.cgroup(vm)
        if cg is None:
            for pid in self.procs(vm):
                kill(pid, signal.SIGSTOP)
            return
        self._write(cg / "cgroup.freeze", "1")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and self.procs(vm) and not self.is_frozen(vm):
            time.sleep(0.002)

    def thaw(self, vm: str) -> None:
        cg = self.cgroup(vm)
        if cg is None:
            for pid in self.procs(vm):
                kill(pid, signal.SIGCONT)
            return
        if cg.exists():
            self._write(cg / "cgroup.freeze", "0")

    def is_frozen(self, vm: str) -> bool:
        cg = self.cgroup(vm)
        if cg is None:
            return any(proc_state(p) == "T" for p in self.procs(vm))
        try:
            return "frozen 1" in (cg / "cgroup.events").read_text()
        except OSError:
            return False

    def kill(self, vm: str, *, wait: float = 10.0) -> bool:
        """SIGKILL every process of the VM (also when frozen); True once none is left."""
        cg = self.cgroup(vm)
        deadline = time.monotonic() + wait
        while True:
            pids = self.procs(vm)
            if not pids:
                return True
            if cg is not None and cg.exists():
                self._write(cg / "cgroup.kill", "1")
            else:
                for pid in pids:
                    kill(pid, signal.SIGKILL)
                    kill(pid, signal.SIGCONT)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def remove(self, vm: str) -> None:
        cg = self.cgroup(vm)
        if cg is not None and cg.exists():
            try:
                cg.rmdir()
            except OSError as e:
                raise PlatformError(f"cannot remove cgroup {cg}: {e.strerror}") from None

    def remove_base(self) -> None:
        if self.base is not None and self.base.exists():
            for child in self.base.iterdir():
                if child.is_dir():
                    child.rmdir()
            self.base.rmdir()

    @staticmethod
    def _write(path: Path, value: str) -> None:
        try:
            path.write_text(value)
        except OSError as e:
            raise PlatformError(f"cannot write {value} to {path}: {e.strerror}") from None
