"""The simulated datacenter's parts that are not machines: a host's disk and process state, the
trace, and what a scenario process waits on (:class:`Pending`, :class:`WaitFor`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.base import Effect, Event
from ..core.node import Node, NodeDisk, NodeSpec
from .scheduler import Scheduler, Timer


class CommandRun(Protocol):
    """What :meth:`World.run_machine` drives (``core.migration.ClovmmigrateRun`` and its kin)."""

    def handle(self, now: float, event: Event) -> list[Effect]: ...


class TraceLog:
    lines: list[str]

    def __init__(self, sched: Scheduler, echo: Callable[[str], None] | None = None):
        self.sched, self.lines, self.echo = sched, [], echo

    def __call__(self, who: str, what: str, text: str) -> None:
        line = f"[{self.sched.now:10.3f}] {who:<11} {what:<6} {text}"
        self.lines.append(line)
        if self.echo:
            self.echo(line)


@dataclass
class NodeFiles(NodeDisk):
    """A node's disk (its etc/ and var/ trees, what survives a crash or restart): the files the
    core node keeps (:class:`~clovm.core.node.NodeDisk`), plus its logs and which XSCF host keys
    its root's known_hosts holds."""

    known_xscf: set[str] = field(default_factory=set)  # servers whose XSCF host key is known
    logs: dict[str, list[str]] = field(default_factory=dict)  # dest -> lines as the runtime writes them


@dataclass
class SimNode:
    cf: str
    host: str  # domain / host name
    kind: str  # "guest" | "control"
    spec: NodeSpec
    files: NodeFiles
    hosted_by: str  # control domain hosting it (itself for a control domain)
    alive: bool = False
    suspended: bool = False
    incarnation: int = 0
    node: Node | None = None  # while its process lives
    timer: Timer | None = None
    tick_pending: bool = False
    held: list[Event] = field(default_factory=list)  # messages that arrived while suspended (its socket buffers)
    peers: list[SimNode] = field(default_factory=list)  # the other nodes of its cluster (fixed)

    @property
    def cluster(self) -> tuple[str, ...]:
        return self.spec.nodes

    @property
    def services(self) -> str:
        return self.node.services if self.node is not None else "none"

    @property
    def machines(self) -> dict[str, Any]:
        """The node's machines by kind ("cf", "sf", "rms"), while it lives (for scenarios)."""
        n = self.node
        if n is None:
            return {}
        return {k: m for k, m in (("cf", n.cf), ("sf", n.sf), ("rms", n.rms)) if m is not None}

    @property
    def clock_step(self) -> float:
        return self.node.clock_step if self.node is not None else 0.0


class Pending:
    """Something a scenario can wait for (an ldm command, a clovmmigrate run)."""

    done: bool
    value: Any
    _cbs: list[Callable[[Any], None]]

    def __init__(self) -> None:
        self.done, self.value, self._cbs = False, None, []
        self.lines: list[tuple[bool, str]] = []  # a command's output: (to stderr, line)

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done, self.value = True, value
            for cb in self._cbs:
                cb(value)

    def add_callback(self, cb: Callable[[Any], None]) -> None:
        if self.done:
            cb(self.value)
        else:
            self._cbs.append(cb)


@dataclass(frozen=True)
class WaitFor:
    pred: Callable[[], bool]
    timeout: float
    poll: float = 1.0
