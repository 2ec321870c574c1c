"""The product-command use cases (clovm.api.commands) over a fake Env: no daemon, no socket."""

from __future__ import annotations

import io
from typing import Any, TextIO

import pytest

from clovm import topology
from clovm.api import commands
from clovm.api.dto import CftoolRow, HvdispRow, SdtoolRow
from clovm.api.errors import ClovmError
from clovm.core import codes
from clovm.core import migration as mig
from clovm.core import safemigrate as sm
from clovm.core.sfconfig import XscfEntry

pytestmark = pytest.mark.timeout(30)


class FakeEnv:
    """Answers scripted per (host, daemon, op); records every call and every machine run."""

    def __init__(self, topo: topology.Topology | None) -> None:
        self.topo = topo
        self.answers: dict[tuple[str, str, str], Any] = {}
        self.calls: list[tuple[str, str, str, float, dict[str, Any]]] = []
        self.runs: list[Any] = []
        self.finished = mig.Finished(0, "", "done")
        self.journal: dict[str, Any] | None = {"step": "done", "outcome": "migrated"}
        self.recorded: list[str] = []
        self.journals: dict[str, Any] = {}

    def topology(self) -> topology.Topology:
        if self.topo is None:
            raise ClovmError(codes.NOT_RUNNING, "no datacenter in /nowhere (start one with clovm up)")
        return self.topo

    def call(self, host: str, daemon: str, op: str, /, *, timeout: float = 10.0, **args: Any) -> Any:
        self.calls.append((host, daemon, op, timeout, args))
        value = self.answers[(host, daemon, op)]
        if isinstance(value, ClovmError):
            raise value
        return value(args) if callable(value) else value

    def clovmmigrate(self, request: mig.Request, out: TextIO, err: TextIO) -> mig.Finished:
        self.runs.append(request)
        out.write("a line of the machine\n")
        return self.finished

    def safe_migration(self, request: sm.MigrateRequest, out: TextIO, err: TextIO) -> tuple[mig.Finished, Any]:
        self.runs.append(request)
        return self.finished, self.journal

    def recorded_migrations(self, host: str, *, finished: bool = False) -> list[str]:
        return list(self.recorded)

    def migrate_journal(self, host: str, domain: str) -> tuple[str, dict[str, Any]] | None:
        j = self.journals.get(domain)
        if isinstance(j, Exception):
            raise j
        return None if j is None else (f"var/opt/FJSVcluster/clovmmigrate/{domain}.migrate.json", j)


@pytest.fixture
def env(topo: topology.Topology) -> FakeEnv:
    return FakeEnv(topo)


def _code(excinfo: pytest.ExceptionInfo[ClovmError]) -> str:
    return excinfo.value.code


# ---- the host check ----------------------------------------------------------------------------------------
def test_every_command_checks_the_datacenter_and_the_host_first(env: FakeEnv) -> None:
    with pytest.raises(ClovmError) as e:
        commands.cftool_nodes(env, "nohost")
    assert _code(e) == codes.UNKNOWN_HOST and e.value.message == "unknown host nohost (see clovm status)"
    env.topo = None
    with pytest.raises(ClovmError) as e:
        commands.hvdisp(env, "guest1")
    assert _code(e) == codes.NOT_RUNNING
    assert env.calls == []


@pytest.mark.parametrize(
    "call",
    [
        lambda env: commands.ldm(env, "guest1", ["list"]),
        lambda env: commands.clovmmigrate(env, "guest1", "prepare", "guest2", out=io.StringIO(), err=io.StringIO()),
        lambda env: commands.migrate(env, "guest1", "guest2", "primary3", out=io.StringIO(), err=io.StringIO()),
        lambda env: commands.migrate_status(env, "guest1"),
    ],
)
def test_control_domain_commands_refuse_a_guest(env: FakeEnv, call: Any) -> None:
    with pytest.raises(ClovmError) as e:
        call(env)
    assert _code(e) == codes.NOT_A_CONTROL_DOMAIN
    assert env.calls == [] and env.runs == []


# ---- CF, SF, RMS --------------------------------------------------------------------------------------------
def test_cftool_rows_from_objects_and_arrays(env: FakeEnv) -> None:
    env.answers[("guest1", "node", "cftool_n")] = [
        {"node": "cfguest1", "number": 1, "state": "UP"},
        ["cfguest2", 2, "LEFTCLUSTER"],
    ]
    assert commands.cftool_nodes(env, "guest1") == [
        CftoolRow("cfguest1", 1, "UP"),
        CftoolRow("cfguest2", 2, "LEFTCLUSTER"),
    ]


def test_a_malformed_answer_is_bad_answer(env: FakeEnv) -> None:
    env.answers[("guest1", "node", "cftool_n")] = [["cfguest1"]]
    with pytest.raises(ClovmError) as e:
        commands.cftool_nodes(env, "guest1")
    assert _code(e) == codes.BAD_ANSWER and "unexpected cftool_n answer" in e.value.message


def test_cfset_values_get_and_reread(env: FakeEnv) -> None:
    env.answers[("guest1", "node", "cfset_a")] = [["CLUSTER_TIMEOUT", "10"], ["CFCP", "cfcp"]]
    assert commands.cfset_values(env, "guest1") == {"CLUSTER_TIMEOUT": "10", "CFCP": "cfcp"}
    assert commands.cfset_get(env, "guest1", "CLUSTER_TIMEOUT") == "10"
    with pytest.raises(ClovmError) as e:
        commands.cfset_get(env, "guest1", "NOPE")
    assert _code(e) == codes.NOT_SET and e.value.message == "NOPE is not set in the CF module (see cfset -a)"
    env.answers[("guest1", "node", "cfset_r")] = None
    commands.cfset_reread(env, "guest1")
    assert env.calls[-1][2] == "cfset_r"


@pytest.mark.parametrize(
    "answer",
    [
        None,
        {"running": False, "rows": []},
        ClovmError(codes.SF_NOT_RUNNING, "the shutdown facility is not running"),
        ClovmError(codes.NOT_RUNNING, "not running"),
    ],
)
def test_sdtool_status_without_sf_is_sf_not_running(env: FakeEnv, answer: Any) -> None:
    env.answers[("guest2", "node", "sdtool")] = answer
    with pytest.raises(ClovmError) as e:
        commands.sdtool_status(env, "guest2")
    assert _code(e) == codes.SF_NOT_RUNNING


def test_sdtool_status_rows_and_other_errors_pass_through(env: FakeEnv) -> None:
    row = ["cfguest1", "SA_xscfsnmpg0p", "Idle", "Unknown", "TestWorked", "InitWorked"]
    env.answers[("guest2", "node", "sdtool")] = {"running": True, "rows": [row]}
    assert commands.sdtool_status(env, "guest2") == [SdtoolRow(*row)]
    assert env.calls[-1][4] == {"flag": "s"}
    env.answers[("guest2", "node", "sdtool")] = ClovmError(codes.UNREACHABLE, "cannot reach ...")
    with pytest.raises(ClovmError) as e:
        commands.sdtool_status(env, "guest2")
    assert _code(e) == codes.UNREACHABLE


def test_sdtool_control_returns_the_nodes_message(env: FakeEnv) -> None:
    env.answers[("guest2", "node", "sdtool")] = lambda args: "rcsd started\n" if args["flag"] == "b" else None
    assert commands.sdtool_control(env, "guest2", "b") == "rcsd started"
    assert commands.sdtool_control(env, "guest2", "e") == ""
    with pytest.raises(ClovmError) as e:
        commands.sdtool_control(env, "guest2", "s")
    assert _code(e) == codes.BAD_ARGUMENT


def test_clsnmpsetup_entries(env: FakeEnv) -> None:
    env.answers[("guest1", "node", "clsnmpsetup_l")] = [
        {"cf_name": "cfguest1", "ppar_id": 0, "domain": "guest1", "lan0": "10.0.0.1", "lan1": "10.0.1.1"}
    ]
    assert commands.clsnmpsetup_entries(env, "guest1") == [XscfEntry("cfguest1", 0, "guest1", "10.0.0.1", "10.0.1.1")]


def test_hvdisp_with_and_without_the_local_system(env: FakeEnv) -> None:
    env.answers[("guest1", "node", "hvdisp")] = {
        "local_system": "cfguest1RMS",
        "rows": [["app1", "userApplication", "cfguest1RMS", "Online"]],
    }
    hv = commands.hvdisp(env, "guest1")
    assert hv.local_system == "cfguest1RMS" and hv.rows == [
        HvdispRow("app1", "userApplication", "cfguest1RMS", "Online")
    ]
    env.answers[("guest1", "node", "hvdisp")] = []
    assert commands.hvdisp(env, "guest1").local_system == ""


# ---- control domains ---------------------------------------------------------------------------------------
def test_ldm_passes_argv_with_a_long_timeout_for_migrations(env: FakeEnv) -> None:
    env.answers[("primary2", "ldmd", "ldm")] = {"rc": 1, "stdout": "", "stderr": "Domain x not found\n"}
    r = commands.ldm(env, "primary2", ["list", "x"])
    assert (r.rc, r.stdout, r.stderr) == (1, "", "Domain x not found\n")
    assert env.calls[-1][3:] == (commands.LDM_TIMEOUT, {"argv": ["list", "x"]})
    commands.ldm(env, "primary2", ["migrate-domain", "-c", "guest2", "primary3"])
    assert env.calls[-1][3] == commands.LDM_MIGRATE_TIMEOUT


def test_clovmmigrate_runs_the_machine_on_the_host(env: FakeEnv) -> None:
    out = io.StringIO()
    r = commands.clovmmigrate(env, "primary2", "update", "guest2", "primary3", out=out, err=io.StringIO())
    assert env.runs == [mig.Request("update", "guest2", "primary2", "primary3")]
    assert (r.rc, r.code, r.message) == (0, None, "done") and out.getvalue() == "a line of the machine\n"
    env.finished = mig.Finished(3, codes.SPCONFIG_LIMIT, "clovmmigrate: primary3 has 7 saved configurations")
    r = commands.clovmmigrate(env, "primary2", "update", "guest2", "primary3", out=out, err=io.StringIO())
    assert (r.rc, r.code) == (3, codes.SPCONFIG_LIMIT)
    with pytest.raises(ClovmError) as e:
        commands.clovmmigrate(env, "primary2", "update", "guest2", out=out, err=io.StringIO())
    assert _code(e) == codes.BAD_ARGUMENT


def test_migrate_forwards_the_request_and_reports_the_code(env: FakeEnv) -> None:
    env.finished = mig.Finished(3, codes.PREFLIGHT_FAILED, "clovm migrate: the preflight found 1 problem(s)")
    env.journal = None
    r = commands.migrate(
        env, "primary2", "guest2", "primary3", scoped=True, dry_run=True, out=io.StringIO(), err=io.StringIO()
    )
    assert env.runs == [sm.MigrateRequest("guest2", "primary2", "primary3", scoped=True, dry_run=True)]
    assert (r.rc, r.code, r.domain, r.journal) == (3, codes.PREFLIGHT_FAILED, "guest2", None)


def test_migrate_resume_finds_the_one_recorded_domain(env: FakeEnv) -> None:
    kw: dict[str, Any] = {"resume": True, "out": io.StringIO(), "err": io.StringIO()}
    with pytest.raises(ClovmError) as e:
        commands.migrate(env, "primary2", **kw)
    assert _code(e) == codes.NO_JOURNAL and e.value.message == (
        "no clovm migrate is recorded on primary2; nothing to resume"
    )
    env.recorded = ["guest1", "guest2"]
    with pytest.raises(ClovmError) as e:
        commands.migrate(env, "primary2", **kw)
    assert _code(e) == codes.SEVERAL_MIGRATIONS and "(guest1, guest2)" in e.value.message
    env.recorded = ["guest2"]
    r = commands.migrate(env, "primary2", **kw)
    assert r.domain == "guest2" and env.runs == [sm.MigrateRequest("guest2", "primary2", "", resume=True)]
    assert r.journal == {"step": "done", "outcome": "migrated"}


def test_migrate_status_lists_journals_and_names_a_bad_one(env: FakeEnv) -> None:
    env.recorded = ["guest1", "guest2"]
    env.journals = {"guest2": {"step": "done"}}
    views = commands.migrate_status(env, "primary2")
    assert [(v.domain, v.path, v.journal) for v in views] == [
        ("guest2", "var/opt/FJSVcluster/clovmmigrate/guest2.migrate.json", {"step": "done"})
    ]
    assert commands.migrate_status(env, "primary2", "guest1") == []
    env.journals["guest1"] = ValueError("Expecting value")
    with pytest.raises(ClovmError) as e:
        commands.migrate_status(env, "primary2")
    assert _code(e) == codes.BAD_JOURNAL and e.value.message.startswith("the journal of guest1 is unreadable")
