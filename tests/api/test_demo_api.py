"""``clovm demo``'s steps (clovm.api.demo) over an injected command runner: no datacenter needed."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TextIO

import pytest

from clovm import settings
from clovm.api import demo
from clovm.runtime.home import Home

pytestmark = pytest.mark.timeout(30)

CFTOOL = (
    "Node        Number State       Os      Cpu\n"
    "cfguest1    1      UP          Solaris Sparc\n"
    "cfguest2    2      DOWN        Solaris Sparc\n"
)


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str]] = []

    def __call__(self, cmd: str, argv: Sequence[str], host: str, home: Home, out: TextIO, err: TextIO) -> int:
        self.calls.append((cmd, list(argv), host))
        if cmd == settings.CFTOOL_PATH:
            out.write(CFTOOL)
            return 0
        if cmd == settings.CFSET_PATH:
            out.write("From cfset configuration in CF module:\nKEY: CLUSTER_TIMEOUT  VALUE: 600\n")
            return 0
        err.write("sdtool: The shutdown facility is not running; start it with /opt/SMAW/bin/sdtool -b\n")
        return 1


def test_a_command_is_shown_behind_its_host_prompt(home: Home) -> None:
    out, runner = io.StringIO(), FakeRunner()
    d = demo.Demo(home, out, runner)
    r = d.run("guest2", demo.SDTOOL, "-s")
    assert r.rc == 1 and runner.calls == [("/opt/SMAW/bin/sdtool", ["-s"], "guest2")]
    assert out.getvalue() == (
        "guest2 # /opt/SMAW/bin/sdtool -s\n"
        "sdtool: The shutdown facility is not running; start it with /opt/SMAW/bin/sdtool -b\n"
        "(exit status 1)\n"
    )
    d.run("guest1", demo.CFTOOL, "-n", show=False)
    assert out.getvalue().count("#") == 1


def test_the_checks_read_the_commands_output(home: Home) -> None:
    d = demo.Demo(home, io.StringIO(), FakeRunner())
    assert demo._states(d, "guest1") == {"cfguest1": "UP", "cfguest2": "DOWN"}
    assert demo._timeout(d, "guest1") == "600"
    assert not demo._sf_all_worked(d, "guest1")
    assert d.check(False, "something") is False and d.failures == ["something"] and d.checks == 1
    assert "  CHECK FAILED: something\n" in d.out.getvalue()  # type: ignore[attr-defined]


def test_the_product_paths_come_from_settings() -> None:
    assert {demo.CLOVMMIGRATE, demo.CLSNMPSETUP, demo.SDTOOL, demo.CFTOOL, demo.CFSET} <= set(settings.COMMAND_PATHS)
    assert settings.COMMAND_PATHS[demo.CLOVMMIGRATE] == "clovmmigrate"
