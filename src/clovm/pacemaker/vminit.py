"""vminit: PID 1 of one emulated VM (``python -m clovm.pacemaker.vminit --home H --name vmN``).

The hypervisor daemon starts it inside the VM's network namespace with fresh mount, IPC, PID and
UTS namespaces (``unshare -m -i -p -f -u --mount-proc``). It

1. sets the host name and drops the host's own mounts it inherited (``/usr/local/sbin`` with the
   host's virsh, ``/var/log``, the host's ``/run``);
2. gives the VM its own file systems: ``/etc`` and ``/var`` as overlays over the machine's (upper
   directories in the home: the VM's disk, kept across reboots: corosync.conf, authkey, the CIB),
   ``/root`` bound from the home (fence key, known_hosts), and fresh tmpfs ``/run``, ``/dev/shm``
   (libqb's rings are named with namespace-local pids) and ``/tmp``;
3. starts ``corosync -f``, waits until its cmap answers, then starts ``pacemakerd`` with
   ``PCMK_logfile=/var/log/pacemaker/pacemaker.log`` and ``PCMK_logfacility=none``;
4. reaps every process of the VM; on SIGTERM stops pacemakerd, then corosync, and exits.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import layout as L
from . import platform as P

ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
    "PCMK_logfacility": "none",
}
CMAP_WAIT_S = 30.0
STOP_GRACE_S = 60.0


def setup_mounts(lay: L.Layout, vm: str) -> None:
    held = P.mountpoints()
    for path in ("/usr/local/sbin", "/var/log", "/run"):
        if path in held:
            P.umount(path, lazy=True, recursive=True)
    for tree in ("etc", "var"):
        upper, work = lay.vm_upper(vm, tree), lay.vm_work(vm, tree)
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        P.mount("overlay", f"/{tree}", fstype="overlay", options=f"lowerdir=/{tree},upperdir={upper},workdir={work}")
    P.mount(str(lay.vm_root_home(vm)), "/root", bind=True)
    P.mount("tmpfs", "/run", fstype="tmpfs", options="mode=0755,size=64m")
    P.mount("tmpfs", "/dev/shm", fstype="tmpfs", options="mode=1777,size=256m")
    P.mount("tmpfs", "/tmp", fstype="tmpfs", options="mode=1777,size=64m")
    uid, gid = pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid
    Path("/run/lock").mkdir(mode=0o1777)
    for d in ("/run/crm", "/run/pacemaker"):
        Path(d).mkdir(mode=0o750)
        os.chown(d, uid, gid)
    Path("/run/corosync").mkdir(mode=0o755)
    for d in (
        "/var/lib/pacemaker/cib",
        "/var/lib/pacemaker/pengine",
        "/var/lib/pacemaker/blackbox",
        "/var/lib/pacemaker/cores",
        "/var/log/pacemaker",
    ):
        Path(d).mkdir(parents=True, exist_ok=True)
        os.chown(d, uid, gid)


def say(vm: str, text: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} vminit {vm}: {text}\n")
    sys.stderr.flush()


def spawn(argv: list[str], log: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=ENV, close_fds=True)


EXITED: dict[int, int] = {}  # pid -> exit code, of every child reaped


def reap_all() -> None:
    """Reap every exited process (PID 1 adopts all orphans of the VM)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        EXITED[pid] = os.waitstatus_to_exitcode(status)


def gone(p: subprocess.Popen[bytes] | None) -> bool:
    reap_all()
    return p is None or p.pid in EXITED


def wait_cmap(corosync: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + CMAP_WAIT_S
    while time.monotonic() < deadline and not gone(corosync):
        cp = subprocess.run(["corosync-cmapctl", "-g", "totem.cluster_name"], check=False, capture_output=True, env=ENV)
        if cp.returncode == 0:
            return True
        time.sleep(0.1)
    return False


def stop(p: subprocess.Popen[bytes] | None, grace: float) -> None:
    if gone(p):
        return
    assert p is not None
    P.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not gone(p):
        time.sleep(0.1)
    if not gone(p):
        P.kill(p.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clovm-vminit")
    ap.add_argument("--home", required=True)
    ap.add_argument("--name", required=True, choices=L.VMS)
    a = ap.parse_args(argv)
    lay, vm = L.layout_for(a.home), a.name
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    P.set_comm(f"vminit-{vm}")
    P.sethostname(vm)
    setup_mounts(lay, vm)
    os.chdir("/")
    say(vm, "file systems ready; starting corosync")
    corosync = spawn(["corosync", "-f"], "/var/log/corosync/corosync.stdout")
    pacemakerd = None
    if wait_cmap(corosync):
        say(vm, "corosync answers; starting pacemakerd")
        pacemakerd = spawn(["pacemakerd"], "/var/log/pacemaker/pacemakerd.stdout")
    else:
        say(vm, f"corosync did not answer (exit status {EXITED.get(corosync.pid)})")
    reported: set[str] = set()
    while not stopping:
        for name, p in (("corosync", corosync), ("pacemakerd", pacemakerd)):
            if p is not None and gone(p) and name not in reported:
                reported.add(name)
                say(vm, f"{name} exited with status {EXITED.get(p.pid)}")
        time.sleep(0.2)
    say(vm, "stopping")
    stop(pacemakerd, STOP_GRACE_S)
    stop(corosync, STOP_GRACE_S)
    reap_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
