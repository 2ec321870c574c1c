"""Looking things up in a home: its topology, whether it runs, where a guest is, hosts and servers.

Shared by the datacenter's use cases (:mod:`clovm.api.datacenter`, :mod:`clovm.api.faults`); every
miss is a :class:`~clovm.api.errors.ClovmError` with a stable code.
"""

from __future__ import annotations

from .. import topology
from ..core import codes
from ..runtime.home import Home
from .errors import ClovmError
from .processes import home_pids, read_json


def topology_of(home: Home) -> topology.Topology:
    """The home's topology; NOT_RUNNING if it has none, BAD_TOPOLOGY if it does not load."""
    if not home.topology_file.exists():
        raise ClovmError(codes.NOT_RUNNING, f"{home.root} is not a clovm home (no topology; run 'clovm up')")
    try:
        return topology.load(home.topology_file)
    except topology.TopologyError as e:
        raise ClovmError(codes.BAD_TOPOLOGY, str(e)) from None


def require_running(home: Home) -> dict[str, int]:
    """``label -> pid`` of the home's processes; NOT_RUNNING if there is none."""
    pids = home_pids(home)
    if not pids:
        raise ClovmError(codes.NOT_RUNNING, f"home {home.root} is not running (run 'clovm up')")
    return pids


def placement(home: Home, t: topology.Topology, guest: str) -> tuple[str, str]:
    """(control domain, server) hosting ``guest`` now: its placement file, else the topology."""
    rec = read_json(home.placement_file(guest))
    if isinstance(rec, dict) and rec.get("host") and rec.get("server"):
        return str(rec["host"]), str(rec["server"])
    cd = t.control_domain(t.guest(guest).control_domain)
    return cd.name, cd.server


def find_server(t: topology.Topology, name: str) -> topology.Server:
    """A server by name; UNKNOWN_SERVER."""
    s = next((s for s in t.servers if s.name == name), None)
    if s is None:
        raise ClovmError(
            codes.UNKNOWN_SERVER, f"unknown server {name!r} (servers: {', '.join(x.name for x in t.servers)})"
        )
    return s


def find_host(t: topology.Topology, name: str) -> topology.ControlDomain | topology.Guest:
    """A control domain or guest by host name or CF node name; UNKNOWN_HOST."""
    h = next((h for h in t.hosts() if name in (h.name, h.cf_name)), None)
    if h is None:
        raise ClovmError(codes.UNKNOWN_HOST, f"unknown host {name!r} (hosts: {', '.join(x.name for x in t.hosts())})")
    return h


def find_guest(t: topology.Topology, name: str) -> topology.Guest:
    """A guest domain by name; UNKNOWN_DOMAIN."""
    g = next((g for g in t.guests if g.name == name), None)
    if g is None:
        raise ClovmError(
            codes.UNKNOWN_DOMAIN, f"unknown domain {name!r} (guests: {', '.join(g.name for g in t.guests)})"
        )
    return g


def check_host(home: Home, host: str) -> str:
    """The host name for ``host`` (a host or CF node name of the home's topology); UNKNOWN_HOST."""
    return find_host(topology_of(home), host).name
