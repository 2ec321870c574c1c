"""``clovm migrate``: the seed's whole procedure as one journaled, self-recovering, proven run.

Theory of operation
-------------------
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

from dataclasses import dataclass
from typing import Any, Generator, Iterator

from . import codes
from ._state import MIGRATE_STEPS, MigrateStep, step
from .base import Effect
from .migration import (
    CONFIG_TMP,
    MIGRATION_TIMEOUT,
    RC_FAILED,
    RC_OK,
    RC_REFUSED,
    Call,
    CallReturned,
    ClovmmigrateRun,
    GeneratorRun,
    Persist,
    Print,
    Request,
    _Stop,
    spconfig_problems,
)

RC_RESTORED = 5
JOURNAL_VERSION = 1
POLL_SECONDS = 1.0  # emulated seconds between two looks while migrating
RECOVER_POLL_SECONDS = 5.0
MIGRATE_LIMIT = 3600.0  # emulated seconds a migration may take before the run gives up (resumable)
RECOVER_LIMIT = 1800.0  # emulated seconds to wait for DOWN and for the restarted node to join
SCOPED_MARGIN = 2.0  # emulated seconds after the hand-off before --scoped narrows again
SYNC_THRESHOLD = 5.0  # RMS time-sync threshold (core.rms default)
MAX_SAMPLES = 4000
SUSPENDED_PHASES = ("suspend", "hand-off")  # core._state.MigrationPhase values

__all__ = ["MigrateRequest", "SafeMigrationRun", "journal_key", "RC_RESTORED"]


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

    def __init__(self, request: MigrateRequest, journal: dict | None = None, ids: Iterator[int] | None = None):
        super().__init__(ids)
        self.request = request
        self.j: dict[str, Any] | None = dict(journal) if journal else None
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
        if self.j is None:
            if r.resume:
                raise _Stop(RC_REFUSED, codes.NO_JOURNAL, f"clovm migrate: no migration of {d} is recorded on {here}; "
                                                      f"nothing to resume.")
            plan = yield from self._preflight()
            for line in self._plan(plan):
                yield Print(line)
            if r.dry_run:
                return RC_OK, "", "clovm migrate: dry run: the preflight passed; nothing was changed."
            self.j = {"version": JOURNAL_VERSION, **plan, "scoped": r.scoped, "step": str(MigrateStep.PREPARE),
                      "outcome": None, "complete_to": None, "events": [], "progress": [], "samples": [],
                      "proof": [], "result": None}
            self._event(str(MigrateStep.PREPARE), "begin")
            yield self._persist()
        else:
            if r.dry_run:
                raise _Stop(RC_REFUSED, codes.RECORDED, f"clovm migrate: a migration of {d} to {self.j['target']} is "
                                                    f"recorded (step {self.j['step']}); clovm migrate --status shows "
                                                    f"it. Nothing was changed.")
            if r.target_host and r.target_host not in (self.j["target"], self.j.get("target_address")):
                raise _Stop(RC_REFUSED, codes.OTHER_TARGET,
                            f"clovm migrate: a migration of {d} to {self.j['target']} is recorded (step "
                            f"{self.j['step']}); finish it first with clovm migrate --resume {d}. Nothing was changed.")
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
                raise _Stop(RC_FAILED, s.code, f"{text}. Step {st} stopped; fix the cause, then run "
                                               f"clovm migrate --resume {d}.") from None
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
            return (RC_FAILED, codes.PROOF_FAILED,
                    f"clovm migrate: {len(failed)} proof check(s) failed: "
                    + "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
                    + ". Fix the cause, then run clovm migrate --resume to prove again.")
        if self.j["complete_to"] == self.j["target"]:
            return RC_OK, "", f"clovm migrate: {d} migrated to {self.j['target']} and proven."
        return (RC_RESTORED, codes.NOT_MIGRATED,
                f"clovm migrate: {d} was not migrated ({self.j['outcome']}); the cluster was restored on "
                f"{self.j['source']} and proven there.")

    # ---- preflight -----------------------------------------------------------------------------
    def _preflight(self) -> Generator[Effect, CallReturned, dict[str, Any]]:
        r = self.request
        d, here = r.domain, r.local_host
        refuse = dict(fail_rc=RC_REFUSED)
        w = yield from self._ask(here, "where", **refuse, domain=d)
        if w is None:
            raise _Stop(RC_REFUSED, codes.DOMAIN_NOT_HOSTED,
                        f"clovm migrate: {d} is not a domain of this control domain ({here}); run clovm migrate on "
                        f"the control domain that hosts it (see ldm list there). Nothing was changed.")
        if w["state"] != "active":
            raise _Stop(RC_REFUSED, codes.DOMAIN_STOPPED,
                        f"clovm migrate: {d} is {w['state']}, not running: a live migration needs a running domain "
                        f"(a stopped one is moved with ldm migrate-domain as a cold migration). Nothing was changed.")
        if w.get("migration"):
            raise _Stop(RC_REFUSED, codes.MIGRATION_RUNNING,
                        f"clovm migrate: a migration of {d} is already in progress on {here}; wait for it "
                        f"(ldm list -o status {d}). Nothing was changed.")
        addr = yield from self._ask(here, "resolve", **refuse, name=r.target_host)
        if not addr:
            raise _Stop(RC_REFUSED, codes.TARGET_UNRESOLVED,
                        f"clovm migrate: cannot resolve target-host {r.target_host!r}: give the destination control "
                        f"domain's IP address or a host name registered in /etc/inet/hosts. Nothing was changed.")
        src = yield from self._ask(here, "cd_info", **refuse)
        tgt = yield from self._ask(addr, "cd_info", **refuse, code=codes.TARGET_NOT_CONTROL_DOMAIN)
        if tgt["host"] == src["host"]:
            raise _Stop(RC_REFUSED, codes.SAME_HOST, f"clovm migrate: target-host {r.target_host} is this control domain "
                                                 f"({here}); name another control domain. Nothing was changed.")
        info = yield from self._ask(here, "guest_nodes", **refuse, code=codes.NOT_A_CLUSTER_DOMAIN, domain=d)
        node, nodes = info["node"], sorted(info["nodes"])
        cluster_domains = set((info.get("domains") or {}).values()) | {d}
        problems: list[str] = []
        timeouts: dict[str, int] = {}
        for n in nodes:
            ans = yield from self._try(n, "node_status")
            if not ans.ok:
                problems.append(f"{n} does not answer ({ans.error}): start it or repair its network")
                continue
            st = ans.value
            timeouts[n] = int(st["timeout"])
            if st["record"] is not None:
                problems.append(f"clovmmigrate -p is in force on {n}: finish it with clovmmigrate -u first")
            elif st["sf"] != "running":
                problems.append(f"the shutdown facility is not running on {n}: start it with sdtool -b and check "
                                f"sdtool -s")
            s = yield from self._try(n, "cf_sample")
            if not s.ok:
                problems.append(f"{n} does not answer ({s.error}): start it or repair its network")
                continue
            view = s.value
            if view["state"] != "UP":
                problems.append(f"{n} is {view['state']}: every node must be UP (cftool -n)")
            for p, pv in sorted(view["peers"].items()):
                if pv["state"] != "UP":
                    problems.append(f"{n} sees {p} {pv['state']}: every node must be UP (cftool -n); repair {p} first")
                diff = (view.get("clock_diff") or {}).get(p)
                if diff is not None and diff > SYNC_THRESHOLD and n < p:
                    problems.append(f"the clocks of {n} and {p} differ by {diff:.1f} s (RMS threshold "
                                    f"{SYNC_THRESHOLD:g} s): synchronise them (NTP) first")
            if view.get("rms_busy"):
                problems.append(f"a switchover is in progress on {n}: wait until hvdisp shows it finished")
        for h in (src["host"], tgt["host"]):
            ans = yield from self._try(h, "ldm", argv=["list-spconfig"])
            if not ans.ok or ans.value["rc"] != 0:
                why = ans.error if not ans.ok else (ans.value["stderr"] or ans.value["stdout"]).strip()
                problems.append(f"ldm list-spconfig failed on {h} ({why})")
                continue
            problems += spconfig_problems(h, ans.value["stdout"])
        for n in nodes:
            if n not in timeouts:
                continue
            ans = yield from self._try(n, "xscf_check", lan0=tgt["lan0"], lan1=tgt["lan1"])
            if not ans.ok:
                problems.append(f"{n} cannot check the XSCF of {tgt['server']} ({ans.error})")
                continue
            if not ans.value["known_host"]:
                problems.append(f"{n} has not made the first SSH connection to the XSCF of {tgt['server']} "
                                f"({tgt['lan0']}, {tgt['lan1']}): log in once with ssh from {n} to both addresses "
                                f"and accept the host key (message 7245)")
            for lan in ("lan0", "lan1"):
                if not ans.value["snmp"].get(lan):
                    problems.append(f"the XSCF of {tgt['server']} does not answer SNMP on LAN#{lan[-1]} "
                                    f"({tgt[lan]}) from {n}: check its SNMP settings and network")
        ans = yield from self._try(here, "ldm", argv=["migrate-domain", "-n", "-c", d, tgt["host"]])
        if not ans.ok or ans.value["rc"] != 0:
            why = ans.error if not ans.ok else (ans.value["stderr"] or ans.value["stdout"]).strip()
            problems.append(f"{tgt['host']} cannot take {d}: {' '.join(why.split())} (ldm migrate-domain -n)")
        cds = yield from self._ask(here, "control_domains", **refuse)
        for cd in sorted(cds, key=lambda c: c["host"]):
            ans = yield from self._try(cd["host"], "activity")
            if not ans.ok:
                if cd["host"] in (src["host"], tgt["host"]):
                    problems.append(f"cannot ask {cd['host']} about running migrations ({ans.error})")
                continue
            mine = cd["host"] in (src["host"], tgt["host"])
            busy = sorted({x for x in ans.value["journals"] + ans.value["migrating"]
                           if mine or x in cluster_domains})
            if busy:
                problems.append(f"a migration of {', '.join(busy)} is in progress or recorded on {cd['host']}: wait "
                                f"for it or finish it (clovm migrate --status / clovmmigrate -u)")
        if problems:
            raise _Stop(RC_REFUSED, codes.PREFLIGHT_FAILED,
                        f"clovm migrate: the preflight found {len(problems)} problem(s); nothing was changed:\n"
                        + "\n".join(f"  - {p}." for p in problems))
        return {"domain": d, "node": node, "nodes": nodes, "source": src["host"], "target": tgt["host"],
                "target_address": addr, "source_server": src["server"], "target_server": tgt["server"],
                "source_info": src, "target_info": tgt, "timeouts": timeouts}

    def _plan(self, p: dict[str, Any]) -> list[str]:
        scoped = self.request.scoped
        tgt = p["target_info"]
        others = [n for n in p["nodes"] if n != p["node"]]
        lines = [f"clovm migrate: preflight passed: {p['domain']} ({p['node']}) {p['source']} "
                 f"(server {p['source_server']}) -> {p['target']} (server {p['target_server']}, PPAR-ID {tgt['ppar']})",
                 "clovm migrate: plan:"]
        if scoped:
            lines.append(f"  1 prepare   widen failure detection of {p['node']} to {MIGRATION_TIMEOUT} s on {' '.join(others) or '-'}; "
                         f"{p['node']} widens its view of its peers and stops SF; everything else unchanged")
        else:
            lines.append(f"  1 prepare   CLUSTER_TIMEOUT {MIGRATION_TIMEOUT} s and SF stopped on {' '.join(p['nodes'])} "
                         f"(clovmmigrate -p)")
        lines += [f"  2 migrate   ldm migrate-domain -c {p['domain']} {p['target']}",
                  "  3 complete  timeouts back to "
                  + ", ".join(f"{n} {t} s" for n, t in sorted(p["timeouts"].items()))
                  + f"; SF of {p['node']} -> {tgt['lan0']} / {tgt['lan1']} PPAR-ID {tgt['ppar']} weight "
                    f"{tgt['sf_weight']}; configuration saved on {p['source']} and {p['target']} (clovmmigrate -u)",
                  "  4 prove     one running instance, SF entries, fresh SF test, timeouts, saved configurations",
                  "  if the migration is cancelled or fails: complete back to the source (after waiting until the "
                  "stopped guest is DOWN and starting it)"]
        return lines

    # ---- steps -------------------------------------------------------------------------------
    def _sub(self, mode: str, target: str = "") -> Generator[Effect, CallReturned, None]:
        """Run a clovmmigrate part inside this run, keeping its journal inside ours too."""
        assert self.j is not None
        r = self.request
        sub = ClovmmigrateRun(Request(mode, r.domain, r.local_host, target, scoped=self.j["scoped"]),
                              self.j.get("clovmmigrate"), ids=self._ids)
        gen = sub._prepare() if mode == "prepare" else sub._update()
        try:
            item = next(gen)
            while True:
                if isinstance(item, (Call, tuple)):  # a call or a batch of calls (_ask_all)
                    item = gen.send((yield item))
                    continue
                if isinstance(item, Persist):
                    self.j["clovmmigrate"] = item.journal
                    if item.journal and item.journal.get("spconfig"):
                        self.j["spconfig"] = dict(item.journal["spconfig"])
                    yield self._persist()  # ours first: a crash in between leaves ours the newer
                yield item
                item = next(gen)
        except StopIteration:
            return

    def _prepare(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        yield from self._ask(self.j["node"], "clock_align")
        yield self._say(f"{self.j['node']}: its clock will be stepped to stay in agreement with the cluster "
                        f"after the hand-off")
        yield from self._sub("prepare")
        return "prepared"

    def _where(self, host: str) -> Generator[Effect, CallReturned, tuple[bool, dict | None]]:
        ans = yield from self._try(host, "where", domain=self.request.domain)
        return ans.ok, (ans.value if ans.ok else None)

    def _sample(self, skip: str | None) -> Generator[Effect, CallReturned, None]:
        assert self.j is not None
        for n in self.j["nodes"]:
            if n == skip:
                continue
            ans = yield from self._try(n, "cf_sample")
            if ans.ok:
                self._record_sample(n, ans.value)

    def _record_sample(self, n: str, v: dict[str, Any]) -> None:
        """Keep node ``n``'s cf_sample answer for the timeline (at most MAX_SAMPLES)."""
        assert self.j is not None
        if len(self.j["samples"]) < MAX_SAMPLES:
            self.j["samples"].append({"t": round(self.now, 3), "node": n, "sf": v["sf"], "state": v["state"],
                                      "peers": v["peers"]})

    def _migrate(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        d, here, tgt, node = self.request.domain, self.j["source"], self.j["target"], self.j["node"]
        seen_migration = False
        last: tuple[str, int] | None = None
        deadline = self.now + MIGRATE_LIMIT
        outcome = ""
        while True:
            ok_s, ws = yield from self._where(here)
            ok_t, wt = yield from self._where(tgt)
            prog = (ws or {}).get("migration") or (wt or {}).get("migration")
            if prog:
                seen_migration = True
                if (prog["phase"], prog["percent"]) != last:
                    last = (prog["phase"], prog["percent"])
                    self.j["progress"].append({"t": round(self.now, 3), "phase": prog["phase"],
                                               "percent": prog["percent"]})
                    yield self._say(f"migrate: {d}: {prog['phase']} {prog['percent']}%")
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
                        self._event(str(MigrateStep.MIGRATE), "note", f"ldm migrate-domain: {text}")
                        yield self._say(f"migrate: ldm migrate-domain failed: {text}")
                    break
                if not self._started_here and on_source:
                    # Not started yet (first run) or the killed run's migration never began: start it.
                    self._event(str(MigrateStep.MIGRATE), "note",
                                f"started: ldm migrate-domain -c {d} {tgt}")
                    yield self._persist()
                    yield from self._ask(here, "migrate_start", domain=d, target=tgt)
                    yield Print(f"{here} # ldm migrate-domain -c {d} {tgt}")
                    self._started_here = True
                    continue
                if not self._started_here and not on_source and not on_target:
                    outcome = "stopped"
                    break
            suspended = bool(prog) and prog["phase"] in SUSPENDED_PHASES
            yield from self._sample(node if suspended else None)
            yield self._persist()
            if self.now > deadline:
                raise _Stop(RC_FAILED, codes.MIGRATION_STUCK,
                            f"clovm migrate: the migration of {d} did not end within {MIGRATE_LIMIT:g} s; check "
                            f"ldm list -o status {d} on {here}, then run clovm migrate --resume.")
            yield from self._ask(here, "sleep", seconds=POLL_SECONDS)
        self.j["outcome"] = outcome
        self.j["complete_to"] = tgt if outcome == "migrated" else here
        # the migration's end as its last progress sample (ends the suspend interval in the timeline)
        self.j["progress"].append({"t": round(self.now, 3), "percent": 100 if outcome == "migrated" else 0,
                                   "phase": {"migrated": "done", "cancelled": "cancelled", "stopped": "failed"}[outcome]})
        self._event(str(MigrateStep.MIGRATE), "note", f"outcome: {outcome}")
        yield self._persist()
        yield self._say({"migrated": f"{d} is active on {tgt}",
                         "cancelled": f"the migration ended without moving {d}: it keeps running on {here}; "
                                      f"completing back to {here}",
                         "stopped": f"{d} stopped during the migration; recovering on {here}"}[outcome])
        if self.j["scoped"] and outcome != "stopped":
            yield from self._ask(here, "sleep", seconds=SCOPED_MARGIN)
            narrowed, missed = [], []
            for n in self.j["nodes"]:  # best effort: an unreachable node's lease lapses by itself,
                ans = yield from self._try(n, "narrow")  # and the complete step narrows it again
                (narrowed if ans.ok else missed).append(n)
            self._event(str(MigrateStep.MIGRATE), "note", "narrowed: failure detection back to normal on "
                        + " ".join(narrowed) + (f"; not reached: {' '.join(missed)}" if missed else ""))
            yield self._say(f"--scoped: failure detection of {node} back to normal on {' '.join(narrowed) or '-'} "
                            f"({SCOPED_MARGIN:g} s after the hand-off)"
                            + (f"; {' '.join(missed)} did not answer" if missed else ""))
        return outcome

    def _recover(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        d, here, node = self.request.domain, self.j["source"], self.j["node"]
        others = [n for n in self.j["nodes"] if n != node]
        if self.j["scoped"]:  # back to the normal timeout, but let the hypervisor confirm DOWN
            for n in others:
                yield from self._ask(n, "widen", peers=[node], seconds=self.j["timeouts"][n],
                                     lease=RECOVER_LIMIT, hypervisor=True)
        yield self._say(f"recover: waiting until {' '.join(others)} hold {node} DOWN")
        deadline = self.now + RECOVER_LIMIT
        while True:
            down = True
            for n in others:
                ans = yield from self._try(n, "cf_sample")
                if ans.ok:
                    self._record_sample(n, ans.value)
                down &= ans.ok and ans.value["peers"].get(node, {}).get("state") == "DOWN"
            yield self._persist()
            if down:
                break
            if self.now > deadline:
                raise _Stop(RC_FAILED, codes.NOT_DOWN, f"clovm migrate: {node} did not become DOWN within "
                                                   f"{RECOVER_LIMIT:g} s; check cftool -n, then clovm migrate --resume.")
            yield from self._ask(here, "sleep", seconds=RECOVER_POLL_SECONDS)
        self._event(str(MigrateStep.RECOVER), "note", f"{node} DOWN on {' '.join(others)}")
        yield self._say(f"recover: {node} is DOWN; starting {d} on {here}")
        ok, w = yield from self._where(here)
        if not ok or w is None:
            raise _Stop(RC_FAILED, codes.DOMAIN_LOST, f"clovm migrate: {d} is not on {here} any more; find it with ldm "
                                                  f"list on the control domains, then clovm migrate --resume.")
        if w["state"] != "active":
            ans = yield from self._ask(here, "ldm", argv=["start-domain", d])
            if ans["rc"] != 0:
                raise _Stop(RC_FAILED, codes.START_FAILED, f"clovm migrate: {here}: ldm start-domain {d}: "
                                                       f"{(ans['stderr'] or ans['stdout']).strip()}")
            yield Print(f"{here} # ldm start-domain {d}")
        while True:
            ans = yield from self._try(node, "cf_sample")
            if ans.ok and ans.value["state"] == "UP" and all(v["state"] == "UP" for v in ans.value["peers"].values()):
                break
            if self.now > deadline:
                raise _Stop(RC_FAILED, codes.NOT_JOINED, f"clovm migrate: {node} did not join the cluster again; read "
                                                     f"/var/adm/messages on {d}, then clovm migrate --resume.")
            yield from self._ask(here, "sleep", seconds=POLL_SECONDS)
        self.j["complete_to"] = here
        yield self._say(f"recover: {node} joined the cluster again on {here}")
        return "restarted"

    def _complete(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        if self.j.get("clovmmigrate") is None:
            # Resumed after the clovmmigrate part finished (its journal is gone): nothing left to do
            # if no node still holds a pre-migration record.
            records = []
            for n in self.j["nodes"]:
                st = yield from self._ask(n, "node_status")
                records.append(st["record"])
            if all(rec is None for rec in records):
                return "completed"
        yield self._say(f"complete: clovmmigrate -u {self.request.domain} {self.j['complete_to']}")
        yield from self._sub("update", self.j["complete_to"])
        return "completed"

    def _prove(self) -> Generator[Effect, CallReturned, str]:
        assert self.j is not None
        j, d, node = self.j, self.request.domain, self.j["node"]
        to = j["complete_to"]
        info = j["target_info"] if to == j["target"] else j["source_info"]
        checks: list[dict[str, Any]] = []

        def check(name: str, ok: bool, detail: str) -> None:
            checks.append({"name": name, "ok": bool(ok), "detail": detail})

        cds = yield from self._ask(j["source"], "control_domains")
        running, silent = [], []
        for cd in sorted(cds, key=lambda c: c["host"]):
            ok, w = yield from self._where(cd["host"])
            if not ok:
                silent.append(cd["host"])
            elif w is not None and w["state"] == "active":
                running.append(cd["host"])
        check("one running instance", running == [to] and not silent,
              f"{d} active on {', '.join(running) or 'no control domain'}"
              + (f"; no answer from {', '.join(silent)}" if silent else ""))
        bad_entries, bad_tests, bad_timeouts, bad_views = [], [], [], []
        for n in j["nodes"]:
            ans = yield from self._try(n, "sf_entry", node=node)
            e = ans.value if ans.ok else None
            if not e or (e["lan0"], e["lan1"], int(e["ppar_id"])) != (info["lan0"], info["lan1"], int(info["ppar"])):
                bad_entries.append(f"{n}: {ans.error if not ans.ok else e}")
            yield from self._ask(n, "sf_test")
            rows = yield from self._ask(n, "sf_wait", seconds=60.0)
            mine = [r for r in rows if r[0] == node]
            if len(mine) != 4 or any(r[4] != "TestWorked" or r[5] != "InitWorked" for r in mine):
                bad_tests.append(f"{n}: " + (", ".join(f"{r[1]} {r[4]}/{r[5]}" for r in mine) or "no agents"))
            st = yield from self._ask(n, "node_status")
            s = yield from self._ask(n, "cf_sample")
            want = j["timeouts"][n]
            widened = sorted(p for p, v in s["peers"].items() if v.get("widened"))
            if int(st["timeout"]) != want or widened:
                bad_timeouts.append(f"{n}: {st['timeout']} s" + (f", widened for {' '.join(widened)}" if widened else "")
                                    + f" (recorded {want} s)")
            not_up = sorted(p for p, v in s["peers"].items() if v["state"] != "UP")
            if s["state"] != "UP" or not_up or st["sf"] != "running":
                bad_views.append(f"{n}: {s['state']}, SF {st['sf']}" + (f", sees {' '.join(not_up)} not UP" if not_up else ""))
        check("SF entries", not bad_entries, "; ".join(bad_entries) or
              f"{node} -> {info['lan0']} / {info['lan1']} PPAR-ID {info['ppar']} on every node")
        check("fresh SF test", not bad_tests, "; ".join(bad_tests) or f"every agent for {node} TestWorked/InitWorked")
        check("timeouts", not bad_timeouts, "; ".join(bad_timeouts) or
              ", ".join(f"{n} {t} s" for n, t in sorted(j["timeouts"].items())) + " as recorded")
        check("cluster", not bad_views, "; ".join(bad_views) or "every node UP in every view, SF running")
        saved = j.get("spconfig") or {}
        bad_cfg = []
        for h in sorted({j["source"], to}):
            ans = yield from self._try(h, "ldm", argv=["list-spconfig"])
            out = ans.value["stdout"] if ans.ok and ans.value["rc"] == 0 else ""
            names = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
            name = saved.get(h)
            if name not in names or "[current]" not in names[name] or CONFIG_TMP in names:
                bad_cfg.append(f"{h}: {name or 'nothing'} not current" + (f", {CONFIG_TMP} left" if CONFIG_TMP in names else ""))
        check("configuration saved", not bad_cfg, "; ".join(bad_cfg) or
              ", ".join(f"{h}: {saved.get(h)}" for h in sorted({j['source'], to})) + " [current]")
        j["proof"] = checks
        j["result"] = "failed" if not all(c["ok"] for c in checks) else ("ok" if to == j["target"] else "restored")
        for c in checks:
            yield Print(f"clovm migrate: proof: {'ok    ' if c['ok'] else 'FAILED'} {c['name']}: {c['detail']}")
        yield Persist(d, None)  # a clovmmigrate journal left by a crash at the very end
        if j["result"] == "failed":
            yield self._persist()
            raise _Stop(*self._verdict())
        return "proven"
