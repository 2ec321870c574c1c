"""The shutdown facility's configuration as values (what rcsd.cfg and SA_xscfsnmp.cfg hold).

``rcsd.cfg`` (one line per cluster host, identical on every node)::

    cfguest1,weight=1,admIP=127.40.0.1:agent=SA_xscfsnmpg0p,timeout=20:agent=SA_xscfsnmpg1p,timeout=20:...

``SA_xscfsnmp.cfg`` (one line per cluster host; what ``clsnmpsetup -l`` prints): the XSCF that
hosts the node's domain *now*: PPAR-ID, domain name, LAN#0 and LAN#1 addresses, user, connection.
Parsing and rendering of the text files lives in :mod:`clovm.formats`; these are plain values.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from ._state import XSCF_AGENTS

DEFAULT_AGENT_TIMEOUT = 20
PPAR_MAX = 31
CONNECTIONS = ("ssh", "telnet")
NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")  # CF node, domain and device names in the SF files
_FIELD = re.compile(r"\S+\Z")


@dataclass(frozen=True, slots=True)
class AgentRef:
    name: str  # e.g. "SA_xscfsnmpg0p" (sdtool -s prints it with ".so")
    timeout: int = DEFAULT_AGENT_TIMEOUT


@dataclass(frozen=True, slots=True)
class SfHost:
    """One rcsd.cfg line."""

    cf_name: str
    weight: int = 1
    adm_ip: str = ""
    agents: tuple[AgentRef, ...] = tuple(AgentRef(a) for a in XSCF_AGENTS)


@dataclass(frozen=True, slots=True)
class XscfEntry:
    """One SA_xscfsnmp.cfg line / one ``clsnmpsetup -l`` row."""

    cf_name: str
    ppar_id: int
    domain: str
    lan0: str
    lan1: str
    user: str = "xuser"
    connection: str = "ssh"
    device: str = "xscf"


@dataclass(frozen=True, slots=True)
class SfConfig:
    hosts: tuple[SfHost, ...] = ()
    xscf: tuple[XscfEntry, ...] = ()

    def host(self, cf_name: str) -> SfHost:
        for h in self.hosts:
            if h.cf_name == cf_name:
                return h
        raise KeyError(cf_name)

    def entry(self, cf_name: str) -> XscfEntry:
        for e in self.xscf:
            if e.cf_name == cf_name:
                return e
        raise KeyError(cf_name)

    def weight(self, cf_name: str) -> int:
        return self.host(cf_name).weight

    def with_entry(self, entry: XscfEntry, weight: int | None = None) -> SfConfig:
        """A copy where ``entry.cf_name``'s XSCF entry (and, if given, its weight) is replaced."""
        xs = tuple(entry if e.cf_name == entry.cf_name else e for e in self.xscf)
        hs = self.hosts
        if weight is not None:
            hs = tuple(replace(h, weight=weight) if h.cf_name == entry.cf_name else h for h in hs)
        return SfConfig(hosts=hs, xscf=xs)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def entry_problem(e: XscfEntry) -> str | None:
    """What is wrong with ``e`` as an SA_xscfsnmp.cfg line, or None."""
    if not isinstance(e.cf_name, str) or not NAME.match(e.cf_name):
        return f"bad CF node name {e.cf_name!r}"
    if isinstance(e.ppar_id, bool) or not isinstance(e.ppar_id, int) or not 0 <= e.ppar_id <= PPAR_MAX:
        return f"PPAR-ID must be an integer 0..{PPAR_MAX}, not {e.ppar_id!r}"
    if not isinstance(e.domain, str) or not NAME.match(e.domain):
        return f"bad domain name {e.domain!r}"
    for label, addr in (("LAN#0", e.lan0), ("LAN#1", e.lan1)):
        if not isinstance(addr, str) or not is_ip(addr):
            return f"XSCF-{label} address {addr!r} is not an IP address"
    if not isinstance(e.user, str) or not _FIELD.match(e.user) or e.user.startswith("#"):
        return f"bad user name {e.user!r}"
    if e.connection not in CONNECTIONS:
        return f"connection must be ssh or telnet, not {e.connection!r}"
    if not isinstance(e.device, str) or not NAME.match(e.device):
        return f"bad device name {e.device!r}"
    return None
