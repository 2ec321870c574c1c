"""Use cases of an emulated datacenter's lifecycle: up, down, status (pcs lib/commands style).

What each needs lives in a module of its own: :mod:`~clovm.api.processes` (which processes of a
home run; stopping them), :mod:`~clovm.api.ports` (are the topology's addresses free),
:mod:`~clovm.api.provision` (the files the daemons read), :mod:`~clovm.api.launch` (starting the
daemons), :mod:`~clovm.api.lookup` (topology, placement, hosts by name); the faults of
``clovm fault`` are :mod:`~clovm.api.faults`; when the cluster is ready, :mod:`~clovm.api.readiness`.
What runs is recorded in the home, and every process of a home carries ``--home ROOT`` on its
command line; once everything is up, the home's supervisor (``runtime/supervisor.py``) restarts a
daemon that dies.

Errors are :class:`~clovm.api.errors.ClovmError` with a stable code and a one-line message.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from .. import settings, topology
from ..core import codes
from ..runtime import rpc
from ..runtime.home import Home
from ..runtime.proc import daemon_key
from .errors import ClovmError
from .faults import FAULTS
from .launch import (
    SUPERVISOR_NAME,
    await_guests,
    claim,
    launch,
    start_supervisor,
    write_lock,
)
from .lookup import placement, require_running, topology_of
from .ports import check_free
from .processes import (
    STOP_TIMEOUT,
    alive,
    clean_run_state,
    home_pids,
    of_home,
    read_json,
    signal_pid,
    starting_pid,
    stop,
)
from .processes import cmdline as _cmdline  # noqa: F401 - imported from here (tests/runtime/test_spawn.py)
from .provision import (
    discard_state,
    load_topology,
    record_stop,
    resolve_ref,
    saved_state,
)
from .readiness import Progress, await_ready

__all__ = [
    "FAULTS",
    "ClusterInfo",
    "ControlDomainInfo",
    "GuestInfo",
    "ServerInfo",
    "StatusProbe",
    "Summary",
    "down",
    "health",
    "status",
    "up",
]


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
    restored: list[str] = field(default_factory=list)  # what a home that ran before gave back
    discarded: str = ""  # what --fresh threw away (one line), or ""
    ready: bool = True  # the cluster became ready (api.readiness)
    not_ready: str = ""  # else: what was not ready at the deadline (one line)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def up(
    home: Home,
    topology_ref: str | None = None,
    time_scale: float = settings.DEFAULT_TIME_SCALE,
    *,
    fresh: bool = False,
    progress: Progress | None = None,
    wait_ready: bool = True,
    ready_timeout: float = settings.UP_READY_TIMEOUT,
) -> Summary:
    """Provision the home and start the datacenter in the background; return once it is ready.

    home -- the datacenter home
    topology_ref -- built-in topology name or TOML file; None: the home's topology if it has one,
        else the default
    time_scale -- emulated seconds per real second (> 0)
    fresh -- start over from the topology: forget what a home that ran before keeps (where the
        guests run, saved configurations, every host's files; ``Summary.discarded`` says what)
    progress -- gets a line at each stage ("daemons started", "CF: all nodes UP", ...)
    wait_ready -- wait until the clusters are ready (:mod:`~clovm.api.readiness`), at most
        ``ready_timeout`` real seconds; a datacenter that is not ready by then is left running
        (``Summary.ready`` False, ``Summary.not_ready`` says what)

    A home that ran before comes back as a power cycle of its servers would bring it: every guest
    on the control domain it ran on, the saved configurations, SF configuration and CF timeouts as
    they were (nothing of them is provisioned again). Its topology must be the one given.

    Raises ClovmError: HOME_IN_USE, BAD_TOPOLOGY, BAD_ARGUMENT, ADDRESS_IN_USE, DAEMON_FAILED
    (everything started is stopped again).
    """
    say = progress or (lambda _text: None)
    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise ClovmError(codes.BAD_ARGUMENT, f"time scale must be a positive number, not {time_scale!r}")
    if starting_pid(home) is not None or home_pids(home):
        raise ClovmError(
            codes.HOME_IN_USE, f"home {home.root} is already up (run 'clovm down --home {home.root}' first)"
        )
    ref = resolve_ref(home, topology_ref)
    t = load_topology(home, ref)
    kept = saved_state(home)
    discarded = ""
    if kept and fresh:
        discarded = f"--fresh: discarding what {home.root} kept: " + "; ".join(kept)
        discard_state(home)
        kept = []
    elif kept and home.topology_file.exists() and home.topology_file.read_text() != topology.dumps(t):
        raise ClovmError(
            codes.BAD_ARGUMENT,
            f"home {home.root} holds a datacenter of another topology; start over from {ref} with clovm up --fresh",
        )
    check_free(t)
    claim(home, ref, time_scale)
    started: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        _clean_leftovers(home)
        if kept:
            say(f"restoring the datacenter kept in {home.root}: " + "; ".join(kept))
        warnings = launch(home, t, time_scale, started)
        await_guests(home, t, time.monotonic() + settings.READY_TIMEOUT)
        start_supervisor(home, started)
        # in the order xscfd, ldmd, nodeagent, as the summary and run/lock always listed them
        daemons = {
            k: started[k]
            for m in ("xscfd", "ldmd", "nodeagent", "supervisor")
            for k in started
            if k.startswith(f"{m}:")
        }
        for g in t.guests:
            place = read_json(home.placement_file(g.name))
            if isinstance(place, dict) and isinstance(place.get("pid"), int):
                daemons[f"domain:{g.name}"] = place["pid"]
        write_lock(
            home,
            {
                "starting": None,
                "home": str(home.root),
                "topology": ref,
                "time_scale": time_scale,
                "started": time.time(),
                "daemons": daemons,
            },
        )
    except BaseException:
        _stop_supervisor(home)
        stop(home, started.values())
        raise
    say(
        f"daemons started: {len(t.servers)} XSCFs, {len(t.control_domains)} ldmds, {len(list(t.hosts()))} cluster "
        f"nodes ({len(t.guests)} in guest domains), supervised [{time.monotonic() - t0:.1f} s]"
    )
    summary = replace(_summary(home, t, time_scale, ref, daemons, warnings), restored=kept, discarded=discarded)
    if wait_ready:
        missing = await_ready(home, t, ready_timeout, progress=say, since=t0)
        if missing is not None:
            summary = replace(summary, ready=False, not_ready=f"not ready after {ready_timeout:g} s: {missing}")
    return summary


def _clean_leftovers(home: Home) -> None:
    """Leftovers of a crashed earlier run (nothing of the home is alive at this point). The
    placement files stay: they say where each guest domain runs (``Home.placement_file``)."""
    for sub, pattern in (("s", "*"), ("pids", "*.pid")):
        d = home.run_dir / sub
        if d.is_dir():
            for f in d.glob(pattern):
                f.unlink(missing_ok=True)
    for f in (home.supervisor_file, home.armed_kills_file):
        f.unlink(missing_ok=True)


def _summary(
    home: Home, t: topology.Topology, scale: float, ref: str, pids: dict[str, int], warnings: list[str]
) -> Summary:
    guests = []
    for g in t.guests:
        cd, srv = placement(home, t, g.name)
        guests.append(GuestInfo(g.name, cd, srv, g.address, g.cf_name))
    return Summary(
        home=str(home.root),
        topology=ref,
        time_scale=scale,
        servers=[ServerInfo(s.name, list(s.ppars), s.lan0, s.lan1) for s in t.servers],
        control_domains=[
            ControlDomainInfo(c.name, c.server, c.ppar, c.address, c.cf_name, c.sf_weight) for c in t.control_domains
        ],
        guests=guests,
        clusters=[ClusterInfo(c.name, c.kind, list(c.nodes)) for c in t.clusters],
        pids=pids,
        warnings=warnings,
    )


def down(home: Home) -> list[str]:
    """Stop every process of the home: the supervisor first, then SIGTERM, then after 10 s
    SIGKILL to the process groups.

    home -- the datacenter home

    Idempotent: on a stopped home it returns ``["not running"]``. Leaves no process, unix
    socket, pid file or lock of the home behind; what the datacenter is — where each guest runs
    (placement files), the SP's saved configurations, every host's files and the emulated time
    it stopped at — stays for the next ``up`` (``up --fresh`` forgets it).
    """
    if not home_pids(home) and starting_pid(home) is None:
        clean_run_state(home)
        return ["not running"]
    starting = starting_pid(home)
    if starting is not None:  # an `up` is still launching: stop it first, then its daemons
        signal_pid(starting, signal.SIGTERM, group=False)
        end = time.monotonic() + STOP_TIMEOUT
        while alive(starting) and time.monotonic() < end:
            time.sleep(0.05)
    record_stop(home)
    lines = _stop_supervisor(home)  # first: it must not restart the daemons being stopped
    return lines + stop(home)


def _stop_supervisor(home: Home) -> list[str]:
    """Stop the home's supervisor (SIGTERM, SIGKILL after :data:`STOP_TIMEOUT`) and wait for it."""
    pid = _supervisor_pid(home)
    if pid is None:
        return []
    signal_pid(pid, signal.SIGTERM, group=False)
    end = time.monotonic() + STOP_TIMEOUT
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    how = "stopped"
    if alive(pid):
        signal_pid(pid, signal.SIGKILL, group=False)
        how = "killed"
    return [f"{how} supervisor {SUPERVISOR_NAME} (pid {pid})"]


def _supervisor_pid(home: Home) -> int | None:
    key = daemon_key("supervisor", SUPERVISOR_NAME)
    for label, pid in home_pids(home).items():
        if label in (key, f"supervisor:{SUPERVISOR_NAME}", SUPERVISOR_NAME):
            return pid
    return None


class StatusProbe(Protocol):
    """What :func:`status` asks of a running home (a fake in the tests). A probe may also have
    ``supervision() -> dict | None``: the supervisor's state (``{"pid", "alive", "daemons"}``,
    ``runtime/supervisor.py``), None when the home has none."""

    def processes(self) -> dict[str, int]:
        """``label -> pid`` of the home's live processes (``xscfd-m10-1``, ``domain:guest1``, ...)."""

    def is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is a live process of the home."""

    def ask(self, socket: Path, op: str, **args: Any) -> Any:
        """One request to the daemon at unix ``socket``; ClovmError with the daemon's code (or
        UNREACHABLE) if it fails."""


class _HomeProbe:
    def __init__(self, home: Home) -> None:
        self.home = home

    def processes(self) -> dict[str, int]:
        return require_running(self.home)

    def is_ours(self, pid: int) -> bool:
        return of_home(pid, self.home)

    def ask(self, socket: Path, op: str, **args: Any) -> Any:
        if not socket.exists():
            raise ClovmError(codes.NOT_RUNNING, f"no socket {socket}")
        try:
            return rpc.call_unix_sync(socket, op, timeout=settings.CALL_TIMEOUT, **args)
        except rpc.RpcError as e:
            raise ClovmError(e.code, e.message) from None

    def supervision(self) -> dict[str, Any]:
        rec = read_json(self.home.supervisor_file)
        rec = rec if isinstance(rec, dict) else {}
        pid = _supervisor_pid(self.home)
        return {"pid": pid, "alive": pid is not None, "daemons": rec.get("daemons") or {}}


def status(home: Home, probe: StatusProbe | None = None) -> dict[str, Any]:
    """The running datacenter as a JSON-able dict.

    home -- the datacenter home
    probe -- how processes are found and daemons asked (default: the home's processes, over RPC)

    Keys: ``home``, ``servers`` (xscfd alive?, domain status per PPAR), ``control_domains``
    (ldmd running?, ``domains`` from ldmd), ``guests`` (placement, alive?), ``nodes`` (node
    ``status`` per host), ``migrations`` (domains flagged s/t); ``daemons`` (every xscfd, ldmd,
    node agent and guest domain: ``daemon``, ``name``, ``pid``, ``state`` running / down / not
    answering / restarting / maintenance, ``code`` None or why not, ``message``), ``supervisor``
    (``pid``, ``state`` running / down, ``daemons``: its view of each daemon it watches — state,
    pid, restarts, last exit; None without a supervisor probe), ``problems`` (the daemons with a
    code, the supervisor if it is down), ``ok`` and ``code`` (None, or DEGRADED when there is a
    problem). A value a daemon could not give is ``{"error": "CODE: message"}``. A daemon is
    running only if its process lives and it answers. NOT_RUNNING if nothing of the home runs.
    """
    probe = probe if probe is not None else _HomeProbe(home)
    t = topology_of(home)
    pids = probe.processes()
    clock = read_json(home.clock_file) or {}
    out: dict[str, Any] = {
        "home": str(home.root),
        "time_scale": clock.get("time_scale"),
        "servers": [],
        "control_domains": [],
        "guests": [],
        "nodes": {},
        "migrations": [],
    }
    daemons: list[dict[str, Any]] = []
    supervision = getattr(probe, "supervision", None)
    sup = supervision() if supervision is not None else None
    watched = (sup or {}).get("daemons") or {}

    def supervised(kind: str, name: str) -> None:
        """What the supervisor says of a daemon that is not running: restarting, or given up."""
        rec: Any = watched.get(daemon_key(kind, name))  # (a dict whenever ``state`` is set)
        state = rec.get("state") if isinstance(rec, dict) else None
        why = f"last: {rec.get('last_exit')}" if isinstance(rec, dict) and rec.get("last_exit") else ""
        if state in ("restarting", "starting"):
            _record(
                daemons,
                kind,
                name,
                None,
                "restarting",
                codes.RESTARTING,
                f"{kind} {name}: being restarted by the supervisor ({why or 'it exited'}; "
                f"{rec.get('restarts', 0)} restart(s) so far)",
            )
        elif state == "maintenance":
            _record(
                daemons,
                kind,
                name,
                None,
                "maintenance",
                codes.MAINTENANCE,
                f"{kind} {name}: exited too often, no longer restarted ({why or 'maintenance'}); "
                f"clovm down and clovm up start it again",
            )

    def ask(kind: str, name: str, pid: int | None, sock: Path, op: str, **args: Any) -> Any:
        """The daemon's answer, or ``{"error": ...}``; records the daemon's state once."""
        try:
            value = probe.ask(sock, op, **args)
        except ClovmError as e:
            state = "down" if e.code == codes.NOT_RUNNING else "not answering"
            _record(daemons, kind, name, pid, state, e.code, f"{kind} {name}: {e.message}")
            return {"error": "not running"} if e.code == codes.NOT_RUNNING else {"error": f"{e.code}: {e.message}"}
        _record(daemons, kind, name, pid, "running")
        return value

    def state_of(kind: str, name: str) -> str:
        d = next((d for d in daemons if (d["daemon"], d["name"]) == (kind, name)), None)
        return d["state"] if d is not None else "down"

    for s in t.servers:
        key = daemon_key("xscfd", s.name)
        pid = pids.get(key)
        if pid is None:
            supervised("xscfd", s.name)
            _record(daemons, "xscfd", s.name, None, "down", codes.NOT_RUNNING, f"xscfd {s.name} is not running")
        ppars = {
            str(p): ask("xscfd", s.name, pid, home.xscf_socket(s.name), "status", ppar=p) if pid else None
            for p in s.ppars
        }
        out["servers"].append(
            {
                "name": s.name,
                "lan0": s.lan0,
                "lan1": s.lan1,
                "pid": pid,
                "xscfd": state_of("xscfd", s.name),
                "ppars": ppars,
            }
        )
    for c in t.control_domains:
        pid = pids.get(daemon_key("ldmd", c.name))
        doms: Any = None
        if pid is None:
            supervised("ldmd", c.name)
            _record(daemons, "ldmd", c.name, None, "down", codes.NOT_RUNNING, f"ldmd {c.name} is not running")
        else:
            doms = ask("ldmd", c.name, pid, home.ldmd_socket(c.name), "domains")
        out["control_domains"].append(
            {
                "name": c.name,
                "server": c.server,
                "ppar": c.ppar,
                "address": c.address,
                "ldmd": state_of("ldmd", c.name),
                "pid": pid,
                "domains": doms,
            }
        )
        for d in doms if isinstance(doms, list) else ():
            flags = str(d.get("flags", "")) if isinstance(d, dict) else ""
            if len(flags) >= 6 and flags[5] in "st":
                out["migrations"].append(
                    {
                        "domain": d.get("name"),
                        "control_domain": c.name,
                        "role": "source" if flags[5] == "s" else "target",
                        "flags": flags,
                        "progress": d.get("migration"),
                    }
                )
    for g in t.guests:
        rec = read_json(home.placement_file(g.name))
        rec = rec if isinstance(rec, dict) else {}
        pid = rec.get("pid")
        running = isinstance(pid, int) and probe.is_ours(pid)
        out["guests"].append(
            {
                "name": g.name,
                "address": g.address,
                "cf_name": g.cf_name,
                "control_domain": rec.get("host"),
                "server": rec.get("server"),
                "pid": pid,
                "running": running,
            }
        )
        if running:
            _record(daemons, "domain", g.name, pid, "running")
        else:
            _record(
                daemons,
                "domain",
                g.name,
                pid if isinstance(pid, int) else None,
                "down",
                codes.NOT_RUNNING,
                f"guest domain {g.name} is not running"
                + (f" (on {rec['host']}: ldm start-domain {g.name} there starts it)" if rec.get("host") else ""),
            )
    guests = {g.name for g in t.guests}
    for h in t.hosts():
        key = daemon_key("nodeagent", h.name)
        if h.name not in guests and key not in pids:
            supervised("nodeagent", h.name)
        pid = (
            pids.get(key)
            if h.name not in guests
            else next((x["pid"] for x in out["guests"] if x["name"] == h.name and x["running"]), None)
        )
        value = ask("nodeagent", h.name, pid, home.node_socket(h.name), "status")
        out["nodes"][h.cf_name] = {"host": h.name, **_as_dict(value)}
    out["daemons"] = daemons
    extra: list[dict[str, Any]] = []
    if sup is not None:
        out["supervisor"] = {
            "name": SUPERVISOR_NAME,
            "pid": sup.get("pid"),
            "state": "running" if sup.get("alive") else "down",
            "daemons": watched,
        }
        if not sup.get("alive"):
            extra.append(
                {
                    "daemon": "supervisor",
                    "name": SUPERVISOR_NAME,
                    "pid": None,
                    "state": "down",
                    "code": codes.NOT_RUNNING,
                    "message": f"supervisor {SUPERVISOR_NAME} is not running: a daemon that dies is not restarted",
                }
            )
    else:
        out["supervisor"] = None
    out.update(health(daemons + extra))
    return out


def _record(
    daemons: list[dict[str, Any]],
    kind: str,
    name: str,
    pid: int | None,
    state: str,
    code: str | None = None,
    message: str = "",
) -> None:
    """One entry per daemon: the first thing that went wrong with it wins."""
    for d in daemons:
        if (d["daemon"], d["name"]) == (kind, name):
            if d["code"] is None and code is not None:
                d.update(state=state, code=code, message=message)
            return
    daemons.append({"daemon": kind, "name": name, "pid": pid, "state": state, "code": code, "message": message})


def health(daemons: list[dict[str, Any]]) -> dict[str, Any]:
    """``ok``, ``code`` (None or DEGRADED) and ``problems`` (``daemon``, ``name``, ``code``,
    ``message`` of each daemon with a code) of :func:`status`'s ``daemons``."""
    problems = [{k: d[k] for k in ("daemon", "name", "code", "message")} for d in daemons if d.get("code")]
    return {"ok": not problems, "code": codes.DEGRADED if problems else None, "problems": problems}


def _as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {"status": v}
