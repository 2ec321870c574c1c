"""The Pacemaker stack's proof (:class:`PacemakerProof`, mixed into
:class:`~clovm.core.stacks.pacemaker.PacemakerStack`): after complete, each check with its
verdict and what was seen — one running instance, ``fence_virsh -o status`` through the host the
device points at, the old host lets go, ``stonith_admin --list``, the cluster, the tokens.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from ..base import Effect
from ..migration import CallReturned
from .pacemaker_rules import MAINTENANCE, TOKEN_KEY, agent_params, cluster_problems, runtime_token_ms

if TYPE_CHECKING:
    from ..safemigrate import SafeMigrationRun as Run


class PacemakerProof:
    """The proof half of :class:`~clovm.core.stacks.pacemaker.PacemakerStack` (which provides the
    helpers declared here)."""

    if TYPE_CHECKING:

        @staticmethod
        def _try_all(
            run: Run, calls: list[tuple[str, str, dict[str, Any]]]
        ) -> Generator[Any, Any, list[CallReturned]]: ...
        @staticmethod
        def _host_of(value: str, hosts: Mapping[str, str]) -> str | None: ...
        def _views(self, run: Run, nodes: list[str]) -> Generator[Any, Any, dict[str, dict[str, Any] | None]]: ...

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
