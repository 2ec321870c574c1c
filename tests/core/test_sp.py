"""Tests for clovm.core.sp (the XSCF model)."""

from __future__ import annotations

import pytest

from clovm.core._state import SpDomainStatus
from clovm.core.base import Ticked
from clovm.core.sp import (
    DomainPanicRequested,
    DomainResetRequested,
    DomainsRunningReported,
    DomainStatusRequested,
    LanStateChanged,
    PanicDomain,
    ResetDomain,
    SpconfigSaved,
    SpReply,
    Xscf,
)

LAN0, LAN1 = "127.20.30.71", "127.20.40.71"
RUNNING, STOPPED, UNKNOWN = SpDomainStatus.RUNNING, SpDomainStatus.STOPPED, SpDomainStatus.UNKNOWN


def xscf() -> Xscf:
    """PPAR 0 saved {guest1, gone}, running {guest1, newcomer}; PPAR 2 empty."""
    x = Xscf("m10-1", LAN0, LAN1, [0, 2])
    assert x.handle(0.0, SpconfigSaved(0, frozenset({"guest1", "gone"}))) == []
    assert x.handle(0.0, DomainsRunningReported(0, frozenset({"guest1", "newcomer"}))) == []
    return x


def test_status_table_for_showdomainstatus():
    x = xscf()
    assert x.status(0) == {"gone": STOPPED, "guest1": RUNNING, "newcomer": UNKNOWN}
    assert list(x.status(0)) == ["gone", "guest1", "newcomer"]
    assert x.status(2) == {}
    with pytest.raises(ValueError, match="PPAR-ID 7 is not on this server"):
        x.status(7)


@pytest.mark.parametrize("lan", [LAN0, LAN1])
@pytest.mark.parametrize(
    "domain, status, text_start",
    [("guest1", RUNNING, "Solaris running"), ("gone", STOPPED, "Host stopped"), ("newcomer", UNKNOWN, "Unknown")],
)
def test_status_request(lan, domain, status, text_start):
    [reply] = xscf().handle(1.0, DomainStatusRequested(5, lan, 0, domain))
    assert reply.req_id == 5 and reply.ok and reply.status == status
    assert reply.text.startswith(text_start)


REQUESTS = [DomainStatusRequested, DomainPanicRequested, DomainResetRequested]


@pytest.mark.parametrize("req", REQUESTS)
@pytest.mark.parametrize("down", [LAN0, LAN1])
def test_request_on_a_down_lan_gets_no_reply(req, down):
    x = xscf()
    x.handle(1.0, LanStateChanged(down, False))
    assert not x.lan_up(down)
    assert x.handle(2.0, req(1, down, 0, "guest1")) == []
    other = LAN1 if down == LAN0 else LAN0
    assert x.handle(3.0, req(2, other, 0, "guest1"))[0].req_id == 2  # the other LAN still answers
    x.handle(4.0, LanStateChanged(down, True))
    assert x.handle(5.0, req(3, down, 0, "guest1"))[0].req_id == 3  # back up


@pytest.mark.parametrize("req", REQUESTS)
def test_request_to_a_foreign_address_gets_no_reply(req):
    assert xscf().handle(1.0, req(1, "127.20.30.99", 0, "guest1")) == []


@pytest.mark.parametrize("req", REQUESTS)
def test_unknown_ppar(req):
    assert xscf().handle(1.0, req(9, LAN0, 3, "guest1")) == [SpReply(9, False, "", "PPAR-ID 3 is not on this server")]


@pytest.mark.parametrize("req", REQUESTS)
def test_domain_that_does_not_exist(req):
    [reply] = xscf().handle(1.0, req(4, LAN0, 0, "nosuch"))
    assert not reply.ok and "nosuch" in reply.text


@pytest.mark.parametrize(
    "req, effect, status",
    [
        (DomainPanicRequested, PanicDomain, SpDomainStatus.PANIC),
        (DomainResetRequested, ResetDomain, SpDomainStatus.RESET),
    ],
)
def test_kill_running_known_domain(req, effect, status):
    x = xscf()
    eff = x.handle(1.0, req(7, LAN1, 0, "guest1"))
    assert len(eff) == 2
    assert eff[0].req_id == 7 and eff[0].ok and eff[0].status == status
    assert eff[1] == effect(0, "guest1")
    assert x.status(0)["guest1"] == STOPPED  # no longer running
    # a second kill finds it stopped: done, no effect
    assert x.handle(2.0, req(8, LAN0, 0, "guest1")) == [SpReply(8, True, STOPPED, "already stopped")]


@pytest.mark.parametrize("req", [DomainPanicRequested, DomainResetRequested])
def test_kill_stopped_domain_counts_as_done(req):
    assert xscf().handle(1.0, req(3, LAN0, 0, "gone")) == [SpReply(3, True, STOPPED, "already stopped")]


@pytest.mark.parametrize("req", [DomainPanicRequested, DomainResetRequested])
def test_kill_unsaved_domain_is_refused(req):
    x = xscf()
    [reply] = x.handle(1.0, req(3, LAN0, 0, "newcomer"))
    assert not reply.ok and reply.status == UNKNOWN
    assert "ldm add-spconfig" in reply.text
    assert x.status(0)["newcomer"] == UNKNOWN  # still running
    # after the configuration is saved the XSCF can address it
    x.handle(2.0, SpconfigSaved(0, frozenset({"guest1", "newcomer"})))
    assert x.status(0) == {"guest1": RUNNING, "newcomer": RUNNING}
    eff = x.handle(3.0, req(4, LAN0, 0, "newcomer"))
    assert eff[0].ok and len(eff) == 2


def test_migration_out_and_in():
    """Source shows Host stopped, target Unknown until spconfig is saved on both sides."""
    src, dst = xscf(), Xscf("m10-2", "127.20.30.72", "127.20.40.72", [0])
    src.handle(1.0, DomainsRunningReported(0, frozenset({"newcomer"})))
    dst.handle(1.0, DomainsRunningReported(0, frozenset({"guest1"})))
    assert src.status(0)["guest1"] == STOPPED and dst.status(0)["guest1"] == UNKNOWN
    src.handle(2.0, SpconfigSaved(0, frozenset({"newcomer"})))
    dst.handle(2.0, SpconfigSaved(0, frozenset({"guest1"})))
    assert src.status(0) == {"newcomer": RUNNING} and dst.status(0) == {"guest1": RUNNING}


def test_reports_replace_and_bad_driver_input_raises():
    x = xscf()
    x.handle(1.0, DomainsRunningReported(0, frozenset()))
    assert x.status(0) == {"gone": STOPPED, "guest1": STOPPED}
    with pytest.raises(ValueError):
        x.handle(1.0, DomainsRunningReported(5, frozenset()))
    with pytest.raises(ValueError):
        x.handle(1.0, SpconfigSaved(5, frozenset()))
    with pytest.raises(ValueError):
        x.handle(1.0, LanStateChanged("10.0.0.1", False))


def test_tick_and_no_timers():
    x = xscf()
    assert x.next_deadline() is None and x.handle(1.0, Ticked()) == []
    assert (x.server, x.lan0, x.lan1, x.ppars) == ("m10-1", LAN0, LAN1, (0, 2))
