"""runtime.spawn: a daemon forked from a preloaded interpreter is a proper daemon."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import socket
import sys
import time
import types
from pathlib import Path

import pytest

from clovm.api.datacenter import _cmdline
from clovm.runtime import spawn

PROBE = "clovm.runtime._spawn_probe"  # a daemon module that only exists in this process (and its forks)


def _probe_main(argv: list[str]) -> int:
    home = Path(argv[argv.index("--home") + 1])
    fds = {}
    for n in os.listdir("/proc/self/fd"):
        try:
            fds[n] = os.readlink(f"/proc/self/fd/{n}")
        except OSError:
            pass
    (home / "probe.json").write_text(
        json.dumps(
            {
                "sid": os.getsid(0),
                "pid": os.getpid(),
                "cwd": os.getcwd(),
                "fds": fds,
                "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
            }
        )
    )
    print("READY", flush=True)
    if "--name" in argv and argv[argv.index("--name") + 1] == "exits":
        return 7
    time.sleep(60)
    return 0


@pytest.fixture
def probe_module() -> None:
    mod = types.ModuleType(PROBE)
    mod.main = _probe_main  # type: ignore[attr-defined]
    sys.modules[PROBE] = mod
    yield
    del sys.modules[PROBE]


def _ready(p: spawn.Forked) -> bytes:
    assert p.stdout is not None
    r, _, _ = select.select([p.stdout], [], [], 10)
    assert r, "no READY within 10 s"
    return p.stdout.readline()


@pytest.mark.timeout(30)
def test_forked_daemon_has_its_own_session_title_stdio_and_none_of_the_parents_sockets(tmp_path, probe_module):
    listener = socket.create_server(("127.66.250.1", 0))  # a parent's listening port (an ldmd's)
    port = listener.getsockname()[1]
    log = tmp_path / "log" / "probe.log"
    p = spawn.fork_daemon("_spawn_probe", tmp_path, "probe one", log, ready_pipe=True, cwd=tmp_path)
    try:
        assert _ready(p).strip() == b"READY"
        info = json.loads((tmp_path / "probe.json").read_text())
        assert info["pid"] == p.pid and info["sid"] == p.pid  # a session of its own
        assert info["cwd"] == str(tmp_path) and info["sigterm_default"]
        # /proc/PID/cmdline is the argv it would have had as its own interpreter (quoted: "probe one")
        assert _cmdline(p.pid) == spawn.daemon_args("_spawn_probe", tmp_path, "probe one")
        assert shlex.split(Path(f"/proc/{p.pid}/cmdline").read_bytes().rstrip(b"\0").decode())[-1] == "probe one"
        # stdin /dev/null, stderr the log; every inherited descriptor now points at /dev/null
        assert info["fds"]["0"] == "/dev/null" and info["fds"]["2"] == str(log)
        assert not any(
            "socket:" in target for target in info["fds"].values() if target != info["fds"]["1"]
        )  # (1 is the READY pipe)
        listener.close()
        socket.create_server(("127.66.250.1", port)).close()  # the port is free: the child did not keep it
        assert p.poll() is None
    finally:
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(10) == -signal.SIGTERM
        listener.close()
    assert p.poll() == -signal.SIGTERM  # reaped once, the result stays


@pytest.mark.timeout(30)
def test_forked_daemon_exit_code_and_log_without_ready_pipe(tmp_path, probe_module):
    log = tmp_path / "probe.log"
    p = spawn.fork_daemon("_spawn_probe", tmp_path, "exits", log, ready_pipe=False)
    assert p.stdout is None
    assert p.wait(10) == 7
    assert log.read_text().strip() == "READY"  # without a pipe, stdout is the log


def test_exec_mode_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.delenv(spawn.SPAWN_ENV, raising=False)
    assert spawn.forking()
    monkeypatch.setenv(spawn.SPAWN_ENV, "exec")
    assert not spawn.forking()
