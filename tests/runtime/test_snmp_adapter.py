"""Integration tests of the XSCF SNMPv3 adapter (real pysnmp agent and manager on loopback)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pysnmp.hlapi.v3arch import asyncio as hl

from clovm.runtime.snmp import (
    OID_AGENT_LAN,
    OID_AGENT_NAME,
    XSCF_EMU_MIB,
    SnmpAuthError,
    SnmpCredentials,
    SnmpResult,
    SnmpUnreachable,
    XscfSnmpAgent,
    XscfSnmpClient,
    domain_row_index,
)

LAN0 = "127.77.0.1"
LAN1 = "127.77.1.1"
CRED = SnmpCredentials("fenceuser", "authpass123", "privpass123")


class Backend:
    """Records calls; knows PPAR 0 with domains primary and guest1."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, str]] = []
        self.silent_lans: set[int] = set()
        self.delay = 0.0

    def _known(self, ppar: int, domain: str) -> bool:
        return ppar == 0 and domain in ("primary", "guest1")

    def status(self, lan: int, ppar: int, domain: str) -> tuple[bool, str, str] | None:
        self.calls.append(("status", lan, ppar, domain))
        if lan in self.silent_lans:
            return None
        if not self._known(ppar, domain):
            return False, "", f"PPAR-ID {ppar}: domain {domain} not found"
        return True, "Solaris running", f"{domain} is running"

    def panic(self, lan: int, ppar: int, domain: str) -> tuple[bool, str] | None:
        self.calls.append(("panic", lan, ppar, domain))
        if lan in self.silent_lans:
            return None
        if not self._known(ppar, domain):
            return False, f"PPAR-ID {ppar}: domain {domain} not found"
        return True, f"{domain} panic requested"

    def reset(self, lan: int, ppar: int, domain: str) -> tuple[bool, str] | None:
        self.calls.append(("reset", lan, ppar, domain))
        if not self._known(ppar, domain):
            return False, f"PPAR-ID {ppar}: domain {domain} not found"
        return True, f"{domain} reset requested"


class SlowBackend(Backend):
    """Async callbacks that take ``delay`` seconds (exercises awaitable backends and retries)."""

    async def panic(self, lan: int, ppar: int, domain: str) -> tuple[bool, str] | None:  # type: ignore[override]
        await asyncio.sleep(self.delay)
        return super().panic(lan, ppar, domain)


@pytest_asyncio.fixture
async def backend() -> Backend:
    return Backend()


@pytest_asyncio.fixture
async def agent(backend: Backend) -> AsyncIterator[XscfSnmpAgent]:
    a = XscfSnmpAgent(backend, [(LAN0, 0), (LAN1, 0)], CRED, name="m10-test")
    await a.start()
    try:
        yield a
    finally:
        a.close()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[XscfSnmpClient]:
    c = XscfSnmpClient.from_credentials(CRED)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.timeout(30)
def test_row_index_encoding() -> None:
    assert domain_row_index(0, "guest1") == (0, 6, 103, 117, 101, 115, 116, 49)
    with pytest.raises(ValueError):
        domain_row_index(0, "")
    with pytest.raises(ValueError):
        domain_row_index(-1, "x")


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_status_round_trip_on_both_lans(agent: XscfSnmpAgent, client: XscfSnmpClient, backend: Backend) -> None:
    (a0, p0), (a1, p1) = agent.endpoints
    assert (a0, a1) == (LAN0, LAN1) and p0 > 0 and p1 > 0
    r0 = await client.status(a0, p0, 0, "guest1", timeout=2)
    r1 = await client.status(a1, p1, 0, "primary", timeout=2)
    assert r0 == SnmpResult(True, "Solaris running", "guest1 is running")
    assert r1 == SnmpResult(True, "Solaris running", "primary is running")
    # one backend call per GET (three columns of one row), tagged with the LAN it came in on
    assert backend.calls == [("status", 0, 0, "guest1"), ("status", 1, 0, "primary")]


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_panic_and_reset_round_trip(agent: XscfSnmpAgent, client: XscfSnmpClient, backend: Backend) -> None:
    (a0, p0), (a1, p1) = agent.endpoints
    r = await client.panic(a1, p1, 0, "guest1", timeout=2)
    assert r == SnmpResult(True, "", "guest1 panic requested")
    r = await client.reset(a0, p0, 0, "guest1", timeout=2)
    assert r == SnmpResult(True, "", "guest1 reset requested")
    assert backend.calls == [("panic", 1, 0, "guest1"), ("reset", 0, 0, "guest1")]


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_unknown_domain_is_an_error_result(
    agent: XscfSnmpAgent, client: XscfSnmpClient, backend: Backend
) -> None:
    a0, p0 = agent.endpoints[0]
    r = await client.status(a0, p0, 3, "guest9", timeout=2)
    assert r.ok is False and r.status == ""
    assert r.text == "PPAR-ID 3: domain guest9 not found"
    r = await client.panic(a0, p0, 0, "guest9", timeout=2)
    assert r == SnmpResult(False, "", "PPAR-ID 0: domain guest9 not found")
    assert backend.calls == [("status", 0, 3, "guest9"), ("panic", 0, 0, "guest9")]


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_lan_down_gives_unreachable_within_timeout(
    agent: XscfSnmpAgent, client: XscfSnmpClient, backend: Backend
) -> None:
    (a0, p0), (a1, p1) = agent.endpoints
    await client.status(a1, p1, 0, "guest1", timeout=2)  # engine discovered while up
    agent.set_lan(1, False)
    assert not agent.lan_up(1)
    t0 = time.monotonic()
    with pytest.raises(SnmpUnreachable) as info:
        await client.panic(a1, p1, 0, "guest1", timeout=0.4, retries=1)
    elapsed = time.monotonic() - t0
    assert elapsed < 0.8 + 1.0
    assert str(info.value) == (f"XSCF {a1}:{p1} did not answer SNMP within 0.8 s: unreachable or wrong credentials")
    assert not isinstance(info.value, SnmpAuthError)
    assert ("panic", 1, 0, "guest1") not in backend.calls
    # LAN#0 is unaffected; LAN#1 comes back on the same port
    assert (await client.status(a0, p0, 0, "guest1", timeout=2)).ok
    agent.set_lan(1, True)
    assert agent.endpoints[1] == (a1, p1)
    assert (await client.status(a1, p1, 0, "guest1", timeout=2)).ok


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_backend_none_means_no_answer(agent: XscfSnmpAgent, client: XscfSnmpClient, backend: Backend) -> None:
    (a0, p0), (a1, p1) = agent.endpoints
    backend.silent_lans.add(0)
    with pytest.raises(SnmpUnreachable):
        await client.status(a0, p0, 0, "guest1", timeout=0.4)
    with pytest.raises(SnmpUnreachable):
        await client.panic(a0, p0, 0, "guest1", timeout=0.4)
    assert (await client.panic(a1, p1, 0, "guest1", timeout=2)).ok


@pytest.mark.timeout(30)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cred",
    [
        SnmpCredentials("fenceuser", "wrongauth99", "privpass123"),
        SnmpCredentials("fenceuser", "authpass123", "wrongpriv99"),
        SnmpCredentials("nosuchuser", "authpass123", "privpass123"),
    ],
    ids=["auth-key", "priv-key", "user"],
)
async def test_wrong_credentials_are_unreachable(agent: XscfSnmpAgent, backend: Backend, cred: SnmpCredentials) -> None:
    a0, p0 = agent.endpoints[0]
    client = XscfSnmpClient.from_credentials(cred)
    try:
        with pytest.raises(SnmpUnreachable, match=f"XSCF {a0}:{p0}"):
            await client.panic(a0, p0, 0, "guest1", timeout=0.5)
    finally:
        client.close()
    assert backend.calls == []


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_closed_agent_is_unreachable(backend: Backend, client: XscfSnmpClient) -> None:
    a = XscfSnmpAgent(backend, [(LAN0, 0)], CRED)
    await a.start()
    address, port = a.endpoints[0]
    a.close()
    a.close()  # idempotent
    with pytest.raises(SnmpUnreachable):
        await client.status(address, port, 0, "guest1", timeout=0.3)


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_bind_conflict_raises(agent: XscfSnmpAgent, backend: Backend) -> None:
    other = XscfSnmpAgent(backend, [agent.endpoints[0]], CRED)
    with pytest.raises(OSError):
        await other.start()
    other.close()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_async_backend_and_retransmitted_set_executes_once(client: XscfSnmpClient) -> None:
    slow = SlowBackend()
    slow.delay = 0.5
    a = XscfSnmpAgent(slow, [(LAN0, 0)], CRED)
    await a.start()
    try:
        address, port = a.endpoints[0]
        # first attempt times out after 0.3 s, the manager retransmits the same SET
        r = await client.panic(address, port, 0, "guest1", timeout=0.3, retries=3)
        assert r == SnmpResult(True, "", "guest1 panic requested")
        assert slow.calls.count(("panic", 0, 0, "guest1")) == 1
    finally:
        a.close()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_raw_mib_scalars_walk_and_errors(agent: XscfSnmpAgent) -> None:
    eng = hl.SnmpEngine()
    auth = hl.UsmUserData(
        CRED.user,
        CRED.auth_key,
        CRED.priv_key,
        authProtocol=hl.usmHMAC192SHA256AuthProtocol,
        privProtocol=hl.usmAesCfb128Protocol,
    )
    try:
        a1, p1 = agent.endpoints[1]
        target = await hl.UdpTransportTarget.create((a1, p1), timeout=2, retries=0)
        err, status, _, vbs = await hl.get_cmd(
            eng,
            auth,
            target,
            hl.ContextData(),
            hl.ObjectType(hl.ObjectIdentity(OID_AGENT_NAME)),
            hl.ObjectType(hl.ObjectIdentity(OID_AGENT_LAN)),
            hl.ObjectType(hl.ObjectIdentity(XSCF_EMU_MIB + (9, 0))),
            lookupMib=False,
        )
        assert err is None and int(status) == 0
        assert bytes(vbs[0][1]) == b"m10-test"
        assert int(vbs[1][1]) == 1  # the request came in on LAN#1
        assert vbs[2][1].prettyPrint().startswith("No Such Object")
        # GETNEXT from the root reaches the first scalar
        err, status, _, vbs = await hl.next_cmd(
            eng,
            auth,
            target,
            hl.ContextData(),
            hl.ObjectType(hl.ObjectIdentity(XSCF_EMU_MIB)),
            lookupMib=False,
        )
        assert err is None and tuple(vbs[0][0]) == OID_AGENT_NAME
        # SET of a read-only column is refused
        status_col = XSCF_EMU_MIB + (1, 3, 1, 4) + domain_row_index(0, "guest1")
        err, status, index, _ = await hl.set_cmd(
            eng,
            auth,
            target,
            hl.ContextData(),
            hl.ObjectType(hl.ObjectIdentity(status_col), hl.OctetString("x")),
            lookupMib=False,
        )
        assert err is None and status.prettyPrint() == "notWritable" and int(index) == 1
        # SET of an undefined action value is refused
        action_col = XSCF_EMU_MIB + (1, 3, 1, 6) + domain_row_index(0, "guest1")
        err, status, _, _ = await hl.set_cmd(
            eng,
            auth,
            target,
            hl.ContextData(),
            hl.ObjectType(hl.ObjectIdentity(action_col), hl.Integer32(7)),
            lookupMib=False,
        )
        assert err is None and status.prettyPrint() == "wrongValue"
    finally:
        eng.close_dispatcher()
