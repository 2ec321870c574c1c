"""Use cases of an emulated datacenter's lifecycle: up, down, status, fault (pcs lib/commands style).

Every XSCF (``xscfd``), ldmd and control-domain cluster node (``nodeagent``) is a background
process started here in its own session; guest cluster nodes are domain processes started by
their ldmd. There is no supervisor process: what runs is recorded in the home (``run/lock``
written here, ``run/pids/*.pid`` written by the daemons, ``run/domains/*.json`` by the ldmds), and
every process of a home carries ``--home ROOT`` on its command line, which is how a process is
recognised as ours before it is signalled (pid files can be stale, pids get reused).

Errors are :class:`~clovm.api.errors.ClovmError` with a stable code and a one-line message.
"""

from __future__ import annotations

import json
import os
import shlex
import secrets as secretsmod
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import formats, settings, topology
from ..core.sfconfig import SfHost, XscfEntry
from ..fsutil import atomic_write
from ..runtime import rpc, spawn
from ..runtime.home import Home
from ..runtime.proc import daemon_key
from . import errors
from .errors import ClovmError

CLOVMMIGRATE_CONF = "etc/opt/FJSVcluster/etc/clovmmigrate.conf"  # under a control domain's root
STOP_TIMEOUT = 10.0  # real seconds between SIGTERM and SIGKILL
LOG_TAIL = 12  # log lines quoted when a daemon fails


# ---------------------------------------------------------------------------------------- DTOs
@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    ppars: list[int]
    lan0: str
    lan1: str


@dataclass(frozen=True, slots=True)
class ControlDomainInfo:
    name: str
    server: str
    ppar: int
    address: str
    cf_name: str
    sf_weight: int


@dataclass(frozen=True, slots=True)
class GuestInfo:
    name: str
    control_domain: str  # where it runs now
    server: str
    address: str
    cf_name: str


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    name: str
    kind: str
    nodes: list[str]


@dataclass(frozen=True, slots=True)
class Summary:
    """What ``up`` started (``clovm up`` prints it)."""

    home: str
    topology: str
    time_scale: float
    servers: list[ServerInfo]
    control_domains: list[ControlDomainInfo]
    guests: list[GuestInfo]
    clusters: list[ClusterInfo]
    pids: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ process helpers
def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if len(argv) == 1 and " " in argv[0]:  # a forked daemon's title: its argv, shell-quoted (runtime.spawn)
        try:
            return shlex.split(argv[0])
        except ValueError:
            return argv
    return argv


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (reaps it if it is our child)."""
    if pid <= 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _of_home(pid: int, home: Home) -> bool:
    """True if ``pid`` is a live process started with ``--home`` this home."""
    if not _alive(pid):
        return False
    argv = _cmdline(pid)
    roots = {str(home.root), os.path.realpath(home.root)}
    return any(a == "--home" and i + 1 < len(argv) and os.path.realpath(argv[i + 1]) in roots
               for i, a in enumerate(argv))


def _describe(pid: int) -> str:
    """``xscfd m10-1 (pid 12, home /x)`` for a clovm daemon, else ``pid 12 (cmdline)``."""
    argv = _cmdline(pid)
    mod = next((a.rsplit(".", 1)[-1] for a in argv if a.startswith("clovm.runtime.")), "")
    opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] in ("--home", "--name")}
    if mod and "--name" in opts:
        return f"{mod} {opts['--name']} (pid {pid}, home {opts.get('--home', '?')})"
    text = " ".join(argv)
    return f"pid {pid} ({text[:80]})" if text else f"pid {pid}"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _home_pids(home: Home) -> dict[str, int]:
    """``label -> pid`` of every live process of this home: pid files, placements, lock, /proc."""
    found: dict[str, int] = {}
    pid_dir = home.run_dir / "pids"
    for f in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else ():
        pid = _read_pid(f)
        if pid and _of_home(pid, home):
            found[f.stem] = pid
    dom_dir = home.run_dir / "domains"
    for f in sorted(dom_dir.glob("*.json")) if dom_dir.is_dir() else ():
        rec = _read_json(f)
        pid = rec.get("pid") if isinstance(rec, dict) else None
        if isinstance(pid, int) and pid not in found.values() and _of_home(pid, home):
            found.setdefault(f"domain:{f.stem}", pid)
    lock = _read_json(home.run_dir / "lock")
    if isinstance(lock, dict):
        for name, pid in (lock.get("daemons") or {}).items():
            if isinstance(pid, int) and pid not in found.values() and _of_home(pid, home):
                found.setdefault(name, pid)
    known = set(found.values())
    for d in Path("/proc").iterdir():  # safety net: daemons whose records are gone
        if d.name.isdigit() and int(d.name) not in known and int(d.name) != os.getpid():
            pid = int(d.name)
            argv = _cmdline(pid)
            if any(a.startswith("clovm.runtime.") for a in argv) and _of_home(pid, home):
                opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--name"}
                found.setdefault(opts.get("--name", f"pid{pid}"), pid)
    return found


def _starting_pid(home: Home) -> int | None:
    """The pid of an ``up`` still starting this home (from ``run/lock``), if it is alive."""
    lock = _read_json(home.run_dir / "lock")
    pid = lock.get("starting") if isinstance(lock, dict) else None
    return pid if isinstance(pid, int) and pid != os.getpid() and _alive(pid) else None


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(home: Home, extra: Iterable[int] = ()) -> list[str]:
    """SIGTERM every process of the home, SIGKILL (process group) what is left after
    :data:`STOP_TIMEOUT`, then remove run-time leftovers. Returns one line per process."""
    procs = _home_pids(home)
    for pid in extra:
        if _of_home(pid, home) and pid not in procs.values():
            procs[_describe(pid)] = pid
    labels = {pid: _describe(pid).split(" (", 1)[0] for pid in procs.values()}
    lines: list[str] = []
    for name, pid in procs.items():
        _signal(pid, signal.SIGTERM, group=False)
        _signal(pid, signal.SIGCONT, group=False)  # a suspended domain must see its SIGTERM
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(p) for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = {n for n, p in procs.items() if _of_home(p, home)}
    for name in killed:
        _signal(procs[name], signal.SIGKILL, group=True)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(p) for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, pid in procs.items():
        how = "killed" if name in killed else "stopped"
        lines.append(f"{how} {labels[pid]} (pid {pid})" + (": STILL ALIVE" if _alive(pid) else ""))
    _clean_run_state(home)
    return lines


def _clean_run_state(home: Home) -> None:
    """Remove sockets, pid files, placements and the lock (no process of the home is alive)."""
    for sub, pattern in (("s", "*"), ("pids", "*.pid"), ("domains", "*.json")):
        d = home.run_dir / sub
        if d.is_dir():
            for f in d.glob(pattern):
                f.unlink(missing_ok=True)
    (home.run_dir / "lock").unlink(missing_ok=True)


def _log_tail(home: Home, name: str, n: int = LOG_TAIL) -> list[str]:
    """The last ``n`` lines of a daemon's log, structlog JSON lines shortened to their gist."""
    try:
        lines = home.log_file(name).read_text(errors="replace").splitlines()
    except OSError:
        return [f"(no log at {home.log_file(name)})"]
    out = []
    for line in lines[-n:]:
        rec = _read_json_text(line)
        if isinstance(rec, dict) and "event" in rec:
            exc = str(rec.pop("exception", "")).strip().splitlines()[-1:]
            rest = " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("event", "timestamp", "level"))
            line = f"{rec.get('level', '')}: {rec['event']} {rest}" + (f" -- {exc[0]}" if exc else "")
        out.append(line if len(line) <= 300 else line[:297] + "...")
    return out or [f"(empty log {home.log_file(name)})"]


def _read_json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------- addresses
def _endpoints(t: topology.Topology) -> list[tuple[str, int, str, str]]:
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
                        return _describe(int(d.name))
                except OSError:
                    continue
        return "a process of another user"
    return "an unknown process (or a wildcard socket)"


def _check_free(t: topology.Topology) -> None:
    for addr, port, proto, what in _endpoints(t):
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
                raise ClovmError(errors.ADDRESS_IN_USE,
                                 f"{addr}:{port}/{proto} ({what}) is not free: {why}; "
                                 f"probably held by {_holder(addr, port, proto)}") from None


# -------------------------------------------------------------------------------- provisioning
def _resolve_ref(home: Home, ref: str | None) -> str:
    if ref is None:
        return str(home.topology_file) if home.topology_file.exists() else topology.DEFAULT
    return ref


def _load_topology(home: Home, ref: str | None) -> topology.Topology:
    try:
        return topology.load(_resolve_ref(home, ref))
    except topology.TopologyError as e:
        raise ClovmError(errors.BAD_TOPOLOGY, str(e)) from None


def _write_secrets(home: Home, t: topology.Topology) -> None:
    """secrets.json (0600): keep existing values, create missing ones."""
    old = _read_json(home.secrets_file)
    sec: dict[str, str] = dict(old) if isinstance(old, dict) else {}
    for key in ("xscf_password", "snmp_auth", "snmp_priv", "cluster_key", "ldm_password"):
        if not isinstance(sec.get(key), str) or len(sec[key]) < 8:
            sec[key] = secretsmod.token_urlsafe(18)
    sec["xscf_user"] = t.xscf.user
    sec["snmp_user"] = t.xscf.user
    atomic_write(home.secrets_file, json.dumps(sec, indent=2) + "\n", mode=0o600)


def _sf_config(t: topology.Topology, nodes: list[str]) -> tuple[list[SfHost], list[XscfEntry]]:
    """rcsd.cfg hosts and SA_xscfsnmp.cfg entries of a guest cluster (as ``sim.world`` does)."""
    hosts, entries = [], []
    for cf in nodes:
        g = t.host_of_cf(cf)
        assert isinstance(g, topology.Guest)
        cd = t.control_domain(g.control_domain)
        srv = t.server(cd.server)
        hosts.append(SfHost(cf, weight=cd.sf_weight, adm_ip=g.address))
        entries.append(XscfEntry(cf, cd.ppar, g.name, srv.lan0, srv.lan1, t.xscf.user, t.xscf.connection))
    return hosts, entries


def _provision_base(home: Home, t: topology.Topology, time_scale: float) -> None:
    """The files every daemon reads, and all an xscfd needs: run directories, topology, secrets,
    clock and clock offsets."""
    for d in (home.run_dir / "pids", home.run_dir / "domains", home.run_dir / "s", home.log_file("x").parent):
        d.mkdir(parents=True, exist_ok=True)
    atomic_write(home.topology_file, topology.dumps(t))
    _write_secrets(home, t)
    atomic_write(home.clock_file, json.dumps({"epoch": settings.EPOCH, "start": time.monotonic(),
                                              "time_scale": time_scale}) + "\n")
    atomic_write(home.offsets_file, json.dumps({s.name: s.clock_offset for s in t.servers}) + "\n")


def _provision(home: Home, t: topology.Topology) -> list[str]:
    """After :func:`_provision_base`, every other file the daemons read except the known_hosts
    files (:func:`_provision_xscf_keys`): PKI, hosts, cluster.config, SF configuration,
    clovmmigrate.conf. Returns warnings."""
    from ..runtime import pki

    warnings: list[str] = []
    pki.ensure_pki(home, {h.name: h.address for h in t.hosts()})
    hosts_text = formats.render_hosts([(h.name, h.address) for h in t.hosts()])
    guest_nodes = {cf: cl.nodes for cl in t.clusters if cl.kind == "guest" for cf in cl.nodes}
    render_conf, conf_path = None, CLOVMMIGRATE_CONF
    if t.control_domains:
        try:
            from ..runtime.migrate_env import CLOVMMIGRATE_CONF as conf_path
            from ..runtime.migrate_env import render_clovmmigrate_conf as render_conf
        except ImportError as e:
            warnings.append(f"clovmmigrate.conf not written: {e}")
    for h in t.hosts():
        atomic_write(home.hosts_file(h.name), hosts_text)
        if not home.cluster_config(h.name).exists():
            atomic_write(home.cluster_config(h.name),
                         formats.set_cluster_timeout("", settings.DEFAULT_CLUSTER_TIMEOUT))
        if h.cf_name in guest_nodes:
            sf_hosts, entries = _sf_config(t, guest_nodes[h.cf_name])
            if not home.rcsd_cfg(h.name).exists():
                atomic_write(home.rcsd_cfg(h.name), formats.render_rcsd(sf_hosts))
            if not home.sa_xscfsnmp_cfg(h.name).exists():
                atomic_write(home.sa_xscfsnmp_cfg(h.name), formats.render_sa_xscfsnmp(entries))
        if isinstance(h, topology.ControlDomain) and render_conf is not None:
            atomic_write(home.host_root(h.name) / conf_path, render_conf(t, h.name))
    return warnings


def _provision_xscf_keys(home: Home, t: topology.Topology) -> None:
    """Both LANs of every server, with its SSH host key, in every host's known_hosts. The key is
    the one its xscfd loaded or created (:func:`clovm.runtime.ssh.load_or_create_host_key`),
    created here if it is missing. Called by :func:`_launch` once every xscfd is READY, before any
    ldmd (and so any guest, the only reader of known_hosts) starts."""
    from ..runtime import ssh

    key_lines: list[str] = []
    for s in t.servers:
        key = ssh.load_or_create_host_key(home.server_dir(s.name) / "ssh_host_key")
        key_lines += [ssh.host_key_line(a, settings.XSCF_SSH_PORT, key) for a in (s.lan0, s.lan1)]
    for h in t.hosts():
        ssh.add_known_hosts(home.known_hosts(h.name), key_lines)


# ---------------------------------------------------------------------------------- launching
def _spawn(home: Home, module: str, name: str) -> subprocess.Popen[bytes] | spawn.Forked:
    log = home.log_file(daemon_key(module, name))
    if spawn.forking():
        spawn.preload()
        return spawn.fork_daemon(module, home.root, name, log, ready_pipe=True, cwd=home.root)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", f"clovm.runtime.{module}", "--home", str(home.root), "--name", name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
            cwd=str(home.root))


class _ReadyWaiter:
    """The ``READY`` lines of spawned daemons, read from their stdout pipes with one selector.

    Each daemon has :data:`settings.READY_TIMEOUT` seconds from its spawn; an exit or a timeout is
    DAEMON_FAILED. A pipe is closed once its READY is seen (the daemons print nothing after it).
    """

    def __init__(self, home: Home) -> None:
        self.home = home
        self.sel = selectors.DefaultSelector()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # daemon key -> process, not ready yet
        self.buf: dict[str, bytes] = {}
        self.deadline: dict[str, float] = {}
        self.all: list[subprocess.Popen[bytes]] = []

    def add(self, p: subprocess.Popen[bytes]) -> str:
        assert p.stdout is not None
        key = _key(p)
        self.procs[key], self.buf[key] = p, b""
        self.deadline[key] = time.monotonic() + settings.READY_TIMEOUT
        self.all.append(p)
        self.sel.register(p.stdout, selectors.EVENT_READ, key)
        return key

    def pending(self) -> bool:
        return bool(self.procs)

    def wait(self) -> list[str]:
        """Block until at least one daemon is ready; returns the keys of those that became ready."""
        done: list[str] = []
        while not done:
            key = min(self.deadline, key=self.deadline.__getitem__)
            left = self.deadline[key] - time.monotonic()
            if left <= 0:
                raise ClovmError(errors.DAEMON_FAILED,
                                 f"{_label(self.procs[key])} not ready within {settings.READY_TIMEOUT:g} s; "
                                 f"see {self.home.log_file(key)}", _log_tail(self.home, key))
            for sk, _ in self.sel.select(timeout=min(left, 0.5)):
                key = sk.data
                p = self.procs[key]
                chunk = os.read(sk.fd, 4096)
                if not chunk:
                    rc = p.wait(timeout=5)
                    raise ClovmError(errors.DAEMON_FAILED,
                                     f"{_label(p)} exited with rc {rc} before it was ready; "
                                     f"see {self.home.log_file(key)}", _log_tail(self.home, key))
                self.buf[key] += chunk
                if any(line.strip().startswith(b"READY") for line in self.buf[key].split(b"\n")[:-1]):
                    self.sel.unregister(sk.fileobj)
                    assert p.stdout is not None
                    p.stdout.close()
                    for d in (self.procs, self.buf, self.deadline):
                        del d[key]
                    done.append(key)
        return done

    def close(self) -> None:
        self.sel.close()
        for p in self.all:
            if p.stdout is not None:
                p.stdout.close()


def _launch(home: Home, t: topology.Topology, time_scale: float, started: dict[str, int]) -> list[str]:
    """Provision the home and start every daemon, each as soon as what it needs exists, with
    every pending READY awaited at once. Records each spawned pid in ``started`` (``up`` stops
    them on failure). Returns the provisioning warnings.

    Order (2 cores serve ~11 to ~40 Python daemons, so no core should idle on a barrier):
    every xscfd right after :func:`_provision_base` (it loads its SSH host key or creates it, as
    it always did, and reads nothing else of the home), every control domain's node agent right
    after :func:`_provision` (it needs the PKI, hosts file and cluster.config, nothing else); then, once every xscfd is READY, the
    known_hosts files (:func:`_provision_xscf_keys`, whose asyncssh import overlaps the daemons'
    start) and the ldmds, as before: an ldmd pushes its PPAR's domains to its xscfd right after
    READY (an absent xscfd is retried only every 3 s) and spawns its guests, whose shutdown
    agents test the XSCFs of every node of their cluster. Guests are awaited afterwards by
    :func:`_await_guests`.
    """
    waiter = _ReadyWaiter(home)

    def spawn(module: str, name: str) -> str:
        p = _spawn(home, module, name)
        started[f"{module}:{name}"] = p.pid
        return waiter.add(p)

    try:
        _provision_base(home, t, time_scale)
        xscfds = {spawn("xscfd", s.name) for s in t.servers}
        warnings = _provision(home, t)
        for c in t.control_domains:
            spawn("nodeagent", c.name)
        from ..runtime import ssh  # noqa: F401 - for _provision_xscf_keys, imported while xscfds start

        ldmds = [c.name for c in t.control_domains]
        while ldmds or waiter.pending():
            if ldmds and not xscfds:
                _provision_xscf_keys(home, t)
                for name in ldmds:
                    spawn("ldmd", name)
                ldmds = []
                continue
            xscfds.difference_update(waiter.wait())
    finally:
        waiter.close()
    return warnings


def _key(p: subprocess.Popen[bytes]) -> str:
    argv = [str(a) for a in p.args]  # type: ignore[union-attr]
    return daemon_key(argv[2].rsplit(".", 1)[-1], argv[-1])


def _label(p: subprocess.Popen[bytes]) -> str:
    argv = [str(a) for a in p.args]  # type: ignore[union-attr]
    return f"{argv[2].rsplit('.', 1)[-1]} {argv[-1]} (pid {p.pid})"


def _await_guests(home: Home, t: topology.Topology, deadline: float) -> None:
    """Wait until every guest's node socket answers ``status``."""
    waiting = [g.name for g in t.guests]
    last: dict[str, str] = {}
    while waiting:
        for g in list(waiting):
            try:
                rpc.call_unix_sync(home.node_socket(g), "status", timeout=2.0)
                waiting.remove(g)
            except rpc.RpcError as e:
                last[g] = e.message
        if not waiting:
            return
        if time.monotonic() > deadline:
            g = waiting[0]
            raise ClovmError(errors.DAEMON_FAILED,
                             f"cluster node of guest {g} not answering after {settings.READY_TIMEOUT:g} s "
                             f"({last.get(g, '?')}); see {home.log_file(daemon_key('nodeagent', g))}",
                             _log_tail(home, daemon_key("nodeagent", g)))
        time.sleep(0.1)


def _write_lock(home: Home, record: dict[str, Any]) -> None:
    atomic_write(home.run_dir / "lock", json.dumps(record, indent=2) + "\n")


def _claim(home: Home, ref: str | None, time_scale: float) -> None:
    """Create ``run/lock`` for a starting ``up`` (exclusively), or fail with HOME_IN_USE."""
    home.run_dir.mkdir(parents=True, exist_ok=True)
    lock = home.run_dir / "lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _starting_pid(home) is not None or _home_pids(home):
                raise ClovmError(errors.HOME_IN_USE, f"home {home.root} is already up "
                                 f"(run 'clovm down --home {home.root}' first)") from None
            lock.unlink(missing_ok=True)  # stale: nothing of it runs
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"starting": os.getpid(), "home": str(home.root), "topology": ref,
                       "time_scale": time_scale, "daemons": {}}, f)
        return
    raise ClovmError(errors.HOME_IN_USE, f"home {home.root} is being started by someone else")


# ----------------------------------------------------------------------------------- use cases
def up(home: Home, topology_ref: str | None = None, time_scale: float = settings.DEFAULT_TIME_SCALE) -> Summary:
    """Provision the home and start the datacenter in the background.

    home -- the datacenter home
    topology_ref -- built-in topology name or TOML file; None: the home's topology if it has one,
        else the default
    time_scale -- emulated seconds per real second (> 0)

    Raises ClovmError: HOME_IN_USE, BAD_TOPOLOGY, BAD_ARGUMENT, ADDRESS_IN_USE, DAEMON_FAILED
    (everything started is stopped again).
    """
    if not time_scale > 0 or time_scale != time_scale or time_scale == float("inf"):
        raise ClovmError(errors.BAD_ARGUMENT, f"time scale must be a positive number, not {time_scale!r}")
    if _starting_pid(home) is not None or _home_pids(home):
        raise ClovmError(errors.HOME_IN_USE,
                         f"home {home.root} is already up (run 'clovm down --home {home.root}' first)")
    ref = _resolve_ref(home, topology_ref)
    t = _load_topology(home, ref)
    _check_free(t)
    _claim(home, ref, time_scale)
    started: dict[str, int] = {}
    try:
        _clean_run_state_keep_lock(home)
        warnings = _launch(home, t, time_scale, started)
        _await_guests(home, t, time.monotonic() + settings.READY_TIMEOUT)
        # in the order xscfd, ldmd, nodeagent, as the summary and run/lock always listed them
        daemons = {k: started[k] for m in ("xscfd", "ldmd", "nodeagent") for k in started if k.startswith(f"{m}:")}
        for g in t.guests:
            place = _read_json(home.placement_file(g.name))
            if isinstance(place, dict) and isinstance(place.get("pid"), int):
                daemons[f"domain:{g.name}"] = place["pid"]
        _write_lock(home, {"starting": None, "home": str(home.root), "topology": ref,
                           "time_scale": time_scale, "started": time.time(), "daemons": daemons})
    except BaseException:
        _stop(home, started.values())
        raise
    return _summary(home, t, time_scale, ref, daemons, warnings)


def _clean_run_state_keep_lock(home: Home) -> None:
    """Leftovers of a crashed earlier run (nothing of the home is alive at this point)."""
    for sub, pattern in (("s", "*"), ("pids", "*.pid"), ("domains", "*.json")):
        d = home.run_dir / sub
        if d.is_dir():
            for f in d.glob(pattern):
                f.unlink(missing_ok=True)


def _placement(home: Home, t: topology.Topology, guest: str) -> tuple[str, str]:
    """(control domain, server) hosting ``guest`` now: its placement file, else the topology."""
    rec = _read_json(home.placement_file(guest))
    if isinstance(rec, dict) and rec.get("host") and rec.get("server"):
        return str(rec["host"]), str(rec["server"])
    cd = t.control_domain(t.guest(guest).control_domain)
    return cd.name, cd.server


def _summary(home: Home, t: topology.Topology, scale: float, ref: str, pids: dict[str, int],
             warnings: list[str]) -> Summary:
    guests = []
    for g in t.guests:
        cd, srv = _placement(home, t, g.name)
        guests.append(GuestInfo(g.name, cd, srv, g.address, g.cf_name))
    return Summary(
        home=str(home.root), topology=ref, time_scale=scale,
        servers=[ServerInfo(s.name, list(s.ppars), s.lan0, s.lan1) for s in t.servers],
        control_domains=[ControlDomainInfo(c.name, c.server, c.ppar, c.address, c.cf_name, c.sf_weight)
                         for c in t.control_domains],
        guests=guests, clusters=[ClusterInfo(c.name, c.kind, list(c.nodes)) for c in t.clusters],
        pids=pids, warnings=warnings)


def down(home: Home) -> list[str]:
    """Stop every process of the home: SIGTERM, then after 10 s SIGKILL to the process groups.

    home -- the datacenter home

    Idempotent: on a stopped home it returns ``["not running"]``. Leaves no process, unix
    socket, pid file, placement file or lock of the home behind.
    """
    if not _home_pids(home) and _starting_pid(home) is None:
        _clean_run_state(home)
        return ["not running"]
    starting = _starting_pid(home)
    if starting is not None:  # an `up` is still launching: stop it first, then its daemons
        _signal(starting, signal.SIGTERM, group=False)
        end = time.monotonic() + STOP_TIMEOUT
        while _alive(starting) and time.monotonic() < end:
            time.sleep(0.05)
    return _stop(home)


def _topology_of(home: Home) -> topology.Topology:
    if not home.topology_file.exists():
        raise ClovmError(errors.NOT_RUNNING, f"{home.root} is not a clovm home (no topology; run 'clovm up')")
    try:
        return topology.load(home.topology_file)
    except topology.TopologyError as e:
        raise ClovmError(errors.BAD_TOPOLOGY, str(e)) from None


def _require_running(home: Home) -> dict[str, int]:
    pids = _home_pids(home)
    if not pids:
        raise ClovmError(errors.NOT_RUNNING, f"home {home.root} is not running (run 'clovm up')")
    return pids


def _ask(path: Path, op: str, **args: Any) -> Any:
    """One local RPC; errors become a dict ``{"error": ...}`` (status must not fail on one)."""
    try:
        return rpc.call_unix_sync(path, op, timeout=settings.CALL_TIMEOUT, **args)
    except rpc.RpcError as e:
        return {"error": f"{e.code}: {e.message}"}


def status(home: Home) -> dict[str, Any]:
    """The running datacenter as a JSON-able dict.

    home -- the datacenter home

    Keys: ``home``, ``servers`` (xscfd alive?, domain status per PPAR), ``control_domains``
    (ldmd and node alive?, ``domains`` from ldmd), ``guests`` (placement, alive?), ``nodes``
    (node ``status`` per host), ``migrations`` (domains flagged s/t). NOT_RUNNING if nothing runs.
    """
    t = _topology_of(home)
    pids = _require_running(home)
    clock = _read_json(home.clock_file) or {}
    out: dict[str, Any] = {"home": str(home.root), "time_scale": clock.get("time_scale"),
                           "servers": [], "control_domains": [], "guests": [], "nodes": {}, "migrations": []}
    for s in t.servers:
        key = daemon_key("xscfd", s.name)
        alive = key in pids
        ppars = {str(p): _ask(home.xscf_socket(s.name), "status", ppar=p) if alive else None for p in s.ppars}
        out["servers"].append({"name": s.name, "lan0": s.lan0, "lan1": s.lan1, "pid": pids.get(key),
                               "xscfd": "running" if alive else "down", "ppars": ppars})
    for c in t.control_domains:
        ldmd_up = home.ldmd_socket(c.name).exists()
        doms = _ask(home.ldmd_socket(c.name), "domains") if ldmd_up else None
        out["control_domains"].append({"name": c.name, "server": c.server, "ppar": c.ppar, "address": c.address,
                                       "ldmd": "running" if ldmd_up else "down", "domains": doms})
        for d in doms if isinstance(doms, list) else ():
            flags = str(d.get("flags", "")) if isinstance(d, dict) else ""
            if len(flags) >= 6 and flags[5] in "st":
                out["migrations"].append({"domain": d.get("name"), "control_domain": c.name,
                                          "role": "source" if flags[5] == "s" else "target", "flags": flags})
    for g in t.guests:
        rec = _read_json(home.placement_file(g.name))
        rec = rec if isinstance(rec, dict) else {}
        pid = rec.get("pid")
        out["guests"].append({"name": g.name, "address": g.address, "cf_name": g.cf_name,
                              "control_domain": rec.get("host"), "server": rec.get("server"), "pid": pid,
                              "running": isinstance(pid, int) and _of_home(pid, home)})
    for h in t.hosts():
        sock = home.node_socket(h.name)
        out["nodes"][h.cf_name] = {"host": h.name, **(_as_dict(_ask(sock, "status")) if sock.exists()
                                                        else {"error": "not running"})}
    return out


def _as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {"status": v}


# ------------------------------------------------------------------------------------- faults
FAULTS = ("xscf-down", "xscf-up", "partition", "heal", "clock", "migration-abort", "forget-xscf-key")


def _server(t: topology.Topology, name: str) -> topology.Server:
    s = next((s for s in t.servers if s.name == name), None)
    if s is None:
        raise ClovmError(errors.UNKNOWN_SERVER,
                         f"unknown server {name!r} (servers: {', '.join(x.name for x in t.servers)})")
    return s


def _host(t: topology.Topology, name: str) -> topology.ControlDomain | topology.Guest:
    """A control domain or guest by host name or CF node name."""
    h = next((h for h in t.hosts() if name in (h.name, h.cf_name)), None)
    if h is None:
        raise ClovmError(errors.UNKNOWN_HOST,
                         f"unknown host {name!r} (hosts: {', '.join(x.name for x in t.hosts())})")
    return h


def _usage(kind: str, usage: str) -> ClovmError:
    return ClovmError(errors.BAD_ARGUMENT, f"usage: clovm fault {kind} {usage}")


def _remote(path: Path, op: str, **args: Any) -> Any:
    try:
        return rpc.call_unix_sync(path, op, timeout=settings.CALL_TIMEOUT, **args)
    except rpc.RpcUnreachable as e:
        raise ClovmError(errors.NOT_RUNNING, f"{e.message}") from None
    except rpc.RpcError as e:
        raise ClovmError(errors.REMOTE_ERROR, f"{e.code}: {e.message}") from None


def fault(home: Home, kind: str, args: list[str]) -> str:
    """Inject (or clear) a fault into the running datacenter. Returns a one-line description.

    home -- the datacenter home
    kind -- one of :data:`FAULTS`:
        ``xscf-down SERVER [--lan 0|1]`` / ``xscf-up SERVER [--lan 0|1]`` (both LANs by default);
        ``partition HOST... [-- HOST...]`` (one group: those hosts against all others) / ``heal``;
        ``clock SERVER ±SECONDS`` (added to the server's clock offset);
        ``migration-abort DOMAIN`` (the domain's running migration fails after the copy);
        ``forget-xscf-key HOST SERVER`` (HOST's known_hosts loses both XSCF LANs of SERVER)
    args -- the arguments after the kind
    """
    from ..runtime import ssh

    t = _topology_of(home)
    if kind in ("xscf-down", "xscf-up"):
        rest = list(args)
        lans = [0, 1]
        if "--lan" in rest:
            i = rest.index("--lan")
            if i + 1 >= len(rest) or rest[i + 1] not in ("0", "1"):
                raise _usage(kind, "SERVER [--lan 0|1]")
            lans = [int(rest[i + 1])]
            del rest[i:i + 2]
        if len(rest) != 1:
            raise _usage(kind, "SERVER [--lan 0|1]")
        s = _server(t, rest[0])
        _require_running(home)
        for lan in lans:
            _remote(home.xscf_socket(s.name), "lan", lan=lan, up=kind == "xscf-up")
        which = " and ".join(f"LAN#{lan}" for lan in lans)
        return f"XSCF {s.name} {which} {'up' if kind == 'xscf-up' else 'down'}"
    if kind == "partition":
        if not args or args[0] == "--" or args[-1] == "--" or args.count("--") > 1:
            raise _usage(kind, "HOST... [-- HOST...]")
        cut = args.index("--") if "--" in args else len(args)
        groups = [[_host(t, n).name for n in args[:cut]]]
        if cut < len(args):
            groups.append([_host(t, n).name for n in args[cut + 1:]])
        else:
            groups.append([h.name for h in t.hosts() if h.name not in groups[0]])
        seen = [n for g in groups for n in g]
        if len(seen) != len(set(seen)):
            raise ClovmError(errors.BAD_ARGUMENT, "a host is in both groups")
        groups = [g for g in groups if g]
        atomic_write(home.run_dir / "partition.json", json.dumps({"groups": groups}) + "\n")
        return "partition: " + " | ".join(" ".join(g) for g in groups)
    if kind == "heal":
        if args:
            raise _usage(kind, "")
        (home.run_dir / "partition.json").unlink(missing_ok=True)
        return "partition healed"
    if kind == "clock":
        if len(args) != 2:
            raise _usage(kind, "SERVER ±SECONDS")
        s = _server(t, args[0])
        try:
            delta = float(args[1])
        except ValueError:
            raise ClovmError(errors.BAD_ARGUMENT, f"not a number of seconds: {args[1]!r}") from None
        if delta != delta or abs(delta) == float("inf"):
            raise ClovmError(errors.BAD_ARGUMENT, f"not a number of seconds: {args[1]!r}")
        offsets = _read_json(home.offsets_file)
        offsets = offsets if isinstance(offsets, dict) else {}
        offsets[s.name] = float(offsets.get(s.name, 0.0)) + delta
        atomic_write(home.offsets_file, json.dumps(offsets) + "\n")
        return f"clock of {s.name}: offset {offsets[s.name]:+g} s"
    if kind == "migration-abort":
        if len(args) != 1:
            raise _usage(kind, "DOMAIN")
        if args[0] not in {g.name for g in t.guests}:
            raise ClovmError(errors.UNKNOWN_DOMAIN,
                             f"unknown domain {args[0]!r} (guests: {', '.join(g.name for g in t.guests)})")
        _require_running(home)
        cd, _ = _placement(home, t, args[0])
        _remote(home.ldmd_socket(cd), "arm_abort", domain=args[0])
        return f"migration of {args[0]} (from {cd}) will fail after the copy"
    if kind == "forget-xscf-key":
        if len(args) != 2:
            raise _usage(kind, "HOST SERVER")
        h, s = _host(t, args[0]), _server(t, args[1])
        n = ssh.remove_known_hosts(home.known_hosts(h.name), [s.lan0, s.lan1])
        return f"{h.name} forgot {n} host key(s) of XSCF {s.name}"
    raise ClovmError(errors.UNKNOWN_FAULT, f"unknown fault {kind!r} (one of: {', '.join(FAULTS)})")


def check_host(home: Home, host: str) -> str:
    """The host name for ``host`` (a host or CF node name of the home's topology); UNKNOWN_HOST."""
    return _host(_topology_of(home), host).name
