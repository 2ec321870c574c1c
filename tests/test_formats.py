"""Tests for clovm.formats (file formats) and clovm.fsutil (crash-safe writes)."""

from __future__ import annotations

import os
import stat
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clovm import fsutil
from clovm.core._state import XSCF_AGENTS
from clovm.core.sfconfig import AgentRef, SfHost, XscfEntry
from clovm.formats import (
    SA_XSCFSNMP_HEADER,
    FormatError,
    get_cluster_timeout,
    parse_cluster_config,
    parse_hosts,
    parse_rcsd,
    parse_sa_xscfsnmp,
    render_hosts,
    render_rcsd,
    render_sa_xscfsnmp,
    resolve,
    set_cluster_timeout,
    syslog_line,
)

# ------------------------------------------------------------------------------------------
# cluster.config

CC = """\
# CF configuration
CFCP "cfcp"
CFSH 'cfsh'
CLUSTER_TIMEOUT "10"
# trailing comment
"""


def test_parse_cluster_config_quotes_and_comments() -> None:
    assert parse_cluster_config(CC) == {"CFCP": "cfcp", "CFSH": "cfsh", "CLUSTER_TIMEOUT": "10"}


def test_parse_cluster_config_continuation_line() -> None:
    assert parse_cluster_config('X "ab"\n"cd"\n\tY "1"\n') == {"X": "abcd", "Y": "1"}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('A "1"\nB "2"\nA "3"\n', 3, "duplicate name A"),
        ("A 1\n", 1, "quotes"),
        ('# c\nA "1\n', 2, "unterminated"),
        ("A\n", 1, "without a value"),
        ('"x"\n', 1, "continuation"),
        ("N" * 32 + ' "1"\n', 1, "31 bytes"),
        ('A "1" junk\n', 1, "quotes"),
    ],
)
def test_parse_cluster_config_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(FormatError) as exc:
        parse_cluster_config(text)
    assert exc.value.line == line
    assert f"line {line}" in str(exc.value) and fragment in str(exc.value)


def test_cluster_timeout_default_get_and_bad_value() -> None:
    assert get_cluster_timeout("") == 10
    assert get_cluster_timeout('CFCP "cfcp"\n') == 10
    assert get_cluster_timeout(CC) == 10
    assert get_cluster_timeout('CLUSTER_TIMEOUT "600"') == 600
    with pytest.raises(FormatError, match="line 2"):
        get_cluster_timeout('CFCP "cfcp"\nCLUSTER_TIMEOUT "ten"\n')


def test_set_cluster_timeout_replaces_in_place() -> None:
    out = set_cluster_timeout(CC, 600)
    assert out == CC.replace('CLUSTER_TIMEOUT "10"', 'CLUSTER_TIMEOUT "600"')
    assert set_cluster_timeout(out, 10) == CC


def test_set_cluster_timeout_appends_and_handles_missing_newline() -> None:
    assert set_cluster_timeout("", 600) == 'CLUSTER_TIMEOUT "600"\n'
    assert set_cluster_timeout('CFCP "cfcp"', 600) == 'CFCP "cfcp"\nCLUSTER_TIMEOUT "600"\n'


def test_set_cluster_timeout_drops_old_continuation_keeps_comment() -> None:
    text = 'CLUSTER_TIMEOUT "1"\n# keep\n"0"\nCFSH "cfsh"\n'
    assert get_cluster_timeout(text) == 10
    assert set_cluster_timeout(text, 30) == 'CLUSTER_TIMEOUT "30"\n# keep\nCFSH "cfsh"\n'


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "600"])
def test_set_cluster_timeout_rejects_non_positive_int(bad: object) -> None:
    with pytest.raises(ValueError):
        set_cluster_timeout(CC, bad)  # type: ignore[arg-type]


_cc_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,30}", fullmatch=True).filter(lambda n: n != "CLUSTER_TIMEOUT")
_cc_values = st.text(alphabet=string.ascii_letters + string.digits + " ./-_", max_size=20)
_cc_comments = st.from_regex(r"#[ -~]{0,20}", fullmatch=True)


@st.composite
def _cluster_configs(draw: st.DrawFn) -> str:
    names = draw(st.lists(_cc_names, unique=True, max_size=6))
    lines = []
    for n in names:
        q = draw(st.sampled_from(['"', "'"]))
        lines.append(f"{n} {q}{draw(_cc_values).replace(q, '')}{q}")
        if draw(st.booleans()):
            lines.append(draw(_cc_comments))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), f'CLUSTER_TIMEOUT "{draw(st.integers(1, 10**6))}"')
    return "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


@settings(max_examples=200)
@given(_cluster_configs(), st.integers(1, 10**6))
def test_cluster_timeout_set_get_roundtrip(text: str, seconds: int) -> None:
    out = set_cluster_timeout(text, seconds)
    assert get_cluster_timeout(out) == seconds
    before, after = parse_cluster_config(text), parse_cluster_config(out)
    before.pop("CLUSTER_TIMEOUT", None)
    assert after.pop("CLUSTER_TIMEOUT") == str(seconds)
    assert after == before
    kept = [ln for ln in out.splitlines() if not ln.startswith("CLUSTER_TIMEOUT")]
    assert kept == [ln for ln in text.splitlines() if not ln.startswith("CLUSTER_TIMEOUT")]


# ------------------------------------------------------------------------------------------
# rcsd.cfg

RCSD = """\
cfguest1,weight=1,admIP=127.40.0.1:agent=SA_xscfsnmpg0p,timeout=20:agent=SA_xscfsnmpg1p,timeout=20:agent=SA_xscfsnmpg0r,timeout=20:agent=SA_xscfsnmpg1r,timeout=20
cfguest2,weight=2,admIP=127.40.0.2:agent=SA_xscfsnmpg0p,timeout=20:agent=SA_xscfsnmpg1p,timeout=20:agent=SA_xscfsnmpg0r,timeout=20:agent=SA_xscfsnmpg1r,timeout=20
"""


def test_parse_rcsd_example_and_render_back() -> None:
    hosts = parse_rcsd(RCSD)
    assert hosts == (
        SfHost("cfguest1", 1, "127.40.0.1", tuple(AgentRef(a, 20) for a in XSCF_AGENTS)),
        SfHost("cfguest2", 2, "127.40.0.2"),
    )
    assert render_rcsd(hosts) == RCSD


def test_parse_rcsd_defaults_alias_comments_ipv6() -> None:
    text = "# template\n\nnode1:agent=SA_mmbp,timeout=20\nnode2,admnIP=fd00::2,weight=3:agent=SA_mmbp,timeout=5:agent=SA_mmbr,timeout=7\n"
    assert parse_rcsd(text) == (
        SfHost("node1", 1, "", (AgentRef("SA_mmbp", 20),)),
        SfHost("node2", 3, "fd00::2", (AgentRef("SA_mmbp", 5), AgentRef("SA_mmbr", 7))),
    )


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("node2,weight=1", "agent="),
        ("node2,weight=x:agent=SA_a,timeout=20", "weight"),
        ("node2,weight=0:agent=SA_a,timeout=20", "weight"),
        ("node2,colour=red:agent=SA_a,timeout=20", "unknown host attribute"),
        ("node2,weight=1,weight=2:agent=SA_a,timeout=20", "twice"),
        ("node2:agent=SA_a,timeout=", "timeout"),
        ("node2:agent=SA_a,timeout=20:agent=SA_b", "agent=SA_name,timeout=T"),
        ("node2:agent=SA_a,timeout=20:timeout=3,agent=SA_b", "agent=SA_name,timeout=T"),
        (",weight=1:agent=SA_a,timeout=20", "CF node name"),
        ("node1:agent=SA_a,timeout=20", "duplicate host node1"),
    ],
)
def test_parse_rcsd_errors_name_the_line(bad: str, fragment: str) -> None:
    text = "# header\nnode1:agent=SA_a,timeout=20\n" + bad + "\n"
    with pytest.raises(FormatError) as exc:
        parse_rcsd(text)
    assert exc.value.line == 3
    assert "rcsd.cfg: line 3:" in str(exc.value) and fragment in str(exc.value)


def test_render_rcsd_rejects_unrepresentable() -> None:
    with pytest.raises(ValueError):
        render_rcsd([SfHost("bad:name")])
    with pytest.raises(ValueError):
        render_rcsd([SfHost("n", agents=())])


_name = st.from_regex(r"[a-z][a-z0-9_\-]{0,14}", fullmatch=True)
_ipv4 = st.ip_addresses(v=4).map(str)
_ip = st.ip_addresses().map(str)
_agent = st.builds(AgentRef, st.from_regex(r"SA_[A-Za-z0-9_]{1,12}", fullmatch=True), st.integers(1, 3600))
_host = st.builds(
    SfHost,
    cf_name=_name,
    weight=st.integers(1, 300),
    adm_ip=st.one_of(st.just(""), _ip, _name),
    agents=st.lists(_agent, min_size=1, max_size=6).map(tuple),
)


@given(st.lists(_host, max_size=5, unique_by=lambda h: h.cf_name).map(tuple))
def test_rcsd_roundtrip(hosts: tuple[SfHost, ...]) -> None:
    assert parse_rcsd(render_rcsd(hosts)) == hosts


# ------------------------------------------------------------------------------------------
# SA_xscfsnmp.cfg

SEED_ENTRIES = (
    XscfEntry("cfguest1", 0, "guest1", "10.20.30.71", "10.20.40.71", "xuser", "ssh"),
    XscfEntry("cfguest2", 1, "guest2", "10.20.30.73", "10.20.40.73", "xuser", "ssh"),
)


def test_render_sa_xscfsnmp_seed_values() -> None:
    assert render_sa_xscfsnmp(SEED_ENTRIES) == SA_XSCFSNMP_HEADER + (
        "cfguest1 0 guest1 10.20.30.71 10.20.40.71 xuser ssh\ncfguest2 1 guest2 10.20.30.73 10.20.40.73 xuser ssh\n"
    )
    assert SA_XSCFSNMP_HEADER.startswith("#") and "password" in SA_XSCFSNMP_HEADER
    assert parse_sa_xscfsnmp(render_sa_xscfsnmp(SEED_ENTRIES)) == SEED_ENTRIES


def test_parse_sa_xscfsnmp_whitespace_and_device_field() -> None:
    text = "\n  cfguest1\t0  guest1 10.20.30.71 10.20.40.71 xuser ssh\ncfguest3 2 g3 10.0.0.1 10.0.1.1 admin telnet xscf2\n"
    assert parse_sa_xscfsnmp(text) == (
        SEED_ENTRIES[0],
        XscfEntry("cfguest3", 2, "g3", "10.0.0.1", "10.0.1.1", "admin", "telnet", "xscf2"),
    )


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("cfguest2 1 guest2 10.20.30.73 10.20.40.73 xuser", "7 or 8 fields"),
        ("cfguest2 x guest2 10.20.30.73 10.20.40.73 xuser ssh", "PPAR-ID"),
        ("cfguest2 99 guest2 10.20.30.73 10.20.40.73 xuser ssh", "PPAR-ID"),
        ("cfguest2 1 guest2 10.20.30.373 10.20.40.73 xuser ssh", "LAN#0"),
        ("cfguest2 1 guest2 10.20.30.73 xscf-b xuser ssh", "LAN#1"),
        ("cfguest2 1 guest2 10.20.30.73 10.20.40.73 xuser rsh", "ssh or telnet"),
        ("cfguest1 1 guest2 10.20.30.73 10.20.40.73 xuser ssh", "duplicate host cfguest1"),
    ],
)
def test_parse_sa_xscfsnmp_errors_name_the_line(bad: str, fragment: str) -> None:
    text = SA_XSCFSNMP_HEADER + "cfguest1 0 guest1 10.20.30.71 10.20.40.71 xuser ssh\n" + bad + "\n"
    with pytest.raises(FormatError) as exc:
        parse_sa_xscfsnmp(text)
    assert exc.value.line == 4
    assert "line 4" in str(exc.value) and fragment in str(exc.value)


_entry = st.builds(
    XscfEntry,
    cf_name=_name,
    ppar_id=st.integers(0, 31),
    domain=_name,
    lan0=_ip,
    lan1=_ip,
    user=st.from_regex(r"[a-z][a-z0-9_.\-]{0,10}", fullmatch=True),
    connection=st.sampled_from(["ssh", "telnet"]),
    device=st.sampled_from(["xscf", "xscf2"]),
)


@given(st.lists(_entry, max_size=5, unique_by=lambda e: e.cf_name).map(tuple))
def test_sa_xscfsnmp_roundtrip(entries: tuple[XscfEntry, ...]) -> None:
    assert parse_sa_xscfsnmp(render_sa_xscfsnmp(entries)) == entries


# ------------------------------------------------------------------------------------------
# hosts

HOSTS = """\
#
# Internet host table
#
::1 localhost
127.0.0.1 localhost loghost
10.0.0.11   primary1 cd1   # control domain 1
10.0.0.12\tprimary2
10.0.0.99   primary1
"""


def test_parse_hosts_aliases_comments_first_wins() -> None:
    assert parse_hosts(HOSTS) == {
        "localhost": "::1",
        "loghost": "127.0.0.1",
        "primary1": "10.0.0.11",
        "cd1": "10.0.0.11",
        "primary2": "10.0.0.12",
    }


def test_resolve() -> None:
    assert resolve(HOSTS, "primary2") == "10.0.0.12"
    assert resolve(HOSTS, "CD1") == "10.0.0.11"
    assert resolve(HOSTS, "10.9.9.9") == "10.9.9.9"
    assert resolve(HOSTS, "nosuchhost") is None
    assert resolve("", "primary1") is None


@pytest.mark.parametrize(("bad", "fragment"), [("10.0.0.300 x", "not an IP"), ("10.0.0.3", "without a host name")])
def test_parse_hosts_errors(bad: str, fragment: str) -> None:
    with pytest.raises(FormatError, match=f"line 9: .*{fragment}"):
        parse_hosts(HOSTS + bad + "\n")


@given(st.dictionaries(_name, _ip, max_size=6))
def test_hosts_roundtrip(table: dict[str, str]) -> None:
    assert parse_hosts(render_hosts(table.items())) == table
    assert parse_hosts(render_hosts(table)) == table


# ------------------------------------------------------------------------------------------
# syslog

EPOCH = 1764051721.75  # 2025-11-25 06:22:01.75 UTC


def test_syslog_line_message_number_greppable() -> None:
    line = syslog_line(EPOCH, "guest2", "SMAWsf", "first SSH connection to XSCF not made", "7245")
    assert line == "Nov 25 06:22:01 guest2 SMAWsf: [ID 7245 daemon.err] first SSH connection to XSCF not made"
    assert "ID 7245 " in line and "\n" not in line


def test_syslog_line_wrp_and_padding_and_priority() -> None:
    text = "(WRP, 34) Cluster host cfguest1 is no longer in time sync with local node.\nFurther out-of-sync messages will appear in the syslog."
    line = syslog_line(1764720005.0, "guest1", "RMS", text, "WRP 34")
    assert line == (
        "Dec  3 00:00:05 guest1 RMS: [ID 0 daemon.warning] (WRP, 34) Cluster host cfguest1 is no longer "
        "in time sync with local node. Further out-of-sync messages will appear in the syslog."
    )
    assert syslog_line(0, "h", "t", "x") == "Jan  1 00:00:00 h t: [ID 0 daemon.notice] x"
    assert syslog_line(0, "h", "t", "x", "2001") == "Jan  1 00:00:00 h t: [ID 2001 daemon.info] x"
    assert syslog_line(0, "h", "t", "x", "4001", priority="user.crit") == "Jan  1 00:00:00 h t: [ID 4001 user.crit] x"
    with pytest.raises(ValueError):
        syslog_line(0, "bad host", "t", "x")


def test_syslog_line_ignores_local_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    try:
        assert syslog_line(EPOCH, "g", "t", "x").startswith("Nov 25 06:22:01 ")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# ------------------------------------------------------------------------------------------
# fsutil


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path) -> None:
    target = tmp_path / "etc" / "opt" / "SMAW" / "SMAWsf" / "rcsd.cfg"
    fsutil.atomic_write(target, RCSD)
    assert target.read_text() == RCSD
    assert os.listdir(target.parent) == ["rcsd.cfg"]


def test_atomic_write_replaces_existing_file_and_honours_mode(tmp_path) -> None:
    target = tmp_path / "secrets"
    target.write_text("old contents that are longer than the new ones\n")
    os.chmod(target, 0o644)
    old_umask = os.umask(0o077)
    try:
        fsutil.atomic_write(target, b"\x00new", mode=0o600)
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
        fsutil.atomic_write(target, "x", mode=0o664)  # umask must not strip group write
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o664
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"x"
    assert os.listdir(tmp_path) == ["secrets"]


def test_atomic_write_failure_keeps_old_file_and_removes_temp(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cluster.config"
    target.write_text(CC)

    def boom(src: str, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        fsutil.atomic_write(target, "garbage")
    assert target.read_text() == CC
    assert os.listdir(tmp_path) == ["cluster.config"]


def test_atomic_write_many_writes_every_file_and_syncs_each_directory_once(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sf = tmp_path / "etc" / "opt" / "SMAW" / "SMAWsf"
    other = tmp_path / "var"
    synced: list[str] = []
    real_fsync_dir = fsutil._fsync_dir
    monkeypatch.setattr(fsutil, "_fsync_dir", lambda d: (synced.append(str(d)), real_fsync_dir(d)))
    fsutil.atomic_write_many({sf / "SA_xscfsnmp.cfg": "a\n", sf / "rcsd.cfg": RCSD, other / "x": b"y"})
    assert (sf / "SA_xscfsnmp.cfg").read_text() == "a\n" and (sf / "rcsd.cfg").read_text() == RCSD
    assert (other / "x").read_bytes() == b"y"
    assert sorted(synced) == sorted([str(sf), str(other)])  # one fsync per directory, not per file
    assert sorted(os.listdir(sf)) == ["SA_xscfsnmp.cfg", "rcsd.cfg"]


def test_atomic_write_many_failure_leaves_no_temp_and_keeps_later_files(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a.cfg", tmp_path / "b.cfg"
    second.write_text(CC)
    calls: list[object] = []
    real_replace = os.replace

    def second_fails(src: str, dst: object) -> None:
        calls.append(dst)
        if dst == second:
            raise OSError("disk on fire")
        real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", second_fails)
    with pytest.raises(OSError, match="disk on fire"):
        fsutil.atomic_write_many({first: "new", second: "garbage"})
    assert first.read_text() == "new" and second.read_text() == CC
    assert sorted(os.listdir(tmp_path)) == ["a.cfg", "b.cfg"]


def test_append_line_and_read_text_or(tmp_path) -> None:
    log = tmp_path / "var" / "adm" / "messages"
    assert fsutil.read_text_or(log, None) is None
    assert fsutil.read_text_or(log, "") == ""
    fsutil.append_line(log, "one")
    fsutil.append_line(log, "two\n")
    assert fsutil.read_text_or(log, None) == "one\ntwo\n"
