"""The common main() of every daemon: pid file, log file, SIGTERM, READY handshake."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..fsutil import atomic_write
from .home import Home

Ready = Callable[[], None]


def _configure_logging(home: Home, name: str) -> None:
    import structlog  # (here: the CLI imports this module for daemon_key, and structlog is slow to import)

    path = home.log_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a", buffering=1)  # noqa: SIM115 - the log stays open for the life of the daemon
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=f),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


# ---- armed kills (``clovm fault kill DAEMON HOST --at POINT``): a test-only fault hook ------------
# Off unless ``Home.armed_kills_file`` exists (only ``clovm fault kill --at`` writes it). The points
# are moments of a live migration that a test cannot hit from outside, reached by the process that
# lives through them: an ldmd at the migration phases it drives (the source at ``checks``,
# ``pre-copy``, ``suspend`` and ``hand-off`` — the Handoff queued, not sent yet —, the target at
# ``taken-over`` — it runs the guest, its acknowledgement not sent yet), ``clovm migrate`` after
# each journal write (its steps and ``CLOVM_MIGRATE_KILL_AT``'s points). The first process to reach
# an armed point SIGKILLs the daemon named (itself included) and disarms it.
LDMD_POINTS = ("checks", "pre-copy", "suspend", "hand-off", "taken-over")
MIGRATE_POINTS = (
    "prepare",
    "prepared",
    "migrate",
    "migrating",
    "handed-off",
    "recover",
    "complete",
    "updating",
    "prove",
)
KILL_POINTS = LDMD_POINTS + MIGRATE_POINTS
MIGRATE_VICTIM = "migrate"  # the clovm migrate process itself (only it can reach its own points)


def victim_pid(home: Home, victim: str) -> int | None:
    """The pid of daemon ``victim`` (a daemon key: ``ldmd-primary2``; a guest's node agent is its
    domain process, found in its placement file)."""
    try:
        return int(home.pid_file(victim).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if victim.startswith("nodeagent-"):
        try:
            pid = json.loads(home.placement_file(victim.removeprefix("nodeagent-")).read_text()).get("pid")
        except (OSError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) else None
    return None


def fire_armed_kills(home: Home, points: Iterable[str], me: str) -> list[dict[str, Any]]:
    """Carry out (and disarm) the kills armed for any of ``points``; ``me`` is the calling
    process's daemon key (or :data:`MIGRATE_VICTIM`). Returns the entries fired; SIGKILLs the
    caller last if it is a victim (then it does not return)."""
    path = home.armed_kills_file
    if not path.exists():
        return []
    wanted = set(points)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        entries = entries if isinstance(entries, list) else []
        fire = [
            e
            for e in entries
            if isinstance(e, dict)
            and e.get("point") in wanted
            and (e.get("daemon") != MIGRATE_VICTIM or me == MIGRATE_VICTIM)
        ]
        if not fire:
            return []
        keep = [e for e in entries if e not in fire]
        if keep:
            atomic_write(path, json.dumps(keep) + "\n")
        else:
            path.unlink(missing_ok=True)
    mine = False
    for e in fire:
        victim = str(e.get("daemon"))
        if victim == me:
            mine = True
            continue
        pid = victim_pid(home, victim)
        if pid is not None and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if mine:
        os.kill(os.getpid(), signal.SIGKILL)
    return fire


def daemon_key(prog: str, name: str) -> str:
    """The name of a daemon's pid and log files: ``ldmd-primary1``, ``nodeagent-guest2``."""
    return f"{prog}-{name}"


def parse_args(prog: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--home", required=True)
    p.add_argument("--name", required=True)
    return p.parse_args(argv)


def daemon_main(
    prog: str, run: Callable[[Home, str, Ready, asyncio.Event], Awaitable[None]], argv: list[str] | None = None
) -> int:
    """Run ``run(home, name, ready, stop)`` until SIGTERM/SIGINT sets ``stop``.

    ``ready()`` prints ``READY`` on stdout (the launcher waits for it) and writes the pid file.
    """
    args = parse_args(prog, argv)
    home = Home(args.home)
    key = daemon_key(prog, args.name)  # a control domain runs both an ldmd and a nodeagent
    _configure_logging(home, key)
    import structlog

    log = structlog.get_logger().bind(daemon=prog, name=args.name)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready() -> None:
            # Everything built while starting (modules, MIBs, keys: ~50,000 objects in a node
            # agent) leaves the collector's sight. A full collection then takes well under a
            # millisecond instead of ~30 ms, which at --time-scale 60 is 2 s of stalled heartbeats.
            gc.freeze()
            atomic_write(home.pid_file(key), f"{os.getpid()}\n")
            print("READY", flush=True)
            log.info("ready")

        await run(home, args.name, ready, stop)

    try:
        asyncio.run(main())
    except Exception:
        log.exception("daemon failed")
        print(f"{prog} {args.name}: failed; see {home.log_file(key)}", file=sys.stderr, flush=True)
        return 1
    finally:
        try:
            home.pid_file(key).unlink()
        except FileNotFoundError:
            pass
    log.info("stopped")
    return 0
