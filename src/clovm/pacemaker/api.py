"""Use cases of the Pacemaker topology (Figure 17.1 on corosync 3 / pacemaker 2): up, down,
exec_in, pause, status, and the helpers the orchestration needs (virsh, where, cluster views).

Every entry point takes the home and raises :class:`clovm.api.errors.ClovmError` with a code of
:mod:`clovm.pacemaker.codes` and one line; bad input is rejected before anything changes.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..api.errors import ClovmError
from ..core import codes
from . import files, net, readiness
from . import layout as L
from . import platform as P
from .layout import (
    Layout,
    is_pacemaker_home,  # noqa: F401 - re-exported (clovm.pacemaker.is_pacemaker_home)
)
from .record import Record, RecordExists, teardown_plan

REQUIRED_TOOLS = (
    "corosync",
    "pacemakerd",
    "crm_mon",
    "cibadmin",
    "stonith_admin",
    "pcs",
    "fence_virsh",
    "/usr/sbin/sshd",
    "ssh",
    "ssh-keygen",
    "ip",
    "nsenter",
    "unshare",
    "mount",
)
HOSTS_READY_TIMEOUT_S = 30.0
CIB_TIMEOUT_S = 90.0
READY_TIMEOUT_S = 120.0
MAX_PAUSE_S = 3600.0
DEVICES = tuple(L.STONITH_ID.format(vm=vm) for vm in L.VMS)


# --------------------------------------------------------------------------------- helpers
F = TypeVar("F", bound=Callable[..., Any])


def _one_line(fn: F) -> F:
    """An entry point: a platform failure becomes ``ClovmError(PLATFORM_FAILED, one line)``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (P.PlatformError, OSError) as e:
            raise ClovmError(codes.PLATFORM_FAILED, f"{fn.__name__}: {e}") from None

    return wrapper  # type: ignore[return-value]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ClovmError(codes.NOT_ROOT, "the pacemaker topology needs root (namespaces, mounts, cgroups)")


def _preflight() -> None:
    _require_root()
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise ClovmError(codes.MISSING_PACKAGES, f"not installed: {' '.join(missing)} (run tools/pcmk-deps)")
    try:
        import grp
        import pwd

        pwd.getpwnam("hacluster")
        grp.getgrnam("haclient")
    except KeyError:
        raise ClovmError(codes.MISSING_PACKAGES, "no hacluster user or haclient group (run tools/pcmk-deps)") from None


def _running(home: Path | str) -> tuple[Layout, Record]:
    lay = L.layout_for(home)
    rec = Record.load(lay.record_file)
    if rec is None:
        raise ClovmError(codes.NOT_RUNNING, f"{lay.home} runs no pacemaker topology")
    return lay, rec


def _freezer(lay: Layout, rec: Record) -> P.Freezer:
    base = rec.data.get("cgroup_base")
    return P.Freezer(Path(base) if base else None, {vm: lay.ns(vm) for vm in L.VMS})


def _check_host(name: str) -> None:
    if not isinstance(name, str) or not (L.is_host(name) or L.is_vm(name)):
        raise ClovmError(codes.UNKNOWN_HOST, f"unknown host {name!r}: one of {', '.join(L.HOSTS + L.VMS)}")


def _host_pid(lay: Layout, host: str) -> int:
    try:
        pid = int(lay.pid_file(host).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise ClovmError(codes.HOST_NOT_RUNNING, f"{host} is not running (no init process)") from None
    if not P.alive(pid) or P.pid_netns_inode(pid) != P.netns_inode(lay.ns(host)):
        raise ClovmError(codes.HOST_NOT_RUNNING, f"{host} is not running (its init process is gone)")
    return pid


def _vm_pid(lay: Layout, rec: Record, vm: str) -> int:
    pid = P.vm_init_pid(_freezer(lay, rec).procs(vm))
    if pid is None:
        raise ClovmError(codes.VM_NOT_RUNNING, f"{vm} is not running")
    return pid


def _full_argv(lay: Layout, rec: Record, host: str, argv: Sequence[str]) -> list[str]:
    if L.is_vm(host):  # the command joins the VM's cgroup too: a pause freezes it with the VM
        pid = _vm_pid(lay, rec, host)
        return [*_freezer(lay, rec).launch_prefix(host), *P.nsenter_argv(pid, pidns=True), *argv]
    return [*P.nsenter_argv(_host_pid(lay, host), pidns=False), *argv]


def _exec(
    lay: Layout, rec: Record, host: str, argv: Sequence[str], timeout: float, input: str | None = None
) -> tuple[int, str, str]:
    full = _full_argv(lay, rec, host, argv)
    try:
        cp = subprocess.run(
            full,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            env=files.subprocess_env(),
        )
    except subprocess.TimeoutExpired:
        raise ClovmError(codes.EXEC_TIMEOUT, f"{argv[0]} on {host} did not finish within {timeout:g} s") from None
    return cp.returncode, cp.stdout, cp.stderr


# --------------------------------------------------------------------------------- exec, views
@_one_line
def exec_in(
    home: Path | str, host: str, argv: Sequence[str], *, timeout: float = 60.0, input: str | None = None
) -> tuple[int, str, str]:
    """Run ``argv`` inside hypervisor host ``kvmN`` or VM ``vmN``; (exit status, stdout, stderr).

    In a VM the command is one of the VM's processes (its namespaces and its cgroup): it is
    frozen by a pause and killed with the VM; inside a frozen VM it waits for the thaw."""
    _check_host(host)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ClovmError(codes.BAD_ARGUMENT, "exec_in needs a non-empty command of strings")
    if timeout <= 0:
        raise ClovmError(codes.BAD_ARGUMENT, f"bad timeout {timeout!r}")
    lay, rec = _running(home)
    return _exec(lay, rec, host, list(argv), timeout, input)


@_one_line
def exec_argv(home: Path | str, host: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``host`` as :func:`exec_in` does (for callers
    that run it themselves: interactively, or asynchronously)."""
    _check_host(host)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ClovmError(codes.BAD_ARGUMENT, "a command must be a non-empty list of strings")
    lay, rec = _running(home)
    return _full_argv(lay, rec, host, list(argv))


@_one_line
def run_virsh(home: Path | str, host: str, *args: str, timeout: float = 600.0) -> tuple[int, str, str]:
    """``virsh ARGS`` on hypervisor host ``kvmN`` (as root would type it there)."""
    if not L.is_host(host):
        raise ClovmError(codes.UNKNOWN_HOST, f"{host!r} is no hypervisor host: one of {', '.join(L.HOSTS)}")
    return exec_in(home, host, ["virsh", *args], timeout=timeout)


@_one_line
def where(home: Path | str, vm: str) -> str | None:
    """The host whose bridge carries ``vm``'s link (where it runs), or None."""
    if not L.is_vm(vm):
        raise ClovmError(codes.NOT_A_VM, f"{vm!r} is not a VM: one of {', '.join(L.VMS)}")
    lay, _ = _running(home)
    return net.where_is_vm_link(lay, vm)


@_one_line
def cluster_view(home: Path | str, node: str = "vm1", timeout: float = 20.0) -> readiness.ClusterView:
    """``crm_mon -1 --output-as=xml`` on ``node``, parsed."""
    _rc, out, err = exec_in(home, node, ["crm_mon", "-1", "--output-as=xml"], timeout=timeout)
    try:
        return readiness.parse_crm_mon(out)
    except readiness.BadXml:
        raise ClovmError(codes.CLUSTER_NOT_READY, f"crm_mon on {node}: {(err or out).strip()[:200]}") from None


@_one_line
def stonith_history(home: Path | str, node: str = "vm1") -> list[readiness.FenceEvent]:
    _rc, out, err = exec_in(home, node, ["stonith_admin", "--history", "*", "--output-as=xml"], timeout=20.0)
    try:
        return readiness.parse_stonith_history(out)
    except readiness.BadXml:
        raise ClovmError(codes.CLUSTER_NOT_READY, f"stonith_admin on {node}: {(err or out).strip()[:200]}") from None


def wait_ready(
    home: Path | str, timeout: float = READY_TIMEOUT_S, nodes: Sequence[str] = L.VMS
) -> readiness.ClusterView:
    """Block until every node of ``nodes`` sees a ready cluster (see :mod:`readiness`)."""
    deadline = time.monotonic() + timeout
    problems: list[str] = ["not asked yet"]
    while True:
        try:
            views = [cluster_view(home, n) for n in nodes]
            problems = [f"{n}: {p}" for n, v in zip(nodes, views) for p in v.problems(L.VMS, DEVICES)]
            if not problems:
                return views[0]
        except ClovmError as e:
            if e.code not in (codes.CLUSTER_NOT_READY, codes.VM_NOT_RUNNING, codes.EXEC_TIMEOUT):
                raise
            problems = [e.message]
        if time.monotonic() > deadline:
            raise ClovmError(codes.CLUSTER_NOT_READY, f"cluster not ready after {timeout:g} s: {'; '.join(problems)}")
        time.sleep(0.5)


# --------------------------------------------------------------------------------- pause
@_one_line
def pause(home: Path | str, host: str, seconds: float) -> dict[str, Any]:
    """Freeze every process of VM ``host`` for ``seconds``, then thaw it (blocks meanwhile)."""
    _check_host(host)
    if not L.is_vm(host):
        raise ClovmError(codes.NOT_A_VM, f"{host} is a hypervisor host; only a VM ({', '.join(L.VMS)}) can be paused")
    if not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_PAUSE_S:
        raise ClovmError(codes.BAD_ARGUMENT, f"pause length must be in (0, {MAX_PAUSE_S:g}] seconds, not {seconds!r}")
    lay, rec = _running(home)
    _vm_pid(lay, rec, host)
    fr = _freezer(lay, rec)
    t0 = time.time()
    try:
        fr.freeze(host)
        t1 = time.time()
        time.sleep(max(0.0, seconds - (t1 - t0)))
    finally:
        fr.thaw(host)
    t2 = time.time()
    return {"frozen_at": t0, "thawed_at": t2, "frozen_s": t2 - t0, "freezer": fr.mode}


# --------------------------------------------------------------------------------- status
@_one_line
def status(home: Path | str) -> dict[str, Any]:
    lay, rec = _running(home)
    fr = _freezer(lay, rec)
    hosts: dict[str, Any] = {}
    for host in L.HOSTS:
        info: dict[str, Any] = {"address": L.ADDRESSES[host], "netns": lay.ns(host), "running": False, "domains": []}
        try:
            info["init_pid"] = _host_pid(lay, host)
            info["running"] = True
            from .virsh import call

            st = call(str(lay.socket(host)), "status", 5.0)
            if isinstance(st, dict):
                info["domains"], info["migrating"] = st.get("domains", []), st.get("migrating", {})
        except (ClovmError, OSError, RuntimeError, ValueError):
            pass
        hosts[host] = info
    vms = {}
    for vm in L.VMS:
        procs = fr.procs(vm)
        init = P.vm_init_pid(procs)
        vms[vm] = {
            "address": L.ADDRESSES[vm],
            "netns": lay.ns(vm),
            "running": init is not None,
            "init_pid": init,
            "processes": len(procs),
            "frozen": fr.is_frozen(vm),
            "link_on": net.where_is_vm_link(lay, vm),
        }
    return {
        "home": str(lay.home),
        "state": rec.state,
        "time_scale": rec.data.get("time_scale"),
        "token_ms": rec.data.get("token_ms"),
        "freezer": fr.mode,
        "up_seconds": rec.data.get("up_seconds"),
        "hosts": hosts,
        "vms": vms,
    }


# --------------------------------------------------------------------------------- up
def up(home: Path | str, *, time_scale: float = 1.0) -> dict[str, Any]:
    """Bring up hosts kvm1..3 and the two-node cluster vm1/vm2; returns once it is ready."""
    if not isinstance(time_scale, (int, float)) or not 0.1 <= time_scale <= 6.0:
        raise ClovmError(codes.BAD_ARGUMENT, f"time scale must be in [0.1, 6], not {time_scale!r}")
    _preflight()
    lay = L.layout_for(home)
    if any(c in str(lay.home) for c in ",:= \n") or len(str(lay.socket("kvm1"))) > 100:
        raise ClovmError(
            codes.BAD_ARGUMENT,
            f"home {str(lay.home)!r}: no ',', ':', '=' or blanks (overlay "
            "options) and short enough for unix sockets, please",
        )
    if (lay.home / "run" / "lock").exists():
        raise ClovmError(codes.HOME_IN_USE, f"{lay.home} runs another datacenter (run/lock); use another home")
    taken = [ns for ns in P.netns_list() if ns.startswith(lay.ns_prefix)]
    token = L.token_ms(time_scale)
    t0 = time.monotonic()
    try:
        rec = Record.create(lay.record_file, tag=lay.tag, home=str(lay.home), time_scale=time_scale, token_ms=token)
    except RecordExists:
        raise ClovmError(codes.HOME_IN_USE, f"{lay.home} already has a pacemaker topology (run down first)") from None
    if taken:
        lay.record_file.unlink()
        raise ClovmError(codes.HOME_IN_USE, f"namespaces of this home exist already: {' '.join(taken)} (run down)")
    try:
        return _bring_up(lay, rec, token, t0)
    except BaseException as e:
        lines = files.log_tails(lay, [f"hostinit-{h}" for h in L.HOSTS] + [f"vm-{v}" for v in L.VMS])
        try:
            _teardown(lay, rec)
        except (ClovmError, P.PlatformError, OSError) as te:
            lines.append(f"teardown after the failure: {te}")
        if isinstance(e, ClovmError):
            raise ClovmError(
                e.code if e.code != codes.PLATFORM_FAILED else codes.UP_FAILED,
                f"up failed (everything made was removed): {e.message}",
                e.details + lines,
            ) from None
        if isinstance(e, (P.PlatformError, OSError)):
            raise ClovmError(codes.UP_FAILED, f"up failed (everything made was removed): {e}", lines) from None
        raise


def _bring_up(lay: Layout, rec: Record, token: int, t0: float) -> dict[str, Any]:
    with P.run_netns_guard():  # until this topology's namespaces exist (platform.run_netns_guard)
        if P.mark_run_netns_unless_mounted():
            rec.add("run_netns_mount")
        _files_and_network(lay, rec, token)
    timings = {"files_and_network": time.monotonic() - t0}
    return _start_hosts_and_vms(lay, rec, token, timings, t0)


def _files_and_network(lay: Layout, rec: Record, token: int) -> None:
    """The cgroup, the home's files and the network namespaces with their bridges and veths."""
    base = None
    root = P.cgroup2_root()
    if root is not None:
        rec.add("cgroup", path=str(root / lay.cgroup_name))
        if P.Freezer.probe(root / lay.cgroup_name):
            base = root / lay.cgroup_name
    rec.set(cgroup_base=str(base) if base else None, freezer="cgroup2" if base else "sigstop")
    for vm in L.VMS:
        rec.add("vm", name=vm)
    files.write_home(lay, token)
    files.write_cib(lay)
    net.create_fabric(lay, lambda ns: rec.add("netns", name=ns))


def _start_hosts_and_vms(lay: Layout, rec: Record, token: int, timings: dict[str, float], t0: float) -> dict[str, Any]:
    """Start the hosts (which start their VMs) and wait for a ready cluster; up's summary."""
    for host in L.HOSTS:
        rec.add("host", name=host)
        argv = [
            "nsenter",
            f"--net=/run/netns/{lay.ns(host)}",
            "--",
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "slave",
            "--",
            sys.executable,
            "-m",
            "clovm.pacemaker.hostinit",
            "--home",
            str(lay.home),
            "--name",
            host,
        ]
        files.popen_detached(argv, lay.log_file(f"hostinit-{host}"))
    _wait_hosts(lay)
    timings["hosts"] = time.monotonic() - t0
    _wait_cluster(lay, rec)
    timings["members"] = time.monotonic() - t0
    view = wait_ready(lay.home, READY_TIMEOUT_S)
    took = time.monotonic() - t0
    timings["ready"] = took
    rec.set(state="ready", up_seconds=round(took, 2), timings={k: round(v, 2) for k, v in timings.items()})
    return {
        "home": str(lay.home),
        "cluster": L.CLUSTER_NAME,
        "nodes": list(L.VMS),
        "dc": view.dc,
        "hosts": {h: L.ADDRESSES[h] for h in L.HOSTS},
        "vms": {vm: {"address": L.ADDRESSES[vm], "host": L.INITIAL_PLACEMENT[vm]} for vm in L.VMS},
        "stonith": view.started,
        "token_ms": token,
        "time_scale": rec.data["time_scale"],
        "freezer": rec.data["freezer"],
        "up_seconds": round(took, 2),
        "timings": rec.data["timings"],
    }


def _wait_hosts(lay: Layout) -> None:
    deadline = time.monotonic() + HOSTS_READY_TIMEOUT_S
    while not all(lay.ready_file(h).exists() for h in L.HOSTS):
        for h in L.HOSTS:
            if lay.pid_file(h).exists():
                _host_pid(lay, h)  # raises if its init died
        if time.monotonic() > deadline:
            late = [h for h in L.HOSTS if not lay.ready_file(h).exists()]
            raise ClovmError(codes.UP_FAILED, f"hosts not ready after {HOSTS_READY_TIMEOUT_S:g} s: {' '.join(late)}")
        time.sleep(0.05)


def _wait_cluster(lay: Layout, rec: Record) -> None:
    """Until both nodes are online members with a DC."""
    deadline = time.monotonic() + CIB_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            rc, out, err = _exec(lay, rec, "vm1", ["crm_mon", "-1", "--output-as=xml"], 20.0)
            if rc == 0:
                view = readiness.parse_crm_mon(out)
                if view.dc and view.quorate and all(n in view.online for n in L.VMS):
                    return
                last = "; ".join(view.problems(L.VMS, ())) or "not yet"
            else:
                last = ((err or out).strip().splitlines() or [f"rc {rc}"])[-1]
        except (ClovmError, readiness.BadXml) as e:
            last = str(e)
        time.sleep(0.3)
    raise ClovmError(codes.CLUSTER_NOT_READY, f"no cluster after {CIB_TIMEOUT_S:g} s: {last}")


# --------------------------------------------------------------------------------- down
@_one_line
def down(home: Path | str) -> list[str]:
    """Remove everything the home's pacemaker topology made (also after a crashed up)."""
    _require_root()
    lay = L.layout_for(home)
    rec = Record.load(lay.record_file) or Record(lay.record_file, {"entries": []})
    return _teardown(lay, rec)


def _teardown(lay: Layout, rec: Record) -> list[str]:
    entries = list(rec.data.get("entries", []))
    known = {e.get("name") for e in entries if e.get("kind") == "netns"}
    for ns in P.netns_list():  # leftovers of a record lost or never written
        if ns.startswith(lay.ns_prefix) and ns not in known:
            entries.append({"kind": "netns", "name": ns})
    root = P.cgroup2_root()
    if root is not None and (root / lay.cgroup_name).exists() and not any(e.get("kind") == "cgroup" for e in entries):
        entries.append({"kind": "cgroup", "path": str(root / lay.cgroup_name)})
    if not entries:
        return []
    base = rec.data.get("cgroup_base") or next((e["path"] for e in entries if e.get("kind") == "cgroup"), None)
    fr = P.Freezer(Path(base) if base and Path(base).exists() else None, {vm: lay.ns(vm) for vm in L.VMS})
    done: list[str] = []
    errors: list[str] = []
    with P.run_netns_guard():  # while namespaces go and /run/netns may be unmounted
        for step, arg in teardown_plan(entries):
            try:
                line = _do_step(lay, fr, step, arg)
                if line:
                    done.append(line)
            except (P.PlatformError, OSError) as e:
                errors.append(f"{step} {arg}: {e}")
        try:  # the last topology out unmounts /run/netns, whoever made it a mount point
            if P.umount_run_netns_if_ours():
                done.append("unmounted /run/netns")
        except P.PlatformError as e:
            errors.append(f"umount /run/netns: {e}")
    if errors:
        raise ClovmError(codes.PLATFORM_FAILED, f"down could not remove everything: {errors[0]}", errors)
    lay.record_file.unlink(missing_ok=True)
    return done


def _do_step(lay: Layout, fr: P.Freezer, step: str, arg: str) -> str:
    if step == "kill_vm":
        n = len(fr.procs(arg))
        if n == 0:
            return ""
        if not fr.kill(arg):
            raise P.PlatformError(f"processes of {arg} survive SIGKILL")
        return f"killed VM {arg} ({n} processes)"
    if step == "stop_host":
        try:
            pid = int(lay.pid_file(arg).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return ""
        if not P.alive(pid) or P.pid_netns_inode(pid) != P.netns_inode(lay.ns(arg)):
            return ""
        P.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 8.0
        while P.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if P.alive(pid):
            P.kill(pid, signal.SIGKILL)
        return f"stopped host {arg} (sshd, hvd)"
    if step == "kill_netns":
        if arg not in P.netns_list():
            return ""
        pids = P.netns_pids(arg)
        deadline = time.monotonic() + 5.0
        while pids:
            for pid in pids:
                P.kill(pid, signal.SIGKILL)
                P.kill(pid, signal.SIGCONT)
            if time.monotonic() > deadline:
                raise P.PlatformError(f"processes left in {arg}: {' '.join(map(str, pids))}")
            time.sleep(0.05)
            pids = [p for p in P.netns_pids(arg) if P.alive(p)]
        return ""
    if step == "delete_netns":
        if arg not in P.netns_list():
            return ""
        P.netns_delete(arg)
        return f"deleted namespace {arg}"
    if step == "remove_cgroup":
        p = Path(arg)
        if not p.exists():
            return ""
        for child in [c for c in p.iterdir() if c.is_dir()]:
            child.rmdir()
        p.rmdir()
        return f"removed cgroup {arg}"
    if step == "umount_run_netns":
        return "unmounted /run/netns" if P.umount_run_netns() else ""
    if step == "remove_run_files":
        files.remove_run_files(lay)
        return ""
    raise ValueError(step)
