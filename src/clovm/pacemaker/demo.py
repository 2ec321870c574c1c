"""``clovm demo --topology pacemaker``: the whole story of issue 13 on real processes, checked.

In a temporary home: bring the topology up (hosts kvm1-3, the cluster vm1/vm2 with fence_virsh),
show the healthy cluster with the real commands, a dry run, then ``clovm migrate --host kvm2 vm2
kvm3`` and its proof, then look again with the real commands — crm_mon, the token on every
node, virsh on both hosts, the fence device's ``ip``, ``stonith_admin --list`` and a
``fence_virsh -o status`` through the device — and show the trap the re-pointing avoids: asked
with ``--missing-as-off``, the old host answers OFF for vm2 while it runs on kvm3. Every outcome is
a check; the transcript ends with how many held, and the topology is always torn down.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .. import timeline
from ..api.errors import ClovmError
from ..core import safemigrate as sm
from . import api, migrate_env
from . import layout as L

FENCE = ["fence_virsh", "--username", "root", "--identity-file", L.FENCE_KEY]


class _Demo:
    def __init__(self, home: Path, out: TextIO) -> None:
        self.home, self.out = home, out
        self.checks = 0
        self.failures: list[str] = []

    def say(self, text: str) -> None:
        self.out.write(f"\n== {text}\n")
        self.out.flush()

    def run(self, host: str, argv: Sequence[str], show: bool = True) -> tuple[int, str, str]:
        rc, out, err = api.exec_in(self.home, host, list(argv), timeout=120)
        if show:
            shown = " ".join(a if a and " " not in a and "*" not in a else repr(a) for a in argv)
            self.out.write(f"{host} # {shown}\n{out}{err}" + (f"(exit status {rc})\n" if rc else ""))
            self.out.flush()
        return rc, out, err

    def check(self, cond: bool, what: str) -> bool:
        self.checks += 1
        if not cond:
            self.failures.append(what)
            self.out.write(f"  CHECK FAILED: {what}\n")
        return cond

    def token(self, vm: str) -> int | None:
        _rc, out, _err = self.run(vm, ["corosync-cmapctl", "-g", "runtime.config.totem.token"])
        parsed = migrate_env.parse_cmap(out)
        v = parsed.get("runtime.config.totem.token")
        return v if isinstance(v, int) else None

    def migrate(
        self, host: str, domain: str, target: str, *, dry_run: bool = False
    ) -> tuple[int, dict[str, Any] | None]:
        self.out.write(f"{host} # clovm migrate {domain} {target}{' --dry-run' if dry_run else ''}\n")
        self.out.flush()
        fin, journal = migrate_env.safe_migration(
            self.home, host, sm.MigrateRequest(domain, host, target, dry_run=dry_run), self.out, self.out
        )
        if journal is not None and not dry_run:
            self.out.write(timeline.render_text_summary(journal))
        self.out.flush()
        return fin.rc, journal


def story(d: _Demo, token_ms: int) -> None:
    d.say("the cluster is healthy: two nodes, a fence_virsh device for each, vm2 on kvm2")
    rc, out, _ = d.run("vm1", ["crm_mon", "-1"])
    d.check(
        rc == 0 and "Online: [ vm1 vm2 ]" in out and "Failed" not in out, "crm_mon: both nodes online, nothing failed"
    )
    for vm in L.VMS:
        d.check(d.token(vm) == token_ms, f"the token of {vm} is {token_ms} ms")
    rc, out, _ = d.run("kvm2", ["virsh", "list", "--all"])
    d.check(" vm2 " in out and "running" in out, "kvm2 runs vm2")

    d.say("the preflight and the plan (nothing changes)")
    rc, _ = d.migrate("kvm2", "vm2", "kvm3", dry_run=True)
    d.check(rc == 0, "the dry run passed")

    d.say("the one-shot migration: prepare, virsh migrate --live, complete, prove")
    t0 = time.monotonic()
    rc, j = d.migrate("kvm2", "vm2", "kvm3")
    took = time.monotonic() - t0
    d.check(rc == 0, f"clovm migrate exited 0 (it took {took:.1f} s)")
    j = j or {}
    d.check(
        j.get("result") == "ok" and all(c["ok"] for c in j.get("proof", [])) and len(j.get("proof", [])) == 6,
        "the journal says: result ok, 6 proof checks ok",
    )
    notes = " ".join(e.get("text", "") for e in j.get("events", []))
    d.check(
        f"token {j.get('token_raised')} ms" in notes and "maintenance-mode=true" in notes,
        "the journal recorded the raised token and maintenance-mode",
    )

    d.say("after: looked at with the real commands")
    rc, out, _ = d.run("vm1", ["crm_mon", "-1"])
    d.check(
        "Online: [ vm1 vm2 ]" in out and "Failed" not in out and "unmanaged" not in out,
        "crm_mon: both online, nothing failed, maintenance released",
    )
    for vm in L.VMS:
        d.check(d.token(vm) == token_ms, f"the token of {vm} is back to {token_ms} ms")
    _rc, out, _ = d.run("kvm3", ["virsh", "list", "--all"])
    d.check(" vm2 " in out and "running" in out, "kvm3 runs vm2")
    _rc, out, err = d.run("kvm2", ["virsh", "domstate", "vm2"])
    d.check("failed to get domain" in err, "kvm2 no longer has vm2")
    _rc, out, _ = d.run("vm1", ["crm_resource", "--resource", "fence-vm2", "--get-parameter", "ip"])
    d.check(out.strip() == "kvm3", "fence-vm2 points at kvm3")
    _rc, out, _ = d.run("vm1", ["stonith_admin", "--list", "vm2"])
    d.check("fence-vm2" in out, "stonith_admin --list vm2 names fence-vm2")
    _rc, out, _ = d.run("vm1", [*FENCE, "--ip", "kvm3", "--plug", "vm2", "-o", "status"])
    d.check(out.strip() == "Status: ON", "fence_virsh through kvm3 says ON")
    _rc, out, _ = d.run("vm1", ["stonith_admin", "--history", "*"])
    d.check("0 events found" in out or not out.strip(), "nothing was fenced")

    d.say("the trap the re-pointing avoids: with --missing-as-off the old host says OFF for a VM it no longer has")
    _rc, out, _ = d.run("vm1", [*FENCE, "--ip", "kvm2", "--plug", "vm2", "--missing-as-off", "-o", "status"])
    d.check(out.strip() == "Status: OFF", "fence_virsh through kvm2 with --missing-as-off says OFF while vm2 runs")


def run(out: TextIO, time_scale: float | None = None) -> int:
    """Bring the topology up in a temporary home, run the story, tear it down; 0 if every check held."""
    scale = time_scale or 1.0
    with tempfile.TemporaryDirectory(prefix="clovm-demo-pcmk-") as tmp:
        home = Path(tmp) / "h"
        out.write(f"clovm demo pacemaker: bringing up the pacemaker topology in {home} (time scale {scale:g})\n")
        out.flush()
        d = _Demo(home, out)
        try:
            s = api.up(home, time_scale=scale)
            out.write(
                f"up in {s['up_seconds']:g} s: hosts {' '.join(L.HOSTS)}, cluster {L.CLUSTER_NAME} "
                f"({' '.join(L.VMS)}), token {s['token_ms']} ms\n"
            )
            story(d, int(s["token_ms"]))
        except ClovmError as e:
            d.check(False, f"{e.code}: {e.message}")
        finally:
            buf = io.StringIO()
            try:
                api.down(home)
            except ClovmError as e:
                buf.write(f"down: {e.message}\n")
            out.write(buf.getvalue())
        ok = not d.failures
        out.write(f"\nclovm demo: {d.checks - len(d.failures)} of {d.checks} checks held; topology stopped\n")
        out.flush()
        return 0 if ok else 1
