"""Is the cluster ready? Pure parsing of Pacemaker's XML output (``crm_mon -1 --output-as=xml``,
``stonith_admin --history --output-as=xml``) into verdicts. No I/O.

Ready means: a DC exists with quorum, every node of the topology is online (and not unclean,
pending or shutting down), every fence device is started, and there are no failed actions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ClusterView:
    dc: str | None
    quorate: bool
    online: tuple[str, ...]
    offline: tuple[str, ...]
    started: dict[str, str] = field(default_factory=dict)  # resource id -> node it runs on
    failures: tuple[str, ...] = ()
    monitored: frozenset[str] = frozenset()  # resources whose last recurring monitor returned ok
    maintenance: bool = False  # the cluster property maintenance-mode
    stonith_enabled: bool = True  # the cluster property stonith-enabled
    nodes: dict[str, dict[str, bool]] = field(default_factory=dict)  # name -> online/unclean/pending/maintenance/...
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> agent/role/node/managed/failed/pending
    pending: tuple[str, ...] = ()  # "RESOURCE ACTION on NODE" of every action in flight

    def problems(self, nodes: Iterable[str], devices: Iterable[str]) -> list[str]:
        out = []
        if self.dc is None:
            out.append("no DC")
        elif not self.quorate:
            out.append("no quorum")
        missing = [n for n in nodes if n not in self.online]
        if missing:
            out.append("not online: " + " ".join(missing))
        devices = list(devices)
        stopped = [d for d in devices if d not in self.started]
        if stopped:
            out.append("not started: " + " ".join(stopped))
        unproven = [d for d in devices if d in self.started and d not in self.monitored]
        if unproven:
            out.append("no successful monitor yet: " + " ".join(unproven))
        if self.failures:
            out.append("failed actions: " + "; ".join(self.failures))
        return out

    def ready(self, nodes: Iterable[str], devices: Iterable[str]) -> bool:
        return not self.problems(nodes, devices)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (what the migration adapter answers for ``crm_mon``)."""
        return {
            "dc": self.dc,
            "quorate": self.quorate,
            "online": list(self.online),
            "offline": list(self.offline),
            "started": dict(self.started),
            "failures": list(self.failures),
            "monitored": sorted(self.monitored),
            "maintenance": self.maintenance,
            "stonith_enabled": self.stonith_enabled,
            "nodes": {n: dict(v) for n, v in self.nodes.items()},
            "resources": {r: dict(v) for r, v in self.resources.items()},
            "pending": list(self.pending),
        }


class BadXml(ValueError):
    pass


def _root(text: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise BadXml(f"unparsable XML: {e}") from None


def parse_crm_mon(text: str) -> ClusterView:
    root = _root(text)
    dc_el = root.find("./summary/current_dc")
    dc = None
    quorate = False
    if dc_el is not None and dc_el.get("present") == "true":
        dc = dc_el.get("name")
        quorate = dc_el.get("with_quorum") == "true"
    online: list[str] = []
    offline: list[str] = []
    nodes: dict[str, dict[str, bool]] = {}
    for n in root.findall("./nodes/node"):
        good = (
            n.get("online") == "true"
            and n.get("unclean") != "true"
            and n.get("pending") != "true"
            and n.get("shutdown") != "true"
        )
        (online if good else offline).append(n.get("name", "?"))
        nodes[n.get("name", "?")] = {
            k: n.get(k) == "true" for k in ("online", "unclean", "pending", "maintenance", "standby", "shutdown")
        }
    started = {}
    resources: dict[str, dict[str, Any]] = {}
    pending: list[str] = []
    for r in root.iter("resource"):
        node = r.find("node")
        where = node.get("name", "?") if node is not None else None
        rid = r.get("id", "?")
        resources[rid] = {
            "agent": r.get("resource_agent", ""),
            "role": r.get("role", ""),
            "node": where,
            "managed": r.get("managed") != "false",
            "failed": r.get("failed") == "true",
            "pending": r.get("pending") or None,
        }
        if r.get("pending"):
            pending.append(f"{rid} {r.get('pending')} on {where or '?'}")
        if (
            r.get("role") == "Started"
            and r.get("active") == "true"
            and r.get("failed") != "true"
            and not r.get("pending")
        ):
            started[rid] = where or "?"
    opts = root.find("./summary/cluster_options")
    maintenance = opts is not None and opts.get("maintenance-mode") == "true"
    stonith_enabled = opts is None or opts.get("stonith-enabled") != "false"
    failures = tuple(
        f"{f.get('op_key', '?')} on {f.get('node', '?')}: {f.get('exitreason') or f.get('status', '?')}"
        for f in root.findall("./failures/failure")
    )
    monitored = set()
    for node in root.findall("./node_history/node"):
        for rh in node.findall("resource_history"):
            rid = rh.get("id", "?")
            if started.get(rid) != node.get("name"):
                continue
            mons = [
                op
                for op in rh.findall("operation_history")
                if op.get("task") == "monitor" and op.get("interval", "0ms") not in ("0", "0ms")
            ]
            if mons and mons[-1].get("rc") == "0":
                monitored.add(rid)
    return ClusterView(
        dc,
        quorate,
        tuple(online),
        tuple(offline),
        started,
        failures,
        frozenset(monitored),
        maintenance,
        stonith_enabled,
        nodes,
        resources,
        tuple(pending),
    )


def parse_stonith_devices(text: str) -> list[dict[str, Any]]:
    """The fence devices of ``cibadmin -Q -o resources`` (also inside groups/clones):
    ``[{"id", "agent", "params": {name: value}}]`` in CIB order."""
    root = _root(text)
    out = []
    for p in root.iter("primitive"):
        if p.get("class") != "stonith":
            continue
        params = {
            nv.get("name", ""): nv.get("value", "")
            for ia in p.findall("instance_attributes")
            for nv in ia.findall("nvpair")
        }
        out.append({"id": p.get("id", "?"), "agent": p.get("type", ""), "params": params})
    return out


@dataclass(frozen=True, slots=True)
class FenceEvent:
    action: str
    target: str
    status: str  # success | failed | pending ...
    delegate: str  # the node that ran the agent
    origin: str  # the node that asked for it
    completed: str  # as Pacemaker prints it ("" while pending)


def parse_stonith_history(text: str) -> list[FenceEvent]:
    root = _root(text)
    return [
        FenceEvent(
            e.get("action", ""),
            e.get("target", ""),
            e.get("status", ""),
            e.get("delegate", ""),
            e.get("origin", ""),
            e.get("completed", ""),
        )
        for e in root.iter("fence_event")
    ]
