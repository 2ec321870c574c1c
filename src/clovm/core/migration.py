"""clovmmigrate -p / -u as a sans-IO machine.

Theory of operation
-------------------
One :class:`ClovmmigrateRun` is one invocation of ``clovmmigrate`` on the source control
domain's cluster node. The procedure is a straight script with branches, so it is written as a
generator (``_prepare`` / ``_update``) that *yields* :class:`Call` effects and receives the
answers; :class:`ClovmmigrateRun` drives it from ``handle(now, CallReturned(...))``. The generator
never touches the world: every question ("which nodes form the guest cluster?", "what is
cfguest1's timeout?") and every change ("set cfguest1's timeout to 600") is a Call that the
driver answers, over the simulated network in ``sim/`` or over authenticated channels in
``runtime/``. The driver imposes call timeouts and answers ``CallReturned(ok=False,
error="timeout ...")``.

Crash safety. Before it changes anything, ``-p`` asks every guest node to *record* its current
CLUSTER_TIMEOUT (``record_timeout``: the node keeps an existing record, so a second ``-p`` can never
record 600), and writes the same values to a journal on the source control domain
(:class:`Persist`). ``-u`` restores from the node's record, falling back to the journal, and clears
the record only as the very last change on that node. Every node operation is idempotent, so
re-running either command after a crash completes it.

The calls (target, op, args) → value, which every driver implements:

=========================  ===============  ==================================================
target                     op               value
=========================  ===============  ==================================================
local control domain       ``guest_nodes``  ``{"node": cf, "nodes": [cf...]}`` or error
local / any control dom.   ``ldm``          ``{"rc", "stdout", "stderr"}`` of ``ldm argv...``
local control domain       ``resolve``      address of a name via its etc/inet/hosts, or None
an address                 ``cd_info``      ``{"host", "server", "ppar", "lan0", "lan1",
                                            "sf_weight"}`` of the control domain at address
guest CF node              ``node_status``  ``{"timeout", "sf", "record", "window"}``
guest CF node              ``record_timeout`` the recorded pre-migration timeout (kept if set)
guest CF node              ``set_timeout``  None (``{"seconds"}``: cluster.config + cfset -r)
guest CF node              ``window``       None (``{"open"}``: CF DOWN-by-hypervisor + RMS hold)
guest CF node              ``sf_stop`` /    None (sdtool -e / sdtool -b)
                           ``sf_start``
guest CF node              ``set_sf_entry`` None (``{"entry": XscfEntry fields, "weight"}``)
guest CF node              ``sf_wait``      rows ``[[host, agent, sa, shut, test, init]...]``
                                            of CF node ``node`` (all rows without it), once
                                            none of them is Init-ing/Testing (or timeout)
guest CF node              ``clear_record`` None
=========================  ===============  ==================================================

Exit codes: 0 done; 1 the guest domain is stopped (``-p``, as the manual documents for the
cold-migration check); 2 bad usage (the CLI); 3 refused before anything changed; 4 a step failed
part way (run the same command again to complete it).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from . import codes
from ._state import RUN, RunState, step
from .base import Effect, Event, Ticked
from .defaults import MIGRATION_CLUSTER_TIMEOUT
from .sfconfig import XscfEntry

MIGRATION_TIMEOUT = MIGRATION_CLUSTER_TIMEOUT  # (core.defaults)
MAX_SAVED_SPCONFIGS = 6
CONFIG_TMP = "config_tmp"
DEFAULT_SAVED_NAME = "clovm-config"
SF_WAIT_SECONDS = 60.0
SCOPED_LEASE = 600.0  # emulated seconds a --scoped widening lasts unless narrowed before

RC_OK, RC_STOPPED, RC_USAGE, RC_REFUSED, RC_FAILED = 0, 1, 2, 3, 4


# ---- events / effects ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    pass


@dataclass(frozen=True, slots=True)
class CallReturned(Event):
    call_id: int
    ok: bool
    value: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Call(Effect):
    call_id: int
    target: str
    op: str
    args: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Print(Effect):
    """A line for the operator (stdout; ``err`` → stderr)."""

    text: str
    err: bool = False


@dataclass(frozen=True, slots=True)
class Persist(Effect):
    """Write the journal of this domain on the source control domain (None = remove it)."""

    domain: str
    journal: dict[str, Any] | None = field(hash=False)


@dataclass(frozen=True, slots=True)
class Finished(Effect):
    rc: int
    code: str  # stable report code, "" when rc == 0
    message: str


class _Stop(Exception):
    def __init__(self, rc: int, code: str, message: str):
        super().__init__(message)
        self.rc, self.code, self.message = rc, code, message


@dataclass(frozen=True, slots=True)
class Request:
    """What the operator asked: ``-p domain`` or ``-u domain target_host``."""

    mode: str  # "prepare" | "update"
    domain: str
    local_host: str  # the control domain clovmmigrate runs on
    target_host: str = ""
    scoped: bool = False  # clovm migrate --scoped: widen only the migrating node's failure detection


class GeneratorRun:
    """Drives a procedure written as a generator of effects (base of the runs of this package).

    Subclasses set ``self._gen`` and ``PROG`` (the command name that prefixes their messages).
    ``handle(now, ...)`` stores ``now`` in ``self.now`` before resuming the generator, so a
    procedure can time-stamp what it records.

    The generator yields one :class:`Call` and is sent its :class:`CallReturned`, or yields a
    tuple of calls (a batch, :meth:`_ask_all`) and is sent the tuple of their answers, in the
    order of the calls, once all have arrived. A driver may carry out the calls of a batch
    concurrently (they are all in one ``handle`` result).
    """

    PROG = "clovmmigrate"

    def __init__(self, ids: Iterator[int] | None = None):
        self.state = RunState.PLANNED
        self.result: Finished | None = None
        self.now = 0.0
        self._ids = ids if ids is not None else itertools.count(1)
        self._pending: Call | None = None
        self._batch: dict[int, CallReturned | None] = {}  # call_id -> answer, of the batch in flight
        # yields a Call, a tuple of calls (a batch) or any other effect; is sent a CallReturned, or the
        # tuple of a batch's answers; returns None or (rc, code, message)
        self._gen: Generator[Effect | tuple[Call, ...], Any, tuple[int, str, str] | None] | None = None

    @property
    def ids(self) -> Iterator[int]:
        """The call ids this run draws from (an embedded run shares its parent's)."""
        return self._ids

    # -- machine interface ---------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return None  # call timeouts are the driver's

    def handle(self, now: float, event: Event) -> list[Effect]:
        self.now = now
        if isinstance(event, Ticked):
            return []
        if isinstance(event, RunStarted):
            self.state = step(RUN, self.state, "begin")
            return self._advance(None)
        if isinstance(event, CallReturned):
            if event.call_id in self._batch:
                if self._batch[event.call_id] is not None:
                    return []  # answered already (a late duplicate)
                self._batch[event.call_id] = event
                if any(a is None for a in self._batch.values()):
                    return []
                answers, self._batch = tuple(self._batch.values()), {}
                return self._advance(answers)  # type: ignore[arg-type]
            if self._pending is None or event.call_id != self._pending.call_id:
                return []  # late answer to a call that already timed out
            self._pending = None
            return self._advance(event)
        raise TypeError(f"unexpected event {event!r}")

    def _advance(self, answer: CallReturned | tuple[CallReturned, ...] | None) -> list[Effect]:
        assert self._gen is not None
        out: list[Effect] = []
        try:
            item = self._gen.send(answer) if answer is not None else next(self._gen)
            while item == () or not isinstance(item, (Call, tuple)):
                if item == ():  # an empty batch: answered at once
                    item = self._gen.send(())
                else:  # any other effect goes out as it is
                    out.append(cast(Effect, item))  # (not a tuple: `item == ()` is not narrowed)
                    item = next(self._gen)
            if isinstance(item, tuple):
                self._batch = {c.call_id: None for c in item}
                out.extend(item)
            else:
                self._pending = item
                out.append(item)
            self.state = step(RUN, self.state, "step_done")
        except _Stop as s:
            self._finish(out, s.rc, s.code, s.message)
        except StopIteration as s:
            rc, code, message = s.value if isinstance(s.value, tuple) else (RC_OK, "", "")
            self._finish(out, rc, code, message)
        return out

    def _finish(self, out: list[Effect], rc: int, code: str, message: str) -> None:
        self.state = step(RUN, self.state, "all_done" if rc == RC_OK else "step_failed")
        if message:
            out.append(Print(message, err=rc != RC_OK))
        self.result = Finished(rc, code, message)
        out.append(self.result)

    # -- helpers ---------------------------------------------------------------------------------
    def _call(self, target: str, op: str, /, **args: Any) -> Call:
        return Call(next(self._ids), target, op, args)

    def _ask(
        self, target: str, op: str, /, *, fail_rc: int = RC_FAILED, code: str = codes.STEP_FAILED, **args: Any
    ) -> Generator[Effect, CallReturned, Any]:
        ans = yield self._call(target, op, **args)
        if not ans.ok:
            raise self._failed(target, op, ans, fail_rc, code)
        return ans.value

    def _failed(self, target: str, op: str, ans: CallReturned, fail_rc: int, code: str) -> _Stop:
        """How a failed call stops the run (``_ask``, ``_ask_all``)."""
        hint = (
            " Nothing was changed."
            if fail_rc == RC_REFUSED
            else " Run the same command again once the cause is fixed; it continues where it stopped."
        )
        return _Stop(fail_rc, code, f"{self.PROG}: {target}: {op} failed: {ans.error}.{hint}")

    def _ask_all(
        self,
        calls: list[tuple[str, str, dict[str, Any]]],
        /,
        *,
        fail_rc: int = RC_FAILED,
        code: str = codes.STEP_FAILED,
    ) -> Generator[Any, Any, list[Any]]:
        """``_ask`` for ``(target, op, args)`` each, all at once; their values in order. A failure
        stops the run as ``_ask`` does (after every answer came: the first failure in call order)."""
        answers = yield tuple(self._call(t, op, **args) for t, op, args in calls)
        for (target, op, _), ans in zip(calls, answers):
            if not ans.ok:
                raise self._failed(target, op, ans, fail_rc, code)
        return [ans.value for ans in answers]

    def _try(self, target: str, op: str, /, **args: Any) -> Generator[Effect, CallReturned, CallReturned]:
        """Ask without failing: the answer as it came."""
        return (yield self._call(target, op, **args))


class ClovmmigrateRun(GeneratorRun):
    def __init__(self, request: Request, journal: dict[str, Any] | None = None, ids: Iterator[int] | None = None):
        super().__init__(ids)
        self.request = request
        self.journal = dict(journal) if journal else None
        self._gen = self._prepare() if request.mode == "prepare" else self._update()

    # -- helpers ---------------------------------------------------------------------------------
    def _ldm(self, host: str, *argv: str, fail_rc: int = RC_FAILED) -> Generator[Effect, CallReturned, str]:
        r = yield from self._ask(host, "ldm", fail_rc=fail_rc, argv=list(argv))
        if r["rc"] != 0:
            raise _Stop(
                fail_rc,
                codes.LDM_FAILED,
                f"{self.PROG}: {host}: ldm {' '.join(argv)}: {(r['stderr'] or r['stdout']).strip()}",
            )
        return cast(str, r["stdout"])

    def _guest_nodes(self) -> Generator[Effect, CallReturned, tuple[str, list[str]]]:
        d, here = self.request.domain, self.request.local_host
        info = yield from self._ask(here, "guest_nodes", fail_rc=RC_REFUSED, code=codes.NOT_A_CLUSTER_DOMAIN, domain=d)
        return info["node"], sorted(info["nodes"])

    def _statuses(self, nodes: list[str]) -> Generator[Any, Any, dict[str, dict[str, Any]]]:
        values = yield from self._ask_all(
            [(n, "node_status", {}) for n in nodes], fail_rc=RC_REFUSED, code=codes.NODE_UNREACHABLE
        )
        return dict(zip(nodes, values))

    # -- -p ----------------------------------------------------------------------------------------
    def _prepare(self) -> Generator[Effect, CallReturned, None]:
        d, here = self.request.domain, self.request.local_host
        listing = yield from self._ask(here, "ldm", fail_rc=RC_REFUSED, argv=["list", d])
        if listing["rc"] != 0:
            raise _Stop(
                RC_REFUSED,
                codes.DOMAIN_NOT_HOSTED,
                f"clovmmigrate: {d} is not a domain of this control domain ({here}); run "
                f"clovmmigrate -p on the control domain that hosts it (see ldm list there).",
            )
        state = _domain_state(listing["stdout"], d)
        if state != "active":
            raise _Stop(
                RC_STOPPED,
                codes.DOMAIN_STOPPED,
                f"clovmmigrate: {d} is stopped (state {state}); nothing to prepare for a live migration.",
            )
        node, nodes = yield from self._guest_nodes()
        yield Print(f"clovmmigrate: {d} is cluster node {node} of the guest cluster {' '.join(nodes)}")
        status = yield from self._statuses(nodes)
        prepared_before = any(s["record"] is not None for s in status.values()) or self.journal is not None
        if not prepared_before:
            stopped = [n for n in nodes if status[n]["sf"] != "running"]
            if stopped:
                raise _Stop(
                    RC_REFUSED,
                    codes.SF_ALREADY_STOPPED,
                    f"clovmmigrate: the shutdown facility is already stopped on {', '.join(stopped)} "
                    f"(not by clovmmigrate); start it with /opt/SMAW/bin/sdtool -b and check "
                    f"sdtool -s, then run clovmmigrate -p again. Nothing was changed.",
                )
        # Record every node's timeout before changing any of them.
        recorded: dict[str, int] = dict((self.journal or {}).get("timeouts", {}))
        values = yield from self._ask_all([(n, "record_timeout", {}) for n in nodes])
        recorded.update((n, int(v)) for n, v in zip(nodes, values))
        self.journal = {"mode": "prepared", "domain": d, "node": node, "nodes": nodes, "timeouts": recorded}
        yield Persist(d, self.journal)
        if self.request.scoped:
            for n in nodes:
                yield from self._widen(n, node, nodes, status[n])
        else:  # every node at once, one kind of change after the other
            yield from self._ask_all(
                [
                    (n, "set_timeout", {"seconds": MIGRATION_TIMEOUT})
                    for n in nodes
                    if status[n]["timeout"] != MIGRATION_TIMEOUT
                ]
            )
            yield from self._ask_all([(n, "window", {"open": True}) for n in nodes])
            yield from self._ask_all([(n, "sf_stop", {}) for n in nodes if status[n]["sf"] == "running"])
            for n in nodes:
                yield Print(f"{n}: CF cluster interconnect timeout {status[n]['timeout']} -> {MIGRATION_TIMEOUT} s")
                yield Print(f"{n}: shutdown facility stopped")
        yield Print(
            f"clovmmigrate: {d} ({node}) is ready for live migration; after it (also if it is "
            f"cancelled or fails) run clovmmigrate -u {d} TARGET-HOST"
        )

    # -- -u ----------------------------------------------------------------------------------------
    def _update(self) -> Generator[Effect, CallReturned, None]:
        d, here, tgt_name = self.request.domain, self.request.local_host, self.request.target_host
        addr = yield from self._ask(here, "resolve", fail_rc=RC_REFUSED, name=tgt_name)
        if not addr:
            raise _Stop(
                RC_REFUSED,
                codes.TARGET_UNRESOLVED,
                f"clovmmigrate: cannot resolve target-host {tgt_name!r}: give the destination control "
                f"domain's IP address or a host name registered in /etc/inet/hosts. Nothing was changed.",
            )
        src = yield from self._ask(here, "cd_info", fail_rc=RC_REFUSED)
        tgt = yield from self._ask(addr, "cd_info", fail_rc=RC_REFUSED, code=codes.TARGET_NOT_CONTROL_DOMAIN)
        node, nodes = yield from self._guest_nodes()
        # The domain must be where target-host says it is.
        hosts = [src["host"]] if tgt["host"] == src["host"] else [src["host"], tgt["host"]]
        listing = yield from self._ask(tgt["host"], "ldm", fail_rc=RC_REFUSED, argv=["list", d])
        if listing["rc"] != 0:
            raise _Stop(
                RC_REFUSED,
                codes.DOMAIN_NOT_ON_TARGET,
                f"clovmmigrate: {d} is not on {tgt['host']}; give the control domain where {d} is now "
                f"(the source control domain if the migration was cancelled). Nothing was changed.",
            )
        # Saved configurations: at most 6, none named config_tmp, on source and target.
        problems = []
        resuming = (self.journal or {}).get("mode") == "updating"  # config_tmp may be our own
        for h in hosts:
            out = yield from self._ldm(h, "list-spconfig", fail_rc=RC_REFUSED)
            problems += spconfig_problems(h, out, allow_config_tmp=resuming)
        if problems:
            raise _Stop(
                RC_REFUSED,
                codes.SPCONFIG_LIMIT,
                "clovmmigrate: " + "; ".join(problems) + ". Check with ldm list-spconfig. Nothing was changed.",
            )
        status = yield from self._statuses(nodes)
        journal_t = (self.journal or {}).get("timeouts", {})
        if self.journal is None and all(s["record"] is None for s in status.values()):
            raise _Stop(
                RC_REFUSED,
                codes.NOT_PREPARED,
                f"clovmmigrate: {d} was not prepared: no clovmmigrate -p {d} is in force on "
                f"{' '.join(nodes)}. Nothing was changed.",
            )
        self.journal = {
            **(self.journal or {"domain": d, "node": node, "nodes": nodes, "timeouts": {}}),
            "mode": "updating",
            "target": tgt["host"],
        }
        yield Persist(d, self.journal)
        # Save the configuration first: until it is saved, the target XSCF reports the migrated
        # domain as Unknown and the shutdown agents' test against it cannot succeed.
        for h in hosts:
            name = yield from self._save_spconfig(h)
            yield Print(f"{h}: logical domain configuration saved as {name}")
        entry = XscfEntry(
            cf_name=node,
            ppar_id=int(tgt["ppar"]),
            domain=d,
            lan0=tgt["lan0"],
            lan1=tgt["lan1"],
            user=tgt.get("user", "xuser"),
            connection=tgt.get("connection", "ssh"),
        )
        yield from self._ask_all(
            [(n, "set_sf_entry", {"entry": _entry_dict(entry), "weight": int(tgt["sf_weight"])}) for n in nodes]
        )
        for n in nodes:
            yield Print(
                f"{n}: shutdown facility: {node} -> XSCF-LAN#0 {entry.lan0} XSCF-LAN#1 {entry.lan1} "
                f"PPAR-ID {entry.ppar_id} weight {tgt['sf_weight']}"
            )
        before: dict[str, int] = {}
        for n in nodes:
            b = status[n]["record"] if status[n]["record"] is not None else journal_t.get(n)
            if b is None and status[n]["timeout"] != MIGRATION_TIMEOUT:
                # -p was killed while it recorded the timeouts (before its journal and before any
                # change): this node's timeout was never raised, it is its value from before.
                b = status[n]["timeout"]
            if b is None:
                raise _Stop(
                    RC_FAILED,
                    codes.TIMEOUT_UNKNOWN,
                    f"clovmmigrate: {n}: the timeout before clovmmigrate -p is recorded neither on the "
                    f"node nor in the journal; set it with cfset on {n} by hand.",
                )
            before[n] = int(b)
        # every node at once, one kind of change after the other
        yield from self._ask_all(
            [(n, "set_timeout", {"seconds": before[n]}) for n in nodes if status[n]["timeout"] != before[n]]
        )
        if self.request.scoped:
            yield from self._ask_all([(n, "narrow", {}) for n in nodes])
        else:
            yield from self._ask_all([(n, "window", {"open": False}) for n in nodes])
        yield from self._ask_all([(n, "sf_start", {}) for n in nodes])
        for n in nodes:
            if self.request.scoped:
                yield Print(f"{n}: failure detection back to CLUSTER_TIMEOUT {before[n]} s for every node")
            else:
                yield Print(f"{n}: CF cluster interconnect timeout {status[n]['timeout']} -> {before[n]} s")
            yield Print(f"{n}: shutdown facility started")
        failed: list[str] = []
        # -u waits for the fresh init and test of the migrated node's four agents on every node:
        # the entries that changed, against the new XSCF. The agents of the other nodes (entries
        # that did not change) are initialised and tested by the restarted SF meanwhile and after;
        # sdtool -s shows them, as in the seed's step 2. (Waiting for all 4·N² of them made a
        # 16-node -u ~5 times a 2-node one on 2 cores.)
        all_rows = yield from self._ask_all([(n, "sf_wait", {"seconds": SF_WAIT_SECONDS, "node": node}) for n in nodes])
        for n, rows in zip(nodes, all_rows):
            bad = [f"{r[0]} {r[1]}.so {r[4]}/{r[5]}" for r in rows if r[4] != "TestWorked" or r[5] != "InitWorked"]
            if bad:
                failed.append(f"{n}: " + ", ".join(bad))
        if failed:  # keep the records and the journal: -u can be run again once it is fixed
            raise _Stop(
                RC_FAILED,
                codes.SF_TEST_FAILED,
                "clovmmigrate: the shutdown facility does not work everywhere: "
                + "; ".join(failed)
                + ". If message 7245 is in /var/adm/messages, make the first SSH connection to that "
                "XSCF from the node, then run clovmmigrate -u again.",
            )
        yield from self._ask_all([(n, "clear_record", {}) for n in nodes])
        yield Persist(d, None)
        yield Print(
            f"clovmmigrate: {d} ({node}) now runs on {tgt['host']} (PPAR-ID {tgt['ppar']}); "
            f"cluster settings restored on {' '.join(nodes)}"
        )

    def _widen(
        self, n: str, node: str, nodes: list[str], status: dict[str, Any]
    ) -> Generator[Effect, CallReturned, None]:
        """--scoped prepare of node ``n``: only ``node``'s failure detection is widened.

        The migrating node itself widens its view of every peer (it is the one that will not
        hear anybody while it is suspended) and stops its SF; every other node widens only its
        view of the migrating node, may take it DOWN when the hypervisor says its domain stopped,
        and keeps SF running. The migrating node may take a peer DOWN on the hypervisor's word
        too: with its SF stopped, nothing else would ever settle a peer that died meanwhile (it
        would stay LEFTCLUSTER there, and -u needs every node). The widening is a lease: it lapses
        by itself after ``SCOPED_LEASE`` seconds even if nobody narrows it again.
        """
        if n == node:
            peers = [p for p in nodes if p != node]
            yield from self._ask(
                n, "widen", peers=peers, seconds=MIGRATION_TIMEOUT, lease=SCOPED_LEASE, hypervisor=True
            )
            if status["sf"] == "running":
                yield from self._ask(n, "sf_stop")
            yield Print(
                f"{n}: failure detection of {' '.join(peers)} widened to {MIGRATION_TIMEOUT} s "
                f"(lease {SCOPED_LEASE:g} s); shutdown facility stopped on the migrating node"
            )
        else:
            yield from self._ask(
                n, "widen", peers=[node], seconds=MIGRATION_TIMEOUT, lease=SCOPED_LEASE, hypervisor=True
            )
            yield Print(
                f"{n}: failure detection of {node} widened to {MIGRATION_TIMEOUT} s (lease "
                f"{SCOPED_LEASE:g} s); every other node keeps CLUSTER_TIMEOUT {status['timeout']} s "
                f"and the shutdown facility keeps running"
            )

    def _save_spconfig(self, host: str) -> Generator[Effect, CallReturned, str]:
        """Save the running configuration without ever leaving the PPAR without a saved one:
        add config_tmp, remove the configuration it replaces, add it again, remove config_tmp."""
        out = yield from self._ldm(host, "list-spconfig")
        saved_as = dict((self.journal or {}).get("spconfig", {}))
        name = saved_as.get(host)
        if name is None:  # first attempt: replace the configuration marked current / next poweron
            name = DEFAULT_SAVED_NAME
            for ln in out.splitlines():
                parts = ln.split(maxsplit=1)
                if (
                    len(parts) == 2
                    and parts[1] in ("[current]", "[next poweron]")
                    and parts[0] not in ("factory-default", CONFIG_TMP)
                ):
                    name = parts[0]
            saved_as[host] = name
            self.journal = {**(self.journal or {}), "spconfig": saved_as}
            yield Persist(self.request.domain, self.journal)
        names = {ln.split()[0] for ln in out.splitlines() if ln.strip()}
        if name not in names and CONFIG_TMP not in names:
            # A new name replaces nothing: save it directly (no config_tmp, so 6 saved + 1 fits).
            yield from self._ldm(host, "add-spconfig", name)
            return name
        if CONFIG_TMP not in names:
            yield from self._ldm(host, "add-spconfig", CONFIG_TMP)
        if name in names:
            yield from self._ldm(host, "remove-spconfig", name)
        yield from self._ldm(host, "add-spconfig", name)
        yield from self._ldm(host, "remove-spconfig", CONFIG_TMP)
        return name


def spconfig_problems(host: str, list_spconfig_stdout: str, *, allow_config_tmp: bool = False) -> list[str]:
    """What keeps ``host``'s PPAR from taking the saved configuration, each with its remedy:
    a configuration named config_tmp, more than MAX_SAVED_SPCONFIGS saved ones."""
    names = [ln.split()[0] for ln in list_spconfig_stdout.splitlines() if ln.strip()]
    saved = [n for n in names if n != "factory-default"]
    problems = []
    if CONFIG_TMP in names and not allow_config_tmp:
        problems.append(f"{host} has a configuration named {CONFIG_TMP}: ldm remove-spconfig {CONFIG_TMP}")
    if len(saved) > MAX_SAVED_SPCONFIGS:
        problems.append(
            f"{host} has {len(saved)} saved configurations ({', '.join(saved)}), at most "
            f"{MAX_SAVED_SPCONFIGS} allowed: remove {len(saved) - MAX_SAVED_SPCONFIGS} with "
            f"ldm remove-spconfig NAME"
        )
    return problems


def _domain_state(ldm_list_stdout: str, domain: str) -> str | None:
    for ln in ldm_list_stdout.splitlines():
        parts = ln.split()
        if parts and parts[0] == domain:
            return parts[1]
    return None


def _entry_dict(e: XscfEntry) -> dict[str, Any]:
    return {
        "cf_name": e.cf_name,
        "ppar_id": e.ppar_id,
        "domain": e.domain,
        "lan0": e.lan0,
        "lan1": e.lan1,
        "user": e.user,
        "connection": e.connection,
    }
