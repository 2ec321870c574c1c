"""Is the cluster ready? Pure parsing of Pacemaker's XML output (``crm_mon -1 --output-as=xml``,
``stonith_admin --history --output-as=xml``) into verdicts. No I/O.

Ready means: a DC exists with quorum, every node of the topology is online (and not unclean,
pending or shutting down), every fence device is started, and there are no failed actions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ClusterView:
    dc: str | None
    quorate: bool
    online: tuple[str, ...]
    offline: tuple[str, ...]
    started: dict[str, str] = field(default_factory=dict)  # resource id -> node it runs on
    failures: tuple[str, ...] = ()
    monitored: frozenset[str] = frozenset()  # resources whose last recurring monitor returned ok

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
    for n in root.findall("./nodes/node"):
        good = (n.get("online") == "true" and n.get("unclean") != "true" and n.get("pending") != "true"
                and n.get("shutdown") != "true")
        (online if good else offline).append(n.get("name", "?"))
    started = {}
    for r in root.iter("resource"):
        if (r.get("role") == "Started" and r.get("active") == "true" and r.get("failed") != "true"
                and not r.get("pending")):
            node = r.find("node")
            started[r.get("id", "?")] = node.get("name", "?") if node is not None else "?"
    failures = tuple(f"{f.get('op_key', '?')} on {f.get('node', '?')}: {f.get('exitreason') or f.get('status', '?')}"
                     for f in root.findall("./failures/failure"))
    monitored = set()
    for node in root.findall("./node_history/node"):
        for rh in node.findall("resource_history"):
            rid = rh.get("id", "?")
            if started.get(rid) != node.get("name"):
                continue
            mons = [op for op in rh.findall("operation_history")
                    if op.get("task") == "monitor" and op.get("interval", "0ms") not in ("0", "0ms")]
            if mons and mons[-1].get("rc") == "0":
                monitored.add(rid)
    return ClusterView(dc, quorate, tuple(online), tuple(offline), started, failures, frozenset(monitored))


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
    return [FenceEvent(e.get("action", ""), e.get("target", ""), e.get("status", ""), e.get("delegate", ""),
                       e.get("origin", ""), e.get("completed", ""))
            for e in root.iter("fence_event")]
