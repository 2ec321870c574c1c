"""The processes of a home: which run, whether a pid is ours, stopping them, their logs.

Every process of a home carries ``--home ROOT`` on its command line, which is how a process is
recognised as ours before it is signalled (pid files can be stale, pids get reused). What runs is
recorded in the home: ``run/lock`` (written by :mod:`clovm.api.launch`), ``run/pids/*.pid``
(written by the daemons) and ``run/domains/*.json`` (by the ldmds).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..runtime.home import Home

STOP_TIMEOUT = 10.0  # real seconds between SIGTERM and SIGKILL
LOG_TAIL = 12  # log lines quoted when a daemon fails


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if len(argv) == 1 and " " in argv[0]:  # a forked daemon's title: its argv, shell-quoted (runtime.spawn)
        try:
            return shlex.split(argv[0])
        except ValueError:
            return argv
    return argv


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (reaps it if it is our child)."""
    if pid <= 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def of_home(pid: int, home: Home) -> bool:
    """True if ``pid`` is a live process started with ``--home`` this home."""
    if not alive(pid):
        return False
    argv = cmdline(pid)
    roots = {str(home.root), os.path.realpath(home.root)}
    return any(
        a == "--home" and i + 1 < len(argv) and os.path.realpath(argv[i + 1]) in roots for i, a in enumerate(argv)
    )


def describe(pid: int) -> str:
    """``xscfd m10-1 (pid 12, home /x)`` for a clovm daemon, else ``pid 12 (cmdline)``."""
    argv = cmdline(pid)
    mod = next((a.rsplit(".", 1)[-1] for a in argv if a.startswith("clovm.runtime.")), "")
    opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] in ("--home", "--name")}
    if mod and "--name" in opts:
        return f"{mod} {opts['--name']} (pid {pid}, home {opts.get('--home', '?')})"
    text = " ".join(argv)
    return f"pid {pid} ({text[:80]})" if text else f"pid {pid}"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def home_pids(home: Home) -> dict[str, int]:
    """``label -> pid`` of every live process of this home: pid files, placements, lock, /proc."""
    found: dict[str, int] = {}
    pid_dir = home.run_dir / "pids"
    for f in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else ():
        pid = _read_pid(f)
        if pid and of_home(pid, home):
            found[f.stem] = pid
    dom_dir = home.run_dir / "domains"
    for f in sorted(dom_dir.glob("*.json")) if dom_dir.is_dir() else ():
        rec = read_json(f)
        pid = rec.get("pid") if isinstance(rec, dict) else None
        if isinstance(pid, int) and pid not in found.values() and of_home(pid, home):
            found.setdefault(f"domain:{f.stem}", pid)
    lock = read_json(home.run_dir / "lock")
    if isinstance(lock, dict):
        for name, pid in (lock.get("daemons") or {}).items():
            if isinstance(pid, int) and pid not in found.values() and of_home(pid, home):
                found.setdefault(name, pid)
    known = set(found.values())
    for d in Path("/proc").iterdir():  # safety net: daemons whose records are gone
        if d.name.isdigit() and int(d.name) not in known and int(d.name) != os.getpid():
            pid = int(d.name)
            argv = cmdline(pid)
            if any(a.startswith("clovm.runtime.") for a in argv) and of_home(pid, home):
                opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--name"}
                found.setdefault(opts.get("--name", f"pid{pid}"), pid)
    return found


def starting_pid(home: Home) -> int | None:
    """The pid of an ``up`` still starting this home (from ``run/lock``), if it is alive."""
    lock = read_json(home.run_dir / "lock")
    pid = lock.get("starting") if isinstance(lock, dict) else None
    return pid if isinstance(pid, int) and pid != os.getpid() and alive(pid) else None


def signal_pid(pid: int, sig: int, group: bool) -> None:
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(home: Home, extra: Iterable[int] = ()) -> list[str]:
    """SIGTERM every process of the home, SIGKILL (process group) what is left after
    :data:`STOP_TIMEOUT`, then remove run-time leftovers. Returns one line per process."""
    procs = home_pids(home)
    for pid in extra:
        if of_home(pid, home) and pid not in procs.values():
            procs[describe(pid)] = pid
    labels = {pid: describe(pid).split(" (", 1)[0] for pid in procs.values()}
    lines: list[str] = []
    for name, pid in procs.items():
        signal_pid(pid, signal.SIGTERM, group=False)
        signal_pid(pid, signal.SIGCONT, group=False)  # a suspended domain must see its SIGTERM
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(alive(p) for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = {n for n, p in procs.items() if of_home(p, home)}
    for name in killed:
        signal_pid(procs[name], signal.SIGKILL, group=True)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(alive(p) for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, pid in procs.items():
        how = "killed" if name in killed else "stopped"
        lines.append(f"{how} {labels[pid]} (pid {pid})" + (": STILL ALIVE" if alive(pid) else ""))
    clean_run_state(home)
    return lines


def clean_run_state(home: Home) -> None:
    """Remove sockets, pid files, the supervisor's state, armed kills and the lock (no process
    of the home is alive). Placement files stay: where each guest domain runs outlives its
    process (the next ``clovm up`` boots it there; see ``Home.placement_file``)."""
    for sub, pattern in (("s", "*"), ("pids", "*.pid")):
        d = home.run_dir / sub
        if d.is_dir():
            for f in d.glob(pattern):
                f.unlink(missing_ok=True)
    for f in (home.run_dir / "lock", home.supervisor_file, home.armed_kills_file):
        f.unlink(missing_ok=True)


def log_tail(home: Home, name: str, n: int = LOG_TAIL) -> list[str]:
    """The last ``n`` lines of a daemon's log, structlog JSON lines shortened to their gist."""
    try:
        lines = home.log_file(name).read_text(errors="replace").splitlines()
    except OSError:
        return [f"(no log at {home.log_file(name)})"]
    out = []
    for line in lines[-n:]:
        rec = _read_json_text(line)
        if isinstance(rec, dict) and "event" in rec:
            exc = str(rec.pop("exception", "")).strip().splitlines()[-1:]
            rest = " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("event", "timestamp", "level"))
            line = f"{rec.get('level', '')}: {rec['event']} {rest}" + (f" -- {exc[0]}" if exc else "")
        out.append(line if len(line) <= 300 else line[:297] + "...")
    return out or [f"(empty log {home.log_file(name)})"]


def _read_json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
