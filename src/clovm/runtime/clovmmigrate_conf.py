"""The ``clovmmigrate.conf`` of a control domain: its format, written by ``clovm up`` and read by
:mod:`clovm.runtime.migrate_env` to find the guest-domain cluster nodes it may call.

``etc/opt/FJSVcluster/etc/clovmmigrate.conf`` (clovm's own format; written by ``clovm up`` with
:func:`render_clovmmigrate_conf`, read with :func:`parse_clovmmigrate_conf`)
    The guest-domain cluster nodes whose domains this control domain may host — every node of
    every guest cluster of the topology, since any guest may be migrated to any control domain.
    ``#`` starts a comment; blank lines are ignored; every other line has four whitespace-separated
    fields::

        # guest-domain  cf-node   node-address  cluster-name
        guest1          cfguest1  127.40.0.1    guestcluster
        guest2          cfguest2  127.40.0.2    guestcluster

    ``guest-domain`` is the logical-domain name (unique in the file), ``cf-node`` the CF node name
    of the cluster node running in it (unique), ``node-address`` its IP address (where its node
    agent serves ``NODE_PORT``), ``cluster-name`` the guest cluster it belongs to. ``guest_nodes
    {domain}`` answers ``{"node": cf-node of domain, "nodes": cf-nodes of its cluster}``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from .. import formats, settings
from ..topology import Topology

__all__ = ["CLOVMMIGRATE_CONF", "ConfEntry", "parse_clovmmigrate_conf", "render_clovmmigrate_conf"]

CLOVMMIGRATE_CONF = settings.CLOVMMIGRATE_CONF  # relative to a host's root

_CONF = "clovmmigrate.conf"
_CONF_HEADER = (
    "# clovmmigrate.conf: guest-domain cluster nodes whose domains this control domain may host\n"
    "# (written by clovm up for {host}).\n"
)


class ConfEntry(NamedTuple):
    """One clovmmigrate.conf line."""

    domain: str
    cf_name: str
    address: str
    cluster: str


def render_clovmmigrate_conf(topology: Topology, control_domain: str) -> str:
    """clovmmigrate.conf text for ``control_domain``: every node of every guest cluster."""
    rows: list[tuple[str, str, str, str]] = []
    for cl in topology.clusters:
        if cl.kind != "guest":
            continue
        for cf in cl.nodes:
            g = next(x for x in topology.guests if x.cf_name == cf)
            rows.append((g.name, g.cf_name, g.address, cl.name))
    table = [("# guest-domain", "cf-node", "node-address", "cluster-name"), *rows]
    widths = [max(len(r[i]) for r in table) + 2 for i in range(3)]
    body = "".join(f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:<{widths[2]}}{r[3]}\n" for r in table)
    return _CONF_HEADER.format(host=control_domain) + body


def parse_clovmmigrate_conf(text: str) -> tuple[ConfEntry, ...]:
    """Entries of a clovmmigrate.conf; :class:`clovm.formats.FormatError` names a bad line."""
    out: list[ConfEntry] = []
    domains: set[str] = set()
    cfs: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 4:
            raise formats.FormatError(
                lineno,
                f"expected 4 fields (guest-domain cf-node node-address cluster-name), found {len(fields)}",
                _CONF,
            )
        domain, cf, addr, cluster = fields
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise formats.FormatError(lineno, f"{addr!r} is not an IP address", _CONF) from None
        if domain in domains:
            raise formats.FormatError(lineno, f"guest domain {domain} is listed twice", _CONF)
        if cf in cfs:
            raise formats.FormatError(lineno, f"CF node {cf} is listed twice", _CONF)
        domains.add(domain)
        cfs.add(cf)
        out.append(ConfEntry(domain, cf, addr, cluster))
    return tuple(out)
