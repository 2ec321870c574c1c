"""Faults injected into (or cleared from) a running datacenter: ``clovm fault``'s use cases.

Each takes typed arguments (the CLI parses the command line) and returns the one line that says
what it did. XSCF LANs and migration aborts are asked of the daemons; partitions, clock offsets
and forgotten host keys are files of the home that the daemons watch (``run/partition.json``,
``run/offsets.json``, a host's ``root/.ssh/known_hosts``). Errors are
:class:`~clovm.api.errors.ClovmError`: UNKNOWN_SERVER, UNKNOWN_HOST, UNKNOWN_DOMAIN, BAD_ARGUMENT,
NOT_RUNNING, REMOTE_ERROR.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import settings
from ..core import codes
from ..fsutil import atomic_write
from ..runtime import proc, rpc
from ..runtime.home import Home
from .errors import ClovmError
from .lookup import (
    find_guest,
    find_host,
    find_server,
    placement,
    require_running,
    topology_of,
)
from .processes import of_home, read_json

# the kinds of `clovm fault`, one use case each
FAULTS = ("xscf-down", "xscf-up", "partition", "heal", "clock", "migration-abort", "forget-xscf-key", "kill", "pause")
KILLABLE = ("xscfd", "ldmd", "nodeagent")  # what `clovm fault kill` kills


def _remote(path: Path, op: str, **args: Any) -> Any:
    try:
        return rpc.call_unix_sync(path, op, timeout=settings.CALL_TIMEOUT, **args)
    except rpc.RpcUnreachable as e:
        raise ClovmError(codes.NOT_RUNNING, f"{e.message}") from None
    except rpc.RpcError as e:
        raise ClovmError(codes.REMOTE_ERROR, f"{e.code}: {e.message}") from None


def xscf_lan(home: Home, server: str, *, up: bool, lans: Sequence[int] = (0, 1)) -> str:
    """Take XSCF-LANs of a server down (its SNMP agent and SSH CLI stop answering there) or up.

    server -- the server whose XSCF it is
    up -- True: bring the LANs up again; False: take them down
    lans -- which XSCF-LANs (0, 1; both by default)
    """
    t = topology_of(home)
    if not lans or any(lan not in (0, 1) for lan in lans):
        raise ClovmError(codes.BAD_ARGUMENT, f"XSCF-LANs are 0 and 1, not {list(lans)!r}")
    s = find_server(t, server)
    require_running(home)
    for lan in lans:
        _remote(home.xscf_socket(s.name), "lan", lan=lan, up=up)
    which = " and ".join(f"LAN#{lan}" for lan in lans)
    return f"XSCF {s.name} {which} {'up' if up else 'down'}"


def partition(home: Home, group: Sequence[str], other: Sequence[str] | None = None) -> str:
    """Cut the interconnect between two groups of hosts (CF heartbeats and node channels).

    group -- hosts (host or CF node names) on one side
    other -- hosts on the other side; None: every host not in ``group``
    """
    t = topology_of(home)
    if not group or (other is not None and not other):
        raise ClovmError(codes.BAD_ARGUMENT, "a partition needs a host on each side")
    groups = [[find_host(t, n).name for n in group]]
    if other is not None:
        groups.append([find_host(t, n).name for n in other])
    else:
        groups.append([h.name for h in t.hosts() if h.name not in groups[0]])
    seen = [n for g in groups for n in g]
    if len(seen) != len(set(seen)):
        raise ClovmError(codes.BAD_ARGUMENT, "a host is in both groups")
    groups = [g for g in groups if g]
    atomic_write(home.partition_file, json.dumps({"groups": groups}) + "\n")
    return "partition: " + " | ".join(" ".join(g) for g in groups)


def heal(home: Home) -> str:
    """End a :func:`partition`."""
    topology_of(home)
    (home.partition_file).unlink(missing_ok=True)
    return "partition healed"


def clock(home: Home, server: str, delta: float) -> str:
    """Move a server's clock (and so its domains' clocks).

    server -- the server
    delta -- seconds added to the server's clock offset (may be negative)
    """
    t = topology_of(home)
    s = find_server(t, server)
    if not math.isfinite(delta):
        raise ClovmError(codes.BAD_ARGUMENT, f"not a number of seconds: {delta!r}")
    offsets = read_json(home.offsets_file)
    offsets = offsets if isinstance(offsets, dict) else {}
    offsets[s.name] = float(offsets.get(s.name, 0.0)) + delta
    atomic_write(home.offsets_file, json.dumps(offsets) + "\n")
    return f"clock of {s.name}: offset {offsets[s.name]:+g} s"


def migration_abort(home: Home, domain: str) -> str:
    """Make the next (or running) live migration of a guest domain fail after the copy: the guest
    stops, as when a real migration fails at the hand-off.

    domain -- the guest domain
    """
    t = topology_of(home)
    find_guest(t, domain)
    require_running(home)
    cd, _ = placement(home, t, domain)
    _remote(home.ldmd_socket(cd), "arm_abort", domain=domain)
    return f"migration of {domain} (from {cd}) will fail after the copy"


def forget_xscf_key(home: Home, host: str, server: str) -> str:
    """Remove both XSCF-LANs of a server from a host's known_hosts (the first SSH connection
    to that XSCF was never made: SF reports message 7245).

    host -- the host (host or CF node name) that forgets
    server -- the server whose XSCF host key it forgets
    """
    from ..runtime import ssh

    t = topology_of(home)
    h, s = find_host(t, host), find_server(t, server)
    n = ssh.remove_known_hosts(home.known_hosts(h.name), [s.lan0, s.lan1])
    return f"{h.name} forgot {n} host key(s) of XSCF {s.name}"


def kill(home: Home, daemon: str, host: str, at: str | None = None) -> str:
    """SIGKILL a daemon, now or when a live migration reaches a point (a test-only hook).

    daemon -- ``xscfd`` (host: a server), ``ldmd`` (a control domain) or ``nodeagent`` (a control
        domain's cluster node, or a guest domain's: that process *is* the domain, so killing it is
        a crashed domain, which stays down until ``ldm start-domain``)
    host -- the server or host (host or CF node name)
    at -- None: now. Else one of :data:`clovm.runtime.proc.KILL_POINTS`: armed in
        ``Home.armed_kills_file``, the first process to reach that point of a migration kills the
        daemon and disarms it (see :mod:`clovm.runtime.proc`)

    The supervisor restarts a killed xscfd, ldmd or control-domain node agent (``clovm status``
    shows it restarting).
    """
    t = topology_of(home)
    if daemon not in KILLABLE:
        raise ClovmError(
            codes.BAD_ARGUMENT, f"clovm fault kill: {daemon!r} is not a daemon; one of {', '.join(KILLABLE)}"
        )
    guest = False
    if daemon == "xscfd":
        name = find_server(t, host).name
    else:
        h = find_host(t, host)
        guest = h.name in {g.name for g in t.guests}
        if daemon == "ldmd" and guest:
            raise ClovmError(codes.BAD_ARGUMENT, f"clovm fault kill: ldmd runs on control domains, not on {h.name}")
        name = h.name
    key = proc.daemon_key(daemon, name)
    require_running(home)
    if at is not None:
        if at not in proc.KILL_POINTS:
            raise ClovmError(
                codes.BAD_ARGUMENT,
                f"clovm fault kill --at: {at!r} is not a point of a migration (one of {', '.join(proc.KILL_POINTS)})",
            )
        _arm(home, {"point": at, "daemon": key})
        return f"armed: {daemon} {name} is killed (SIGKILL) when a live migration reaches {at}"
    pid = proc.victim_pid(home, key)
    if pid is None or not of_home(pid, home):
        raise ClovmError(codes.NOT_RUNNING, f"{daemon} {name} is not running")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise ClovmError(codes.NOT_RUNNING, f"{daemon} {name} is not running") from None
    if guest:
        cd, _ = placement(home, t, name)
        return (
            f"killed the node agent of guest domain {name} (pid {pid}): the domain crashed; it stays down "
            f"until ldm start-domain {name} on {cd}"
        )
    return f"killed {daemon} {name} (pid {pid}) with SIGKILL; the supervisor starts it again"


def _arm(home: Home, entry: dict[str, str]) -> None:
    path = home.armed_kills_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = read_json(path)
        entries = old if isinstance(old, list) else []
        atomic_write(path, json.dumps([*entries, entry]) + "\n")


def pause(home: Home, guest: str, seconds: float) -> str:
    """Freeze the process of guest domain ``guest`` (SIGSTOP of the pid its ldmd placed in
    ``run/domains/GUEST.json``, checked to be the home's) for ``seconds`` real seconds, then thaw
    it (SIGCONT, also on an interruption): a hung guest, as the seed's fencing cases need."""
    find_guest(topology_of(home), guest)
    rec = read_json(home.placement_file(guest))
    pid = rec.get("pid") if isinstance(rec, dict) else None
    if not isinstance(pid, int) or not of_home(pid, home):
        raise ClovmError(codes.NOT_RUNNING, f"the domain process of {guest} is not running (clovm status)")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"{guest}: domain process {pid} stopped for {time.monotonic() - t0:.2f} s (SIGSTOP), then continued"
