"""The operations of a cluster node (``core.node``): what each admin-channel request means.

:class:`NodeOperations` is mixed into :class:`~clovm.core.node.Node`: ``_operation`` checks the
channel and the caller (the local admin socket serves the product commands; the remote channel,
control domains only, serves clovmmigrate and clovm migrate) and answers every
:class:`~clovm.core.node_io.OperationRequested` with exactly one
:class:`~clovm.core.node_io.Answer`, at once or — ``sf_wait``, ``xscf_check`` — later. The
operations and their answers are the tables of ``core/migration.py`` and
``docs/safe-migration.md``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from . import codes, messages
from . import fencing as fen
from . import membership as mem
from . import rms as rmsmod
from ._state import SfDaemonState
from .base import Effect, Event
from .node_io import (
    Answer,
    CheckXscf,
    ControlDomainFacts,
    NodeDisk,
    NodeSpec,
    OperationRequested,
    OpError,
)
from .sfconfig import SfConfig, XscfEntry, entry_problem

BUSY_SA = ("Init-ing", "Testing")
SERVICES_NONE, SERVICES_STARTED, SERVICES_REFUSED = "none", "started", "refused"


def _positive_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 and math.isfinite(v)


def _peer_list(op: str, v: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if v is None and allow_empty:
        return ()
    if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) for p in v):
        raise OpError(codes.BAD_REQUEST, f"{op}: peers must be a list of CF node names, not {v!r}")
    return tuple(v)


class NodeOperations:
    """The operations half of :class:`~clovm.core.node.Node` (which provides the attributes and
    the routing methods declared here)."""

    spec: NodeSpec
    disk: NodeDisk
    cf: mem.Membership
    sf: fen.ShutdownFacility | None
    rms: rmsmod.Rms | None
    services: str
    refusal: str
    server: str
    _peers: frozenset[str]
    _samples: dict[str, Any]
    _waits: list[tuple[int, str | None, float]]
    _checks: set[int]
    _align_armed: bool

    if TYPE_CHECKING:

        def _feed_cf(self, now: float, event: Event, out: list[Effect]) -> None: ...
        def _feed_sf(self, now: float, event: Event, out: list[Effect]) -> None: ...
        def _feed_rms(self, now: float, event: Event, out: list[Effect]) -> None: ...
        def _sf_request(self, now: float, event: Event, out: list[Effect]) -> None: ...
        def _store(self, key: str, value: Any, out: list[Effect]) -> None: ...
        def _machine_config(self, cfg: SfConfig) -> SfConfig: ...
        def rows(self) -> list[list[str]]: ...
        def cftool_rows(self) -> list[list[Any]]: ...
        def hvdisp_rows(self) -> list[list[str]]: ...
        def sf_state(self) -> str: ...
        @property
        def sf_running(self) -> bool: ...

    def _operation(self, now: float, ev: OperationRequested, out: list[Effect]) -> None:
        op, caller = ev.op, ev.caller
        try:
            if caller is not None and caller not in self.spec.control_domains:
                raise OpError(
                    codes.FORBIDDEN,
                    f"{caller or 'a client without a name'} is not a control domain: "
                    f"only clovmmigrate on a control domain may do {op}",
                )
            channels = OPERATIONS.get(op)
            if channels is None or (REMOTE if caller is not None else LOCAL) not in channels:
                raise OpError(codes.UNKNOWN_OP, f"nodeagent {self.spec.host}: unknown operation {op!r}")
            if "file_error" in ev.args:
                raise OpError(codes.BAD_CONFIG, str(ev.args["file_error"]))
            method: Callable[[float, int, Mapping[str, Any], list[Effect]], Any] = getattr(self, f"_op_{op}")
            value = method(now, ev.op_id, ev.args, out)
        except OpError as e:
            out.append(Answer(ev.op_id, False, None, e.code, e.message))
            return
        except (KeyError, TypeError, ValueError) as e:
            out.append(Answer(ev.op_id, False, None, codes.BAD_REQUEST, f"{op}: bad arguments ({e!r})"))
            return
        if value is not _LATER:
            out.append(Answer(ev.op_id, True, value))

    def _need_sf(self) -> fen.ShutdownFacility:
        if self.sf is None:
            raise OpError(codes.NOT_AVAILABLE, messages.no_sf_here(self.spec.host))
        return self.sf

    def _need_control(self) -> ControlDomainFacts:
        if self.spec.control is None:
            raise OpError(codes.NOT_AVAILABLE, f"{self.spec.host} is not a control domain")
        return self.spec.control

    def _file_sf(self, args: Mapping[str, Any]) -> SfConfig:
        cfg = args.get("file_sf")
        return cfg if isinstance(cfg, SfConfig) else self.disk.sf_config

    # -- local admin commands
    def _op_cftool_n(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return self.cftool_rows()

    def _op_cftool_k(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        """cftool -k NODE: the operator declares a LEFTCLUSTER node DOWN."""
        node = args["node"]
        if node not in self._peers:
            raise OpError(codes.BAD_REQUEST, f"cftool -k: {node!r} is not another node of this cluster")
        self._feed_cf(now, mem.NodeMarkedDown(node), out)
        return str(self.cf.view()[node])

    def _op_cfset_a(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": str(self.disk.timeout)}

    def _op_cfset_r(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        seconds = args.get("file_timeout", self.disk.timeout)
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
            raise OpError(codes.BAD_CONFIG, f"cfset -r: CLUSTER_TIMEOUT must be a positive integer, not {seconds!r}")
        if seconds != self.disk.timeout:
            self.disk.timeout = seconds
            self._feed_cf(now, mem.TimeoutChanged(float(seconds)), out)
        return seconds

    def _op_sdtool(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        sf = self._need_sf()
        flag = str(args["flag"]).lstrip("-")
        if flag == "s":
            return {"running": sf.daemon is SfDaemonState.RUNNING, "rows": self.rows()}
        if flag == "b":
            if self.services == SERVICES_REFUSED:
                raise OpError(codes.SF_REFUSED, messages.sf_cannot_start(self.spec.cf, self.refusal))
            self._sf_start(now, out)
            return None
        if flag == "e":
            self._sf_stop(now, out)
            return None
        if flag == "r":
            self.disk.sf_config = self._file_sf(args)
            self._sf_request(now, fen.SfReconfigRequested(self._machine_config(self.disk.sf_config)), out)
            return None
        raise OpError(codes.BAD_REQUEST, f"sdtool: unknown flag -{flag} (s, b, e or r)")

    def _op_clsnmpsetup_l(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        return [asdict(e) for e in self._file_sf(args).xscf]

    def _op_hvdisp(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        if self.rms is None:
            raise OpError(codes.NOT_AVAILABLE, messages.no_sf_here(self.spec.host))
        return self.hvdisp_rows()

    def _op_status(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return {
            "host": self.spec.host,
            "cf": self.spec.cf,
            "local_state": str(self.cf.local_state),
            "view": {n: str(s) for n, s in self.cf.view().items()},
            "timeout": self.disk.timeout,
            "sf": self.sf_state(),
            "services": self.services,
            "apps": dict(self.rms.placement()) if self.rms is not None else {},
            "server": self.server,
            "window": self.disk.window,
        }

    # -- clovmmigrate (remote)
    def _op_node_status(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        d = self.disk
        return {
            "timeout": d.timeout,
            "sf": "running" if self.sf_running else "stopped",
            "record": d.record,
            "window": d.window,
        }

    def _op_record_timeout(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        if self.disk.record is None:  # an existing record is kept: a second -p never records 600
            self._store("record", self.disk.timeout, out)
        return self.disk.record

    def _op_set_timeout(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        seconds = args["seconds"]
        if not _positive_number(seconds) or int(seconds) != seconds:
            raise OpError(codes.BAD_REQUEST, f"set_timeout: seconds must be a positive integer, not {seconds!r}")
        self._store("timeout", int(seconds), out)
        self._feed_cf(now, mem.TimeoutChanged(float(seconds)), out)
        return None

    def _op_window(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        is_open = args["open"]
        if not isinstance(is_open, bool):
            raise OpError(codes.BAD_REQUEST, f"window: open must be true or false, not {is_open!r}")
        self._store("window", is_open, out)
        self._feed_cf(now, mem.MigrationWindowChanged(is_open), out)
        self._feed_rms(now, rmsmod.SwitchoverHoldChanged(is_open), out)
        return None

    def _sf_stop(self, now: float, out: list[Effect]) -> None:
        self._store("sf_disabled", True, out)
        self._feed_sf(now, fen.SfStopRequested(), out)

    def _sf_start(self, now: float, out: list[Effect]) -> None:
        self._store("sf_disabled", False, out)
        if self.services == SERVICES_STARTED:
            self._sf_request(now, fen.SfStartRequested(), out)

    def _op_sf_stop(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        self._sf_stop(now, out)
        return None

    def _op_sf_start(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        self._sf_start(now, out)
        return None

    def _op_set_sf_entry(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        try:
            entry = XscfEntry(**args["entry"])
            weight = args["weight"]
        except (TypeError, KeyError) as e:
            raise OpError(codes.BAD_REQUEST, f"set_sf_entry: {e}") from None
        problem = entry_problem(entry)
        if problem is None and (isinstance(weight, bool) or not isinstance(weight, int) or weight < 0):
            problem = f"weight must be a non-negative integer, not {weight!r}"
        if problem is not None:
            raise OpError(codes.BAD_REQUEST, f"set_sf_entry: {problem}")
        base = self._file_sf(args)
        if entry.cf_name not in {e.cf_name for e in base.xscf}:
            raise OpError(codes.BAD_REQUEST, f"set_sf_entry: {entry.cf_name} is not a host of SA_xscfsnmp.cfg")
        config = base.with_entry(entry, weight=weight)
        self._store("sf_config", config, out)
        self._sf_request(now, fen.SfReconfigRequested(self._machine_config(config)), out)
        return None

    def _op_sf_wait(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        seconds, node = args["seconds"], args.get("node")
        if not _positive_number(seconds) or not (node is None or isinstance(node, str)):
            raise OpError(codes.BAD_REQUEST, f"sf_wait: seconds must be positive and node a name, not {dict(args)!r}")
        self._waits.append((op_id, node, now + float(seconds)))
        self._check_waits(now, out)
        return _LATER

    def _check_waits(self, now: float, out: list[Effect]) -> None:
        """Answer every ``sf_wait`` whose rows have settled (SF running, none of them Init-ing,
        Testing or not yet tested) or whose deadline has come."""
        running, all_rows, waiting = self.sf_running, self.rows(), []
        for op_id, node, deadline in self._waits:
            rows = [r for r in all_rows if node is None or r[0] == node]
            busy = any(r[2] in BUSY_SA or r[4] == "Unknown" for r in rows)
            if (running and not busy) or now >= deadline:
                out.append(Answer(op_id, True, rows))
            else:
                waiting.append((op_id, node, deadline))
        self._waits = waiting

    def _op_clear_record(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        if self.disk.record is not None:
            self._store("record", None, out)
        return None

    # -- clovm migrate (remote and local)
    def _op_cf_sample(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        cf = self.cf
        view = cf.view()
        peers: dict[str, Any] = {}
        diffs: dict[str, float | None] = {}
        for p in self.spec.peers:
            last = cf.last_heard(p)
            peers[p] = {
                "state": str(view[p]),
                "gap": None if last is None else now - last,
                "timeout": cf.effective_timeout(p, now),
                "widened": cf.is_widened(p, now),
            }
            samples = self._samples.get(p)
            diffs[p] = abs(max(samples)) if samples else None
        return {
            "t": now,
            "state": str(cf.local_state),
            "sf": "running" if self.sf_running else "stopped",
            "peers": peers,
            "clock_diff": diffs,
            "rms_busy": self.rms is not None and self.rms.busy(),
            "rms_activity": self.rms.activity() if self.rms is not None else None,
        }

    def _op_widen(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        peers = _peer_list("widen", args.get("peers"))
        seconds: Any
        lease: Any
        seconds, lease, hypervisor = args.get("seconds"), args.get("lease"), args.get("hypervisor", False)
        for name, v in (("seconds", seconds), ("lease", lease)):  # (numbers after this loop)
            if not _positive_number(v):
                raise OpError(codes.BAD_REQUEST, f"widen: {name} must be a positive number, not {v!r}")
        if not isinstance(hypervisor, bool):
            raise OpError(codes.BAD_REQUEST, f"widen: hypervisor must be true or false, not {hypervisor!r}")
        until = now + float(lease)
        saved = {p: dict(w) for p, w in self.disk.widen.items()}
        for p in peers:
            if p in self._peers:
                saved[p] = {"seconds": float(seconds), "until": until, "hypervisor": hypervisor}
        self._store("widen", saved, out)
        self._feed_cf(now, mem.DetectionWidened(peers, float(seconds), until, hypervisor), out)
        return None

    def _op_narrow(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        peers = _peer_list("narrow", args.get("peers") or None, allow_empty=True)
        saved = {p: dict(w) for p, w in self.disk.widen.items() if peers and p not in peers}
        self._store("widen", saved, out)
        self._feed_cf(now, mem.DetectionNarrowed(peers), out)
        return None

    def _op_clock_align(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._align_armed = True  # the step applies when the server changes from the current one
        return None

    def _op_xscf_check(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        lan0, lan1, ppar = args.get("lan0"), args.get("lan1"), args.get("ppar", 0)
        if not isinstance(lan0, str) or not isinstance(lan1, str):
            raise OpError(codes.BAD_REQUEST, f"xscf_check: lan0 and lan1 must be addresses, not {lan0!r}, {lan1!r}")
        if isinstance(ppar, bool) or not isinstance(ppar, int):
            raise OpError(codes.BAD_REQUEST, f"xscf_check: ppar must be an integer, not {ppar!r}")
        self._checks.add(op_id)
        out.append(CheckXscf(op_id, lan0, lan1, ppar, self.spec.host))
        return _LATER

    def _op_sf_test(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        self._sf_request(now, fen.SfTestRequested(), out)
        return None

    def _op_sf_entry(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_sf()
        try:
            e = self._file_sf(args).entry(str(args["node"]))
        except KeyError:
            return None
        return {k: v for k, v in asdict(e).items() if k != "device"}

    # -- control domains
    def _op_guest_nodes(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_control()
        domain = str(args["domain"])
        found = self.spec.guest_domains.get(domain)
        if found is None:
            raise OpError(codes.NOT_A_CLUSTER_DOMAIN, messages.not_a_cluster_domain(domain))
        cf, nodes = found
        return {"node": cf, "nodes": list(nodes), "domains": {n: self.spec.cf_domain[n] for n in nodes}}

    def _op_resolve(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        self._need_control()
        hosts = args.get("file_hosts")
        return resolve(hosts if isinstance(hosts, Mapping) else self.disk.hosts, str(args["name"]))

    def _op_cd_info(self, now: float, op_id: int, args: Mapping[str, Any], out: list[Effect]) -> Any:
        return self._need_control().info()


def resolve(hosts: Mapping[str, str], name: str) -> str | None:
    """``name`` itself if it is an IP address, else its address in etc/inet/hosts (or None)."""
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        return hosts.get(name)


class _Later:
    """The answer comes in a later ``handle`` call."""


_LATER = _Later()
LOCAL, REMOTE = "local", "remote"
_BOTH = frozenset({LOCAL, REMOTE})
# Which channel serves which operation (local: the host's admin socket; remote: clovmmigrate).
OPERATIONS: Mapping[str, frozenset[str]] = {
    **dict.fromkeys(
        ("cftool_n", "cftool_k", "cfset_a", "cfset_r", "sdtool", "clsnmpsetup_l", "hvdisp", "status"),
        frozenset({LOCAL}),
    ),
    **dict.fromkeys(
        (
            "node_status",
            "record_timeout",
            "set_timeout",
            "window",
            "sf_stop",
            "sf_start",
            "set_sf_entry",
            "sf_wait",
            "clear_record",
        ),
        frozenset({REMOTE}),
    ),
    **dict.fromkeys(
        (
            "guest_nodes",
            "resolve",
            "cd_info",
            "cf_sample",
            "widen",
            "narrow",
            "clock_align",
            "xscf_check",
            "sf_test",
            "sf_entry",
        ),
        _BOTH,
    ),
}
