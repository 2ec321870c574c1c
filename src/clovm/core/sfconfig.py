"""The shutdown facility's configuration as values (what rcsd.cfg and SA_xscfsnmp.cfg hold).

``rcsd.cfg`` (one line per cluster host, identical on every node)::

    cfguest1,weight=1,admIP=127.40.0.1:agent=SA_xscfsnmpg0p,timeout=20:agent=SA_xscfsnmpg1p,timeout=20:...

``SA_xscfsnmp.cfg`` (one line per cluster host; what ``clsnmpsetup -l`` prints): the XSCF that
hosts the node's domain *now*: PPAR-ID, domain name, LAN#0 and LAN#1 addresses, user, connection.
Parsing and rendering of the text files lives in :mod:`clovm.formats`; these are plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._state import XSCF_AGENTS

DEFAULT_AGENT_TIMEOUT = 20


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

    def with_entry(self, entry: XscfEntry, weight: int | None = None) -> "SfConfig":
        """A copy where ``entry.cf_name``'s XSCF entry (and, if given, its weight) is replaced."""
        xs = tuple(entry if e.cf_name == entry.cf_name else e for e in self.xscf)
        hs = self.hosts
        if weight is not None:
            hs = tuple(replace(h, weight=weight) if h.cf_name == entry.cf_name else h for h in hs)
        return SfConfig(hosts=hs, xscf=xs)
