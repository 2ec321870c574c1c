"""The Pacemaker stack's rules (:mod:`clovm.core.stacks.pacemaker`), pure functions and constants.

The names it works with (the cmap keys, the ``maintenance-mode`` property, the fence agent), its
limits and the journal's marks; the token arithmetic (the final suspend a pre-copy migration is
expected to take, the protective token that covers it, the runtime token corosync derives); and
what the tools' answers say, read from the values ``clovm.pacemaker`` parsed them into: a
``crm_mon`` view's problems (:func:`cluster_problems`) and its membership as a journal sample
(:func:`view_sample`), the fence device that covers a node (:func:`device_for`) and the
parameters its agent gets (:func:`agent_params`), the host a device's ``ip`` names
(:func:`host_of`). Nothing here asks or changes anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

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


def host_of(value: str, hosts: Mapping[str, str]) -> str | None:
    """The hypervisor host a device's ``ip`` names (host name or address), else None."""
    for h, addr in hosts.items():
        if value in (h, addr):
            return h
    return None


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
