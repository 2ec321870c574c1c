"""What the cluster looks like to a chaos run (:mod:`clovm.sim.chaos.run`): the guest nodes, where a
domain runs, whether it migrates or is under a procedure, and the monitor's verdict —
:func:`problems` (why the datacenter is not settled) and :func:`settled`."""

from __future__ import annotations

from ...core.safemigrate import journal_key
from ..world import World


def guest_nodes(w: World) -> list[str]:
    return sorted(cf for cf, n in w.nodes.items() if n.kind == "guest")


def active_on(w: World, domain: str) -> list[str]:
    """The running ldmds that list ``domain`` active."""
    return [
        h
        for h, d in sorted(w.ldm.items())
        if h not in w.ldm_down and (x := d.domain(domain)) is not None and x.state == "active"
    ]


def migrating(w: World, domain: str) -> bool:
    return any(
        h not in w.ldm_down and ((m := d.migration(domain)) is not None and not m.dry_run or domain in d.incoming())
        for h, d in w.ldm.items()
    )


def under_procedure(w: World, domain: str) -> bool:
    """A clovmmigrate or clovm migrate journal of ``domain`` exists somewhere."""
    return any(d in (domain, journal_key(domain)) for _, d in w.journals)


def problems(w: World) -> list[str]:
    """Why the datacenter is not settled (empty: settled): every control domain and ldmd up, its
    node UP in every view; every guest node alive, joined, UP in every view, SF running with every
    agent TestWorked/InitWorked, its CLUSTER_TIMEOUT back at the configured value, no -p window,
    record or widening left; every guest node agreeing where each application runs (so that SF
    weighs a split brain alike everywhere); every guest domain running exactly once, where its
    process is, with no migration in progress and no journal left; every application online
    exactly once."""
    out: list[str] = []
    t = w.topo
    for c in t.control_domains:
        n = w.nodes[c.cf_name]
        if c.name in w.cd_down or c.name in w.ldm_down:
            out.append(f"{c.name}: {'down' if c.name in w.cd_down else 'ldmd down'}")
        elif not n.alive or n.node is None or any(v != "UP" for v in n.node.cf.view().values()):
            out.append(f"{c.cf_name}: not UP everywhere")
    for cf in guest_nodes(w):
        n = w.nodes[cf]
        if not n.alive or n.suspended or n.services != "started" or n.node is None:
            out.append(f"{cf}: {'suspended' if n.suspended else 'not running' if not n.alive else n.services}")
            continue
        bad = sorted(p for p, v in n.node.cf.view().items() if v != "UP")
        if bad:
            out.append(f"{cf} holds {' '.join(bad)} not UP")
        rows = n.node.sf.rows() if n.node.sf is not None else []
        if not n.node.sf_running or any(
            r.test_state != "TestWorked" or r.init_state != "InitWorked" or r.sa_state != "Idle" for r in rows
        ):
            out.append(f"{cf}: SF {'not running' if not n.node.sf_running else 'agents not all worked'}")
        f = n.files
        want = t.initial_disk(n.host).timeout
        if f.timeout != want or f.record is not None or f.window or f.widen or n.node.cf.widened():
            out.append(
                f"{cf}: timeout {f.timeout} (configured {want}), record {f.record}, window {f.window}, "
                f"widened {sorted(n.node.cf.widened())}"
            )
    views = w.placement_disagreement()
    if views is not None:
        out.append(
            "the guest nodes disagree where the applications run: " + "; ".join(f"{cf} {p}" for cf, p in views.items())
        )
    for g in t.guests:
        on = active_on(w, g.name)
        n = w.nodes[g.cf_name]
        if on != [n.hosted_by] or migrating(w, g.name):
            out.append(
                f"{g.name}: active on {on or 'nothing'} (process on {n.hosted_by})"
                + (", migrating" if migrating(w, g.name) else "")
            )
    if w.journals:
        out.append(f"journals left: {sorted(w.journals)}")
    for app, online_on in sorted(w.online.items()):
        if len(online_on) != 1:
            out.append(f"{app} online on {sorted(online_on) or 'no node'}")
    return out


def settled(w: World) -> bool:
    return not problems(w)
