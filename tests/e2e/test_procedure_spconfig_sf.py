"""End to end, the seed's branches around -u: the spconfig limit, the first SSH connection (7245)
and the time-sync warnings (WRP 34/35). Helpers and their rationale: test_procedure.py."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from test_procedure import (
    CFGUEST2_HOME,
    CFGUEST2_MIGRATED,
    FURTHER,
    GUESTS,
    SDTOOL,
    SYNC_SCALE,
    WRP34,
    WRP35,
    assert_prepared,
    bring_up,
    healthy,
    migrate_to_primary3,
    ok,
    one_line,
    poll,
    sd_rows,
    sf_settled_after_update,
    snmp_line,
    spconfigs,
    timeout_of,
)

from clovm import settings
from clovm.runtime import ssh
from conftest import Datacenter
from helpers import quiet_for
from xdist_net import net


@pytest.mark.timeout(240)
def test_update_refuses_config_tmp_and_more_than_six_spconfigs_and_changes_nothing(
    datacenter: Callable[..., Datacenter],
) -> None:
    d = bring_up(datacenter)
    ok(d.migrate("primary2", "-p", "guest2"))
    migrate_to_primary3(d)

    def unchanged() -> None:
        assert_prepared(d)
        for g in GUESTS:
            assert snmp_line(d, g, "cfguest2") == CFGUEST2_HOME
            assert d.migrate_dir(g).joinpath("timeout.saved").read_text().strip() == "10"

    # A config_tmp on the source control domain.
    ok(d.x("primary2", "ldm", "add-spconfig", "config_tmp"))
    r = d.migrate("primary2", "-u", "guest2", "primary3")
    assert r.returncode == 3, r.stderr
    line = one_line(r)
    assert "ldm remove-spconfig config_tmp" in line and "primary2" in line, line
    unchanged()
    ok(d.x("primary2", "ldm", "remove-spconfig", "config_tmp"))

    # Seven saved configurations on the target.
    for i in range(1, 7):
        ok(d.x("primary3", "ldm", "add-spconfig", f"c{i}"))
    saved = [c for c in spconfigs(d, "primary3") if c.split()[0] != "factory-default"]
    assert len(saved) == 7, saved
    r = d.migrate("primary2", "-u", "guest2", "primary3")
    assert r.returncode == 3, r.stderr
    line = one_line(r)
    assert "ldm remove-spconfig" in line and "primary3" in line, line
    assert "primary2" not in line, line
    unchanged()

    ok(d.x("primary3", "ldm", "remove-spconfig", "c1"))
    ok(d.migrate("primary2", "-u", "guest2", "primary3"))
    for g in GUESTS:
        assert timeout_of(d, g) == 10
        assert snmp_line(d, g, "cfguest2") == CFGUEST2_MIGRATED
        assert sf_settled_after_update(d, g), sd_rows(d, g)
    for cd in ("primary2", "primary3"):
        configs = spconfigs(d, cd)
        assert len([c for c in configs if c.split()[0] != "factory-default"]) <= 6, configs
        assert not any(c.split()[0] == "config_tmp" for c in configs), configs


@pytest.mark.timeout(240)
def test_update_completes_after_removing_the_current_spconfig_down_to_six(
    datacenter: Callable[..., Datacenter],
) -> None:
    d = bring_up(datacenter)
    ok(d.migrate("primary2", "-p", "guest2"))
    migrate_to_primary3(d)
    for i in range(1, 7):
        ok(d.x("primary3", "ldm", "add-spconfig", f"c{i}"))
    assert "c6 [current]" in spconfigs(d, "primary3")
    assert d.migrate("primary2", "-u", "guest2", "primary3").returncode == 3
    ok(d.x("primary3", "ldm", "remove-spconfig", "c6"))  # down to 6 saved, as the manual asks
    assert len([c for c in spconfigs(d, "primary3") if c.split()[0] != "factory-default"]) == 6
    # the new name replaces nothing: saved directly, no config_tmp (6 saved + 1 fits in 8)
    ok(d.migrate("primary2", "-u", "guest2", "primary3"), "-u after removing the current spconfig")
    assert "config_tmp" not in " ".join(spconfigs(d, "primary3"))
    for g in GUESTS:
        assert timeout_of(d, g) == 10
        assert sf_settled_after_update(d, g), sd_rows(d, g)


@pytest.mark.timeout(240)
def test_missing_first_ssh_connection_reports_7245_and_update_completes_after_it(
    datacenter: Callable[..., Datacenter],
) -> None:
    d = bring_up(datacenter)
    for g in GUESTS:
        assert "forgot 2" in d.fault("forget-xscf-key", g, "m10-3").stdout
    ok(d.migrate("primary2", "-p", "guest2"))
    migrate_to_primary3(d)

    r = d.migrate("primary2", "-u", "guest2", "primary3")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "7245" in one_line(r)
    for g in GUESTS:
        rows = sd_rows(d, g)
        assert rows is not None and len(rows) == 8
        mine = [row for row in rows if row[0] == "cfguest2"]
        assert len(mine) == 4 and all("TestFailed" in row or "InitFailed" in row for row in mine), rows
        assert all(row[4:] == ["TestWorked", "InitWorked"] for row in rows if row[0] == "cfguest1"), rows
        assert re.search(r"\b7245\b", d.messages(g)), d.messages(g)[-2000:]
        assert snmp_line(d, g, "cfguest2") == CFGUEST2_MIGRATED
        assert d.migrate_dir(g).joinpath("timeout.saved").exists()  # kept for the rerun

    # The first SSH connection: accept m10-3's host key into each guest's known_hosts.
    key = ssh.load_or_create_host_key(d.home / "servers" / "m10-3" / "ssh_host_key")
    for g in GUESTS:
        for addr in (net("127.20.30.73"), net("127.20.40.73")):
            ssh.add_known_host(
                d.host_file(g, "root/.ssh/known_hosts"), ssh.host_key_line(addr, settings.XSCF_SSH_PORT, key)
            )
        ok(d.x(g, SDTOOL, "-r"))
    ok(d.migrate("primary2", "-u", "guest2", "primary3"))
    for g in GUESTS:
        assert sf_settled_after_update(d, g), sd_rows(d, g)
        assert timeout_of(d, g) == 10
        assert list(d.migrate_dir(g).iterdir()) == []


@pytest.mark.timeout(240)
def test_clock_skew_after_migration_logs_wrp34_once_then_wrp35_until_in_sync(
    datacenter: Callable[..., Datacenter],
) -> None:
    d = bring_up(datacenter, SYNC_SCALE)
    # Baseline: at a high time scale a heartbeat delayed by load at boot can already look out of sync
    # (5 emulated s = 0.25 real s at scale 20); only what the clock fault causes is counted.
    sw0, msgs0 = d.switchlog("guest1"), d.messages("guest1")
    d.fault("clock", "m10-3", "+30")
    ok(d.migrate("primary2", "-p", "guest2"))
    migrate_to_primary3(d)
    ok(d.migrate("primary2", "-u", "guest2", "primary3"))

    def new(text: str, before: str) -> str:
        return text[len(before) :]

    assert poll(lambda: WRP34 in new(d.switchlog("guest1"), sw0), 10), d.switchlog("guest1")
    assert poll(lambda: new(d.messages("guest1"), msgs0).count(WRP35) >= 2, 200 / d.scale), d.messages("guest1")[-2000:]
    sw, msgs = new(d.switchlog("guest1"), sw0), new(d.messages("guest1"), msgs0)
    assert sw.count(WRP34) == 1 and msgs.count(WRP34) == 1, (sw, msgs)
    assert sw.count(FURTHER) == 1 and msgs.count(FURTHER) == 1, (sw, msgs)
    assert WRP35 not in sw
    lines34 = [ln for ln in sw.splitlines() if WRP34 in ln]
    assert lines34[0].endswith(WRP34), lines34

    d.fault("clock", "m10-3", "-30")
    # Back in sync, but one more (WRP, 35) may be on its way: RMS repeats it every RMS_SYNC_PERIOD
    # and sees the clock back only once CLOCK_SAMPLES heartbeats (one per emulated s) carry it.
    quiet_for(
        90 / d.scale,
        f"90 emulated s > RMS_SYNC_PERIOD {settings.RMS_SYNC_PERIOD:g} s + "
        f"{settings.CLOCK_SAMPLES} heartbeats: a (WRP, 35) already due is written",
    )
    n35 = d.messages("guest1").count(WRP35)
    waited = quiet_for(200 / d.scale, f"200 emulated s > 3 x RMS_SYNC_PERIOD {settings.RMS_SYNC_PERIOD:g} s")
    assert d.messages("guest1").count(WRP35) == n35, f"(WRP, 35) repeated within {waited} of being back in sync"
    assert new(d.switchlog("guest1"), sw0).count(WRP34) == 1
    assert healthy(d)
