"""Shutdown facility (SF, the ``rcsd`` daemon) as a sans-IO state machine, one per cluster node.

Theory of operation
-------------------
The daemon is RUNNING or STOPPED (``sdtool -b`` / ``sdtool -e``). It owns one *row* per
(cluster host, shutdown agent) pair of ``rcsd.cfg`` — every host including the local one — with the
four columns of ``sdtool -s``. The Init/Test/Shut columns move only through ``_state.INIT``,
``_state.TEST`` and ``_state.SHUT`` (triggers begin / worked / failed). The SA State column is
derived: the operation running on the row (``Killing`` > ``Testing`` > ``Init-ing``), else ``Idle``.

Every agent run is a :class:`RunAgent` effect with a fresh request id (consecutive from 1). The
driver answers with :class:`AgentFinished`; an id that is not outstanding (stale after stop or
reconfig, or already timed out) is ignored. A request not answered by ``now + timeout`` counts as a
failure with detail ``timeout after N s``.

* Start: every row runs init; when a row's init ends (either way) that row runs its test. From then
  on every row not already busy is tested each ``test_interval`` seconds after the start.
* Test on request (:class:`SfTestRequested`, ``clovm migrate``'s ``sf_test``): while running and
  not in a shutdown cycle (no kill running or pending), every row not already busy is tested now,
  exactly as by the periodic test; the periodic schedule is not changed. Otherwise it is ignored
  with an rcsd line.
* Stop: outstanding requests and pending kills are dropped, rows reset to Unknown.
* Reconfig while running: the rows are rebuilt from the new config (Init/Test Unknown, Shut kept for
  rows that still exist) and init+test run again. As in the product, a reconfig that arrives during
  a shutdown cycle (a kill running or a lighter-side kill pending) is ignored with an rcsd message.
  Reconfig while stopped just replaces the config.

Split brain. The machine keeps the last state it was told for every remote node
(:class:`NodeStateChanged`, also while stopped). When running and a node becomes LEFTCLUSTER, my
side = me + nodes I hold UP, the other side = all LEFTCLUSTER nodes. A side's survival priority is
Σ SF weight (``rcsd.cfg``; 0 for a node not in it) + Σ app priorities (latest
:class:`AppPrioritiesChanged`; default 0). The higher priority wins; on a tie the side holding the
alphabetically first node of both sides wins.

* Unseen nodes (LEFTCLUSTER without ever having been UP here: CF's silent peers whose domain runs,
  after this node started while the interconnect was cut) are never killed, by either side: the
  other side does not see this node at all, so it may be the healthy cluster, and nothing needs
  them dead (RMS places no application they could be running). CF settles them (they join, or
  their domain stops).
* Winner: kill every other LEFTCLUSTER node at once: the node's agents in config order, each bounded by its
  timeout; a failure or timeout moves on to the next agent. Success → Shut KillWorked on that row
  and :class:`AnnounceEliminated`; all agents failed → the node stays LEFTCLUSTER (rcsd + messages).
* Loser: schedule the kill at ``now + lighter_side_delay × (1 − my_share)``; when it comes due the
  kill starts only if the node is still LEFTCLUSTER.
* A kill of a node starts at most once per LEFTCLUSTER episode (repeated LEFTCLUSTER reports and
  stop/start do not restart it). With ``kill_retry`` > 0, a kill in which every agent failed is
  started again that many seconds later, with the configuration of that moment, for as long as
  the node stays LEFTCLUSTER and SF runs (an XSCF LAN that was down, an SF entry that still named
  the XSCF of the server the node migrated away from and was corrected meanwhile): otherwise the
  node would stay LEFTCLUSTER for good. A retry that is waiting is not a shutdown cycle. Any other state (DOWN, UP) ends the episode: a pending kill is
  dropped, a running one is *cancelled* — its agent result still updates the row, but no further
  agent runs and nothing is announced.
* LEFTCLUSTER nodes seen while stopped are decided on start.
* Settle (``split_settle`` > 0, clusters of more than two nodes): the decision is taken
  ``split_settle`` seconds after the first LEFTCLUSTER report of an episode, together for every
  node reported LEFTCLUSTER by then. The nodes across a cut stop being heard within one heartbeat
  interval of each other, but CF reports them one at a time: deciding on the first report alone
  can make a node of a 1:2 split count one of the two as still on its side, so that both sides
  win (and a 2:2 split look like 3:1 to both halves). Two nodes cannot be miscounted: a
  two-node cluster decides at once.

Timers (agent timeouts, pending kills, the periodic test) that are due at ``now`` fire before the
event is handled — except for a stop, which discards them. :class:`~clovm.core.base.Ticked` only
fires timers. Effects come out in config order (hosts, then agents); node lists are sorted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import messages
from ._state import (
    INIT,
    SF_DAEMON,
    SHUT,
    TEST,
    InitState,
    NodeState,
    SaState,
    SfDaemonState,
    ShutState,
    TestState,
    allowed,
    step,
)
from .base import Effect, Event, Log, Ticked
from .defaults import SF_LIGHTER_SIDE_DELAY, SF_TEST_INTERVAL
from .sfconfig import SfConfig, SfHost, XscfEntry

INIT_ACTION = "init"
TEST_ACTION = "test"
KILL_ACTION = "kill"


# --------------------------------------------------------------------------------------------
# Events
@dataclass(frozen=True, slots=True)
class SfStartRequested(Event):
    """sdtool -b"""


@dataclass(frozen=True, slots=True)
class SfStopRequested(Event):
    """sdtool -e"""


@dataclass(frozen=True, slots=True)
class SfReconfigRequested(Event):
    """sdtool -r after rcsd.cfg / SA_xscfsnmp.cfg changed."""

    config: SfConfig


@dataclass(frozen=True, slots=True)
class SfTestRequested(Event):
    """Test every shutdown agent now (as the periodic test does)."""


@dataclass(frozen=True, slots=True)
class AgentFinished(Event):
    req_id: int
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class NodeStateChanged(Event):
    """CF's view of a node changed (reports about the local node are ignored). ``unseen``: it is
    LEFTCLUSTER without ever having been UP here (it never answered our join, its domain runs)."""

    node: str
    state: NodeState
    unseen: bool = False


@dataclass(frozen=True, slots=True)
class AppPrioritiesChanged(Event):
    """Per node: Σ ShutdownPriority of the userApplications online there."""

    priorities: tuple[tuple[str, int], ...]


# --------------------------------------------------------------------------------------------
# Effects
@dataclass(frozen=True, slots=True)
class RunAgent(Effect):
    """Run ``agent`` (action "init" | "test" | "kill") against ``host``'s XSCF ``entry``."""

    req_id: int
    host: str
    agent: str
    action: str
    timeout: float
    entry: XscfEntry


@dataclass(frozen=True, slots=True)
class AnnounceEliminated(Effect):
    """Tell CF (locally and on every peer) that ``node`` was killed."""

    node: str


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SfRow:
    """One ``sdtool -s`` line."""

    host: str
    agent: str
    sa_state: SaState
    shut_state: ShutState
    test_state: TestState
    init_state: InitState


@dataclass(slots=True)
class _Row:
    shut: ShutState = ShutState.UNKNOWN
    test: TestState = TestState.UNKNOWN
    init: InitState = InitState.UNKNOWN


@dataclass(slots=True)
class _Request:
    host: str
    agent: str
    index: int  # position of the agent in the host's agent list
    action: str
    timeout: float
    deadline: float
    cancelled: bool = False  # a kill whose node left LEFTCLUSTER: the result only updates the row


RowKey = tuple[str, str]


class ShutdownFacility:
    def __init__(
        self,
        me: str,
        config: SfConfig,
        *,
        test_interval: float = SF_TEST_INTERVAL,
        lighter_side_delay: float = SF_LIGHTER_SIDE_DELAY,
        split_settle: float = 0.0,
        kill_retry: float = 0.0,
    ) -> None:
        if test_interval <= 0:
            raise ValueError("test_interval must be positive")
        if lighter_side_delay < 0:
            raise ValueError("lighter_side_delay must not be negative")
        self.me = me
        self._config = config
        self._test_interval = test_interval
        self._lighter_side_delay = lighter_side_delay
        if split_settle < 0:
            raise ValueError("split_settle must not be negative")
        self._split_settle = split_settle
        if kill_retry < 0:
            raise ValueError("kill_retry must not be negative")
        self._kill_retry = kill_retry
        self._retries: dict[str, float] = {}  # node -> when a kill that failed everywhere is tried again
        self._decide_at: float | None = None  # a settling split-brain decision
        self._unseen: set[str] = set()  # LEFTCLUSTER nodes that were never UP here
        self._daemon = SfDaemonState.STOPPED
        self._rows: dict[RowKey, _Row] = _fresh_rows(config)
        self._requests: dict[int, _Request] = {}
        self._last_id = 0
        self._next_test: float | None = None
        self._nodes: dict[str, NodeState] = {}  # remote nodes, as CF last reported them
        self._app_priorities: dict[str, int] = {}
        self._pending_kills: dict[str, float] = {}  # node -> when the lighter side kills it
        self._kill_started: set[str] = set()  # nodes killed (or being killed) this episode

    # ---------------------------------------------------------------------------- queries
    @property
    def daemon(self) -> SfDaemonState:
        return self._daemon

    @property
    def config(self) -> SfConfig:
        return self._config

    def rows(self) -> list[SfRow]:
        out = []
        for host in self._config.hosts:
            for ref in host.agents:
                row = self._rows[(host.cf_name, ref.name)]
                out.append(SfRow(host.cf_name, ref.name, _sa_state(row), row.shut, row.test, row.init))
        return out

    def next_deadline(self) -> float | None:
        times = [r.deadline for r in self._requests.values()]
        times += self._pending_kills.values()
        if self._decide_at is not None:
            times.append(self._decide_at)
        times += self._retries.values()
        if self._next_test is not None:
            times.append(self._next_test)
        return min(times, default=None)

    # ---------------------------------------------------------------------------- events
    def handle(self, now: float, event: Event) -> list[Effect]:
        if isinstance(event, SfStopRequested):
            return self._stop()
        out = self._fire_due(now)
        match event:
            case Ticked():
                pass
            case SfStartRequested():
                out += self._start(now)
            case SfReconfigRequested(config=config):
                out += self._reconfig(now, config)
            case SfTestRequested():
                out += self._test_requested(now)
            case AgentFinished(req_id=req_id, ok=ok, detail=detail):
                req = self._requests.pop(req_id, None)
                if req is not None:  # else stale: ignore
                    out += self._conclude(now, req, ok, detail)
            case NodeStateChanged(node=node, state=state, unseen=unseen):
                if state is NodeState.LEFTCLUSTER and unseen:
                    self._unseen.add(node)
                else:
                    self._unseen.discard(node)
                out += self._node_changed(now, node, state)
            case AppPrioritiesChanged(priorities=priorities):
                self._app_priorities = dict(priorities)
            case _:
                raise TypeError(f"ShutdownFacility cannot handle {event!r}")
        return out

    def _start(self, now: float) -> list[Effect]:
        if self._daemon is SfDaemonState.RUNNING:
            return []
        self._daemon = step(SF_DAEMON, self._daemon, "start")
        self._next_test = now + self._test_interval
        out: list[Effect] = [Log("rcsd", f"rcsd started on {self.me}")]
        out += self._init_all(now)
        waiting = sorted(n for n in self._left_nodes() if n not in self._kill_started)
        if waiting:
            out.append(Log("rcsd", f"LEFTCLUSTER while SF was stopped: {', '.join(waiting)}"))
            out += self._decide(now)
        return out

    def _stop(self) -> list[Effect]:
        if self._daemon is SfDaemonState.STOPPED:
            return []
        self._daemon = step(SF_DAEMON, self._daemon, "stop")
        self._requests.clear()
        self._pending_kills.clear()
        self._decide_at = None
        self._retries.clear()
        self._next_test = None
        self._rows = _fresh_rows(self._config)
        return [Log("rcsd", f"rcsd stopped on {self.me}")]

    def _reconfig(self, now: float, config: SfConfig) -> list[Effect]:
        if self._daemon is SfDaemonState.STOPPED:
            self._config = config
            self._rows = _fresh_rows(config)
            return [Log("rcsd", "configuration replaced (SF stopped)")]
        if self._in_shutdown_cycle():
            return [Log("rcsd", "A reconfig request came in during a shutdown cycle, this request was ignored")]
        self._daemon = step(SF_DAEMON, self._daemon, "reconfig")
        self._config = config
        self._requests.clear()  # only init/test were outstanding: their results are now stale
        self._rows = _fresh_rows(config, keep_shut_from=self._rows)
        self._next_test = now + self._test_interval
        return [Log("rcsd", "reconfig: configuration reloaded, re-initialising all agents"), *self._init_all(now)]

    def _in_shutdown_cycle(self) -> bool:
        return bool(self._pending_kills) or any(r.action == KILL_ACTION for r in self._requests.values())

    def _test_requested(self, now: float) -> list[Effect]:
        if self._daemon is SfDaemonState.STOPPED:
            return [Log("rcsd", "test request ignored: rcsd is stopped")]
        if self._in_shutdown_cycle():
            return [Log("rcsd", "test request ignored: a shutdown cycle is in progress")]
        return [Log("rcsd", "testing every shutdown agent on request"), *self._test_all(now)]

    def _node_changed(self, now: float, node: str, state: NodeState) -> list[Effect]:
        if node == self.me:  # a node never sees itself LEFTCLUSTER; my side always holds me
            return []
        self._nodes[node] = state
        if state is NodeState.LEFTCLUSTER:
            if self._daemon is not SfDaemonState.RUNNING:
                return []
            if self._split_settle > 0 and len(self._config.hosts) > 2:
                if self._decide_at is None:
                    self._decide_at = now + self._split_settle
                    return [
                        Log(
                            "rcsd",
                            f"{node} is LEFTCLUSTER: deciding in {self._split_settle:g} s, with every "
                            f"node that leaves meanwhile",
                        )
                    ]
                return []
            return self._decide(now)
        # The LEFTCLUSTER episode (if any) is over.
        self._kill_started.discard(node)
        self._retries.pop(node, None)
        cancelled = self._pending_kills.pop(node, None) is not None
        for req in self._requests.values():
            if req.action == KILL_ACTION and req.host == node and not req.cancelled:
                req.cancelled = cancelled = True
        return [Log("rcsd", f"{node} is {state}: kill cancelled")] if cancelled else []

    # ---------------------------------------------------------------------------- timers
    def _fire_due(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        while True:
            due = [(r.deadline, rid) for rid, r in self._requests.items() if r.deadline <= now]
            if due:
                _, rid = min(due)
                req = self._requests.pop(rid)
                out += self._conclude(now, req, False, f"timeout after {req.timeout:g} s")
                continue
            if self._decide_at is not None and self._decide_at <= now:
                self._decide_at = None
                out += self._decide(now)
                continue
            retries = [(t, n) for n, t in self._retries.items() if t <= now]
            if retries:
                _, node = min(retries)
                del self._retries[node]
                if self._nodes.get(node) is NodeState.LEFTCLUSTER:
                    out.append(Log("rcsd", f"trying again to kill {node}"))
                    out += self._start_kill(now, node)
                continue
            kills = [(t, n) for n, t in self._pending_kills.items() if t <= now]
            if kills:
                _, node = min(kills)
                del self._pending_kills[node]
                if self._nodes.get(node) is NodeState.LEFTCLUSTER and node not in self._kill_started:
                    out += self._start_kill(now, node)
                continue
            if self._next_test is not None and self._next_test <= now:
                while self._next_test <= now:
                    self._next_test += self._test_interval
                out += self._test_all(now)
                continue
            return out

    # ---------------------------------------------------------------------------- agent runs
    def _init_all(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for host in self._config.hosts:
            for index in range(len(host.agents)):
                out += self._begin(now, host, index, INIT_ACTION)
        return out

    def _test_all(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for host in self._config.hosts:
            for index, ref in enumerate(host.agents):
                row = self._rows[(host.cf_name, ref.name)]
                if row.init is not InitState.INIT_ING and allowed(TEST, row.test, "begin"):
                    out += self._begin(now, host, index, TEST_ACTION)
        return out

    def _begin(self, now: float, host: SfHost, index: int, action: str) -> list[Effect]:
        """Move the row's column to its running state and run the agent (or fail at once)."""
        ref = host.agents[index]
        _advance(self._rows[(host.cf_name, ref.name)], action, "begin")
        req = _Request(host.cf_name, ref.name, index, action, float(ref.timeout), now + ref.timeout)
        try:
            entry = self._config.entry(host.cf_name)
        except KeyError:
            return self._conclude(now, req, False, f"no SA_xscfsnmp.cfg entry for {host.cf_name}")
        self._last_id += 1
        self._requests[self._last_id] = req
        return [RunAgent(self._last_id, host.cf_name, ref.name, action, req.timeout, entry)]

    def _conclude(self, now: float, req: _Request, ok: bool, detail: str) -> list[Effect]:
        """Apply one agent result (an answer, a timeout or an immediate failure)."""
        _advance(self._rows[(req.host, req.agent)], req.action, "worked" if ok else "failed")
        verdict = "worked" if ok else "failed"
        out: list[Effect] = [Log(req.agent, f"{req.action} {req.host}: {verdict}" + (f": {detail}" if detail else ""))]
        if not ok and messages.is_7245(detail):
            out.append(Log("messages", detail, messages.MSG_7245))
        elif not ok and req.action != KILL_ACTION:
            out.append(Log("messages", f"SF: {req.action} of {req.agent} for {req.host} failed: {detail}"))
        if req.action == INIT_ACTION:
            out += self._begin(now, self._config.host(req.host), req.index, TEST_ACTION)
        elif req.action == KILL_ACTION and not req.cancelled:
            out += self._kill_result(now, req, ok, detail)
        return out

    # ---------------------------------------------------------------------------- split brain
    def _left_nodes(self) -> list[str]:
        return sorted(n for n, s in self._nodes.items() if s is NodeState.LEFTCLUSTER)

    def _priority(self, side: list[str]) -> int:
        total = 0
        for node in side:
            try:
                total += self._config.weight(node)
            except KeyError:
                pass  # not in rcsd.cfg: no SF weight
            total += self._app_priorities.get(node, 0)
        return total

    def _decide(self, now: float) -> list[Effect]:
        others = self._left_nodes()
        undecided = [n for n in others if n not in self._kill_started]
        mine = sorted({self.me, *(n for n, s in self._nodes.items() if s is NodeState.UP)})
        mine_p, others_p = self._priority(mine), self._priority(others)
        survive = mine_p > others_p or (mine_p == others_p and min(mine + others) in mine)
        todo = undecided if survive else [n for n in undecided if n not in self._pending_kills]
        spared = [n for n in todo if n in self._unseen]
        todo = [n for n in todo if n not in self._unseen]
        if not todo:
            return [Log("rcsd", f"{', '.join(spared)} never joined {self.me}: not killed")] if spared else []
        out: list[Effect] = [
            Log(
                "rcsd",
                f"split-brain: my side {','.join(mine)} priority {mine_p}, "
                f"other side {','.join(others)} priority {others_p}: "
                + ("my side survives" if survive else "other side survives"),
            )
        ]
        if survive:
            for node in todo:
                self._pending_kills.pop(node, None)
                out += self._start_kill(now, node)
            return out
        total = mine_p + others_p
        share = mine_p / total if total > 0 else 0.5
        delay = self._lighter_side_delay * min(1.0, max(0.0, 1.0 - share))
        for node in todo:
            self._pending_kills[node] = now + delay
        out.append(Log("rcsd", f"After the delay of {delay:g} seconds, {self.me} would kill: {', '.join(todo)}"))
        return out

    def _start_kill(self, now: float, node: str) -> list[Effect]:
        self._kill_started.add(node)
        # A cancelled kill of an earlier episode may still be out: give up on it.
        for rid, req in list(self._requests.items()):
            if req.action == KILL_ACTION and req.host == node:
                del self._requests[rid]
                _advance(self._rows[(req.host, req.agent)], KILL_ACTION, "failed")
        try:
            host = self._config.host(node)
        except KeyError:
            host = None
        if host is None or not host.agents:
            text = f"cannot kill {node}: no shutdown agent configured; {node} stays LEFTCLUSTER"
            return [Log("rcsd", text), Log("messages", text)]
        return [Log("rcsd", f"killing {node}"), *self._begin(now, host, 0, KILL_ACTION)]

    def _kill_result(self, now: float, req: _Request, ok: bool, detail: str) -> list[Effect]:
        node = req.host
        if ok:
            return [Log("rcsd", f"{node} killed by {req.agent}"), AnnounceEliminated(node)]
        host = self._config.host(node)
        if req.index + 1 < len(host.agents):
            nxt = host.agents[req.index + 1].name
            return [
                Log("rcsd", f"kill of {node} by {req.agent} failed ({detail}), trying {nxt}"),
                *self._begin(now, host, req.index + 1, KILL_ACTION),
            ]
        text = f"failed to kill {node}: all shutdown agents failed; {node} stays LEFTCLUSTER"
        out: list[Effect] = [Log("rcsd", text), Log("messages", text)]
        if self._kill_retry > 0:
            self._retries[node] = now + self._kill_retry
            out.append(Log("rcsd", f"trying again to kill {node} in {self._kill_retry:g} s"))
        return out


# --------------------------------------------------------------------------------------------
_COLUMN_TABLES: dict[str, tuple[str, Mapping[tuple[Any, str], Any]]] = {
    INIT_ACTION: ("init", INIT),
    TEST_ACTION: ("test", TEST),
    KILL_ACTION: ("shut", SHUT),
}


def _advance(row: _Row, action: str, trigger: str) -> None:
    column, table = _COLUMN_TABLES[action]
    setattr(row, column, step(table, getattr(row, column), trigger))


def _sa_state(row: _Row) -> SaState:
    if row.shut is ShutState.KILLING:
        return SaState.KILLING
    if row.test is TestState.TESTING:
        return SaState.TESTING
    if row.init is InitState.INIT_ING:
        return SaState.INIT_ING
    return SaState.IDLE


def _fresh_rows(config: SfConfig, keep_shut_from: dict[RowKey, _Row] | None = None) -> dict[RowKey, _Row]:
    old = keep_shut_from or {}
    rows = {}
    for host in config.hosts:
        for ref in host.agents:
            key = (host.cf_name, ref.name)
            rows[key] = _Row(shut=old[key].shut) if key in old else _Row()
    return rows
