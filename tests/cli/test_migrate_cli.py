"""`clovm migrate` on a host: usage errors are one line with the usage, rc 2, and contact nothing."""

from __future__ import annotations

import io

import pytest

from clovm.cli import admin


@pytest.mark.parametrize("argv, needle", [
    (["migrate"], "DOMAIN and TARGET-HOST are required"),
    (["migrate", "guest2"], "DOMAIN and TARGET-HOST are required"),
    (["migrate", "guest2", "primary3", "extra"], "unexpected operand 'extra'"),
    (["migrate", "--resume", "--status"], "cannot be combined"),
    (["migrate", "--resume", "--scoped"], "option --scoped cannot be combined with --resume"),
    (["migrate", "--status", "a", "b"], "unexpected operand 'b'"),
    (["migrate", "guest2", "primary3", "--dry-run", "--timeline", "x.svg"], "a dry run draws no timeline"),
    (["migrate", "--bogus"], "option --bogus not recognized"),
    (["frobnicate"], "unknown subcommand 'frobnicate'"),
])
def test_bad_usage_is_one_line_rc_2(tmp_path, argv, needle):
    out, err = io.StringIO(), io.StringIO()
    rc = admin.main_clovm(argv, host="primary2", home=tmp_path / "nohome", out=out, err=err)
    assert rc == 2 and out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clovm: ") and needle in lines[0], lines
    assert "usage: clovm migrate DOMAIN TARGET-HOST" in lines[0]
    assert not (tmp_path / "nohome").exists()


def test_parse_of_each_form():
    assert admin._parse_clovm(["migrate", "guest2", "primary3", "--scoped"]) == admin._MigrateArgs(
        "run", "guest2", "primary3", True, False, "")
    assert admin._parse_clovm(["migrate", "--resume"]).action == "resume"
    assert admin._parse_clovm(["migrate", "--status", "guest2"]) == admin._MigrateArgs(
        "status", "guest2", "", False, False, "")
    assert admin._parse_clovm(["migrate", "--resume", "guest2", "--timeline", "t.svg"]).timeline == "t.svg"


def test_no_datacenter_is_one_line_rc_1(tmp_path):
    err = io.StringIO()
    rc = admin.main_clovm(["migrate", "guest2", "primary3"], host="primary2", home=tmp_path, out=io.StringIO(), err=err)
    assert rc == 1 and err.getvalue().count("\n") == 1 and "clovm up" in err.getvalue()
