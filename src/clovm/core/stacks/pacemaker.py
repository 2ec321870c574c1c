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
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import codes
from .._state import MigrateStep
from ..base import Effect
from ..defaults import MIGRATE_POLL_SECONDS
from ..migration import RC_FAILED, RC_REFUSED, Call, CallReturned, Print, _Stop

if TYPE_CHECKING:
    from ..safemigrate import SafeMigrationRun as Run

TOKEN_KEY = "runtime.config.totem.token"  # the token in effect (cmap_keys(7))
SILENCE_KEY = "stats.srp.time_since_token_last_received"  # ms since this node last had the token
MAINTENANCE = "maintenance-mode"
FENCE_AGENT = "fence_virsh"
TOKEN_SAFETY = 2.0  # the suspend estimate (from sizes and rates measured before) may be off by this factor
TOKEN_STEP_MS = 1000  # the raised token is rounded up to this
TOKEN_COEFFICIENT_MS = 650  # corosync's token_coefficient default: runtime token = token + (n - 2) x this
MAX_TOKEN_MS = 600_000  # above this the window is not worth it: refuse (the SPARC stack's 600 s)
RECOVER_LIMIT = 900.0  # emulated seconds to wait until the stopped VM is lost, and until it rejoined
READY_LIMIT = 120.0  # emulated seconds complete waits for the cluster to settle (devices restarted, monitored)
READBACK_TRIES = 10  # runtime.config.totem.token is read back this often (POLL apart) before giving up
SCOPED_WHY = (
    "the corosync token is one cluster-wide setting (every node must run the same totem "
    "configuration; a node-local corosync-cmapctl change makes the membership re-form while the "
    "nodes disagree), so failure detection cannot be widened for the migrating node only."
)

MARK_RECORDED = "tokens-recorded"  # prepare: every node's token recorded on the node (nothing changed yet)
MARK_PROTECTED = "protected"  # prepare: maintenance-mode set and the raised token in effect
MARK_REPOINTED = "stonith-repointed"  # complete: the fence device points where the VM runs
MARK_RESTORED = "token-restored"  # complete: the recorded token is in effect again


# ------------------------------------------------------------------------------------------ rules
def expected_suspend_s(
    memory_mb: float,
    dirty_mb_s: float,
    bandwidth_mb_s: float,
    *,
    converge_mb: float,
    max_rounds: int,
    overhead_s: float,
) -> float:
    """The final suspend of a pre-copy live migration, in the hypervisor's seconds.

    Round 1 sends the whole memory; each next round sends what was dirtied meanwhile
    (``min(memory, dirty rate x duration of the last round)``); when that is at most
    ``converge_mb`` or ``max_rounds`` rounds are done, the VM is suspended while the rest is
    sent, plus the hand-off ``overhead_s``. (QEMU's pre-copy, and clovm's hypervisors' engine.)"""
    if bandwidth_mb_s <= 0 or max_rounds < 1 or memory_mb < 0 or dirty_mb_s < 0:
        raise ValueError("bad migration parameters")
    amount = float(memory_mb)
    for rnd in range(1, max_rounds + 1):
        nxt = min(float(memory_mb), dirty_mb_s * amount / bandwidth_mb_s)
        if nxt <= converge_mb or rnd >= max_rounds:
            return nxt / bandwidth_mb_s + overhead_s
        amount = nxt
    raise AssertionError("unreachable")  # pragma: no cover


def protective_token_ms(token_ms: int, suspend_s: float, time_scale: float = 1.0) -> int:
    """The corosync token that covers a suspend of ``suspend_s`` (emulated s) plus a margin.

    A frozen node loses nothing while the silence it causes stays under the token. The cluster's
    own token is its budget for ordinary silences (load, retransmits, and the knet link that is
    declared dead after ``token / knet_pong_count`` and needs pongs to come back — those knet
    timers keep their start-up values across a reload), so that budget is kept whole and the
    suspend is added on top, ``TOKEN_SAFETY`` times, rounded up to ``TOKEN_STEP_MS``. Never
    lower than the token in effect (and that one itself when there is nothing to cover)."""
    if token_ms <= 0 or suspend_s < 0 or time_scale <= 0:
        raise ValueError("bad token parameters")
    need = token_ms + TOKEN_SAFETY * suspend_s * 1000.0 / time_scale
    if need <= token_ms:
        return int(token_ms)
    return max(int(token_ms), math.ceil(need / TOKEN_STEP_MS - 1e-9) * TOKEN_STEP_MS)


def runtime_token_ms(token_ms: int, n_nodes: int, coefficient_ms: int = TOKEN_COEFFICIENT_MS) -> int:
    """``runtime.config.totem.token`` for a configured token: corosync adds ``token_coefficient``
    for every node beyond two."""
    return int(token_ms) + max(0, n_nodes - 2) * int(coefficient_ms)


def emulated_s(ms: float, time_scale: float) -> float:
    """Real corosync milliseconds as emulated seconds."""
    return ms / 1000.0 * time_scale


def cluster_problems(view: Mapping[str, Any], nodes: Iterable[str], observer: str) -> list[str]:
    """What keeps ``crm_mon`` (as ``observer`` sees it) from a healthy cluster, one line each with
    its remedy. Maintenance and fencing are the preflight's own lines."""
    out: list[str] = []
    if not view.get("dc"):
        out.append(f"{observer} sees no DC: wait until the cluster elected one (crm_mon -1)")
    elif not view.get("quorate"):
        out.append(f"{observer} has no quorum: bring the missing nodes back (corosync-quorumtool -s)")
    info = view.get("nodes") or {}
    for n in nodes:
        st = info.get(n)
        if st is None:
            out.append(f"{observer} does not know node {n}: check the cluster's nodelist")
        elif st.get("unclean"):
            out.append(f"{observer} sees {n} UNCLEAN: let it be fenced or repaired first (crm_mon -1)")
        elif not st.get("online"):
            out.append(f"{observer} sees {n} offline: start it (or its cluster services) first")
        elif st.get("pending"):
            out.append(f"{observer} sees {n} pending (still joining): wait a moment and run clovm migrate again")
        elif st.get("standby") or st.get("shutdown"):
            out.append(f"{observer} sees {n} in standby or shutting down: bring it back (pcs node unstandby {n})")
        elif st.get("maintenance"):
            out.append(
                f"{observer} sees {n} in node maintenance: release it first (crm_attribute --node {n} "
                f"--name maintenance --delete); node maintenance does not stop fencing anyway"
            )
    for p in view.get("pending") or []:  # (the CIB's status: the same in every node's view)
        out.append(f"an action is in flight ({p}): wait until it finished")
    for f in view.get("failures") or []:
        out.append(f"the cluster shows a failed action ({f}): fix its cause, then crm_resource --cleanup")
    return out


def device_for(devices: Iterable[Mapping[str, Any]], node: str) -> Mapping[str, Any] | None:
    """The fence device that covers ``node`` (``pcmk_host_list`` / ``pcmk_host_map``; a device
    without either is taken for the node it is named after, ``fence-NODE``)."""
    found = None
    for d in devices:
        p = d.get("params") or {}
        hosts = set(str(p.get("pcmk_host_list", "")).replace(",", " ").split())
        hosts |= {x.split(":")[0] for x in str(p.get("pcmk_host_map", "")).replace(",", ";").split(";") if x}
        covers = node in hosts or (not hosts and d.get("id") == f"fence-{node}")
        if covers and (found is None or (found.get("agent") != FENCE_AGENT and d.get("agent") == FENCE_AGENT)):
            found = d
    return found


def agent_params(params: Mapping[str, str]) -> dict[str, str]:
    """A device's parameters as its fence agent gets them on stdin (Pacemaker's own ``pcmk_*``
    and meta parameters left out)."""
    return {k: str(v) for k, v in params.items() if not k.startswith("pcmk_")}


class PacemakerStack:
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

    @staticmethod
    def _host_of(value: str, hosts: Mapping[str, str]) -> str | None:
        """The hypervisor host a device's ``ip`` names (host name or address), else None."""
        for h, addr in hosts.items():
            if value in (h, addr):
                return h
        return None

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

    # ---- preflight -------------------------------------------------------------------------------
    def preflight(self, run: Run) -> Generator[Effect, CallReturned, dict[str, Any]]:
        r = run.request
        d, here, tgt = r.domain, r.local_host, r.target_host
        refuse: dict[str, Any] = {"fail_rc": RC_REFUSED}
        cl = yield from run._ask(here, "cluster_nodes", **refuse, code=codes.NOT_A_CLUSTER_DOMAIN, domain=d)
        node, nodes, scale = cl["node"], sorted(cl["nodes"]), float(cl.get("time_scale") or 1.0)
        hosts_list = yield from run._ask(here, "control_domains", **refuse)
        hosts = {h["host"]: h["address"] for h in hosts_list}
        if here not in hosts:
            raise _Stop(
                RC_REFUSED,
                codes.UNKNOWN_HOST,
                f"clovm migrate: {here} is not a hypervisor host of this datacenter (one of "
                f"{' '.join(sorted(hosts))}); run it with --host HOST where {d} runs. Nothing was changed.",
            )
        w = yield from run._ask(here, "where", **refuse, domain=d)
        if w is None:
            raise _Stop(
                RC_REFUSED,
                codes.DOMAIN_NOT_HOSTED,
                f"clovm migrate: {d} is not a domain of {here}; run clovm migrate --host HOST on the host "
                f"that runs it (virsh list --all there). Nothing was changed.",
            )
        if w.get("migration"):
            raise _Stop(
                RC_REFUSED,
                codes.MIGRATION_RUNNING,
                f"clovm migrate: a migration of {d} is already in progress on {here}; wait for it "
                f"(virsh domjobinfo {d}). Nothing was changed.",
            )
        if w["state"] != "active":
            raise _Stop(
                RC_REFUSED,
                codes.DOMAIN_STOPPED,
                f"clovm migrate: {d} is {w.get('virsh_state') or w['state']} on {here}, not running: a live "
                f"migration needs a running VM (start it with virsh start {d}, or move a stopped one "
                f"cold). Nothing was changed.",
            )
        target = self._host_of(tgt, hosts)
        if target is None:
            raise _Stop(
                RC_REFUSED,
                codes.UNKNOWN_TARGET,
                f"clovm migrate: {tgt!r} is not a hypervisor host of this datacenter (one of "
                f"{' '.join(sorted(hosts))}). Nothing was changed.",
            )
        if target == here:
            raise _Stop(
                RC_REFUSED,
                codes.SAME_HOST,
                f"clovm migrate: target-host {tgt} is the source host ({here}); "
                f"name another hypervisor host. Nothing was changed.",
            )
        problems: list[str] = []
        # -- the hosts: target reachable, room, no copy there; the estimate of the final suspend
        src_info = yield from run._ask(here, "host_info", **refuse)
        dom = (src_info.get("domains") or {}).get(d) or {}
        suspend = 0.0
        t_info = yield from run._try(target, "host_info")
        if not t_info.ok:
            problems.append(
                f"the target host {target} does not answer ({t_info.error}): start it or repair its network"
            )
        else:
            if int(t_info.value["free_mb"]) < int(dom.get("memory_mb", 0)):
                problems.append(
                    f"{target} has {t_info.value['free_mb']} MB free, {d} needs {dom.get('memory_mb')} MB: "
                    f"make room there or choose another host"
                )
            tw = yield from run._try(target, "where", domain=d)
            if tw.ok and tw.value is not None:
                problems.append(
                    f"{target} already has a domain {d} ({tw.value.get('virsh_state') or tw.value['state']}): "
                    f"remove it there (virsh undefine {d}) first"
                )
        if dom:
            suspend = expected_suspend_s(
                dom["memory_mb"],
                dom["dirty_rate_mb_s"],
                src_info["bandwidth_mb_s"],
                converge_mb=src_info["converge_mb"],
                max_rounds=src_info["max_rounds"],
                overhead_s=src_info["suspend_overhead_s"],
            )
        # -- every node: crm_mon, the token in effect, no token change of an earlier run in force
        views: dict[str, dict[str, Any]] = {}
        tokens: dict[str, int] = {}
        asks: list[tuple[str, str, dict[str, Any]]] = []
        for n in nodes:
            asks += [(n, "crm_mon", {}), (n, "cmap_get", {"keys": [TOKEN_KEY]}), (n, "token_record", {})]
        answers = yield from self._try_all(run, asks)
        for i, n in enumerate(nodes):
            mon, cmap, rec = answers[3 * i : 3 * i + 3]
            if not mon.ok:
                problems.append(f"{n} does not answer crm_mon ({mon.error}): start it or its cluster services")
                continue
            views[n] = mon.value
            problems += cluster_problems(mon.value, nodes, n)
            if cmap.ok and isinstance(cmap.value.get(TOKEN_KEY), int):
                tokens[n] = int(cmap.value[TOKEN_KEY])
            else:
                problems.append(
                    f"{n}: cannot read {TOKEN_KEY} ({cmap.error or 'no value'}): is corosync running there?"
                )
            if rec.ok and rec.value is not None:
                problems.append(
                    f"a token change of an earlier clovm migrate is in force on {n} (its token "
                    f"{rec.value} ms is recorded there): finish that migration with clovm migrate --resume, "
                    f"or restore the token and remove /var/lib/clovm/token.saved on {n}"
                )
        if len(set(tokens.values())) > 1:
            problems.append(
                "the token differs between the nodes ("
                + ", ".join(f"{n} {t} ms" for n, t in sorted(tokens.items()))
                + "): make corosync.conf the same on every node and run corosync-cfgtool -R"
            )
        view = next(iter(views.values()), None)
        if view is not None:
            if any(v.get("maintenance") for v in views.values()):
                problems.append(
                    "maintenance-mode is already true: someone else holds the cluster; release it "
                    "(crm_attribute --type crm_config --name maintenance-mode --delete) or wait for them"
                )
            if not all(v.get("stonith_enabled", True) for v in views.values()):
                problems.append(
                    "stonith-enabled is false: fencing is off, and Pacemaker would recover the resources "
                    f"of {node} elsewhere as soon as it seems lost; turn it on (pcs property set "
                    f"stonith-enabled=true)"
                )
        # -- fencing: a started fence_virsh device for every node, the migrating node's on this host
        device: dict[str, Any] | None = None
        asker = next((n for n in nodes if n in views), None)
        devices: list[dict[str, Any]] = []
        if asker is not None:
            ans = yield from run._try(asker, "stonith_devices")
            if not ans.ok:
                problems.append(f"{asker}: cannot read the fence devices ({ans.error})")
            else:
                devices = ans.value
        if asker is not None and (devices or not problems):
            started = (view or {}).get("started") or {}
            for n in nodes:
                dev = device_for(devices, n)
                if dev is None:
                    problems.append(
                        f"no fence device covers {n}: create one (pcs stonith create fence-{n} "
                        f"{FENCE_AGENT} ip=HOST plug={n} pcmk_host_list={n} ...)"
                    )
                    continue
                if dev["id"] not in started:
                    problems.append(
                        f"the fence device {dev['id']} of {n} is not started: fix it and run "
                        f"crm_resource --cleanup --resource {dev['id']}"
                    )
                if n == node:
                    device = dict(dev)
                    if dev.get("agent") != FENCE_AGENT:
                        problems.append(
                            f"the fence device {dev['id']} of {n} is {dev.get('agent')}; clovm migrate "
                            f"re-points {FENCE_AGENT} devices only"
                        )
                    at = self._host_of(str((dev.get("params") or {}).get("ip", "")), hosts)
                    if at != here:
                        problems.append(
                            f"the fence device {dev['id']} of {n} points at "
                            f"{(dev.get('params') or {}).get('ip') or 'nothing'}, but {d} runs on {here}: "
                            f"fencing {n} would miss it; fix it first (pcs stonith update {dev['id']} ip={here})"
                        )
        # -- the fence path after the move: every other node's fence agent logs in to the target
        if device is not None and t_info.ok:
            others = [n for n in nodes if n != node and n in views]
            params = agent_params(dict(device.get("params") or {}))
            params["ip"] = target
            answers = yield from self._try_all(
                run, [(n, "fence_agent", {"params": params, "action": "list"}) for n in others]
            )
            for n, ans in zip(others, answers):
                if not ans.ok or ans.value.get("rc") != 0:
                    why = ans.error if not ans.ok else (ans.value.get("text") or f"rc {ans.value.get('rc')}")
                    problems.append(
                        f"the fence agent on {n} cannot log in to {target} ({why}): after the move "
                        f"{node} could not be fenced; fix ssh to {target} (its host key, the key of "
                        f"{device['id']}) first"
                    )
        # -- no other migration, anywhere
        for h in sorted(hosts):
            ans = yield from run._try(h, "activity")
            if not ans.ok:
                if h in (here, target):
                    problems.append(f"cannot ask {h} about running migrations ({ans.error})")
                continue
            busy = sorted(set(ans.value["journals"]) | set(ans.value["migrating"]))
            if busy:
                problems.append(
                    f"a migration of {', '.join(busy)} is in progress or recorded on {h}: wait for it or "
                    f"finish it (clovm migrate --host {h} --status / --resume)"
                )
        token = next(iter(tokens.values()), 0)
        raised = token
        if token:
            raised = protective_token_ms(token, suspend, scale)
            if raised > MAX_TOKEN_MS:
                problems.append(
                    f"the expected suspend of {d} ({suspend:.1f} s) needs a token of {raised / 1000:g} s, "
                    f"more than {MAX_TOKEN_MS / 1000:g} s: lower its dirty rate or raise the migration "
                    f"bandwidth first"
                )
        problems = list(dict.fromkeys(problems))  # what several nodes see alike is said once
        if problems:
            raise _Stop(
                RC_REFUSED,
                codes.PREFLIGHT_FAILED,
                f"clovm migrate: the preflight found {len(problems)} problem(s); nothing was changed:\n"
                + "\n".join(f"  - {p}." for p in problems),
            )
        assert device is not None
        return {
            "domain": d,
            "node": node,
            "nodes": nodes,
            "source": here,
            "target": target,
            "target_address": hosts[target],
            "source_address": hosts[here],
            "hosts": hosts,
            "time_scale": scale,
            "tokens": tokens,
            "token_raised": raised,
            "expected_suspend_s": round(suspend, 3),
            "memory_mb": dom.get("memory_mb"),
            "device": device["id"],
            "device_params": dict(device.get("params") or {}),
            "maintenance_before": None,
            "marks": [],
        }

    def plan(self, run: Run, p: dict[str, Any]) -> list[str]:
        tokens = sorted(set(p["tokens"].values()))
        old = tokens[0] if tokens else 0
        return [
            (
                f"clovm migrate: preflight passed: {p['domain']} (cluster node {p['node']} of "
                f"{' '.join(p['nodes'])}) {p['source']} -> {p['target']}; fence device {p['device']}"
            ),
            "clovm migrate: plan:",
            (
                f"  1 prepare   record the token of {' '.join(p['nodes'])} ({old} ms); maintenance-mode=true (cluster-"
                f"wide: no fencing, no recovery); token {old} -> {p['token_raised']} ms on every node (expected suspend "
                f"{p['expected_suspend_s']:g} s; corosync.conf + corosync-cfgtool -R), then wait one old token"
            ),
            f"  2 migrate   {self.migrate_command(p['domain'], p['target'])}",
            (
                f"  3 complete  {p['device']} ip {p['source']} -> {p['target']} (pcs stonith update); token back to "
                f"{old} ms on every node; maintenance-mode released"
            ),
            (
                f"  4 prove     one running instance, fence_virsh status through {p['target']}, {p['source']} no longer "
                f"claims {p['domain']}, stonith_admin --list {p['node']}, cluster healthy, tokens as recorded"
            ),
            (
                f"  if the migration is cancelled or fails: complete back to {p['source']} (after waiting until the "
                f"stopped {p['domain']} is lost and starting it again)"
            ),
        ]

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

    @staticmethod
    def view_sample(
        n: str, view: Mapping[str, Any], cmap: Mapping[str, Any], nodes: Iterable[str], scale: float
    ) -> dict[str, Any]:
        """One node's sample for the journal (the format of the SPARC stack's ``cf_sample``):
        ``state`` / a peer's ``state`` UP (online member), LEFTCLUSTER (lost, not fenced yet:
        UNCLEAN) or DOWN (offline, clean); ``sf`` = fencing in force (``running``) or held off by
        maintenance / disabled (``stopped``); ``gap`` = the ring's silence as this node sees it
        (ms since it last had the token, emulated s), ``timeout`` = its token in effect."""
        info = view.get("nodes") or {}

        def state(x: str) -> str:
            st = info.get(x) or {}
            if st.get("online") and not st.get("unclean"):
                return "UP"
            return "LEFTCLUSTER" if st.get("unclean") else "DOWN"

        token, silence = cmap.get(TOKEN_KEY), cmap.get(SILENCE_KEY)
        timeout = emulated_s(token, scale) if isinstance(token, int) else None
        peers = {}
        for p in nodes:
            if p == n:
                continue
            ps = state(p)
            gap = emulated_s(silence, scale) if ps == "UP" and isinstance(silence, int) else None
            peers[p] = {"state": ps, "gap": None if gap is None else round(gap, 3), "timeout": timeout}
        fencing = view.get("stonith_enabled", True) and not view.get("maintenance")
        return {"state": state(n), "sf": "running" if fencing else "stopped", "peers": peers}

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

    # ---- prove -----------------------------------------------------------------------------------
    def prove(self, run: Run) -> Generator[Effect, CallReturned, list[dict[str, Any]]]:
        assert run.j is not None
        j, d, node = run.j, run.request.domain, run.j["node"]
        to, nodes, dev, hosts = j["complete_to"], j["nodes"], j["device"], j["hosts"]
        others = [n for n in nodes if n != node]
        checks: list[dict[str, Any]] = []

        def check(name: str, ok: bool, detail: str) -> None:
            checks.append({"name": name, "ok": bool(ok), "detail": detail})

        running, silent, claims = [], [], []
        for h in sorted(hosts):
            ok, w = yield from run.where(h)
            if not ok:
                silent.append(h)
            elif w is not None:
                claims.append(h)
                if w["state"] == "active":
                    running.append(h)
        check(
            "one running instance",
            running == [to] and not silent,
            f"{d} running on {', '.join(running) or 'no host'}"
            + (f"; no answer from {', '.join(silent)}" if silent else ""),
        )
        # fence_virsh with the device's own parameters, from every node that may fence the VM
        devices = yield from run._ask(nodes[0], "stonith_devices")
        current = next((x for x in devices if x["id"] == dev), None)
        params = dict((current or {}).get("params") or {})
        at = self._host_of(str(params.get("ip", "")), hosts)
        bad: list[str] = []
        if current is None:
            bad.append(f"{dev} is not in the CIB")
        else:
            answers = yield from self._try_all(
                run, [(n, "fence_agent", {"params": agent_params(params), "action": "status"}) for n in others]
            )
            for n, ans in zip(others, answers):
                st = ans.value.get("status") if ans.ok else None
                if st != "ON":
                    why = ans.error if not ans.ok else (ans.value.get("text") or f"rc {ans.value.get('rc')}")
                    bad.append(
                        f"from {n}: fence_virsh -o status through {params.get('ip')} says {st or 'nothing'} ({why})"
                    )
            if at != to:
                trap = (
                    (
                        " (fence_virsh's missing-as-off trap: that host answers OFF for a VM it does not have, so a "
                        f"fence would 'succeed' while {d} runs on)"
                    )
                    if at is not None
                    else ""
                )
                bad.append(f"{dev} points at {params.get('ip') or 'nothing'}, but {d} runs on {to}{trap}")
        check(
            "fence_virsh status",
            not bad,
            "; ".join(bad)
            or f"{dev} -> {params.get('ip')} plug {params.get('plug')}: fence_virsh -o status says ON from {', '.join(others)}",
        )
        old = [f"{h} still has {d}" for h in claims if h != to]
        said = ""
        if to != j["source"]:
            ans = yield from run._try(j["source"], "virsh", argv=["domstate", d])
            said = (ans.value["stderr"] or ans.value["stdout"]).strip() if ans.ok else ans.error
            if not ans.ok or ans.value["rc"] == 0 or "failed to get domain" not in said:
                old.append(f"{j['source']}: virsh domstate {d}: {' '.join(said.split()) or 'no answer'}")
        check(
            "old host lets go",
            not old,
            "; ".join(old)
            or f"no host but {to} has {d}" + (f" ({j['source']}: virsh domstate {d}: {said})" if said else ""),
        )
        lists = yield from self._try_all(run, [(n, "stonith_list", {"node": node}) for n in others])
        missing = [
            f"{n}: {a.error if not a.ok else (' '.join(a.value) or 'none')}"
            for n, a in zip(others, lists)
            if not a.ok or dev not in a.value
        ]
        check(
            "stonith_admin",
            not missing,
            "; ".join(missing) or f"stonith_admin --list {node} names {dev} on {', '.join(others)}",
        )
        views = yield from self._views(run, nodes)
        trouble = []
        for n, v in views.items():
            if v is None:
                trouble.append(f"{n} does not answer crm_mon")
                continue
            trouble += cluster_problems(v, nodes, n)
            if v.get("maintenance"):
                trouble.append(f"{n}: {MAINTENANCE} is still true")
            if not v.get("stonith_enabled", True):
                trouble.append(f"{n}: stonith-enabled is false")
            started, monitored = v.get("started") or {}, set(v.get("monitored") or [])
            for x in devices:
                if x["id"] not in started:
                    trouble.append(f"{n}: {x['id']} not started")
                elif x["id"] not in monitored:
                    trouble.append(f"{n}: {x['id']} not monitored yet")
        check(
            "cluster",
            not trouble,
            "; ".join(dict.fromkeys(trouble))
            or "every node online in every view, DC with quorum, every fence device started and monitored, "
            "nothing pending or failed, maintenance released",
        )
        want = {n: runtime_token_ms(j["tokens"][n], len(nodes)) for n in nodes}
        answers = yield from self._try_all(
            run, [x for n in nodes for x in ((n, "cmap_get", {"keys": [TOKEN_KEY]}), (n, "token_record", {}))]
        )
        wrong = []
        for i, n in enumerate(nodes):
            cm, rec = answers[2 * i], answers[2 * i + 1]
            got = cm.value.get(TOKEN_KEY) if cm.ok else None
            if got != want[n]:
                wrong.append(f"{n}: {got} ms (recorded {want[n]} ms)")
            if not rec.ok or rec.value is not None:
                wrong.append(f"{n}: a token record is left" if rec.ok else f"{n}: {rec.error}")
        check(
            "tokens",
            not wrong,
            "; ".join(wrong) or ", ".join(f"{n} {t} ms" for n, t in sorted(want.items())) + " as recorded",
        )
        return checks
