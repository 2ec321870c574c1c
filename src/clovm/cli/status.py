"""``clovm status``: the status document of :func:`clovm.api.datacenter.status` as tables.

One table per kind of thing — every daemon (what runs, what is down or being restarted, and why),
the servers (what each XSCF reports per PPAR), the control domains (ldm's view), the guest
domains (where each runs), the cluster nodes (each node's CF view, timeout, SF, applications) and
the migrations in progress — then one line per problem. A value a daemon could not give is shown
as ``error: CODE: message``, never as raw data. ``clovm status --json`` prints the document itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart (the last column is not padded)."""
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for r in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths[:-1])) + ("  " if len(r) > 1 else "") + r[-1]
        out.append(indent + line.rstrip())
    return out


def _error(value: Any) -> str | None:
    """``error: ...`` for an answer a daemon could not give, else None."""
    if isinstance(value, dict) and set(value) == {"error"}:
        return f"error: {value['error']}"
    if isinstance(value, dict) and "error" in value and len(value) <= 2:
        return f"error: {value['error']}"
    return None


def _daemons(st: dict[str, Any]) -> list[str]:
    sup = st.get("supervisor") or {}
    watched = sup.get("daemons") or {}
    rows = []
    for d in st.get("daemons", []):
        rec = watched.get(f"{d['daemon']}-{d['name']}") or {}
        restarts = rec.get("restarts")
        note = d["message"] if d.get("code") else (f"restarted {restarts}x" if restarts else "")
        rows.append([d["daemon"], d["name"], d.get("pid"), d["state"], note])
    if st.get("supervisor") is not None:
        n = sum(int((r or {}).get("restarts") or 0) for r in watched.values())
        rows.append(
            [
                "supervisor",
                sup.get("name", ""),
                sup.get("pid"),
                sup.get("state"),
                f"{len(watched)} daemons watched, {n} restart(s)"
                if sup.get("state") == "running"
                else "daemons that die are not restarted",
            ]
        )
    return table(["DAEMON", "NAME", "PID", "STATE", "NOTE"], rows)


def _servers(st: dict[str, Any]) -> list[str]:
    rows = []
    for s in st.get("servers", []):
        for p, x in (s.get("ppars") or {"-": None}).items():
            err = _error(x)
            doms = err or (", ".join(f"{d} {v}" for d, v in x.items()) if isinstance(x, dict) else "-")
            rows.append([s["name"], s["xscfd"], s["lan0"], s["lan1"], p, doms or "-"])
    return table(["SERVER", "XSCF", "LAN#0", "LAN#1", "PPAR", "DOMAINS (XSCF)"], rows)


def _control_domains(st: dict[str, Any]) -> list[str]:
    rows = []
    for c in st.get("control_domains", []):
        doms = c.get("domains")
        err = _error(doms)
        text = err or (
            ", ".join(f"{d.get('name')} {d.get('state')} {d.get('flags')}" for d in doms if isinstance(d, dict))
            if isinstance(doms, list)
            else "-"
        )
        rows.append([c["name"], c["server"], c["ppar"], c["ldmd"], text])
    return table(["CONTROL DOMAIN", "SERVER", "PPAR", "LDMD", "DOMAINS (ldm)"], rows)


def _guests(st: dict[str, Any]) -> list[str]:
    rows = [
        [
            g["name"],
            g.get("control_domain") or "not placed",
            g.get("server"),
            g.get("pid"),
            "running" if g.get("running") else "NOT RUNNING",
        ]
        for g in st.get("guests", [])
    ]
    return table(["GUEST", "CONTROL DOMAIN", "SERVER", "PID", "STATE"], rows)


def _nodes(st: dict[str, Any]) -> list[str]:
    rows = []
    for cf, n in st.get("nodes", {}).items():
        err = _error({k: v for k, v in n.items() if k != "host"})
        if err:
            rows.append([cf, n.get("host"), err, "", "", "", ""])
            continue
        view = " ".join(f"{p} {s}" for p, s in sorted((n.get("view") or {}).items())) or "-"
        apps = " ".join(f"{a}@{w or '-'}" for a, w in (n.get("apps") or {}).items()) or "-"
        rows.append(
            [cf, n.get("host"), n.get("local_state", n.get("state")), view, n.get("timeout"), n.get("sf"), apps]
        )
    return table(["CF NODE", "HOST", "CF", "VIEW", "TIMEOUT", "SF", "APPS"], rows)


def _migrations(st: dict[str, Any]) -> list[str]:
    rows = []
    for m in st.get("migrations", []):
        prog = m.get("progress") or {}
        text = f"{prog.get('phase')} {prog.get('percent')}%" if prog else "-"
        rows.append([m["domain"], m["control_domain"], m["role"], m["flags"], text])
    return table(["MIGRATING", "CONTROL DOMAIN", "ROLE", "FLAGS", "PROGRESS"], rows)


def render_status(st: dict[str, Any]) -> str:
    """The whole of ``clovm status``."""
    out = [f"home {st['home']} (time scale {st.get('time_scale')})", ""]
    for part in (_daemons, _servers, _control_domains, _guests, _nodes):
        out += part(st) + [""]
    if st.get("migrations"):
        out += _migrations(st) + [""]
    problems = st.get("problems") or []
    if problems:
        out.append(f"{len(problems)} problem(s) ({st.get('code')}):")
        out += [f"  {p['message']} [{p['code']}]" for p in problems]
    else:
        out.append("ok: every daemon runs and answers")
    return "\n".join(out)
