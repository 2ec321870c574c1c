"""``clovm`` (cli/main.py): ``clovm fault``'s command line becomes typed api calls; ``status --json`` errors."""

from __future__ import annotations

import json

import pytest

from clovm.api.errors import ClovmError
from clovm.cli import main

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    "kind, args, call",
    [
        ("xscf-down", ["m10-1"], ("xscf_lan", ("m10-1",), {"up": False, "lans": [0, 1]})),
        ("xscf-up", ["m10-1", "--lan", "1"], ("xscf_lan", ("m10-1",), {"up": True, "lans": [1]})),
        ("partition", ["guest1", "--", "guest2"], ("partition", (["guest1"], ["guest2"]), {})),
        ("partition", ["guest1", "primary1"], ("partition", (["guest1", "primary1"], None), {})),
        ("heal", [], ("heal", (), {})),
        ("clock", ["m10-3", "+30"], ("clock", ("m10-3", 30.0), {})),
        ("migration-abort", ["guest2"], ("migration_abort", ("guest2",), {})),
        ("forget-xscf-key", ["guest1", "m10-3"], ("forget_xscf_key", ("guest1", "m10-3"), {})),
    ],
)
def test_fault_arguments_become_a_typed_call(kind, args, call):
    assert main._fault_call(kind, args) == call


@pytest.mark.parametrize(
    "kind, args, code, message",
    [
        ("xscf-down", ["m10-1", "--lan", "2"], "BAD_ARGUMENT", "usage: clovm fault xscf-down SERVER [--lan 0|1]"),
        ("xscf-down", [], "BAD_ARGUMENT", "usage: clovm fault xscf-down SERVER [--lan 0|1]"),
        ("partition", ["--", "guest2"], "BAD_ARGUMENT", "usage: clovm fault partition HOST... [-- HOST...]"),
        ("partition", ["guest1", "--"], "BAD_ARGUMENT", "usage: clovm fault partition HOST... [-- HOST...]"),
        ("heal", ["now"], "BAD_ARGUMENT", "usage: clovm fault heal"),
        ("clock", ["m10-3"], "BAD_ARGUMENT", "usage: clovm fault clock SERVER ±SECONDS"),
        ("clock", ["m10-3", "soon"], "BAD_ARGUMENT", "not a number of seconds: 'soon'"),
        ("clock", ["m10-3", "nan"], "BAD_ARGUMENT", "not a number of seconds: 'nan'"),
        ("migration-abort", [], "BAD_ARGUMENT", "usage: clovm fault migration-abort DOMAIN"),
        (
            "meteor",
            [],
            "UNKNOWN_FAULT",
            (
                "unknown fault 'meteor' (one of: xscf-down, xscf-up, partition, heal, clock, "
                "migration-abort, forget-xscf-key, kill, pause)"
            ),
        ),
    ],
)
def test_bad_fault_arguments(kind, args, code, message):
    with pytest.raises(ClovmError) as e:
        main._fault_call(kind, args)
    assert (e.value.code, e.value.message) == (code, message)


def test_status_json_of_no_datacenter_carries_the_code(tmp_path, capsys):
    assert main.main(["status", "--home", str(tmp_path), "--json"]) == 1
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["ok"] is False and doc["code"] == "NOT_RUNNING"
    assert cap.err.startswith("clovm status: ") and cap.err.count("\n") == 1
    assert main.main(["status", "--home", str(tmp_path)]) == 1
    assert capsys.readouterr().out == ""


class _GoneReader:
    """A stdout whose reader went away: flush raises EPIPE."""

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


class _Exited(Exception):
    pass


@pytest.mark.parametrize("product_command_ran", [True, False])
def test_run_skips_teardown_only_after_a_product_command(
    monkeypatch: pytest.MonkeyPatch, product_command_ran: bool
) -> None:
    """After `clovm exec` ran a product command, `clovm` leaves with os._exit(rc) (a reader that
    went away does not turn that into a traceback); every other command leaves with sys.exit(rc)."""
    exits: list[int] = []

    def fake_exit(rc: int) -> None:
        exits.append(rc)
        raise _Exited

    def fake_main() -> int:
        monkeypatch.setattr(main, "_PRODUCT_COMMAND_RAN", product_command_ran)
        return 3

    monkeypatch.setattr(main, "main", fake_main)
    monkeypatch.setattr(main.os, "_exit", fake_exit)
    monkeypatch.setattr(main.sys, "stdout", _GoneReader())
    if product_command_ran:
        with pytest.raises(_Exited):
            main.run()
        assert exits == [3]
    else:
        with pytest.raises(SystemExit) as e:
            main.run()
        assert e.value.code == 3 and exits == []
