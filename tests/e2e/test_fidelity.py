"""End to end: what the fidelity audit found untested — on a real figure-17-1 datacenter.

One test: the node that owns app1 (cfguest1) is migrated primary1 → primary3 with the seed's
procedure, and ``clovmmigrate -u`` is given the target control domain's *IP address* (the seed:
"target-host: IP address of the destination control domain, or its host name"). Then:

* app1 never left cfguest1 (no switchover during the procedure; hvdisp and the switchlog agree);
* ``rcsd.cfg`` on both guests carries cfguest1's new SF weight, primary3's (2), and
  ``SA_xscfsnmp.cfg`` / ``clsnmpsetup -l`` its new XSCF (m10-3, PPAR-ID 1);
* the timeouts are back at 10 s and SF tests well everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from test_procedure import (
    CLSNMPSETUP,
    all_worked,
    bring_up,
    ok,
    sd_rows,
    timeout_of,
    wait_healthy,
)

from clovm import formats
from conftest import Datacenter, poll
from xdist_net import net

HVDISP = "/opt/SMAW/bin/hvdisp"


@pytest.mark.timeout(240)
def test_owner_of_app1_migrates_with_an_ip_target_and_gets_the_new_weight(
    datacenter: Callable[..., Datacenter],
) -> None:
    d = bring_up(datacenter)
    primary3_ip = net("127.30.0.3")
    hv = ok(d.x("guest1", HVDISP, "-a")).stdout
    assert "app1" in hv and "Online" in next(ln for ln in hv.splitlines() if ln.startswith("app1"))

    ok(d.migrate("primary1", "-p", "guest1"), "-p guest1")
    ok(d.x("primary1", "ldm", "migrate-domain", "-c", "guest1", "primary3"), "migration of guest1")
    u = ok(d.migrate("primary1", "-u", "guest1", primary3_ip), "-u guest1 to an IP address")
    assert "guest1 (cfguest1) now runs on primary3 (PPAR-ID 1)" in u.stdout
    wait_healthy(d, "after -u")
    assert poll(lambda: all(all_worked(sd_rows(d, g)) for g in ("guest1", "guest2")), 30, every=0.5)

    for g in ("guest1", "guest2"):
        hosts = {h.cf_name: h for h in formats.parse_rcsd(d.host_file(g, "etc/opt/SMAW/SMAWsf/rcsd.cfg").read_text())}
        assert (hosts["cfguest1"].weight, hosts["cfguest2"].weight) == (2, 1), f"{g}: rcsd.cfg weights"
        entry = next(
            e
            for e in formats.parse_sa_xscfsnmp(d.host_file(g, "etc/opt/SMAW/SMAWsf/SA_xscfsnmp.cfg").read_text())
            if e.cf_name == "cfguest1"
        )
        assert (entry.lan0, entry.lan1, entry.ppar_id) == (net("127.20.30.73"), net("127.20.40.73"), 1)
        assert net("127.20.30.73") in ok(d.x(g, CLSNMPSETUP, "-l")).stdout
        assert timeout_of(d, g) == 10

    # app1 never moved: Online on cfguest1 in hvdisp, and no failover (SWT, 1) or deferred one
    # (SWT, 3) in either switchlog, only the hold and its release
    hv = ok(d.x("guest1", HVDISP, "-a")).stdout
    assert "Online" in next(ln for ln in hv.splitlines() if ln.startswith("app1"))
    for g in ("guest1", "guest2"):
        log = d.switchlog(g)
        assert "(SWT, 30) switchovers are held" in log and "(SWT, 31) switchover hold released" in log
        assert "(SWT, 1) " not in log and "(SWT, 3) " not in log, log
