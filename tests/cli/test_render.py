"""Golden and layout tests for clovm.cli.render (expected texts copied from the seed)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from clovm.cli.render import (
    CftoolRow,
    HvdispRow,
    cfset_a,
    cftool_n,
    clsnmpsetup_l,
    hvdisp,
    ldm_list_spconfig,
    sdtool_s,
)
from clovm.core._state import (
    XSCF_AGENTS,
    InitState,
    NodeState,
    SaState,
    ShutState,
    TestState,
)
from clovm.core.sfconfig import XscfEntry

SEED_CLSNMPSETUP = """\
device-name cluster-host-name  PPAR-ID  domain-name  IP-address1     IP-address2     user-name      connection-type
-------------------------------------------------------------------------------------------------------------------
xscf        cfguest1           0        guest1       10.20.30.71     10.20.40.71     xuser          ssh
xscf        cfguest2           1        guest2       10.20.30.73     10.20.40.73     xuser          ssh
"""

SEED_SDTOOL = """\
Cluster Host    Agent                SA State      Shut State  Test State  Init State
------------    -----                --------      ----------  ----------  ----------
cfguest1        SA_xscfsnmpg0p.so    Idle          Unknown     TestWorked  InitWorked
cfguest1        SA_xscfsnmpg1p.so    Idle          Unknown     TestWorked  InitWorked
cfguest1        SA_xscfsnmpg0r.so    Idle          Unknown     TestWorked  InitWorked
cfguest1        SA_xscfsnmpg1r.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg0p.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg1p.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg0r.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg1r.so    Idle          Unknown     TestWorked  InitWorked
"""

SEED_ENTRIES = (
    XscfEntry("cfguest1", 0, "guest1", "10.20.30.71", "10.20.40.71", "xuser", "ssh"),
    XscfEntry("cfguest2", 1, "guest2", "10.20.30.73", "10.20.40.73", "xuser", "ssh"),
)


@dataclass
class SdRow:
    host: str
    agent: str
    sa_state: object = SaState.IDLE
    shut_state: object = ShutState.UNKNOWN
    test_state: object = TestState.TEST_WORKED
    init_state: object = InitState.INIT_WORKED


def test_clsnmpsetup_l_matches_seed_exactly() -> None:
    assert clsnmpsetup_l(SEED_ENTRIES) == SEED_CLSNMPSETUP


def test_clsnmpsetup_l_rule_is_header_length_and_no_trailing_blanks() -> None:
    head, rule, *_ = clsnmpsetup_l(SEED_ENTRIES).splitlines()
    assert len(rule) == len(head) == 115
    assert all(line == line.rstrip() for line in clsnmpsetup_l(SEED_ENTRIES).splitlines())


def test_clsnmpsetup_l_empty_and_wide_values_keep_a_separator() -> None:
    assert clsnmpsetup_l([]) == "".join(SEED_CLSNMPSETUP.splitlines(keepends=True)[:2])
    wide = XscfEntry(
        "a-very-long-cluster-name", 15, "ldom-with-long-name", "2001:db8::1234:5678", "10.0.0.2", "u", "telnet"
    )
    row = clsnmpsetup_l([wide]).splitlines()[2]
    assert row.split() == [
        "xscf",
        "a-very-long-cluster-name",
        "15",
        "ldom-with-long-name",
        "2001:db8::1234:5678",
        "10.0.0.2",
        "u",
        "telnet",
    ]


def test_sdtool_s_matches_seed_exactly_with_enum_states() -> None:
    rows = [SdRow(h, a) for h in ("cfguest1", "cfguest2") for a in XSCF_AGENTS]
    assert sdtool_s(rows) == SEED_SDTOOL


def test_sdtool_s_accepts_so_suffix_and_plain_strings() -> None:
    rows = [
        SdRow(h, a + ".so", "Idle", "Unknown", "TestWorked", "InitWorked")
        for h in ("cfguest1", "cfguest2")
        for a in XSCF_AGENTS
    ]
    assert sdtool_s(rows) == SEED_SDTOOL


def test_sdtool_s_failed_states_stay_in_columns() -> None:
    out = sdtool_s(
        [
            SdRow(
                "cfguest2",
                "SA_xscfsnmpg0p",
                SaState.IDLE,
                ShutState.UNKNOWN,
                TestState.TEST_FAILED,
                InitState.INIT_FAILED,
            )
        ]
    )
    assert (
        out.splitlines()[2] == "cfguest2        SA_xscfsnmpg0p.so    Idle          Unknown     TestFailed  InitFailed"
    )
    assert sdtool_s([]) == "".join(SEED_SDTOOL.splitlines(keepends=True)[:2])


def test_cftool_n_example_layout() -> None:
    out = cftool_n([CftoolRow("cfguest1", 1, NodeState.UP), CftoolRow("cfguest2", 2, NodeState.LEFTCLUSTER)])
    assert out == (
        "Node        Number State       Os      Cpu\n"
        "cfguest1    1      UP          Solaris Sparc\n"
        "cfguest2    2      LEFTCLUSTER Solaris Sparc\n"
    )


def test_cftool_n_long_node_name_widens_column() -> None:
    out = cftool_n([CftoolRow("cfguest-very-long1", 1, "DOWN")]).splitlines()
    assert out[0].index("Number") == out[1].index(" 1 ") + 1 == len("cfguest-very-long1") + 1


def test_cfset_a_puts_cfcp_cfsh_first() -> None:
    out = cfset_a({"CLUSTER_TIMEOUT": "600", "CFSH": "cfsh", "CFCP": "cfcp"})
    assert out == (
        "From cfset configuration in CF module:\n"
        "KEY: CFCP  VALUE: cfcp\n"
        "KEY: CFSH  VALUE: cfsh\n"
        "KEY: CLUSTER_TIMEOUT  VALUE: 600\n"
    )
    assert (
        cfset_a({"CLUSTER_TIMEOUT": 10}) == "From cfset configuration in CF module:\nKEY: CLUSTER_TIMEOUT  VALUE: 10\n"
    )


def test_ldm_list_spconfig() -> None:
    out = ldm_list_spconfig([("factory-default", ""), ("config_initial", "current"), ("foo", "[next poweron]")])
    assert out == "factory-default\nconfig_initial [current]\nfoo [next poweron]\n"
    assert ldm_list_spconfig([]) == ""


def test_hvdisp_layout() -> None:
    rows = [
        HvdispRow("cfguest1RMS", "SysNode", "", "Online"),
        HvdispRow("app1", "userApplication", "cfguest1RMS", "Online"),
        HvdispRow("app1", "userApplication", "cfguest2RMS", "Offline", "Faulted"),
    ]
    out = hvdisp(rows, local_system="cfguest1RMS")
    assert out == (
        "Local System:  cfguest1RMS\n"
        "Configuration: /opt/SMAW/SMAWRrms/build/config.us\n"
        "\n"
        "Resource            Type             HostName            State        StateDetails\n"
        "----------------------------------------------------------------------------------\n"
        "cfguest1RMS         SysNode                              Online\n"
        "app1                userApplication  cfguest1RMS         Online\n"
        "app1                userApplication  cfguest2RMS         Offline      Faulted\n"
    )
    assert hvdisp(rows).startswith("Resource ")


@pytest.mark.parametrize(
    "text",
    [
        clsnmpsetup_l(SEED_ENTRIES),
        sdtool_s([SdRow("cfguest1", "SA_xscfsnmpg0p")]),
        cftool_n([CftoolRow("a", 1, "UP")]),
        cfset_a({"CFCP": "cfcp"}),
        ldm_list_spconfig([("x", "current")]),
        hvdisp([HvdispRow("a", "SysNode", "", "Online")], "a"),
    ],
)
def test_every_renderer_ends_with_one_newline(text: str) -> None:
    assert text.endswith("\n") and not text.endswith("\n\n")
