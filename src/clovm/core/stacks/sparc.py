"""The SPARC stack of ``clovm migrate``: PRIMECLUSTER guest-domain nodes on Oracle VM for SPARC.

The seam (:class:`clovm.core.safemigrate.Stack`): the generic run owns the journal, the steps,
resume, the migration's progress and the verdict; this adapter says what each step means here —
the preflight (CF/SF/RMS on every node, spconfig limits, the target XSCF's host key and SNMP,
room on the target, clocks), ``prepare`` and ``complete`` as the embedded ``clovmmigrate -p/-u``
(:class:`~clovm.core.migration.ClovmmigrateRun`, whose journal lives inside ours), the recovery
of a stopped guest (wait until every peer holds it DOWN, start it, wait until it joined), and
the proof. The calls are the tables of :mod:`clovm.core.migration` and ``docs/safe-migration.md``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .. import codes
from .._state import MigrateStep
from ..base import Effect
from ..defaults import MIGRATE_POLL_SECONDS, RMS_SETTLE, RMS_SYNC_THRESHOLD
from ..migration import (
    CONFIG_TMP,
    MIGRATION_TIMEOUT,
    RC_FAILED,
    RC_REFUSED,
    Call,
    CallReturned,
    ClovmmigrateRun,
    Persist,
    Print,
    Request,
    _Stop,
    spconfig_problems,
)

if TYPE_CHECKING:
    from ..safemigrate import SafeMigrationRun as Run

SCOPED_MARGIN = 2.0  # emulated seconds after the hand-off before --scoped narrows again
RECOVER_MIGRATE_POLL_SECONDS = 5.0
RECOVER_LIMIT = 1800.0  # emulated seconds to wait for DOWN and for the restarted node to join


def _rms_busy_problem(node: str, activity: str | None) -> str:
    """The preflight's line for a busy RMS, naming what it really is (cf_sample's ``rms_activity``)."""
    if activity == "settling":
        return (
            f"RMS on {node} is still settling after its start (it places its applications "
            f"{RMS_SETTLE:g} s after it starts): wait a few seconds and run clovm migrate again"
        )
    if activity == "switchover held":
        return (
            f"a switchover is deferred on {node} (held by clovmmigrate -p): finish that migration with "
            f"clovmmigrate -u first"
        )
    return f"a switchover is in progress on {node}: wait until hvdisp shows it finished"


class SparcStack:
    """PRIMECLUSTER on Oracle VM Server for SPARC (the seed's stack)."""

    name = "sparc"
    scoped = True  # --scoped is possible: CF's failure detection can be widened per peer
    why_not_scoped = ""

    def preflight(self, run: Run) -> Generator[Effect, CallReturned, dict[str, Any]]:
        r = run.request
        d, here = r.domain, r.local_host
        refuse: dict[str, Any] = {"fail_rc": RC_REFUSED}
        w = yield from run._ask(here, "where", **refuse, domain=d)
        if w is None:
            raise _Stop(
                RC_REFUSED,
                codes.DOMAIN_NOT_HOSTED,
                f"clovm migrate: {d} is not a domain of this control domain ({here}); run clovm migrate on "
                f"the control domain that hosts it (see ldm list there). Nothing was changed.",
            )
        if w["state"] != "active":
            raise _Stop(
                RC_REFUSED,
                codes.DOMAIN_STOPPED,
                f"clovm migrate: {d} is {w['state']}, not running: a live migration needs a running domain "
                f"(a stopped one is moved with ldm migrate-domain as a cold migration). Nothing was changed.",
            )
        if w.get("migration"):
            raise _Stop(
                RC_REFUSED,
                codes.MIGRATION_RUNNING,
                f"clovm migrate: a migration of {d} is already in progress on {here}; wait for it "
                f"(ldm list -o status {d}). Nothing was changed.",
            )
        addr = yield from run._ask(here, "resolve", **refuse, name=r.target_host)
        if not addr:
            raise _Stop(
                RC_REFUSED,
                codes.TARGET_UNRESOLVED,
                f"clovm migrate: cannot resolve target-host {r.target_host!r}: give the destination control "
                f"domain's IP address or a host name registered in /etc/inet/hosts. Nothing was changed.",
            )
        src = yield from run._ask(here, "cd_info", **refuse)
        tgt = yield from run._ask(addr, "cd_info", **refuse, code=codes.TARGET_NOT_CONTROL_DOMAIN)
        if tgt["host"] == src["host"]:
            raise _Stop(
                RC_REFUSED,
                codes.SAME_HOST,
                f"clovm migrate: target-host {r.target_host} is this control domain "
                f"({here}); name another control domain. Nothing was changed.",
            )
        info = yield from run._ask(here, "guest_nodes", **refuse, code=codes.NOT_A_CLUSTER_DOMAIN, domain=d)
        node, nodes = info["node"], sorted(info["nodes"])
        cluster_domains = set((info.get("domains") or {}).values()) | {d}
        problems: list[str] = []
        timeouts: dict[str, int] = {}
        for n in nodes:
            ans = yield from run._try(n, "node_status")
            if not ans.ok:
                problems.append(f"{n} does not answer ({ans.error}): start it or repair its network")
                continue
            st = ans.value
            timeouts[n] = int(st["timeout"])
            if st["record"] is not None:
                problems.append(f"clovmmigrate -p is in force on {n}: finish it with clovmmigrate -u first")
            elif st["sf"] != "running":
                problems.append(
                    f"the shutdown facility is not running on {n}: start it with sdtool -b and check sdtool -s"
                )
            s = yield from run._try(n, "cf_sample")
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
                if diff is not None and diff > RMS_SYNC_THRESHOLD and n < p:
                    problems.append(
                        f"the clocks of {n} and {p} differ by {diff:.1f} s (RMS threshold "
                        f"{RMS_SYNC_THRESHOLD:g} s): synchronise them (NTP) first"
                    )
            if view.get("rms_busy"):
                problems.append(_rms_busy_problem(n, view.get("rms_activity")))
        for h in (src["host"], tgt["host"]):
            ans = yield from run._try(h, "ldm", argv=["list-spconfig"])
            if not ans.ok or ans.value["rc"] != 0:
                why = ans.error if not ans.ok else (ans.value["stderr"] or ans.value["stdout"]).strip()
                problems.append(f"ldm list-spconfig failed on {h} ({why})")
                continue
            problems += spconfig_problems(h, ans.value["stdout"])
        for n in nodes:
            if n not in timeouts:
                continue
            ans = yield from run._try(n, "xscf_check", lan0=tgt["lan0"], lan1=tgt["lan1"])
            if not ans.ok:
                problems.append(f"{n} cannot check the XSCF of {tgt['server']} ({ans.error})")
                continue
            if not ans.value["known_host"]:
                problems.append(
                    f"{n} has not made the first SSH connection to the XSCF of {tgt['server']} "
                    f"({tgt['lan0']}, {tgt['lan1']}): log in once with ssh from {n} to both addresses "
                    f"and accept the host key (message 7245)"
                )
            for lan in ("lan0", "lan1"):
                if not ans.value["snmp"].get(lan):
                    problems.append(
                        f"the XSCF of {tgt['server']} does not answer SNMP on LAN#{lan[-1]} "
                        f"({tgt[lan]}) from {n}: check its SNMP settings and network"
                    )
        ans = yield from run._try(here, "ldm", argv=["migrate-domain", "-n", "-c", d, tgt["host"]])
        if not ans.ok or ans.value["rc"] != 0:
            why = ans.error if not ans.ok else (ans.value["stderr"] or ans.value["stdout"]).strip()
            problems.append(f"{tgt['host']} cannot take {d}: {' '.join(why.split())} (ldm migrate-domain -n)")
        cds = yield from run._ask(here, "control_domains", **refuse)
        for cd in sorted(cds, key=lambda c: c["host"]):
            ans = yield from run._try(cd["host"], "activity")
            if not ans.ok:
                if cd["host"] in (src["host"], tgt["host"]):
                    problems.append(f"cannot ask {cd['host']} about running migrations ({ans.error})")
                continue
            mine = cd["host"] in (src["host"], tgt["host"])
            busy = sorted({x for x in ans.value["journals"] + ans.value["migrating"] if mine or x in cluster_domains})
            if busy:
                problems.append(
                    f"a migration of {', '.join(busy)} is in progress or recorded on {cd['host']}: wait "
                    f"for it or finish it (clovm migrate --status / clovmmigrate -u)"
                )
        if problems:
            raise _Stop(
                RC_REFUSED,
                codes.PREFLIGHT_FAILED,
                f"clovm migrate: the preflight found {len(problems)} problem(s); nothing was changed:\n"
                + "\n".join(f"  - {p}." for p in problems),
            )
        return {
            "domain": d,
            "node": node,
            "nodes": nodes,
            "source": src["host"],
            "target": tgt["host"],
            "target_address": addr,
            "source_server": src["server"],
            "target_server": tgt["server"],
            "source_info": src,
            "target_info": tgt,
            "timeouts": timeouts,
        }

    def plan(self, run: Run, p: dict[str, Any]) -> list[str]:
        scoped = run.request.scoped
        tgt = p["target_info"]
        others = [n for n in p["nodes"] if n != p["node"]]
        lines = [
            (
                f"clovm migrate: preflight passed: {p['domain']} ({p['node']}) {p['source']} "
                f"(server {p['source_server']}) -> {p['target']} (server {p['target_server']}, PPAR-ID {tgt['ppar']})"
            ),
            "clovm migrate: plan:",
        ]
        if scoped:
            lines.append(
                f"  1 prepare   widen failure detection of {p['node']} to {MIGRATION_TIMEOUT} s on {' '.join(others) or '-'}; "
                f"{p['node']} widens its view of its peers and stops SF; everything else unchanged"
            )
        else:
            lines.append(
                f"  1 prepare   CLUSTER_TIMEOUT {MIGRATION_TIMEOUT} s and SF stopped on {' '.join(p['nodes'])} "
                f"(clovmmigrate -p)"
            )
        lines += [
            f"  2 migrate   ldm migrate-domain -c {p['domain']} {p['target']}",
            "  3 complete  timeouts back to "
            + ", ".join(f"{n} {t} s" for n, t in sorted(p["timeouts"].items()))
            + f"; SF of {p['node']} -> {tgt['lan0']} / {tgt['lan1']} PPAR-ID {tgt['ppar']} weight "
            f"{tgt['sf_weight']}; configuration saved on {p['source']} and {p['target']} (clovmmigrate -u)",
            "  4 prove     one running instance, SF entries, fresh SF test, timeouts, saved configurations",
            (
                "  if the migration is cancelled or fails: complete back to the source (after waiting until the "
                "stopped guest is DOWN and starting it)"
            ),
        ]
        return lines

    def _sub(self, run: Run, mode: str, target: str = "") -> Generator[Effect, CallReturned, None]:
        """Run a clovmmigrate part inside this run, keeping its journal inside ours too."""
        assert run.j is not None
        r = run.request
        sub = ClovmmigrateRun(
            Request(mode, r.domain, r.local_host, target, scoped=run.j["scoped"]),
            run.j.get("clovmmigrate"),
            ids=run.ids,
        )
        gen = sub._prepare() if mode == "prepare" else sub._update()
        try:
            item = next(gen)
            while True:
                if isinstance(item, (Call, tuple)):  # a call or a batch of calls (_ask_all)
                    item = gen.send((yield item))
                    continue
                if isinstance(item, Persist):
                    run.j["clovmmigrate"] = item.journal
                    if item.journal and item.journal.get("spconfig"):
                        run.j["spconfig"] = dict(item.journal["spconfig"])
                    yield run._persist()  # ours first: a crash in between leaves ours the newer
                yield item
                item = next(gen)
        except StopIteration:
            return

    def prepare(self, run: Run) -> Generator[Effect, CallReturned, str]:
        assert run.j is not None
        yield from run._ask(run.j["node"], "clock_align")
        yield run._say(
            f"{run.j['node']}: its clock will be stepped to stay in agreement with the cluster after the hand-off"
        )
        yield from self._sub(run, "prepare")
        return "prepared"

    def sample(self, run: Run, skip: str | None) -> Generator[Effect, CallReturned, None]:
        assert run.j is not None
        for n in run.j["nodes"]:
            if n == skip:
                continue
            ans = yield from run._try(n, "cf_sample")
            if ans.ok:
                run.record_sample(n, ans.value)

    def recover(self, run: Run) -> Generator[Effect, CallReturned, str]:
        """The seed's recovery of a stopped guest: wait until every other node holds it DOWN, start
        it, wait until it joined. Found running already (started by a run that was killed, or by the
        operator meanwhile), it is waited for; refused by its peers (started too early), it is stopped
        again and the recovery starts over (the documented recovery), until RECOVER_LIMIT."""
        assert run.j is not None
        d, node = run.request.domain, run.j["node"]
        here = run.j.get("complete_to") or run.j["source"]  # the control domain that holds the stopped guest
        others = [n for n in run.j["nodes"] if n != node]
        if run.j["scoped"]:  # back to the normal timeout, but let the hypervisor confirm DOWN
            for n in others:
                yield from run._ask(
                    n, "widen", peers=[node], seconds=run.j["timeouts"][n], lease=RECOVER_LIMIT, hypervisor=True
                )
        deadline = run.now + RECOVER_LIMIT
        while True:
            ok, w = yield from run.where(here)
            if ok and w is not None and w["state"] == "active":
                yield run._say(f"recover: {d} is running on {here}; waiting until {node} joined")
                if (yield from self._joined(run, node, here, deadline)):
                    return "restarted"
                continue
            yield run._say(f"recover: waiting until {' '.join(others)} hold {node} DOWN")
            started = False
            while True:
                down = True
                for n in others:
                    ans = yield from run._try(n, "cf_sample")
                    if ans.ok:
                        run.record_sample(n, ans.value)
                    down &= ans.ok and ans.value["peers"].get(node, {}).get("state") == "DOWN"
                yield run._persist()
                if down:
                    break
                ok, w = yield from run.where(here)
                if ok and w is not None and w["state"] == "active":  # the operator started it meanwhile
                    started = True
                    break
                if run.now > deadline:
                    raise _Stop(
                        RC_FAILED,
                        codes.NOT_DOWN,
                        f"clovm migrate: {node} did not become DOWN within "
                        f"{RECOVER_LIMIT:g} s; check cftool -n, then clovm migrate "
                        f"--resume.",
                    )
                yield from run._ask(here, "sleep", seconds=RECOVER_MIGRATE_POLL_SECONDS)
            if started:
                continue
            run._event(str(MigrateStep.RECOVER), "note", f"{node} DOWN on {' '.join(others)}")
            yield run._say(f"recover: {node} is DOWN; starting {d} on {here}")
            ok, w = yield from run.where(here)
            if not ok or w is None:
                raise _Stop(
                    RC_FAILED,
                    codes.DOMAIN_LOST,
                    f"clovm migrate: {d} is not on {here} any more; find it "
                    f"with ldm list on the control domains, then clovm migrate "
                    f"--resume.",
                )
            if w["state"] != "active":
                ans = yield from run._ask(here, "ldm", argv=["start-domain", d])
                if ans["rc"] != 0:
                    raise _Stop(
                        RC_FAILED,
                        codes.START_FAILED,
                        f"clovm migrate: {here}: ldm start-domain {d}: {(ans['stderr'] or ans['stdout']).strip()}",
                    )
                yield Print(f"{here} # ldm start-domain {d}")

    def _joined(self, run: Run, node: str, here: str, deadline: float) -> Generator[Effect, CallReturned, bool]:
        """Wait until the restarted ``node`` is UP and sees every peer UP (True). False: its domain
        stopped meanwhile, or its peers refused it (it is stopped again: the documented recovery)."""
        assert run.j is not None
        d = run.request.domain
        while True:
            ans = yield from run._try(node, "cf_sample")
            if ans.ok and ans.value["state"] == "UP" and all(v["state"] == "UP" for v in ans.value["peers"].values()):
                break
            if ans.ok and ans.value["state"] == "INVALID":
                yield run._say(
                    f"recover: {node} was refused by its peers (started before it was DOWN): stopping {d} again"
                )
                yield from run._ask(here, "ldm", argv=["stop-domain", d])
                yield Print(f"{here} # ldm stop-domain {d}")
                return False
            if not ans.ok:
                ok, w = yield from run.where(here)
                if ok and (w is None or w["state"] != "active"):
                    return False
            if run.now > deadline:
                raise _Stop(
                    RC_FAILED,
                    codes.NOT_JOINED,
                    f"clovm migrate: {node} did not join the cluster again; read "
                    f"/var/adm/messages on {d}, then clovm migrate --resume.",
                )
            yield from run._ask(here, "sleep", seconds=MIGRATE_POLL_SECONDS)
        run.j["complete_to"] = here
        yield run._say(f"recover: {node} joined the cluster again on {here}")
        return True

    def complete(self, run: Run) -> Generator[Effect, CallReturned, str]:
        assert run.j is not None
        if run.j.get("clovmmigrate") is None:
            # Resumed after the clovmmigrate part finished (its journal is gone): nothing left to do
            # if no node still holds a pre-migration record.
            records = []
            for n in run.j["nodes"]:
                st = yield from run._ask(n, "node_status")
                records.append(st["record"])
            if all(rec is None for rec in records):
                return "completed"
        yield run._say(f"complete: clovmmigrate -u {run.request.domain} {run.j['complete_to']}")
        yield from self._sub(run, "update", run.j["complete_to"])
        return "completed"

    def prove(self, run: Run) -> Generator[Effect, CallReturned, list[dict[str, Any]]]:
        assert run.j is not None
        j, d, node = run.j, run.request.domain, run.j["node"]
        to = j["complete_to"]
        info = j["target_info"] if to == j["target"] else j["source_info"]
        checks: list[dict[str, Any]] = []

        def check(name: str, ok: bool, detail: str) -> None:
            checks.append({"name": name, "ok": bool(ok), "detail": detail})

        cds = yield from run._ask(j["source"], "control_domains")
        running, silent = [], []
        for cd in sorted(cds, key=lambda c: c["host"]):
            ok, w = yield from run.where(cd["host"])
            if not ok:
                silent.append(cd["host"])
            elif w is not None and w["state"] == "active":
                running.append(cd["host"])
        check(
            "one running instance",
            running == [to] and not silent,
            f"{d} active on {', '.join(running) or 'no control domain'}"
            + (f"; no answer from {', '.join(silent)}" if silent else ""),
        )
        bad_entries, bad_tests, bad_timeouts, bad_views = [], [], [], []
        for n in j["nodes"]:
            ans = yield from run._try(n, "sf_entry", node=node)
            e = ans.value if ans.ok else None
            if not e or (e["lan0"], e["lan1"], int(e["ppar_id"])) != (info["lan0"], info["lan1"], int(info["ppar"])):
                bad_entries.append(f"{n}: {ans.error if not ans.ok else e}")
            yield from run._ask(n, "sf_test")
            rows = yield from run._ask(n, "sf_wait", seconds=60.0)
            mine = [r for r in rows if r[0] == node]
            if len(mine) != 4 or any(r[4] != "TestWorked" or r[5] != "InitWorked" for r in mine):
                bad_tests.append(f"{n}: " + (", ".join(f"{r[1]} {r[4]}/{r[5]}" for r in mine) or "no agents"))
            st = yield from run._ask(n, "node_status")
            s = yield from run._ask(n, "cf_sample")
            want = j["timeouts"][n]
            widened = sorted(p for p, v in s["peers"].items() if v.get("widened"))
            if int(st["timeout"]) != want or widened:
                bad_timeouts.append(
                    f"{n}: {st['timeout']} s"
                    + (f", widened for {' '.join(widened)}" if widened else "")
                    + f" (recorded {want} s)"
                )
            not_up = sorted(p for p, v in s["peers"].items() if v["state"] != "UP")
            if s["state"] != "UP" or not_up or st["sf"] != "running":
                bad_views.append(
                    f"{n}: {s['state']}, SF {st['sf']}" + (f", sees {' '.join(not_up)} not UP" if not_up else "")
                )
        check(
            "SF entries",
            not bad_entries,
            "; ".join(bad_entries) or f"{node} -> {info['lan0']} / {info['lan1']} PPAR-ID {info['ppar']} on every node",
        )
        check("fresh SF test", not bad_tests, "; ".join(bad_tests) or f"every agent for {node} TestWorked/InitWorked")
        check(
            "timeouts",
            not bad_timeouts,
            "; ".join(bad_timeouts)
            or ", ".join(f"{n} {t} s" for n, t in sorted(j["timeouts"].items())) + " as recorded",
        )
        check("cluster", not bad_views, "; ".join(bad_views) or "every node UP in every view, SF running")
        saved = j.get("spconfig") or {}
        bad_cfg = []
        for h in sorted({j["source"], to}):
            ans = yield from run._try(h, "ldm", argv=["list-spconfig"])
            out = ans.value["stdout"] if ans.ok and ans.value["rc"] == 0 else ""
            names = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
            name = saved.get(h)
            if name not in names or "[current]" not in names[name] or CONFIG_TMP in names:
                bad_cfg.append(
                    f"{h}: {name or 'nothing'} not current" + (f", {CONFIG_TMP} left" if CONFIG_TMP in names else "")
                )
        check(
            "configuration saved",
            not bad_cfg,
            "; ".join(bad_cfg) or ", ".join(f"{h}: {saved.get(h)}" for h in sorted({j["source"], to})) + " [current]",
        )
        return checks

    def after_handoff(self, run: Run, outcome: str) -> Generator[Effect, CallReturned, None]:
        """--scoped: failure detection back to normal SCOPED_MARGIN after the hand-off."""
        assert run.j is not None
        here, node = run.j["source"], run.j["node"]
        if run.j["scoped"] and outcome != "stopped":
            yield from run._ask(here, "sleep", seconds=SCOPED_MARGIN)
            narrowed: list[str] = []
            missed: list[str] = []
            for n in run.j["nodes"]:  # best effort: an unreachable node's lease lapses by itself,
                ans = yield from run._try(n, "narrow")  # and the complete step narrows it again
                (narrowed if ans.ok else missed).append(n)
            run._event(
                str(MigrateStep.MIGRATE),
                "note",
                "narrowed: failure detection back to normal on "
                + " ".join(narrowed)
                + (f"; not reached: {' '.join(missed)}" if missed else ""),
            )
            yield run._say(
                f"--scoped: failure detection of {node} back to normal on {' '.join(narrowed) or '-'} "
                f"({SCOPED_MARGIN:g} s after the hand-off)" + (f"; {' '.join(missed)} did not answer" if missed else "")
            )
