"""The Pacemaker stack's preflight and plan (:class:`PacemakerPreflight`, mixed into
:class:`~clovm.core.stacks.pacemaker.PacemakerStack`): every check before anything changes, the
refusal that lists every problem with its remedy, and the facts the journal starts from.

What is checked is the list under **preflight** in :mod:`clovm.core.stacks.pacemaker`'s docstring.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from .. import codes
from ..base import Effect
from ..migration import RC_REFUSED, CallReturned, _Stop
from .pacemaker_rules import (
    FENCE_AGENT,
    MAX_TOKEN_MS,
    TOKEN_KEY,
    agent_params,
    cluster_problems,
    device_for,
    expected_suspend_s,
    protective_token_ms,
)

if TYPE_CHECKING:
    from ..safemigrate import SafeMigrationRun as Run


class PacemakerPreflight:
    """The preflight half of :class:`~clovm.core.stacks.pacemaker.PacemakerStack` (which provides
    the helpers declared here)."""

    if TYPE_CHECKING:

        @staticmethod
        def migrate_command(domain: str, target: str) -> str: ...
        @staticmethod
        def _try_all(
            run: Run, calls: list[tuple[str, str, dict[str, Any]]]
        ) -> Generator[Any, Any, list[CallReturned]]: ...
        @staticmethod
        def _host_of(value: str, hosts: Mapping[str, str]) -> str | None: ...

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
