"""`clovm migrate` on a host: usage errors are one line with the usage, rc 2, and contact nothing."""

from __future__ import annotations

import io

import pytest

from clovm.cli import admin


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["migrate"], "DOMAIN and TARGET-HOST are required"),
        (["migrate", "guest2"], "DOMAIN and TARGET-HOST are required"),
        (["migrate", "guest2", "primary3", "extra"], "unexpected operand 'extra'"),
        (["migrate", "--resume", "--status"], "cannot be combined"),
        (["migrate", "--resume", "--scoped"], "option --scoped cannot be combined with --resume"),
        (["migrate", "--status", "a", "b"], "unexpected operand 'b'"),
        (["migrate", "guest2", "primary3", "--dry-run", "--timeline", "x.svg"], "a dry run draws no timeline"),
        (["migrate", "--bogus"], "option --bogus not recognized"),
        (["frobnicate"], "unknown subcommand 'frobnicate'"),
    ],
)
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
        "run", "guest2", "primary3", True, False, ""
    )
    assert admin._parse_clovm(["migrate", "--resume"]).action == "resume"
    assert admin._parse_clovm(["migrate", "--status", "guest2"]) == admin._MigrateArgs(
        "status", "guest2", "", False, False, ""
    )
    assert admin._parse_clovm(["migrate", "--resume", "guest2", "--timeline", "t.svg"]).timeline == "t.svg"


def test_no_datacenter_is_one_line_rc_1(tmp_path):
    err = io.StringIO()
    rc = admin.main_clovm(["migrate", "guest2", "primary3"], host="primary2", home=tmp_path, out=io.StringIO(), err=err)
    assert rc == 1 and err.getvalue().count("\n") == 1 and "clovm up" in err.getvalue()


# ---- --json ---------------------------------------------------------------------------------------------------
class _FakeEnv:
    """A HomeEnv stand-in: figure-17-1, and a clovm migrate machine that says one line and finishes."""

    def __init__(self, finished, journal=None) -> None:
        self.finished, self.journal = finished, journal

    def topology(self):
        from clovm import topology

        return topology.load("figure-17-1")

    def safe_migration(self, request, out, err):
        out.write("clovm migrate: preflight passed: ...\n")
        return self.finished, self.journal

    def recorded_migrations(self, host, *, finished=False):
        return ["guest2"]

    def migrate_journal(self, host, domain):
        return "var/opt/FJSVcluster/clovmmigrate/guest2.migrate-last.json", self.journal


def _json_run(monkeypatch, env, argv):
    import json

    monkeypatch.setattr(admin, "HomeEnv", lambda home: env)
    out, err = io.StringIO(), io.StringIO()
    rc = admin.main_clovm(argv, host="primary2", home="/nonexistent", out=out, err=err)
    return rc, json.loads(out.getvalue()), err.getvalue()


def test_json_of_a_refusal_carries_its_code_and_the_lines_go_to_stderr(monkeypatch):
    from clovm.core import codes
    from clovm.core.migration import Finished

    text = "clovm migrate: the preflight found 1 problem(s); nothing was changed:\n  - cfguest1 is DOWN."
    rc, doc, err = _json_run(
        monkeypatch, _FakeEnv(Finished(3, codes.PREFLIGHT_FAILED, text)), ["migrate", "guest2", "primary3", "--json"]
    )
    assert rc == 3 and doc["rc"] == 3 and doc["ok"] is False
    assert doc["code"] == "PREFLIGHT_FAILED" and doc["message"] == text and doc["domain"] == "guest2"
    assert doc["step"] is None and doc["timeline"] is None
    assert err == "clovm migrate: preflight passed: ...\n"


def test_json_of_a_migration_has_the_journals_state(monkeypatch):
    from clovm.core.migration import Finished

    journal = {
        "step": "done",
        "outcome": "migrated",
        "complete_to": "primary3",
        "result": "ok",
        "proof": [],
        "source": "primary2",
        "target": "primary3",
        "events": [],
        "progress": [],
        "samples": [],
        "nodes": ["cfguest1", "cfguest2"],
        "timeouts": {},
        "domain": "guest2",
        "node": "cfguest2",
    }
    rc, doc, err = _json_run(
        monkeypatch,
        _FakeEnv(Finished(0, "", "clovm migrate: guest2 migrated"), journal),
        ["migrate", "guest2", "primary3", "--json"],
    )
    assert rc == 0 and doc["ok"] is True and doc["code"] is None
    assert (doc["step"], doc["outcome"], doc["complete_to"], doc["result"]) == ("done", "migrated", "primary3", "ok")
    assert "clovm migrate guest2" in err  # the text summary, for the operator
    rc, doc, _ = _json_run(monkeypatch, _FakeEnv(None, journal), ["migrate", "--status", "--json"])
    assert rc == 0 and doc["migrations"][0]["domain"] == "guest2" and doc["migrations"][0]["outcome"] == "migrated"


def test_json_of_usage_and_frame_errors(monkeypatch, tmp_path):
    import json

    out, err = io.StringIO(), io.StringIO()
    assert admin.main_clovm(["migrate", "guest2", "--json"], host="primary2", home=tmp_path, out=out, err=err) == 2
    assert json.loads(out.getvalue())["code"] == "BAD_USAGE" and err.getvalue().count("\n") == 1
    out, err = io.StringIO(), io.StringIO()
    assert (
        admin.main_clovm(["migrate", "guest2", "primary3", "--json"], host="primary2", home=tmp_path, out=out, err=err)
        == 1
    )
    doc = json.loads(out.getvalue())
    assert (doc["rc"], doc["code"]) == (1, "NOT_RUNNING") and "clovm up" in doc["message"]
    assert err.getvalue() == f"clovm: no datacenter in {tmp_path} (start one with clovm up)\n"
    out = io.StringIO()
    assert (
        admin.main_clovm(["migrate", "guest2", "primary3"], host="guest1", home=tmp_path, out=out, err=io.StringIO())
        == 1
    )
    assert out.getvalue() == ""  # no JSON without --json
