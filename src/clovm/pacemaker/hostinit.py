"""hostinit: the init of one emulated hypervisor host (``python -m clovm.pacemaker.hostinit``).

Started by ``up`` as ``nsenter --net=HOST-NETNS unshare --mount --uts --propagation slave
python -m clovm.pacemaker.hostinit --home H --name kvmN``. It

1. becomes a child subreaper and sets the host name;
2. makes the host's file system view: a private tmpfs ``/run`` (with ``/run/sshd``, and
   ``/run/netns`` bound back so ``ip -n`` still finds the namespaces), the host's ``sbin`` (with
   ``virsh``) on ``/usr/local/sbin`` (first on root's PATH), its own ``/var/log``;
3. runs Debian's sshd (``/usr/sbin/sshd -D -e -f CONFIG -h KEY``) and the hypervisor daemon
   (:mod:`clovm.pacemaker.hvd`), restarting either if it dies (at most every second);
4. writes ``run/pcmk/HOST.ready`` once sshd listens and hvd answers;
5. on SIGTERM stops both (SIGTERM, then SIGKILL after 5 s), reaps everything and exits.

VMs are not stopped here: their processes live in their own cgroups (``down`` kills them).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..fsutil import atomic_write
from . import layout as L
from . import platform as P
from .layout import Layout

RESTART_DELAY_S = 1.0
STOP_GRACE_S = 5.0


def setup_mounts(lay: Layout, host: str) -> None:
    fd = os.open(P.RUN_NETNS, os.O_PATH | os.O_DIRECTORY)
    P.mount("tmpfs", "/run", fstype="tmpfs", options="mode=0755,size=16m")
    Path("/run/netns").mkdir()
    P.bind_fd(fd, "/run/netns")
    os.close(fd)
    Path("/run/sshd").mkdir(mode=0o755)
    Path("/run/lock").mkdir(mode=0o1777)
    P.mount(str(lay.host_sbin(host)), "/usr/local/sbin", bind=True)
    lay.host_varlog(host).mkdir(parents=True, exist_ok=True)
    P.mount(str(lay.host_varlog(host)), "/var/log", bind=True)


class Children:
    def __init__(self, lay: Layout, host: str) -> None:
        self.lay, self.host = lay, host
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}

    def argv(self, what: str) -> list[str]:
        if what == "sshd":
            return [
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
                str(self.lay.sshd_config(self.host)),
                "-h",
                str(self.lay.host_key(self.host)),
            ]
        return [sys.executable, "-m", "clovm.pacemaker.hvd", "--home", str(self.lay.home), "--name", self.host]

    def start(self, what: str) -> None:
        logf = self.lay.log_file(f"{what}-{self.host}")
        logf.parent.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        with open(logf, "ab") as out:
            self.procs[what] = subprocess.Popen(
                self.argv(what), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, close_fds=True
            )
        self.started[what] = time.monotonic()

    def stop(self) -> None:
        for p in self.procs.values():
            P.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            time.sleep(0.05)
        for p in self.procs.values():
            if p.poll() is None:
                P.kill(p.pid, signal.SIGKILL)
                p.wait()


def ready(lay: Layout, host: str) -> bool:
    try:
        with socket.create_connection((L.ADDRESSES[host], 22), timeout=0.5) as s:
            if not s.recv(64).startswith(b"SSH-"):
                return False
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1.0)
            s.connect(str(lay.socket(host)))
            s.sendall(b'{"op":"status","args":{}}\n')
            return b'"ok":true' in s.recv(65536)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clovm-hostinit")
    ap.add_argument("--home", required=True)
    ap.add_argument("--name", required=True, choices=L.HOSTS)
    a = ap.parse_args(argv)
    lay, host = L.layout_for(a.home), a.name
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    P.set_subreaper()
    P.set_comm(f"hostinit-{host}")
    P.sethostname(host)
    setup_mounts(lay, host)
    atomic_write(lay.pid_file(host), f"{os.getpid()} {P.starttime(os.getpid())}\n")
    kids = Children(lay, host)
    kids.start("sshd")
    kids.start("hvd")
    is_ready = False
    while not stopping:
        for what, p in list(kids.procs.items()):
            if p.poll() is not None and not stopping:
                sys.stderr.write(f"hostinit {host}: {what} exited ({p.returncode}); restarting\n")
                time.sleep(max(0.0, RESTART_DELAY_S - (time.monotonic() - kids.started[what])))
                kids.start(what)
        try:  # reap orphans (we are their subreaper)
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not is_ready and ready(lay, host):
            is_ready = True
            atomic_write(lay.ready_file(host), f"{time.time():.3f}\n")
        time.sleep(0.05 if not is_ready else 0.2)
    kids.stop()
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
