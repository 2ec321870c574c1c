"""The sockets a topology's datacenter binds, and whether each is free before ``up`` starts anything.

A taken address is ADDRESS_IN_USE, naming the address, the port, what it is for and who probably
holds it (from ``/proc/net`` and the processes' open file descriptors).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .. import settings, topology
from ..core import codes
from .errors import ClovmError
from .processes import describe


def endpoints(t: topology.Topology) -> list[tuple[str, int, str, str]]:
    """``(address, port, "udp"|"tcp", what)`` for every socket the datacenter will bind."""
    out: list[tuple[str, int, str, str]] = []
    for s in t.servers:
        for lan, addr in (("LAN#0", s.lan0), ("LAN#1", s.lan1)):
            out.append((addr, settings.SNMP_PORT, "udp", f"XSCF {s.name} {lan} SNMP"))
            out.append((addr, settings.XSCF_SSH_PORT, "tcp", f"XSCF {s.name} {lan} SSH"))
    for c in t.control_domains:
        out.append((c.address, settings.LDMD_PORT, "tcp", f"ldmd of {c.name}"))
        out.append((c.address, settings.CF_PORT, "udp", f"CF of {c.name}"))
        out.append((c.address, settings.NODE_PORT, "tcp", f"node admin of {c.name}"))
    for g in t.guests:
        out.append((g.address, settings.CF_PORT, "udp", f"CF of {g.name}"))
        out.append((g.address, settings.NODE_PORT, "tcp", f"node admin of {g.name}"))
    return out


def _socket_inodes(addr: str, port: int, proto: str) -> set[str]:
    """Inodes of sockets bound to ``addr:port`` (or the wildcard) per /proc/net/{tcp,udp}."""
    want = {f"{int.from_bytes(socket.inet_aton(a), 'little'):08X}:{port:04X}" for a in (addr, "0.0.0.0")}
    inodes: set[str] = set()
    try:
        rows = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for row in rows:
        f = row.split()
        if len(f) > 9 and f[1] in want and (proto == "udp" or f[3] == "0A"):  # 0A: LISTEN
            inodes.add(f[9])
    return inodes


def _holder(addr: str, port: int, proto: str) -> str:
    """Who probably holds ``addr:port``: a process description, or a hint."""
    inodes = {f"socket:[{i}]" for i in _socket_inodes(addr, port, proto)}
    if inodes:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                fds = list((d / "fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) in inodes:
                        return describe(int(d.name))
                except OSError:
                    continue
        return "a process of another user"
    return "an unknown process (or a wildcard socket)"


def check_free(t: topology.Topology) -> None:
    for addr, port, proto, what in endpoints(t):
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                if proto == "tcp":  # TIME_WAIT leftovers of an earlier run must not count
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, port))
                if proto == "tcp":
                    s.listen(1)
            except OSError as e:
                why = e.strerror or str(e)
                raise ClovmError(
                    codes.ADDRESS_IN_USE,
                    f"{addr}:{port}/{proto} ({what}) is not free: {why}; probably held by {_holder(addr, port, proto)}",
                ) from None
