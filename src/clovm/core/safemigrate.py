"""``clovm migrate``: the seed's whole procedure as one journaled, self-recovering, proven run.

Theory of operation
-------------------
*One orchestration, one seam.* This module owns what every stack shares: the steps and their
order (``_state.MIGRATE_STEPS``), the journal and its persistence, resume, watching the live
migration through the hypervisor (``migrate_start``, ``where`` on source and target,
``migrate_result``, ``sleep``), progress, samples for the timeline, and the verdict. What a step
*means* on a cluster stack — the preflight, what protects the moving node, how a stopped node is
recovered, what completes the procedure, what proves it — is an adapter behind
:class:`Stack`: :class:`~clovm.core.stacks.sparc.SparcStack` (PRIMECLUSTER on Oracle VM for
SPARC: the list below) and the Pacemaker/Corosync one. The journal records the stack's name, so
a resume uses the same adapter.

:class:`SafeMigrationRun` runs on the source control domain, like ``clovmmigrate``, and is
driven exactly like :class:`~clovm.core.migration.ClovmmigrateRun` (``handle(now, RunStarted()
| CallReturned(...))`` → ``Print`` / ``Persist`` / ``Call`` / ``Finished``); ``now`` is emulated
seconds. It never touches the world: every question and change is a Call (the tables of
:mod:`clovm.core.migration` and ``docs/safe-migration.md``).

1. **Preflight** (no change at all): the domain runs here and is not migrating; the target
   resolves to another control domain; every cluster node answers, is UP and sees every peer UP,
   no switchover is in progress, no ``clovmmigrate -p`` is in force, SF runs everywhere; source
   and target PPARs have at most 6 saved configurations and no ``config_tmp``; every guest node
   has the target XSCF's SSH host key and reaches its SNMP agent on LAN#0 and LAN#1; the target
   has room (``ldm migrate-domain -n``); no other migration runs on these control domains or
   for this guest cluster; clocks agree within the RMS threshold. Every problem found is one line
   with its remedy; then the run refuses (rc 3). ``dry_run`` stops after printing the plan.
2. **Journal.** The journal (keys in ``docs/safe-migration.md``) is persisted under the key
   :func:`journal_key` before each step is taken (``step`` + a ``begin`` event), and again when
   the step is done. The embedded clovmmigrate runs persist their own journal (key = domain)
   through the same effects, so a manual ``clovmmigrate -u`` can still complete a killed run.
3. **Steps** (``_state.MIGRATE_STEPS``): ``prepare`` (clovmmigrate -p, ``--scoped`` variant
   with ``request.scoped``; the guest is asked to keep its clock continuous across the move:
   ``clock_align``), ``migrate`` (``migrate_start`` then polling ``where`` on source and target,
   recording progress and every node's CF view), ``recover`` (only when the guest stopped: wait
   until every peer holds it DOWN, ``ldm start-domain`` on the source, wait until it joined),
   ``complete`` (clovmmigrate -u to the target, or to the source when the migration was
   cancelled, failed or the guest stopped), ``prove``.
4. **Resume.** A run constructed with a journal starts the recorded step again; every step is
   idempotent (the clovmmigrate parts are; ``migrate`` first looks where the domain is).
   A migration that the journal says was started but that is not visible any more, with the
   domain still active on the source and no outcome recorded, is started again (the killed run
   may have died before ldmd accepted it); an outcome seen by a live run is recorded before the
   next step, so a cancelled migration is never restarted by a resume.

Exit codes: 0 migrated and proven; 2 usage (CLI); 3 refused (nothing changed); 4 a step or a
proof check failed (the journal is kept: resume); 5 the migration did not happen but the cluster
was restored and proven on the source.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from . import codes
from ._state import MIGRATE_STEPS, MigrateStep, step
from .base import Effect
from .defaults import MIGRATE_POLL_SECONDS
from .migration import (
    RC_FAILED,
    RC_OK,
    RC_REFUSED,
    CallReturned,
    GeneratorRun,
    Persist,
    Print,
    _Stop,
)

RC_RESTORED = 5
JOURNAL_VERSION = 1
POLL_SECONDS = MIGRATE_POLL_SECONDS  # emulated seconds between two looks while migrating
MIGRATE_LIMIT = 3600.0  # emulated seconds a migration may take before the run gives up (resumable)
MAX_SAMPLES = 4000
SUSPENDED_PHASES = ("suspend", "hand-off")  # core._state.MigrationPhase values

__all__ = ["RC_RESTORED", "STACKS", "MigrateRequest", "SafeMigrationRun", "Stack", "journal_key"]


class Stack(Protocol):
    """The seam between the one orchestration and a cluster stack (see the module docstring).

    Every method is a generator of the run's effects (``Call``, ``Print``, ``Persist``) that
    receives the answers; ``run`` offers ``request``, the journal ``j``, ``now``, ``_ask`` /
    ``_try`` (one call), ``_say``, ``_event``, ``_persist``, ``where`` and ``record_sample``.
    """

    name: str  # recorded in the journal ("stack"), so a resume takes the same adapter
    scoped: bool  # whether --scoped is possible
    why_not_scoped: str  # one sentence, when it is not

    def preflight(self, run: SafeMigrationRun) -> Generator[Effect, CallReturned, dict[str, Any]]:
        """Check everything, change nothing: the plan (journal keys ``domain``, ``node``, ``nodes``,
        ``source``, ``target``, ...), or ``_Stop(RC_REFUSED, PREFLIGHT_FAILED, ...)``."""
        ...

    def plan(self, run: SafeMigrationRun, plan: dict[str, Any]) -> list[str]: ...

    def prepare(self, run: SafeMigrationRun) -> Generator[Effect, CallReturned, str]: ...

    def sample(self, run: SafeMigrationRun, skip: str | None) -> Generator[Effect, CallReturned, None]:
        """Record every node's cluster view for the timeline (``skip``: the suspended node)."""
        ...

    def after_handoff(self, run: SafeMigrationRun, outcome: str) -> Generator[Effect, CallReturned, None]: ...

    def recover(self, run: SafeMigrationRun) -> Generator[Effect, CallReturned, str]: ...

    def complete(self, run: SafeMigrationRun) -> Generator[Effect, CallReturned, str]: ...

    def prove(self, run: SafeMigrationRun) -> Generator[Effect, CallReturned, list[dict[str, Any]]]:
        """The proof checks: ``[{"name", "ok", "detail"}]``."""
        ...


def progress_text(prog: dict[str, Any]) -> str:
    """One migration progress sample as ``clovm migrate`` prints it: ``pre-copy 37% (round 2 of at
    most 5)``, ``suspend 92%`` (``percent``: the share of the whole transfer sent, as ``ldm list -o
    status`` shows it)."""
    text = f"{prog['phase']} {prog['percent']}%"
    if prog["phase"] == "pre-copy" and prog.get("round"):
        most = f" of at most {prog['rounds_max']}" if prog.get("rounds_max") else ""
        text += f" (round {prog['round']}{most})"
    return text


def journal_key(domain: str) -> str:
    """The Persist key of the one-shot journal of ``domain`` (its clovmmigrate journal's key is ``domain``)."""
    return f"{domain}.migrate"


@dataclass(frozen=True, slots=True)
class MigrateRequest:
    domain: str
    local_host: str  # the source control domain, where the command runs
    target_host: str = ""  # empty only with resume
    scoped: bool = False
    dry_run: bool = False
    resume: bool = False


class SafeMigrationRun(GeneratorRun):
    PROG = "clovm migrate"

    def __init__(
        self,
        request: MigrateRequest,
        journal: dict[str, Any] | None = None,
        ids: Iterator[int] | None = None,
        stack: Stack | None = None,
    ):
        super().__init__(ids)
        self.request = request
        self.j: dict[str, Any] | None = dict(journal) if journal else None
        recorded = (self.j or {}).get("stack", SparcStack.name)  # (journals before the seam: SPARC)
        self.stack: Stack = stack if stack is not None else STACKS[recorded]()
        self._started_here = False
        self._gen = self._main()

    # ---- journal helpers ---------------------------------------------------------------------
    def _event(self, st: str, what: str, text: str = "") -> None:
        assert self.j is not None
        self.j.setdefault("events", []).append({"t": round(self.now, 3), "step": st, "what": what, "text": text})

    def _persist(self) -> Persist:
        assert self.j is not None
        return Persist(journal_key(self.request.domain), dict(self.j))

    def _say(self, text: str) -> Print:
        return Print(f"clovm migrate: {text}")

    # ---- the run -----------------------------------------------------------------------------
    def _main(self) -> Generator[Effect, CallReturned, tuple[int, str, str]]:
        r = self.request
        d, here = r.domain, r.local_host
        if r.scoped and not self.stack.scoped:
            raise _Stop(
                RC_REFUSED,
                codes.SCOPED_NOT_POSSIBLE,
                f"clovm migrate: --scoped is not possible on the {self.stack.name} stack: "
                f"{self.stack.why_not_scoped} Run it without --scoped. Nothing was changed.",
            )
        if self.j is None:
            if r.resume:
                raise _Stop(
                    RC_REFUSED,
                    codes.NO_JOURNAL,
                    f"clovm migrate: no migration of {d} is recorded on {here}; nothing to resume.",
                )
            plan = yield from self.stack.preflight(self)
            for line in self.stack.plan(self, plan):
                yield Print(line)
            if r.dry_run:
                return RC_OK, "", "clovm migrate: dry run: the preflight passed; nothing was changed."
            self.j = {
                "version": JOURNAL_VERSION,
                "stack": self.stack.name,
                **plan,
                "scoped": r.scoped,
                "step": str(MigrateStep.PREPARE),
                "outcome": None,
                "complete_to": None,
                "events": [],
                "progress": [],
                "samples": [],
                "proof": [],
                "result": None,
            }
            self._event(str(MigrateStep.PREPARE), "begin")
            yield self._persist()
        else:
            if r.dry_run:
                raise _Stop(
                    RC_REFUSED,
                    codes.RECORDED,
                    f"clovm migrate: a migration of {d} to {self.j['target']} is "
                    f"recorded (step {self.j['step']}); clovm migrate --status shows "
                    f"it. Nothing was changed.",
                )
            if r.target_host and r.target_host not in (self.j["target"], self.j.get("target_address")):
                raise _Stop(
                    RC_REFUSED,
                    codes.OTHER_TARGET,
                    f"clovm migrate: a migration of {d} to {self.j['target']} is recorded (step "
                    f"{self.j['step']}); finish it first with clovm migrate --resume {d}. Nothing was changed.",
                )
            yield self._say(f"resuming the migration of {d} to {self.j['target']} at step {self.j['step']}")
        steps = {
            MigrateStep.PREPARE: self._prepare,
            MigrateStep.MIGRATE: self._migrate,
            MigrateStep.RECOVER: self._recover,
            MigrateStep.COMPLETE: self._complete,
            MigrateStep.PROVE: self._prove,
        }
        while (st := MigrateStep(self.j["step"])) is not MigrateStep.DONE:
            try:
                trigger = yield from steps[st]()
            except _Stop as s:
                if s.rc != RC_REFUSED:
                    raise
                # A refusal of an embedded clovmmigrate part: by now things have changed, and the
                # journal says what; the run stops resumably.
                text = s.message.replace(" Nothing was changed.", "").rstrip(".")
                raise _Stop(
                    RC_FAILED, s.code, f"{text}. Step {st} stopped; fix the cause, then run clovm migrate --resume {d}."
                ) from None
            new = step(MIGRATE_STEPS, st, trigger)
            self._event(str(st), "done", trigger)
            self.j["step"] = str(new)
            if new is not MigrateStep.DONE:
                self._event(str(new), "begin")
            yield self._persist()
        return self._verdict()

    def _verdict(self) -> tuple[int, str, str]:
        assert self.j is not None
        d, failed = self.request.domain, [c for c in self.j["proof"] if not c["ok"]]
        if failed:
            return (
                RC_FAILED,
                codes.PROOF_FAILED,
                f"clovm migrate: {len(failed)} proof check(s) failed: "
                + "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
                + ". Fix the cause, then run clovm migrate --resume to prove again.",
            )
        if self.j["complete_to"] == self.j["target"]:
            return RC_OK, "", f"clovm migrate: {d} migrated to {self.j['target']} and proven."
        return (
            RC_RESTORED,
            codes.NOT_MIGRATED,
            (
                f"clovm migrate: {d} was not migrated ({self.j['outcome']}); the cluster was restored on "
                f"{self.j['source']} and proven there."
            ),
        )

    # ---- steps -------------------------------------------------------------------------------
    def where(self, host: str) -> Generator[Effect, CallReturned, tuple[bool, dict[str, Any] | None]]:
        ans = yield from self._try(host, "where", domain=self.request.domain)
        return ans.ok, (ans.value if ans.ok else None)

    def record_sample(self, n: str, v: dict[str, Any]) -> None:
        """Keep node ``n``'s cf_sample answer for the timeline (at most MAX_SAMPLES)."""
        assert self.j is not None
        if len(self.j["samples"]) < MAX_SAMPLES:
            self.j["samples"].append(
                {"t": round(self.now, 3), "node": n, "sf": v["sf"], "state": v["state"], "peers": v["peers"]}
            )

    def _migrate_command(self, d: str, tgt: str) -> str:
        """The hypervisor's migration command as the operator would type it: a stack may name its
        own (``migrate_command(domain, target)``; ``migrate_tool`` in failure lines), else ldm's."""
        fn = getattr(self.stack, "migrate_command", None)
        return fn(d, tgt) if fn is not None else f"ldm migrate-domain -c {d} {tgt}"

    def _migrate(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        d, here, tgt, node = self.request.domain, self.j["source"], self.j["target"], self.j["node"]
        seen_migration = False
        last: tuple[str, int, int] | None = None
        shown: tuple[str, int, int] | None = None  # the last progress printed
        deadline = self.now + MIGRATE_LIMIT
        outcome = ""
        while True:
            ok_s, ws = yield from self.where(here)
            ok_t, wt = yield from self.where(tgt)
            prog = (ws or {}).get("migration") or (wt or {}).get("migration")
            if prog:
                seen_migration = True
                rnd = int(prog.get("round") or 0)
                if (prog["phase"], prog["percent"], rnd) != last:
                    last = (prog["phase"], prog["percent"], rnd)
                    self.j["progress"].append(
                        {
                            "t": round(self.now, 3),
                            "phase": prog["phase"],
                            "percent": prog["percent"],
                            **({"round": rnd} if rnd else {}),
                        }
                    )
                    # a line per phase and per pre-copy round, and one whenever 10 % more was sent
                    if (
                        shown is None
                        or shown[0] != prog["phase"]
                        or shown[2] != rnd
                        or prog["percent"] >= shown[1] + 10
                    ):
                        shown = last
                        yield self._say(f"migrate: {d}: {progress_text(prog)}")
            elif ok_s and ok_t:
                on_target = wt is not None and wt["state"] == "active"
                on_source = ws is not None and ws["state"] == "active"
                result = None
                if self._started_here:
                    ans = yield from self._try(here, "migrate_result", domain=d)
                    result = ans.value if ans.ok else None
                finished = result is not None or (not self._started_here and (seen_migration or on_target))
                if finished or (on_target and not on_source):
                    outcome = "migrated" if on_target else "cancelled" if on_source else "stopped"
                    if result is not None and result["rc"] != 0:
                        text = " ".join((result["stderr"] or result["stdout"]).split())
                        tool = getattr(self.stack, "migrate_tool", "ldm migrate-domain")
                        self._event(str(MigrateStep.MIGRATE), "note", f"{tool}: {text}")
                        yield self._say(f"migrate: {tool} failed: {text}")
                    break
                if not self._started_here and on_source:
                    # Not started yet (first run) or the killed run's migration never began: start it.
                    self._event(str(MigrateStep.MIGRATE), "note", f"started: {self._migrate_command(d, tgt)}")
                    yield self._persist()
                    yield from self._ask(here, "migrate_start", domain=d, target=tgt)
                    yield Print(f"{here} # {self._migrate_command(d, tgt)}")
                    self._started_here = True
                    continue
                if not self._started_here and not on_source and not on_target:
                    outcome = "stopped"
                    break
            suspended = bool(prog and prog["phase"] in SUSPENDED_PHASES)
            yield from self.stack.sample(self, node if suspended else None)
            yield self._persist()
            if self.now > deadline:
                raise _Stop(
                    RC_FAILED,
                    codes.MIGRATION_STUCK,
                    f"clovm migrate: the migration of {d} did not end within {MIGRATE_LIMIT:g} s; check "
                    f"ldm list -o status {d} on {here}, then run clovm migrate --resume.",
                )
            yield from self._ask(here, "sleep", seconds=POLL_SECONDS)
        self.j["outcome"] = outcome
        # A guest that stopped after the hand-off is held (bound) by the target: it is recovered there.
        stopped_on_target = outcome == "stopped" and ws is None and wt is not None
        self.j["complete_to"] = tgt if outcome == "migrated" or stopped_on_target else here
        # the migration's end as its last progress sample (ends the suspend interval in the timeline)
        self.j["progress"].append(
            {
                "t": round(self.now, 3),
                "percent": 100 if outcome == "migrated" else 0,
                "phase": {"migrated": "done", "cancelled": "cancelled", "stopped": "failed"}[outcome],
            }
        )
        self._event(str(MigrateStep.MIGRATE), "note", f"outcome: {outcome}")
        yield self._persist()
        yield self._say(
            {
                "migrated": f"{d} is active on {tgt}",
                "cancelled": f"the migration ended without moving {d}: it keeps running on {here}; "
                f"completing back to {here}",
                "stopped": f"{d} stopped during the migration; recovering on {self.j['complete_to']}",
            }[outcome]
        )
        yield from self.stack.after_handoff(self, outcome)
        return outcome

    def _prepare(self) -> Generator[Effect, CallReturned, str]:
        return (yield from self.stack.prepare(self))

    def _recover(self) -> Generator[Effect, CallReturned, str]:
        return (yield from self.stack.recover(self))

    def _complete(self) -> Generator[Effect, CallReturned, str]:
        return (yield from self.stack.complete(self))

    def _prove(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        checks = yield from self.stack.prove(self)
        j = self.j
        j["proof"] = checks
        to = j["complete_to"]
        j["result"] = "failed" if not all(c["ok"] for c in checks) else ("ok" if to == j["target"] else "restored")
        for c in checks:
            yield Print(f"clovm migrate: proof: {'ok    ' if c['ok'] else 'FAILED'} {c['name']}: {c['detail']}")
        yield Persist(self.request.domain, None)  # a clovmmigrate journal left by a crash at the very end
        if j["result"] == "failed":
            yield self._persist()
            raise _Stop(*self._verdict())
        return "proven"


from .stacks.pacemaker import PacemakerStack
from .stacks.sparc import SparcStack

STACKS: dict[str, type[Stack]] = {SparcStack.name: SparcStack, PacemakerStack.name: PacemakerStack}
