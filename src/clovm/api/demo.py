"""``clovm demo``: the seed's procedure (17.3.1.1 → live migration → 17.3.1.2) on a fresh
emulated datacenter, typed as an operator would, with every outcome checked.

Each command runs through an injected :data:`Runner` (the CLI passes the admin front ends that
``clovm exec`` uses) and is printed behind its host prompt (``primary2 # ...``) with its real
output. The datacenter lives in a temporary home and is always torn down. The result is 0 only if
every check held.
"""

from __future__ import annotations

import io
import json
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from .. import settings
from ..runtime.home import Home
from . import datacenter, faults
from .errors import ClovmError

CLOVMMIGRATE = settings.CLOVMMIGRATE_PATH
CLSNMPSETUP = settings.CLSNMPSETUP_PATH
SDTOOL = settings.SDTOOL_PATH
CFTOOL = settings.CFTOOL_PATH
CFSET = settings.CFSET_PATH

# runs one admin command on a host: (name or full path, argv, host, home, out, err) -> exit status
Runner = Callable[[str, Sequence[str], str, Home, TextIO, TextIO], int]


def _cfguest2_after(d: Demo) -> str:
    """The seed's clsnmpsetup -l row of cfguest2 once it runs on m10-3 (PPAR-ID 1)."""
    srv = d.home.topology().server("m10-3")
    return (
        f"xscf        cfguest2           1        guest2       {srv.lan0:<16}{srv.lan1:<16}"
        f"{d.home.topology().xscf.user:<15}{d.home.topology().xscf.connection}"
    )


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


@dataclass
class Demo:
    home: Home
    out: TextIO
    runner: Runner
    scale: float = 10.0
    failures: list[str] = field(default_factory=list)
    checks: int = 0

    def run(self, host: str, cmd: str, *argv: str, show: bool = True) -> Result:
        o, e = io.StringIO(), io.StringIO()
        rc = self.runner(cmd, list(argv), host, self.home, o, e)
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
    return {
        r[0]: r[2] for r in (ln.split() for ln in d.run(host, CFTOOL, "-n", show=False).stdout.splitlines()[1:]) if r
    }


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
    d.check(
        d.poll(lambda: _guest_pid(d.home, "guest2") == pid and "T" not in _proc_state(pid), 10),
        "guest2's process resumed (SIGCONT) on the target",
    )
    lst3 = d.run("primary3", "ldm", "list")
    lst2 = d.run("primary2", "ldm", "list")
    d.check(any(ln.split()[:2] == ["guest2", "active"] for ln in lst3.stdout.splitlines()), "guest2 active on primary3")
    d.check(not any(ln.split()[:1] == ["guest2"] for ln in lst2.stdout.splitlines()), "guest2 gone from primary2")
    states = _states(d, "guest1")
    d.check(states == {"cfguest1": "UP", "cfguest2": "UP"}, f"both nodes still UP after the suspend: {states}")

    d.say("17.3.1.2: saved configurations (at most 6, no config_tmp)")
    for h in ("primary2", "primary3"):
        names = [ln.split()[0] for ln in d.run(h, "ldm", "list-spconfig").stdout.splitlines() if ln.strip()]
        d.check(
            len([n for n in names if n != "factory-default"]) <= 6 and "config_tmp" not in names,
            f"{h}: at most 6 saved configurations and no config_tmp",
        )

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
        d.check(_cfguest2_after(d) in r.stdout.splitlines(), f"{g}: cfguest2 now names m10-3's XSCF and PPAR-ID 1")

        def all_worked(g: str = g) -> bool:
            return _sf_all_worked(d, g)

        d.check(d.poll(all_worked), f"{g}: all 8 agents TestWorked/InitWorked")
        d.run(g, SDTOOL, "-s")
    d.run("guest1", CFTOOL, "-n")
    hv = d.run("guest1", "hvdisp", "-a", show=False).stdout
    d.check(
        any("app1" in ln and "cfguest1" in ln and "Online" in ln for ln in hv.splitlines()),
        "app1 stayed Online on cfguest1 (no switchover)",
    )
    for g in guests:
        msgs = d.home.messages(g).read_text()
        d.check("LEFTCLUSTER" not in msgs, f"{g}: nobody left the cluster")


def _fault(d: Demo, typed: str, inject: Callable[[], str]) -> None:
    """Print the ``clovm fault`` command line ``typed`` (as an operator would type it), then
    inject the fault and print what it did."""
    d.out.write(f"(fault) clovm fault {typed}\n")
    d.out.write(inject() + "\n")


def _healthy(d: Demo, what: str) -> None:
    d.check(
        d.poll(lambda: _states(d, "guest1") == {"cfguest1": "UP", "cfguest2": "UP"}, 60),
        f"both guest nodes UP ({what})",
    )
    for g in ("guest1", "guest2"):

        def all_worked(g: str = g) -> bool:
            return _sf_all_worked(d, g)

        d.check(d.poll(all_worked, 60), f"{g}: all 8 agents TestWorked/InitWorked ({what})")


def _emulated(d: Demo, since: float) -> float:
    return (time.monotonic() - since) * d.scale


def _abort(d: Demo) -> tuple[float, float]:
    """-p, then a migration that fails after the copy: guest2 stops. Returns when -p ran and when
    guest2's process was seen gone (its last heartbeat: CF's 600 s count from there)."""
    _healthy(d, "at start")
    d.say("17.3.1.1: -p, then the live migration fails and guest2 stops")
    t_p = time.monotonic()
    d.check(d.run("primary2", CLOVMMIGRATE, "-p", "guest2").rc == 0, "clovmmigrate -p exits 0")
    _fault(d, "migration-abort guest2", lambda: faults.migration_abort(d.home, "guest2"))
    r = d.run("primary2", "ldm", "migrate-domain", "-c", "guest2", "primary3")
    d.check(r.rc != 0, "the migration fails")
    pid = _guest_pid(d.home, "guest2")
    d.check(d.poll(lambda: _proc_state(pid) in ("gone", "Z"), 10), "guest2's process is gone (the guest stopped)")
    t_stop = time.monotonic()
    d.run("primary2", "ldm", "list")
    return t_p, t_stop


def _wait_down(d: Demo, t_p: float, t_stop: float) -> None:
    d.say("recovery 1: on a node that was not migrated, wait until cftool -n shows cfguest2 DOWN")
    d.check(d.poll(lambda: _states(d, "guest1").get("cfguest2") == "DOWN", 900 / d.scale + 30), "cfguest2 becomes DOWN")
    took, silent = _emulated(d, t_p), _emulated(d, t_stop)
    d.run("guest1", CFTOOL, "-n")
    d.out.write(
        f"(cfguest2 DOWN {took:.0f} emulated seconds after clovmmigrate -p, {silent:.0f} after guest2 stopped)\n"
    )
    d.check(took >= 600, f"not DOWN before the 600 s that -p set (got {took:.0f} s)")
    # LEFTCLUSTER 600 s after the last heartbeat, then one domain-status query; a real second of
    # command and poll overhead is 60 emulated s at time scale 60
    slack = 60 + 2 * d.scale
    d.check(
        silent <= 600 + slack, f"DOWN about 600 s after guest2 stopped (got {silent:.0f} s, allowed {600 + slack:.0f})"
    )


def _start_and_complete(d: Demo) -> None:
    d.say("recovery 2-3: start the guest domain, then 17.3.1.2 with the source control domain as target-host")
    d.check(d.run("primary2", "ldm", "start-domain", "guest2").rc == 0, "ldm start-domain guest2")
    d.check(d.poll(lambda: _states(d, "guest1") == {"cfguest1": "UP", "cfguest2": "UP"}, 60), "cfguest2 rejoined")
    d.check(d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary2").rc == 0, "clovmmigrate -u guest2 primary2")
    _healthy(d, "after the recovery")
    d.run("guest2", SDTOOL, "-s")


def abort_recovery(d: Demo) -> None:
    _wait_down(d, *_abort(d))
    _start_and_complete(d)


def early_start(d: Demo) -> None:
    times = _abort(d)
    d.say("starting guest2 too early (before it is DOWN): SF, CRM and RMS fail to start")
    d.check(d.run("primary2", "ldm", "start-domain", "guest2").rc == 0, "ldm start-domain guest2")
    msgs = d.home.messages("guest2")
    d.check(
        d.poll(lambda: all(f"{w} failed to start" in msgs.read_text() for w in ("SF", "CRM", "RMS")), 30),
        "guest2's messages say SF, CRM and RMS failed to start",
    )
    for ln in msgs.read_text().splitlines():
        if "failed to start" in ln or "join refused" in ln:
            d.out.write(f"guest2 var/adm/messages: {ln}\n")
    d.check(d.run("guest2", SDTOOL, "-s").rc != 0, "SF is not running on guest2")
    d.say("stop it again and follow the recovery")
    d.check(d.run("primary2", "ldm", "stop-domain", "guest2").rc == 0, "ldm stop-domain guest2")
    _wait_down(d, *times)
    _start_and_complete(d)


def _migrate(d: Demo) -> None:
    d.check(d.run("primary2", CLOVMMIGRATE, "-p", "guest2").rc == 0, "clovmmigrate -p exits 0")
    d.check(d.run("primary2", "ldm", "migrate-domain", "-c", "guest2", "primary3").rc == 0, "the migration succeeds")


def ssh_first_connection(d: Demo) -> None:
    from ..runtime import ssh

    _healthy(d, "at start")
    d.say("the guests never made their first SSH connection to the target's XSCF (m10-3)")
    for g in ("guest1", "guest2"):

        def forget(g: str = g) -> str:
            return faults.forget_xscf_key(d.home, g, "m10-3")

        _fault(d, f"forget-xscf-key {g} m10-3", forget)
    _migrate(d)
    r = d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3")
    d.check(r.rc == 4 and "7245" in r.stderr + r.stdout, "-u reports the SF test failure and message 7245")
    d.run("guest2", SDTOOL, "-s")
    msgs = d.home.messages("guest2").read_text().splitlines()
    seen = [ln for ln in msgs if "ID 7245 " in ln]
    d.check(bool(seen), "message 7245 in guest2's var/adm/messages")
    if seen:
        d.out.write(f"guest2 var/adm/messages: {seen[-1]}\n")
    d.say("make the first SSH connection from each guest (accept m10-3's host key), then sdtool -r")
    srv = d.home.topology().server("m10-3")
    key = ssh.load_or_create_host_key(d.home.server_dir("m10-3") / "ssh_host_key")
    for g in ("guest1", "guest2"):
        for addr in (srv.lan0, srv.lan1):
            d.out.write(f"{g} # ssh {d.home.topology().xscf.user}@{addr}   (host key accepted)\n")
            ssh.add_known_host(d.home.known_hosts(g), ssh.host_key_line(addr, settings.XSCF_SSH_PORT, key))
        d.run(g, SDTOOL, "-r")
    d.check(d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3").rc == 0, "-u completes once the key is known")
    _healthy(d, "after the first connection")
    d.run("guest2", SDTOOL, "-s")


def spconfig_limit(d: Demo) -> None:
    _healthy(d, "at start")
    _migrate(d)
    d.say("7 saved configurations on primary3: -u refuses before changing anything")
    for i in range(1, 7):
        d.run("primary3", "ldm", "add-spconfig", f"extra{i}", show=i == 6)
    d.run("primary3", "ldm", "list-spconfig")
    r = d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3")
    d.check(r.rc == 3 and "ldm remove-spconfig" in r.stderr and "primary3" in r.stderr, "-u refused, naming the remedy")
    d.check(_timeout(d, "guest1") == "600", "nothing changed (timeout still 600)")
    d.run("primary3", "ldm", "remove-spconfig", "extra6")
    d.say("a configuration named config_tmp on primary2: refused too")
    d.run("primary2", "ldm", "add-spconfig", "config_tmp")
    r = d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3")
    d.check(r.rc == 3 and "config_tmp" in r.stderr, "-u refused because of config_tmp")
    d.run("primary2", "ldm", "remove-spconfig", "config_tmp")
    d.check(d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3").rc == 0, "-u succeeds after the clean-up")
    _healthy(d, "after -u")


def time_sync(d: Demo) -> None:
    _healthy(d, "at start")
    _fault(d, "clock m10-3 +30", lambda: faults.clock(d.home, "m10-3", +30.0))
    _migrate(d)
    d.check(d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary3").rc == 0, "-u succeeds")
    w34 = "(WRP, 34) Cluster host cfguest2 is no longer in time sync with local node."
    w35 = "(WRP, 35) Cluster host cfguest2 is no longer in time sync with local node."
    sw, msgs = d.home.switchlog("guest1"), d.home.messages("guest1")
    d.check(
        d.poll(lambda: msgs.exists() and msgs.read_text().count(w35) >= 2, 240 / d.scale + 20),
        "(WRP, 35) periodically in guest1's messages",
    )
    for ln in sw.read_text().splitlines():
        if "WRP" in ln or "Further out-of-sync" in ln:
            d.out.write(f"guest1 switchlog: {ln}\n")
    d.check(
        sw.read_text().count(w34) == 1 and "Further out-of-sync messages will appear in the syslog." in sw.read_text(),
        "(WRP, 34) once in guest1's switchlog with the 'Further out-of-sync' line",
    )
    for ln in [x for x in msgs.read_text().splitlines() if "WRP" in x][-3:]:
        d.out.write(f"guest1 var/adm/messages: {ln}\n")
    _fault(d, "clock m10-3 -30", lambda: faults.clock(d.home, "m10-3", -30.0))
    time.sleep(90 / d.scale)
    n = msgs.read_text().count(w35)
    time.sleep(240 / d.scale)
    d.check(msgs.read_text().count(w35) == n, "silence once the clocks agree")


def cancelled(d: Demo) -> None:
    _healthy(d, "at start")
    d.check(d.run("primary2", CLOVMMIGRATE, "-p", "guest2").rc == 0, "clovmmigrate -p exits 0")
    d.say("the migration is cancelled: 17.3.1.2 with the source control domain as target-host")
    d.check(d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary2").rc == 0, "-u guest2 primary2")
    _healthy(d, "after the cancelled migration")
    d.say("and 17.3.1.1 can be run again")
    d.check(d.run("primary2", CLOVMMIGRATE, "-p", "guest2").rc == 0, "-p again")
    d.check(d.run("primary2", CLOVMMIGRATE, "-u", "guest2", "primary2").rc == 0, "-u again")
    _healthy(d, "at the end")


SCENARIOS: dict[str, tuple[Callable[[Demo], None], float]] = {
    # name: (procedure, time scale it runs at)
    "happy-path": (happy_path, 10.0),
    # 600 emulated seconds must pass: at 60 they take 10 real seconds (the runtime's real-time
    # floors keep CF and SF sane at that speed; see docs/runtime-design.md)
    "abort-recovery": (abort_recovery, 60.0),
    "early-start": (early_start, 60.0),
    "ssh-first-connection": (ssh_first_connection, 10.0),
    "spconfig-limit": (spconfig_limit, 10.0),
    "time-sync": (time_sync, 20.0),
    "cancelled": (cancelled, 10.0),
}


def _proc_state(pid: int | None) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, TypeError):
        return "gone"


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(
    out: TextIO,
    runner: Runner,
    time_scale: float | None = None,
    scenario: str = "happy-path",
    topology_ref: str = "figure-17-1",
) -> int:
    """Bring up a datacenter in a temporary home, run one scenario on it, tear it down.

    out -- where the transcript goes
    runner -- runs one admin command on a host (the CLI's ``run_command``)
    time_scale -- emulated seconds per real second; None: the scenario's own (:data:`SCENARIOS`)
    scenario -- a key of :data:`SCENARIOS`
    topology_ref -- figure-17-1 or a copy of it (other addresses, same names)
    """
    proc, default_scale = SCENARIOS[scenario]
    time_scale = time_scale or default_scale
    with tempfile.TemporaryDirectory(prefix="clovm-demo-") as tmp:
        home = Home(tmp)
        out.write(
            f"clovm demo {scenario}: bringing up the {topology_ref} datacenter in {tmp} (time scale {time_scale:g})\n"
        )
        out.flush()
        try:
            datacenter.up(home, topology_ref, time_scale)
        except ClovmError as e:
            out.write(f"clovm demo: cannot bring up the datacenter: {e.message}\n")
            return 1
        d = Demo(home, out, runner, scale=time_scale)
        previous = signal.signal(signal.SIGTERM, _interrupted)  # so that `finally` tears down
        try:
            proc(d)
        finally:
            datacenter.down(home)
            signal.signal(signal.SIGTERM, previous)
        out.write(f"\nclovm demo: {d.checks - len(d.failures)} of {d.checks} checks held; datacenter stopped\n")
        out.writelines(f"  FAILED: {f}\n" for f in d.failures)
        return 0 if not d.failures else 1
