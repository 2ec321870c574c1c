"""``clovm fault kill`` and ``clovm up --fresh`` on the command line (cli/main.py)."""

from __future__ import annotations

import pytest

from clovm.api.errors import ClovmError
from clovm.cli import main


def test_fault_kill_becomes_the_api_call() -> None:
    assert main._fault_call("kill", ["ldmd", "primary2"]) == ("kill", ("ldmd", "primary2"), {"at": None})
    assert main._fault_call("kill", ["xscfd", "m10-3", "--at", "hand-off"]) == (
        "kill",
        ("xscfd", "m10-3"),
        {"at": "hand-off"},
    )
    for bad in ([], ["ldmd"], ["ldmd", "primary2", "--at"], ["a", "b", "c"]):
        with pytest.raises(ClovmError) as e:
            main._fault_call("kill", bad)
        assert e.value.message.startswith("usage: clovm fault kill xscfd SERVER"), bad


def test_up_has_fresh() -> None:
    args = main.build_parser().parse_args(["up", "--home", "/x", "--fresh"])
    assert args.fresh is True
    assert main.build_parser().parse_args(["up", "--home", "/x"]).fresh is False
