"""``clovm demo``: the seed's procedure (17.3.1.1 → live migration → 17.3.1.2) on a fresh
emulated datacenter, typed as an operator would, with every outcome checked.

Each command runs through the same admin front ends as ``clovm exec`` and is printed behind its
host prompt (``primary2 # ...``) with its real output. The datacenter lives in a temporary home
and is always torn down. The result is 0 only if every check held.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from ..cli import admin
from ..runtime.home import Home
from . import datacenter
from .errors import ClovmError

CLOVMMIGRATE = "/etc/opt/FJSVcluster/bin/clovmmigrate"
CLSNMPSETUP = "/etc/opt/FJSVcluster/bin/clsnmpsetup"
SDTOOL = "/opt/SMAW/bin/sdtool"
CFTOOL = "/opt/SMAW/bin/cftool"
CFSET = "/opt/SMAW/bin/cfset"
CFGUEST2_AFTER = ("xscf        cfguest2           1        guest2       127.20.30.73    127.20.40.73    "
                  "xuser          ssh")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


@dataclass
class Demo:
    home: Home
    out: TextIO
    failures: list[str] = field(default_factory=list)
    checks: int = 0

    def run(self, host: str, cmd: str, *argv: str, show: bool = True) -> Result:
        o, e = io.StringIO(), io.StringIO()
        rc = admin.run_command(cmd, list(argv), host=host, home=str(self.home.root), out=o, err=e)
        r = Result(rc, o.getvalue(), e.getvalue())
        if show:
            self.out.write(f"{host} # {' '.join((cmd, *argv))}\n{r.stdout}{r.stderr}")
            if rc:
                self.out.write(f"(exit status {rc})\n")
            self.out.flush()
        return r

    def check(self, cond: bool, what: str) -> bool:
        self.checks += 1
        if not cond:
            self.failures.append(what)
            self.out.write(f"  CHECK FAILED: {what}\n")
        return cond

    def poll(self, cond: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True

    def say(self, text: str) -> None:
        self.out.write(f"\n== {text}\n")
        self.out.flush()


def _sf_rows(r: Result) -> list[list[str]]:
    return [ln.split() for ln in r.stdout.splitlines()[2:] if ln.strip()]


def _sf_all_worked(d: Demo, host: str) -> bool:
    rows = _sf_rows(d.run(host, SDTOOL, "-s", show=False))
    return len(rows) == 8 and all(r[2:] == ["Idle", "Unknown", "TestWorked", "InitWorked"] for r in rows)


def _timeout(d: Demo, host: str) -> str:
    for ln in d.run(host, CFSET, "-a", show=False).stdout.splitlines():
        if "CLUSTER_TIMEOUT" in ln:
            return ln.split()[-1]
    return "?"


def _states(d: Demo, host: str) -> dict[str, str]:
    return {r[0]: r[2] for r in (ln.split() for ln in d.run(host, CFTOOL, "-n", show=False).stdout.splitlines()[1:]) if r}


def _guest_pid(home: Home, domain: str) -> int | None:
    try:
        return int(json.loads(home.placement_file(domain).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _watch_stopped(pid: int, seen: set[str], stop: threading.Event) -> None:
    """Record the process states of ``pid`` until ``stop``: 'T' means SIGSTOPped (suspended)."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/stat") as f:
                seen.add(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            seen.add("gone")
        time.sleep(0.005)


def happy_path(d: Demo) -> None:
    guests = ("guest1", "guest2")
    d.say("the guest cluster is healthy")
    d.check(d.poll(lambda: all(_sf_all_worked(d, g) for g in guests)), "SF TestWorked/InitWorked on both guests")
    d.run("guest1", CFTOOL, "-n")
    before = {g: _timeout(d, g) for g in guests}

    d.say("17.3.1.1 step 1: before live migration, on the source control domain")
    r = d.run("primary2", CLOVMMIGRATE, "-p", "guest2")
    d.check(r.rc == 0, "clovmmigrate -p exits 0")
    for g in guests:
        d.check(_timeout(d, g) == "600", f"{g}: CLUSTER_TIMEOUT 600 after -p")
        d.check(d.run(g, SDTOOL, "-s", show=g == "guest2").rc != 0, f"{g}: SF stopped after -p")
    d.run("guest2", CFSET, "-a")

    d.say("live migration of guest2 from primary2 to primary3")
    pid = _guest_pid(d.home, "guest2")
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_stopped, args=(pid, seen, stop), daemon=True) if pid else None
    if watcher:
        watcher.start()
    r = d.run("primary2", "ldm", "migrate-domain", "-c", "guest2", "primary3")
    stop.set()
    if watcher:
        watcher.join()
    d.check(r.rc == 0, "ldm migrate-domain exits 0")
    d.check("T" in seen, "guest2's process was really suspended (SIGSTOP) during the migration")
    d.check(d.poll(lambda: _guest_pid(d.home, "guest2") == pid and "T" not in _proc_state(pid), 10),
            "guest2's process resumed (SIGCONT) on the target")
    lst3 = d.run("primary3", "ldm", "list")
    lst2 = d.run("primary2", "ldm", "list")
    d.check(any(ln.split()[:2] == ["guest2", "active"] for ln in lst3.stdout.splitlines()), "guest2 active on primary3")
    d.check(not any(ln.split()[:1] == ["guest2"] for ln in lst2.stdout.splitlines()), "guest2 gone from primary2")
    states = _states(d, "guest1")
    d.check(states == {"cfguest1": "UP", "cfguest2": "UP"}, f"both nodes still UP after the suspend: {states}")

    d.say("17.3.1.2: saved configurations (at most 6, no config_tmp)")
    for h in ("primary2", "primary3"):
        names = [ln.split()[0] for ln in d.run(h, "ldm", "list-spconfig").stdout.splitlines() if ln.strip()]
        d.check(len([n for n in names if n != "factory-default"]) <= 6 and "config_tmp" not in names,
                f"{h}: at most 6 saved configurations and no config_tmp")

    d.say("17.3.1.2 step 1: after live migration, on the source control domain")
    r = d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3")
    d.check(r.rc == 0, "clovmmigrate -u exits 0")
    for g in guests:
        d.check(_timeout(d, g) == before[g], f"{g}: CLUSTER_TIMEOUT back to {before[g]}")
    for h in ("primary2", "primary3"):
        out = d.run(h, "ldm", "list-spconfig", show=False).stdout
        d.check("[current]" in out and "config_tmp" not in out, f"{h}: configuration saved, no config_tmp left")

    d.say("17.3.1.2 step 2: on each guest domain")
    for g in guests:
        r = d.run(g, CLSNMPSETUP, "-l")
        d.check(CFGUEST2_AFTER in r.stdout.splitlines(), f"{g}: cfguest2 now names m10-3's XSCF and PPAR-ID 1")
        d.check(d.poll(lambda g=g: _sf_all_worked(d, g)), f"{g}: all 8 agents TestWorked/InitWorked")
        d.run(g, SDTOOL, "-s")
    d.run("guest1", CFTOOL, "-n")
    hv = d.run("guest1", "hvdisp", "-a", show=False).stdout
    d.check(any("app1" in ln and "cfguest1" in ln and "Online" in ln for ln in hv.splitlines()),
            "app1 stayed Online on cfguest1 (no switchover)")
    for g in guests:
        msgs = d.home.messages(g).read_text()
        d.check("LEFTCLUSTER" not in msgs, f"{g}: nobody left the cluster")


def _proc_state(pid: int | None) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, TypeError):
        return "gone"


def run(out: TextIO, time_scale: float = 10.0) -> int:
    with tempfile.TemporaryDirectory(prefix="clovm-demo-") as tmp:
        home = Home(tmp)
        out.write(f"clovm demo: bringing up the figure-17-1 datacenter in {tmp} (time scale {time_scale:g})\n")
        out.flush()
        try:
            datacenter.up(home, "figure-17-1", time_scale)
        except ClovmError as e:
            out.write(f"clovm demo: cannot bring up the datacenter: {e.message}\n")
            return 1
        d = Demo(home, out)
        try:
            happy_path(d)
        finally:
            datacenter.down(home)
        out.write(f"\nclovm demo: {d.checks - len(d.failures)} of {d.checks} checks held; datacenter stopped\n")
        for f in d.failures:
            out.write(f"  FAILED: {f}\n")
        return 0 if not d.failures else 1

