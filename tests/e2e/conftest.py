"""Fixtures of the end-to-end tier: real ``clovm`` processes on loopback, one home per test.

* ``no_leftovers`` (autouse): after the test, no process whose command line mentions the test's
  temporary directory may survive; survivors are SIGKILLed and the test fails.
* ``datacenter``: a factory that runs ``clovm up --home TMP/NAME --time-scale 10`` as a
  subprocess on a copy of the topology moved to this xdist worker's addresses
  (:func:`worker_topology`, ``tests/conftest.py``'s ``net``) and ALWAYS runs ``clovm down`` on
  that home in teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest

from helpers import WaitTimeout, wait_until
from xdist_net import net

TIME_SCALE = "10"


def clovm(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``clovm ARGS`` (this interpreter) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "clovm.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        stdin=subprocess.DEVNULL,
    )


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of every process (but this one) whose command line contains ``text``."""
    found: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            raw = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if text in cmd and state not in ("Z", "X"):
            found[int(d.name)] = cmd
    return found


def poll(check: Callable[[], object], within: float, every: float = 0.2) -> bool:
    """``helpers.wait_until`` as a question, for a branch (``if poll(...)``) or an assertion with
    its own report (``assert poll(...), report``): True as soon as ``check()`` is truthy, False
    once ``within`` s passed."""
    try:
        wait_until(check, within, every)
    except WaitTimeout:
        return False
    return True


def socket_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_socket()] if home.exists() else []


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    mark = str(tmp_path) + os.sep
    poll(lambda: not processes_mentioning(mark), 5, every=0.1)  # the stopping ones may take a moment
    left = processes_mentioning(mark)
    for pid in left:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, "processes left running:\n" + "\n".join(f"  {p}: {c}" for p, c in left.items())


@dataclass
class Datacenter:
    home: Path
    up: subprocess.CompletedProcess[str]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``clovm CMD --home HOME ARGS`` (the home goes right after the subcommand)."""
        return clovm(args[0], "--home", str(self.home), *args[1:], timeout=timeout)

    def exec(self, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("exec", host, "--", *command, timeout=timeout)


def worker_topology(root: Path, ref: str) -> Path:
    """A copy of topology ``ref`` (built-in name or file) on this xdist worker's addresses."""
    path = Path(ref)
    if path.exists():
        text, stem = path.read_text(), path.stem
    else:
        text, stem = (resources.files("clovm.topologies") / f"{ref}.toml").read_text(), ref
    out = root / f"{stem}.worker.toml"
    out.write_text(net(text))
    return out


@dataclass
class _Factory:
    root: Path
    homes: list[Path] = field(default_factory=list)

    def __call__(self, name: str = "dc", topology: str | None = "figure-17-1", *extra: str) -> Datacenter:
        home = self.root / name
        self.homes.append(home)
        args = ["up", "--home", str(home), "--time-scale", TIME_SCALE, *extra]
        if topology is not None:
            args += ["--topology", str(worker_topology(self.root, topology))]
        return Datacenter(home, clovm(*args, timeout=150))


@pytest.fixture
def datacenter(tmp_path: Path, no_leftovers: None) -> Iterator[Callable[..., Datacenter]]:
    factory = _Factory(tmp_path)
    try:
        yield factory
    finally:
        for home in factory.homes:
            clovm("down", "--home", str(home), timeout=60)


_THIS = sys.modules[__name__]


def pytest_collectstart(collector: pytest.Collector) -> None:
    """The modules of this directory import their helpers with ``from conftest import ...``. When
    pytest is given several test directories (``pytest tests/e2e tests/api``), it loads every
    directory's conftest.py up front under the one name ``conftest``, and the last one wins: make
    it this one again before a module of this directory is imported."""
    path = getattr(collector, "path", None)
    if path is not None and Path(path).parent == Path(__file__).parent:
        sys.modules["conftest"] = _THIS
