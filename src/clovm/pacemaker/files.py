"""Writes a home's files for the Pacemaker topology: keys, the hosts' sshd and virsh, the hosts'
domain tables, and each VM's disk (the overlay upper directories of its /etc, and its /root).

Every key is made here by ``ssh-keygen`` (new for each ``up``): one host key per hypervisor host
and the fence key the VMs' fence agents log in with (it is root's only authorized key on every
host). The VMs' known_hosts lists every host's key under its name and address, so the fence agent
never meets an unknown or changed host key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..fsutil import atomic_write
from . import configs
from . import layout as L
from . import platform as P
from .layout import Layout


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path`` (replacing any); returns the public key line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    P.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def write_home(lay: Layout, token_ms: int) -> None:
    """Everything ``up`` needs on disk before any namespace or process exists."""
    for d in (lay.run_dir, lay.home / "log", lay.keys_dir):
        d.mkdir(parents=True, exist_ok=True)
    fence_pub = keygen(lay.fence_key, "clovm-fence")
    host_pubs = {}
    for host in L.HOSTS:
        host_pubs[host] = keygen(lay.host_key(host), f"root@{host}")
        atomic_write(lay.sshd_config(host), configs.sshd_config(lay, host))
        atomic_write(lay.authorized_keys(host), fence_pub + "\n", 0o600)
        atomic_write(lay.host_sbin(host) / "virsh", configs.virsh_script(sys.executable, str(lay.socket(host))), 0o755)
        lay.host_varlog(host).mkdir(parents=True, exist_ok=True)
        state = lay.host_state(host)
        for stale in (state, lay.host_events(host)):
            stale.unlink(missing_ok=True)
        atomic_write(state, configs.host_state(host))
    authkey = os.urandom(256)
    for vm in L.VMS:
        vm_dir = lay.vm_dir(vm)
        if vm_dir.exists():  # a fresh disk for every up (the previous cluster's CIB is gone)
            shutil.rmtree(vm_dir)
        etc = lay.vm_upper(vm, "etc")
        atomic_write(etc / "corosync" / "corosync.conf", configs.corosync_conf(token_ms))
        atomic_write(etc / "corosync" / "authkey", authkey, 0o400)
        atomic_write(etc / "hosts", configs.etc_hosts())
        atomic_write(etc / "hostname", vm + "\n")
        ssh = lay.vm_root_home(vm) / ".ssh"
        ssh.mkdir(parents=True, mode=0o700)
        shutil.copyfile(lay.fence_key, ssh / "id_fence")
        os.chmod(ssh / "id_fence", 0o600)
        atomic_write(ssh / "id_fence.pub", fence_pub + "\n")
        atomic_write(ssh / "known_hosts", configs.known_hosts(host_pubs), 0o600)
        for tree in ("etc", "var"):
            lay.vm_work(vm, tree).mkdir(parents=True, exist_ok=True)
            lay.vm_upper(vm, tree).mkdir(parents=True, exist_ok=True)


def write_cib(lay: Layout) -> None:
    """The initial CIB (see :func:`configs.cib_commands`) on both VMs' disks, as pacemaker keeps it."""
    import grp
    import pwd

    cib = lay.run_dir / "cib.xml"
    atomic_write(cib, P.run(["cibadmin", "--empty"]).stdout, 0o600)
    env = {**subprocess_env(), "CIB_file": str(cib)}
    for argv in configs.cib_commands(str(cib)):
        P.run(argv, env=env)
    uid, gid = pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid
    for vm in L.VMS:
        d = lay.vm_upper(vm, "var") / "lib" / "pacemaker" / "cib"
        d.mkdir(parents=True, exist_ok=True)
        for p, mode in ((d, 0o750), (d.parent, 0o755), (d.parent.parent, 0o755)):
            os.chmod(p, mode)
        os.chown(d, uid, gid)
        shutil.copyfile(cib, d / "cib.xml")
        os.chown(d / "cib.xml", uid, gid)
        os.chmod(d / "cib.xml", 0o600)
    cib.unlink()


def remove_run_files(lay: Layout) -> list[str]:
    """Sockets, pid and ready files (the record itself is removed last, by the caller)."""
    removed = []
    for host in L.HOSTS:
        for p in (lay.socket(host), lay.pid_file(host), lay.ready_file(host)):
            if p.exists() or p.is_symlink():
                p.unlink()
                removed.append(p.name)
    return removed


def tail(path: Path, n: int = 8) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def log_tails(lay: Layout, names: list[str], n: int = 6) -> list[str]:
    out = []
    for name in names:
        lines = tail(lay.log_file(name), n)
        if lines:
            out.append(f"{name}.log:")
            out += ["  " + line for line in lines]
    return out


def subprocess_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
    }


def popen_detached(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env=subprocess_env(),
        )
