"""The datacenter topology: servers, PPARs, control domains, guests, clusters, applications.

A topology is a TOML file (see ``topologies/figure-17-1.toml``). :func:`load` parses it, checks
its shape with msgspec and its meaning here, and raises :class:`TopologyError` with one line
naming the offending field.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import msgspec

from .core import names
from .core.sfconfig import SfConfig, SfHost, XscfEntry

if TYPE_CHECKING:  # (imported where used: the node composition is heavy, and most commands never build one)
    from .core.node_io import ControlDomainFacts, NodeDisk, NodeSpec


class TopologyError(ValueError):
    """The topology is invalid. ``str()`` is one line that names the field."""


class Xscf(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: str = "xuser"
    connection: Literal["ssh", "telnet"] = "ssh"


class MigrationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bandwidth_mb_s: float = 500.0


class Server(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    lan0: str
    lan1: str
    ppars: list[int]
    clock_offset: float = 0.0


class ControlDomain(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    server: str
    ppar: int
    cf_name: str
    address: str
    sf_weight: int = 1
    memory_mb: int = 65536  # room for guests


class Guest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    control_domain: str
    cf_name: str
    address: str
    memory_mb: int = 8192
    vcpu: int = 8
    dirty_rate_mb_s: float = 100.0


class Cluster(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: Literal["control", "guest"]
    nodes: list[str]


class UserApplication(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    cluster: str
    nodes: list[str]  # priority order: first is the preferred (online) node
    shutdown_priority: int = 0


class Topology(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    rename={
        "servers": "server",
        "control_domains": "control_domain",
        "guests": "guest",
        "clusters": "cluster",
        "apps": "userapplication",
    },
):
    servers: list[Server]
    control_domains: list[ControlDomain]
    guests: list[Guest] = []
    clusters: list[Cluster] = []
    apps: list[UserApplication] = []
    xscf: Xscf = Xscf()
    migration: MigrationSettings = MigrationSettings()

    # ---- lookups -------------------------------------------------------------------------
    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.name == name)

    def control_domain(self, name: str) -> ControlDomain:
        return next(c for c in self.control_domains if c.name == name)

    def guest(self, name: str) -> Guest:
        return next(g for g in self.guests if g.name == name)

    def host_of_cf(self, cf_name: str) -> ControlDomain | Guest:
        hosts: tuple[ControlDomain | Guest, ...] = (*self.control_domains, *self.guests)
        for h in hosts:
            if h.cf_name == cf_name:
                return h
        raise KeyError(cf_name)

    def cluster_of(self, cf_name: str) -> Cluster:
        return next(c for c in self.clusters if cf_name in c.nodes)

    def guest_cluster_of_domain(self, domain: str) -> Cluster:
        return self.cluster_of(self.guest(domain).cf_name)

    def hosts(self) -> list[ControlDomain | Guest]:
        return [*self.control_domains, *self.guests]

    # ---- what the core machines are built from (both drivers and provisioning use these) ------
    def control_domain_facts(self, name: str) -> ControlDomainFacts:
        """What control domain ``name`` answers to ``cd_info``."""
        from .core.node_io import ControlDomainFacts

        cd = self.control_domain(name)
        srv = self.server(cd.server)
        return ControlDomainFacts(
            cd.name, srv.name, cd.ppar, srv.lan0, srv.lan1, cd.sf_weight, self.xscf.user, self.xscf.connection
        )

    def initial_sf_config(self, nodes: Iterable[str]) -> SfConfig:
        """rcsd.cfg hosts and SA_xscfsnmp.cfg entries of a guest cluster as ``clovm up`` writes them:
        each node's weight is its control domain's, its XSCF the one of the server it starts on."""
        hosts, entries = [], []
        for cf in nodes:
            g = self.host_of_cf(cf)
            assert isinstance(g, Guest)
            cd = self.control_domain(g.control_domain)
            srv = self.server(cd.server)
            hosts.append(SfHost(cf, weight=cd.sf_weight, adm_ip=g.address))
            entries.append(XscfEntry(cf, cd.ppar, g.name, srv.lan0, srv.lan1, self.xscf.user, self.xscf.connection))
        return SfConfig(tuple(hosts), tuple(entries))

    def hosts_table(self) -> dict[str, str]:
        """etc/inet/hosts of every host: name -> address."""
        return {h.name: h.address for h in self.hosts()}

    def node_spec(self, host: str) -> NodeSpec:
        """The fixed facts of host ``host``'s cluster node."""
        from .core.node_io import NodeSpec
        from .core.rms import AppSpec

        me = next(h for h in self.hosts() if h.name == host)
        cluster = next((c for c in self.clusters if me.cf_name in c.nodes), None)
        guest_cluster = cluster is not None and cluster.kind == "guest"
        control = isinstance(me, ControlDomain)
        guest_domains: dict[str, tuple[str, tuple[str, ...]]] = {}
        if control:
            for g in self.guests:
                cl = next((c for c in self.clusters if g.cf_name in c.nodes), None)
                if cl is not None and cl.kind == "guest":
                    guest_domains[g.name] = (g.cf_name, tuple(cl.nodes))
        return NodeSpec(
            cf=me.cf_name,
            host=me.name,
            nodes=tuple(cluster.nodes) if cluster else (me.cf_name,),
            guest_cluster=guest_cluster,
            apps=tuple(
                AppSpec(a.name, tuple(a.nodes), a.shutdown_priority)
                for a in self.apps
                if cluster is not None and guest_cluster and a.cluster == cluster.name
            ),
            control_domains=frozenset(c.name for c in self.control_domains),
            control=self.control_domain_facts(me.name) if control else None,
            guest_domains=guest_domains,
            cf_domain={h.cf_name: h.name for h in self.hosts()},
        )

    def initial_disk(self, host: str) -> NodeDisk:
        """A host's node files as ``clovm up`` provisions them (before anything changed them)."""
        from .core.node_io import NodeDisk

        spec = self.node_spec(host)
        sf = self.initial_sf_config(spec.nodes) if spec.guest_cluster else SfConfig()
        return NodeDisk(sf_config=sf, hosts=self.hosts_table())


DEFAULT = "figure-17-1"


def builtin_names() -> list[str]:
    from importlib import resources  # (here: a home's own topology.toml needs no package data)

    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("clovm.topologies").iterdir() if p.name.endswith(".toml")
    )


def load(name_or_path: str | Path = DEFAULT) -> Topology:
    """Load a built-in topology by name, or a TOML file by path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        try:
            text = p.read_text()
        except OSError as e:
            raise TopologyError(f"cannot read topology {str(p)!r}: {e.strerror}") from None
        return loads(text, source=str(p))
    from importlib import resources

    res = resources.files("clovm.topologies").joinpath(f"{name_or_path}.toml")
    if not res.is_file():
        raise TopologyError(
            f"unknown topology {str(name_or_path)!r}: give a TOML file or one of {', '.join(builtin_names())}"
        )
    return loads(res.read_text(), source=str(name_or_path))


def loads(text: str, source: str = "<topology>") -> Topology:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{source}: not valid TOML: {e}") from None
    try:
        topo = msgspec.convert(raw, Topology)
    except msgspec.ValidationError as e:
        raise TopologyError(f"{source}: {_field_path(str(e))}") from None
    validate(topo, source)
    return topo


def dumps(topo: Topology) -> str:
    import tomli_w

    return tomli_w.dumps(msgspec.to_builtins(topo))


def _field_path(msg: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.server[0].ppars[0]`"; name the field first.
    if " - at `$." in msg:
        what, where = msg.split(" - at `$.", 1)
        return f"field {where.rstrip('`')}: {what}"
    return msg


def validate(t: Topology, source: str = "<topology>") -> None:
    def fail(field: str, why: str) -> NoReturn:
        raise TopologyError(f"{source}: field {field}: {why}")

    def unique(items: list[Any], attr: str, field: str) -> None:
        seen: set[Any] = set()
        for i, it in enumerate(items):
            v = getattr(it, attr)
            if v in seen:
                fail(f"{field}[{i}].{attr}", f"duplicate {attr} {v!r}")
            seen.add(v)

    if not t.servers:
        fail("server", "at least one server is required")
    unique(t.servers, "name", "server")
    unique(t.control_domains, "name", "control_domain")
    unique(t.guests, "name", "guest")
    unique(t.clusters, "name", "cluster")
    unique(t.apps, "name", "userapplication")

    # Names become directory names (hosts/HOST, servers/SERVER) and command arguments: the
    # product's naming rules first (core.names).
    it: Any  # a Server, ControlDomain or Guest
    for field, items, kinds in (
        ("server", t.servers, ("server",)),
        ("control_domain", t.control_domains, ("host",)),
        ("guest", t.guests, ("host", "domain")),
    ):
        for i, it in enumerate(items):
            for kind in kinds:
                problem = names.problem(kind, it.name)
                if problem is not None:
                    fail(f"{field}[{i}].name", problem)
            if field != "server":
                problem = names.problem("cf node", it.cf_name)
                if problem is not None:
                    fail(f"{field}[{i}].cf_name", problem)
    host_names: dict[str, str] = {}
    for field, items in (("server", t.servers), ("control_domain", t.control_domains), ("guest", t.guests)):
        for i, it in enumerate(items):
            if it.name in host_names:
                fail(f"{field}[{i}].name", f"duplicate name {it.name!r} (also a {host_names[it.name]})")
            host_names[it.name] = field

    addresses: dict[str, str] = {}

    def address(field: str, value: str) -> None:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            fail(field, f"{value!r} is not an IP address")
        if value in addresses:
            fail(field, f"duplicate address {value} (also {addresses[value]})")
        if not ip.is_loopback:
            # The emulated datacenter only ever binds and sends on loopback.
            fail(field, f"{value} is outside 127.0.0.0/8; the emulated datacenter uses loopback only")
        addresses[value] = field

    ppars_seen: dict[tuple[str, int], str] = {}
    for i, s in enumerate(t.servers):
        address(f"server[{i}].lan0", s.lan0)
        address(f"server[{i}].lan1", s.lan1)
        if not s.ppars:
            fail(f"server[{i}].ppars", "at least one PPAR-ID is required")
        for p in s.ppars:
            if not 0 <= p <= 15:
                fail(f"server[{i}].ppars", f"PPAR-ID {p} is outside 0..15")
    cf_names: dict[str, str] = {}
    for i, c in enumerate(t.control_domains):
        address(f"control_domain[{i}].address", c.address)
        if c.server not in {s.name for s in t.servers}:
            fail(f"control_domain[{i}].server", f"unknown server {c.server!r}")
        if c.ppar not in t.server(c.server).ppars:
            fail(f"control_domain[{i}].ppar", f"server {c.server} has no PPAR-ID {c.ppar}")
        key = (c.server, c.ppar)
        if key in ppars_seen:
            fail(
                f"control_domain[{i}].ppar", f"PPAR {c.ppar} of {c.server} already has control domain {ppars_seen[key]}"
            )
        ppars_seen[key] = c.name
        if c.sf_weight < 1:
            fail(f"control_domain[{i}].sf_weight", "must be at least 1")
        if c.cf_name in cf_names:
            fail(f"control_domain[{i}].cf_name", f"duplicate CF name {c.cf_name!r}")
        cf_names[c.cf_name] = c.name
    for i, g in enumerate(t.guests):
        address(f"guest[{i}].address", g.address)
        if g.control_domain not in {c.name for c in t.control_domains}:
            fail(f"guest[{i}].control_domain", f"unknown control domain {g.control_domain!r}")
        if g.cf_name in cf_names:
            fail(f"guest[{i}].cf_name", f"duplicate CF name {g.cf_name!r}")
        cf_names[g.cf_name] = g.name
        if g.memory_mb <= 0:
            fail(f"guest[{i}].memory_mb", "must be positive")
        if g.dirty_rate_mb_s < 0:
            fail(f"guest[{i}].dirty_rate_mb_s", "must not be negative")
    in_cluster: dict[str, str] = {}
    guest_cf = {g.cf_name for g in t.guests}
    ctl_cf = {c.cf_name for c in t.control_domains}
    for i, cl in enumerate(t.clusters):
        for n in cl.nodes:
            if n not in cf_names:
                fail(f"cluster[{i}].nodes", f"unknown CF node {n!r}")
            if n in in_cluster:
                fail(f"cluster[{i}].nodes", f"{n} is already in cluster {in_cluster[n]}")
            in_cluster[n] = cl.name
            if cl.kind == "guest" and n not in guest_cf:
                fail(f"cluster[{i}].nodes", f"{n} is not a guest domain's CF node")
            if cl.kind == "control" and n not in ctl_cf:
                fail(f"cluster[{i}].nodes", f"{n} is not a control domain's CF node")
    for i, a in enumerate(t.apps):
        app_cluster = next((c for c in t.clusters if c.name == a.cluster), None)
        if app_cluster is None:
            fail(f"userapplication[{i}].cluster", f"unknown cluster {a.cluster!r}")
        if not a.nodes:
            fail(f"userapplication[{i}].nodes", "at least one node is required")
        for n in a.nodes:
            if n not in app_cluster.nodes:
                fail(f"userapplication[{i}].nodes", f"{n} is not a node of cluster {a.cluster}")
        if len(set(a.nodes)) != len(a.nodes):
            fail(f"userapplication[{i}].nodes", "a node is listed twice")
        if a.shutdown_priority < 0:
            fail(f"userapplication[{i}].shutdown_priority", "must not be negative")


def generate(guests: int, servers: int) -> Topology:
    """A generated topology: ``servers`` servers (one PPAR and control domain each), ``guests``
    guests spread round-robin over them, one guest cluster, one app on the first two guests.
    Addresses are in 127.51/52/61/71.x, away from figure-17-1's blocks and the test workers' copies
    of them (127.2W/3W/4W.x, tests/xdist_net.py), so a benchmark can run beside the test suite."""
    srv = [
        Server(name=f"m10-{i + 1}", lan0=f"127.51.{i + 1}.10", lan1=f"127.52.{i + 1}.10", ppars=[i % 16])
        for i in range(servers)
    ]
    ctl = [
        ControlDomain(
            name=f"primary{i + 1}",
            server=srv[i].name,
            ppar=srv[i].ppars[0],
            cf_name=f"cfprimary{i + 1}",
            address=f"127.61.0.{i + 1}",
        )
        for i in range(servers)
    ]
    gst = [
        Guest(
            name=f"guest{i + 1}",
            control_domain=ctl[i % servers].name,
            cf_name=f"cfguest{i + 1}",
            address=f"127.71.0.{i + 1}",
        )
        for i in range(guests)
    ]
    clusters = [
        Cluster(name="ctlcluster", kind="control", nodes=[c.cf_name for c in ctl]),
        Cluster(name="guestcluster", kind="guest", nodes=[g.cf_name for g in gst]),
    ]
    apps = [UserApplication(name="app1", cluster="guestcluster", nodes=[g.cf_name for g in gst[:2]])]
    t = Topology(servers=srv, control_domains=ctl, guests=gst, clusters=clusters, apps=apps)
    validate(t, "<generated>")
    return t
