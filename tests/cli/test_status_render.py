"""``clovm status`` as tables (cli/status.py): a dead or restarting daemon is shown as it is, with
why, and what a daemon could not answer is an ``error:`` cell — never a raw dict."""

from __future__ import annotations

from clovm.cli.status import render_status, table


def _doc() -> dict:
    return {
        "home": "/h",
        "time_scale": 10.0,
        "daemons": [
            {"daemon": "xscfd", "name": "m10-1", "pid": 11, "state": "running", "code": None, "message": ""},
            {
                "daemon": "ldmd",
                "name": "primary2",
                "pid": None,
                "state": "restarting",
                "code": "RESTARTING",
                "message": "ldmd primary2: being restarted by the supervisor (last: exited; 0 restart(s) so far)",
            },
            {
                "daemon": "nodeagent",
                "name": "guest2",
                "pid": None,
                "state": "down",
                "code": "NOT_RUNNING",
                "message": "nodeagent guest2: no socket /h/run/s/n-guest2",
            },
        ],
        "supervisor": {
            "name": "datacenter",
            "pid": 9,
            "state": "running",
            "daemons": {"ldmd-primary2": {"state": "restarting", "restarts": 0}},
        },
        "servers": [
            {
                "name": "m10-1",
                "xscfd": "running",
                "lan0": "a",
                "lan1": "b",
                "ppars": {"0": {"guest1": "Solaris running"}},
            }
        ],
        "control_domains": [
            {"name": "primary2", "server": "m10-2", "ppar": 0, "ldmd": "restarting", "domains": None},
            {
                "name": "primary3",
                "server": "m10-3",
                "ppar": 1,
                "ldmd": "not answering",
                "domains": {"error": "UNREACHABLE: no answer within 10 s"},
            },
        ],
        "guests": [{"name": "guest2", "control_domain": "primary3", "server": "m10-3", "pid": 5, "running": False}],
        "nodes": {
            "cfguest1": {
                "host": "guest1",
                "local_state": "UP",
                "view": {"cfguest2": "LEFTCLUSTER"},
                "timeout": 10,
                "sf": "running",
                "apps": {"app1": "cfguest1"},
            },
            "cfguest2": {"host": "guest2", "error": "not running"},
        },
        "migrations": [
            {"domain": "guest2", "control_domain": "primary3", "role": "target", "flags": "-----t", "progress": None}
        ],
        "problems": [
            {"daemon": "ldmd", "name": "primary2", "code": "RESTARTING", "message": "ldmd primary2: being restarted"}
        ],
        "ok": False,
        "code": "DEGRADED",
    }


def test_every_daemon_in_a_table_with_its_true_state() -> None:
    out = render_status(_doc())
    assert "{" not in out and "}" not in out
    rows = {tuple(ln.split()[:2]): ln.split() for ln in out.splitlines() if ln.split()}
    assert rows[("ldmd", "primary2")][2:4] == ["-", "restarting"]
    assert rows[("nodeagent", "guest2")][3] == "down"
    assert rows[("supervisor", "datacenter")][3] == "running"
    assert "error: UNREACHABLE: no answer within 10 s" in out
    assert "cfguest2  guest2" in out and "error: not running" in out
    assert "1 problem(s) (DEGRADED):" in out and "[RESTARTING]" in out
    assert "MIGRATING" in out


def test_a_healthy_status_says_so_and_columns_line_up() -> None:
    doc = _doc()
    doc.update(problems=[], ok=True, code=None, migrations=[])
    out = render_status(doc)
    assert out.endswith("ok: every daemon runs and answers") and "MIGRATING" not in out
    lines = table(["A", "BB"], [["xxx", "y"], [None, "z"]])
    assert lines == ["A    BB", "xxx  y", "-    z"]
