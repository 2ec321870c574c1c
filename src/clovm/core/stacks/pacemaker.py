"""The Pacemaker/Corosync stack of ``clovm migrate``: a two-node (or larger) corosync 3 /
pacemaker 2 cluster of VMs whose fence devices are ``fence_virsh`` on their hypervisor hosts.

The seam (:class:`clovm.core.safemigrate.Stack`): the generic run owns the journal, the steps,
resume, the migration's progress and the verdict; this adapter says what each step means here.
It is sans-IO like the run: every question and change is a ``Call`` (the table in
``docs/pacemaker.md``), answered by ``clovm.pacemaker.migrate_env`` on the real cluster.

* **preflight** (nothing changes): the VM is a cluster node running on this host and not
  migrating; the target is another hypervisor host that answers and has room; ``crm_mon`` on
  every node shows every node online with a DC and quorum, nothing pending, no failed action,
  no maintenance and fencing enabled; a started ``fence_virsh`` device covers every node, the
  migrating node's pointing at this host; ``runtime.config.totem.token`` is the same on every
  node and no token change of an earlier run is in force; no other migration runs or is recorded
  on any host; the protective token (:func:`protective_token_ms`) is within :data:`MAX_TOKEN_MS`.
* **prepare**: record every node's runtime token on the node (``record_token``, kept if there) and
  in the journal; ``maintenance-mode=true`` (cluster-wide: nothing is fenced, started, stopped or
  recovered anywhere until it is released — the analogue of ``clovmmigrate -p``'s "no
  switchover"); the raised token written to corosync.conf on every node, one ``corosync-cfgtool
  -R``, read back on every node; then one old token period.
* **migrate**: the generic run, with ``virsh migrate --live``; every node's membership view
  sampled for the timeline (``crm_mon`` and the ring's silence,
  ``stats.srp.time_since_token_last_received``).
* **recover** (the VM stopped: a failed migration): wait until every other node holds it lost,
  ``virsh start`` it on the source, wait until every node sees every node online.
* **complete**: the migrating node's fence device pointed at where the VM runs now
  (``pcs stonith update DEV ip=HOST``), the recorded token restored on every node and read back,
  the node records cleared, maintenance released, then (bounded) until the cluster is ready.
* **prove**: one running instance; ``fence_virsh -o status`` with the device's own parameters
  says ON through the host it points at, which is the host that runs the VM (this catches the
  missing-as-off trap: a device left on the old host answers OFF for a VM that runs elsewhere);
  the old host no longer claims the VM; ``stonith_admin --list`` names the device; the cluster is
  healthy; the tokens are as recorded.

``--scoped`` is refused: the corosync token is one cluster-wide setting.

Times: ``run.now`` and every ``sleep`` are emulated seconds (the hypervisors' clock); corosync's
token is real milliseconds. With time scale ``s`` one emulated second is ``1000 / s`` ms.

Where things are: the constants, the token arithmetic and the readings of the tools' answers in
:mod:`.pacemaker_rules`; the preflight and the plan in :mod:`.pacemaker_preflight`
(:class:`~.pacemaker_preflight.PacemakerPreflight`); the proof in :mod:`.pacemaker_proof`
(:class:`~.pacemaker_proof.PacemakerProof`); here the stack itself, with prepare, migrate,
recover and complete. The names that moved are still importable from here.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from .. import codes
from .._state import MigrateStep
from ..base import Effect
from ..defaults import MIGRATE_POLL_SECONDS
from ..migration import RC_FAILED, Call, CallReturned, Print, _Stop
from .pacemaker_preflight import PacemakerPreflight
from .pacemaker_proof import PacemakerProof
from .pacemaker_rules import (
    FENCE_AGENT,
    MAINTENANCE,
    MARK_PROTECTED,
    MARK_RECORDED,
    MARK_REPOINTED,
    MARK_RESTORED,
    MAX_TOKEN_MS,
    READBACK_TRIES,
    READY_LIMIT,
    RECOVER_LIMIT,
    SCOPED_WHY,
    SILENCE_KEY,
    TOKEN_COEFFICIENT_MS,
    TOKEN_KEY,
    TOKEN_SAFETY,
    TOKEN_STEP_MS,
    agent_params,
    cluster_problems,
    device_for,
    emulated_s,
    expected_suspend_s,
    host_of,
    protective_token_ms,
    runtime_token_ms,
    view_sample,
)

if TYPE_CHECKING:
    from ..safemigrate import SafeMigrationRun as Run

__all__ = [
    "FENCE_AGENT",
    "MAINTENANCE",
    "MARK_PROTECTED",
    "MARK_RECORDED",
    "MARK_REPOINTED",
    "MARK_RESTORED",
    "MAX_TOKEN_MS",
    "READBACK_TRIES",
    "READY_LIMIT",
    "RECOVER_LIMIT",
    "SCOPED_WHY",
    "SILENCE_KEY",
    "TOKEN_COEFFICIENT_MS",
    "TOKEN_KEY",
    "TOKEN_SAFETY",
    "TOKEN_STEP_MS",
    "PacemakerStack",
    "agent_params",
    "cluster_problems",
    "device_for",
    "emulated_s",
    "expected_suspend_s",
    "host_of",
    "protective_token_ms",
    "runtime_token_ms",
    "view_sample",
]


class PacemakerStack(PacemakerPreflight, PacemakerProof):
    """Corosync 3 / Pacemaker 2 with fence_virsh, VMs on emulated hypervisor hosts."""

    name = "pacemaker"
    scoped = False
    why_not_scoped = SCOPED_WHY

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def migrate_command(domain: str, target: str) -> str:
        """What the generic run prints for the migration it starts (``virsh migrate``)."""
        return f"virsh migrate --live --verbose {domain} qemu+ssh://{target}/system"

    migrate_tool = "virsh migrate"

    @staticmethod
    def _try_all(run: Run, calls: list[tuple[str, str, dict[str, Any]]]) -> Generator[Any, Any, list[CallReturned]]:
        """Every call at once, without failing: the answers in call order."""
        if not calls:
            return []
        answers = yield tuple(Call(next(run.ids), t, op, args) for t, op, args in calls)
        return list(answers)

    _host_of = staticmethod(host_of)

    def _scale(self, run: Run) -> float:
        assert run.j is not None
        return float(run.j.get("time_scale") or 1.0)

    def _mark(self, run: Run, mark: str, text: str) -> Effect:
        assert run.j is not None
        marks = run.j.setdefault("marks", [])
        if mark not in marks:
            marks.append(mark)
        run._event(str(run.j["step"]), "note", text)
        return run._persist()

    # ---- prepare ---------------------------------------------------------------------------------
    def _set_token(self, run: Run, token: int, verb: str) -> Generator[Any, Any, None]:
        """corosync.conf on every node, one reload, then read back on every node (retried)."""
        assert run.j is not None
        nodes = run.j["nodes"]
        yield from run._ask_all([(n, "write_corosync_conf", {"token": token}) for n in nodes])
        yield from run._ask(nodes[0], "cfgtool_reload")
        want = runtime_token_ms(token, len(nodes))
        seen: dict[str, Any] = {}
        for _ in range(READBACK_TRIES):
            values = yield from run._ask_all([(n, "cmap_get", {"keys": [TOKEN_KEY]}) for n in nodes])
            seen = {n: v.get(TOKEN_KEY) for n, v in zip(nodes, values)}
            if all(v == want for v in seen.values()):
                break
            yield from run._ask(run.j["source"], "sleep", seconds=MIGRATE_POLL_SECONDS)
        else:
            raise _Stop(
                RC_FAILED,
                codes.NOT_APPLIED,
                f"clovm migrate: {TOKEN_KEY} did not become {want} ms on every node after corosync-cfgtool -R ("
                + ", ".join(f"{n} {v}" for n, v in sorted(seen.items()))
                + "); check corosync.conf and the corosync logs there, then clovm migrate --resume.",
            )
        yield run._say(
            f"token {verb} {want} ms on {' '.join(nodes)} (corosync.conf, corosync-cfgtool -R; "
            f"{TOKEN_KEY} read back on every node)"
        )

    def _set_maintenance(self, run: Run, on: bool) -> Generator[Any, Any, None]:
        assert run.j is not None
        nodes = run.j["nodes"]
        before = run.j.get("maintenance_before")
        value = "true" if on else before  # None: the property is deleted (its default, false)
        yield from run._ask(nodes[0], "cluster_property", name=MAINTENANCE, value=value)
        seen: dict[str, Any] = {}
        for _ in range(READBACK_TRIES):
            views = yield from run._ask_all([(n, "crm_mon", {}) for n in nodes])
            seen = {n: v.get("maintenance") for n, v in zip(nodes, views)}
            if all(v is on for v in seen.values()):
                return
            yield from run._ask(run.j["source"], "sleep", seconds=MIGRATE_POLL_SECONDS)
        raise _Stop(
            RC_FAILED,
            codes.NOT_APPLIED,
            f"clovm migrate: {MAINTENANCE} is not {str(on).lower()} on every node's crm_mon ("
            + ", ".join(f"{n} {v}" for n, v in sorted(seen.items()))
            + "); check the CIB (cibadmin -Q -o crm_config), then clovm migrate --resume.",
        )

    def prepare(self, run: Run) -> Generator[Effect, CallReturned, str]:
        assert run.j is not None
        j = run.j
        nodes = j["nodes"]
        recorded = yield from run._ask_all([(n, "record_token", {"token": j["tokens"][n]}) for n in nodes])
        for n, v in zip(nodes, recorded):
            if v != j["tokens"][n]:  # the node kept a record of an earlier run: trust the node's
                j["tokens"][n] = int(v)
        yield self._mark(
            run, MARK_RECORDED, "token recorded on " + ", ".join(f"{n} {j['tokens'][n]} ms" for n in nodes)
        )
        yield from self._set_maintenance(run, True)
        yield run._say(
            f"{MAINTENANCE}=true: Pacemaker fences, starts, stops and recovers nothing anywhere until it is "
            f"released (node maintenance would not stop fencing; stonith-enabled=false would recover "
            f"{j['node']}'s resources elsewhere at once)"
        )
        yield from self._set_token(run, int(j["token_raised"]), "raised to")
        yield self._mark(run, MARK_PROTECTED, f"{MAINTENANCE}=true, token {j['token_raised']} ms")
        old_ms = max(j["tokens"].values())
        old_s = emulated_s(old_ms, self._scale(run))
        yield run._say(f"waiting one old token period ({old_ms} ms) before migrating")
        yield from run._ask(j["source"], "sleep", seconds=old_s)
        return "prepared"

    # ---- migrate ---------------------------------------------------------------------------------
    def sample(self, run: Run, skip: str | None) -> Generator[Effect, CallReturned, None]:
        assert run.j is not None
        nodes = [n for n in run.j["nodes"] if n != skip]
        scale = self._scale(run)
        calls: list[tuple[str, str, dict[str, Any]]] = []
        for n in nodes:
            calls += [
                (n, "crm_mon", {"quick": True}),
                (n, "cmap_get", {"keys": [TOKEN_KEY, SILENCE_KEY], "quick": True}),
            ]
        answers = yield from self._try_all(run, calls)
        for i, n in enumerate(nodes):
            mon, cmap = answers[2 * i], answers[2 * i + 1]
            if not mon.ok:
                continue
            v = self.view_sample(n, mon.value, cmap.value if cmap.ok else {}, run.j["nodes"], scale)
            run.record_sample(n, v)

    view_sample = staticmethod(view_sample)

    def after_handoff(self, run: Run, outcome: str) -> Generator[Effect, CallReturned, None]:
        """The protection stays until complete. The hypervisors' own logs say when the VM was
        frozen and thawed (the 1 s polling rarely sees a suspend of a tenth of a second): that
        interval goes into the journal's progress and ``suspend_s``."""
        assert run.j is not None
        j, d = run.j, run.request.domain
        started = [e["t"] for e in j["events"] if e["what"] == "note" and str(e["text"]).startswith("started:")]
        since = started[-1] if started else max((e["t"] for e in j["events"] if e["what"] == "begin"), default=0.0)
        logs = yield from self._try_all(
            run, [(h, "hypervisor_events", {"domain": d, "since": since}) for h in (j["source"], j["target"])]
        )
        src = logs[0].value if logs[0].ok else []
        tgt = logs[1].value if logs[1].ok else []
        frozen = [e for e in src if e["what"] == "suspended"]
        if not frozen:
            return
        t0 = frozen[-1]["t"]
        back = [
            e for e in (tgt if outcome == "migrated" else src) if e["what"] in ("resumed", "killed") and e["t"] >= t0
        ]
        if not back:
            return
        t1, how = back[0]["t"], back[0]["what"]
        pct = next(
            (
                int(str(e["detail"]).split()[1].rstrip("%"))
                for e in reversed(src)
                if e["what"] == "migration" and str(e["detail"]).startswith("suspend")
            ),
            0,
        )
        prog = j["progress"]
        if prog and prog[-1].get("phase") in ("done", "cancelled", "failed") and prog[-1]["t"] > t1:
            prog[-1]["t"] = round(t1, 3)  # the end the hypervisor saw, not the next poll
        prog.append({"t": round(t0, 3), "phase": "suspend", "percent": pct})
        prog.sort(key=lambda x: x["t"])
        j["suspend_s"] = round(t1 - t0, 3)
        who = j["target"] if outcome == "migrated" else j["source"]
        run._event(
            str(MigrateStep.MIGRATE), "note", f"{d} frozen {t1 - t0:.3f} s ({j['source']} suspended it, {who} {how} it)"
        )
        yield run._say(
            f"{d} was frozen for {t1 - t0:.3f} s"
            + (", then killed by its hypervisor" if how == "killed" else "")
            + f" (token {j['token_raised']} ms)"
        )

    # ---- recover ---------------------------------------------------------------------------------
    def _views(self, run: Run, nodes: list[str]) -> Generator[Any, Any, dict[str, dict[str, Any] | None]]:
        answers = yield from self._try_all(run, [(n, "crm_mon", {}) for n in nodes])
        return {n: (a.value if a.ok else None) for n, a in zip(nodes, answers)}

    def recover(self, run: Run) -> Generator[Effect, CallReturned, str]:
        assert run.j is not None
        j = run.j
        d, here, node = run.request.domain, j["source"], j["node"]
        others = [n for n in j["nodes"] if n != node]
        scale = self._scale(run)
        yield run._say(
            f"recover: waiting until {' '.join(others)} hold {node} lost (token "
            f"{emulated_s(j['token_raised'], scale):g} s, then consensus; {MAINTENANCE} keeps it unfenced)"
        )
        deadline = run.now + RECOVER_LIMIT
        while True:
            views = yield from self._views(run, others)
            lost = all(
                v is not None and not ((v.get("nodes") or {}).get(node) or {}).get("online") for v in views.values()
            )
            if lost:
                break
            if run.now > deadline:
                raise _Stop(
                    RC_FAILED,
                    codes.NOT_DOWN,
                    f"clovm migrate: {node} was not lost within {RECOVER_LIMIT:g} s; "
                    f"check crm_mon -1, then clovm migrate --resume.",
                )
            yield from run._ask(here, "sleep", seconds=MIGRATE_POLL_SECONDS)
        run._event(str(MigrateStep.RECOVER), "note", f"{node} lost on {' '.join(others)}")
        yield run._say(f"recover: {node} is lost; starting {d} on {here}")
        ok, w = yield from run.where(here)
        if not ok or w is None:
            raise _Stop(
                RC_FAILED,
                codes.DOMAIN_LOST,
                f"clovm migrate: {d} is not on {here} any more; find it with "
                f"virsh list --all on the hosts, then clovm migrate --resume.",
            )
        if w["state"] != "active":
            ans = yield from run._ask(here, "virsh", argv=["start", d])
            if ans["rc"] != 0:
                raise _Stop(
                    RC_FAILED,
                    codes.START_FAILED,
                    f"clovm migrate: {here}: virsh start {d}: {(ans['stderr'] or ans['stdout']).strip()}",
                )
            yield Print(f"{here} # virsh start {d}")
        while True:
            views = yield from self._views(run, j["nodes"])
            if all(
                v is not None and all(((v.get("nodes") or {}).get(n) or {}).get("online") for n in j["nodes"])
                for v in views.values()
            ):
                break
            if run.now > deadline:
                raise _Stop(
                    RC_FAILED,
                    codes.NOT_JOINED,
                    f"clovm migrate: {node} did not join the cluster again; read "
                    f"/var/log/pacemaker/pacemaker.log on {d}, then clovm migrate "
                    f"--resume.",
                )
            yield from run._ask(here, "sleep", seconds=MIGRATE_POLL_SECONDS)
        j["complete_to"] = here
        yield run._say(f"recover: {node} joined the cluster again on {here}")
        return "restarted"

    # ---- complete --------------------------------------------------------------------------------
    def complete(self, run: Run) -> Generator[Effect, CallReturned, str]:
        assert run.j is not None
        j = run.j
        nodes, to, dev = j["nodes"], j["complete_to"], j["device"]
        devices = yield from run._ask(nodes[0], "stonith_devices")
        current = next((x for x in devices if x["id"] == dev), None)
        if current is None:
            raise _Stop(
                RC_FAILED,
                codes.STEP_FAILED,
                f"clovm migrate: the fence device {dev} is gone from the CIB; "
                f"create it again (pcs stonith create {dev} {FENCE_AGENT} ...), "
                f"then clovm migrate --resume.",
            )
        ip = str((current.get("params") or {}).get("ip", ""))
        if self._host_of(ip, j["hosts"]) != to:
            yield from run._ask(nodes[0], "stonith_update", device=dev, params={"ip": to})
            yield Print(f"{nodes[0]} # pcs stonith update {dev} ip={to}")
            yield run._say(f"complete: {dev} ip {ip} -> {to}")
        yield self._mark(run, MARK_REPOINTED, f"{dev} ip={to}")
        token = max(j["tokens"].values())
        yield from self._set_token(run, token, "restored to")
        yield self._mark(run, MARK_RESTORED, f"token {token} ms")
        yield from run._ask_all([(n, "clear_token_record", {}) for n in nodes])
        yield from self._set_maintenance(run, False)
        yield run._say(f"{MAINTENANCE} released: fencing and recovery are back")
        deadline = run.now + READY_LIMIT
        while True:  # the device restarts with its new parameters and is monitored: wait, bounded
            views = yield from self._views(run, nodes)
            if all(v is not None and self._ready(v, nodes, j) for v in views.values()):
                break
            if run.now > deadline:
                yield run._say("complete: the cluster did not settle in time; the proof says what is missing")
                break
            yield from run._ask(j["source"], "sleep", seconds=MIGRATE_POLL_SECONDS)
        return "completed"

    @staticmethod
    def _ready(view: Mapping[str, Any], nodes: list[str], j: Mapping[str, Any]) -> bool:
        devs = [r for r, v in (view.get("resources") or {}).items() if str(v.get("agent", "")).startswith("stonith:")]
        started, monitored = view.get("started") or {}, set(view.get("monitored") or [])
        return (
            not cluster_problems(view, nodes, "-")
            and not view.get("maintenance")
            and j["device"] in devs
            and all(d in started and d in monitored for d in devs)
        )
