"""The SNMPv3 manager of the shutdown agents (fence side): :class:`XscfSnmpClient`.

It asks an emulated XSCF (:mod:`.agent`) for a guest domain's status, or to panic or reset it,
over the MIB of :mod:`.codec`, and maps every failure onto the errors of :mod:`.model`.

pysnmp timers run on the wall clock: keep this module out of virtual-time code (use a fake at the
adapter boundary there).
"""

from __future__ import annotations

import asyncio
from typing import Any, Self

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.proto import errind
from pysnmp.proto.api import v2c

from . import mibcache  # noqa: F401 - installs the MIB bytecode cache before any engine exists
from .codec import (
    _ACTION_NAMES,
    ACTION_PANIC,
    ACTION_RESET,
    COL_ACTION,
    COL_ACTION_TEXT,
    COL_RESULT,
    COL_STATUS,
    COL_TEXT,
    RESULT_OK,
    _column_oid,
)
from .model import (
    SnmpAuthError,
    SnmpCredentials,
    SnmpError,
    SnmpResult,
    SnmpUnreachable,
)

__all__ = ["XscfSnmpClient"]


class XscfSnmpClient:
    """SNMPv3 manager used by the shutdown agents to query, panic and reset guest domains.

    One pysnmp engine is created lazily and reused for every request of this instance (it binds
    to the running event loop of the first request; use one client per loop). Call ``close()``
    when done.

    It drives pysnmp's native command generators (``pysnmp.entity.rfc3413.cmdgen``) with its own
    local configuration (one USM user, one target-parameters row, one UDP client transport, one
    target-address row per (address, port, timeout, retries)) and plain OID var-binds. The hlapi
    ``get_cmd``/``set_cmd`` would resolve every var-bind through the MIB view (``make_varbinds``)
    even with ``lookupMib=False``: more than half of a status query's CPU, and a node agent
    probing 16 XSCFs at once runs many of them.

    Args:
        user: USM user name.
        auth_key: HMAC-SHA-256 authentication pass phrase.
        priv_key: AES-128 privacy pass phrase.
    """

    _PARAMS = "clovm-authpriv"

    def __init__(self, user: str, auth_key: str, priv_key: str) -> None:
        # import cost paid once, on first client
        from pysnmp.entity.rfc3413 import cmdgen

        self._get = cmdgen.GetCommandGenerator()
        self._set = cmdgen.SetCommandGenerator()
        self._user, self._auth_key, self._priv_key = user, auth_key, priv_key
        self._engine: Any = None
        self._targets: dict[tuple[str, int, float, int], str] = {}

    def warm(self) -> None:
        """Create the engine now (MIB loading: a burst of CPU) rather than on the first request."""
        if self._engine is None:
            eng = engine.SnmpEngine()
            config.add_v3_user(
                eng,
                self._user,
                config.USM_AUTH_HMAC192_SHA256,
                self._auth_key,
                config.USM_PRIV_CFB128_AES,
                self._priv_key,
            )
            config.add_target_parameters(eng, self._PARAMS, self._user, "authPriv")
            self._engine = eng
            self._targets.clear()

    @classmethod
    def from_credentials(cls, credentials: SnmpCredentials) -> XscfSnmpClient:
        """Build a client from an ``SnmpCredentials``."""
        return cls(credentials.user, credentials.auth_key, credentials.priv_key)

    def close(self) -> None:
        """Release the engine's sockets and timers. The client can be used again afterwards."""
        eng, self._engine = self._engine, None
        self._targets.clear()
        if eng is not None:
            eng.close_dispatcher()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def status(
        self,
        address: str,
        port: int,
        ppar: int,
        domain: str,
        timeout: float = 2.0,
        retries: int = 0,
    ) -> SnmpResult:
        """Ask the XSCF for a domain's status.

        Args:
            address: XSCF LAN address.
            port: XSCF SNMP port.
            ppar: PPAR-ID.
            domain: domain name.
            timeout: seconds to wait for each attempt.
            retries: extra attempts after the first one.

        Returns:
            ``SnmpResult(ok, status, text)``; ``ok`` is False if the XSCF does not know the domain
            (or reports another error; see ``text``).

        Raises:
            SnmpUnreachable: no answer within ``timeout * (retries + 1)`` seconds.
            SnmpError: an unexpected SNMP error answer.
        """
        oids = [_column_oid(c, ppar, domain) for c in (COL_RESULT, COL_STATUS, COL_TEXT)]
        values = await self._request("get", address, port, timeout, retries, [(o, None) for o in oids])
        result, status, text = values
        return SnmpResult(int(result) == RESULT_OK, _text(status), _text(text))

    async def panic(
        self,
        address: str,
        port: int,
        ppar: int,
        domain: str,
        timeout: float = 2.0,
        retries: int = 0,
    ) -> SnmpResult:
        """Panic a domain (SET ``xscfDomainAction`` = panic(2)).

        Arguments, return value and exceptions are as for ``status`` (``status`` is ``""``).
        """
        return await self._action(ACTION_PANIC, address, port, ppar, domain, timeout, retries)

    async def reset(
        self,
        address: str,
        port: int,
        ppar: int,
        domain: str,
        timeout: float = 2.0,
        retries: int = 0,
    ) -> SnmpResult:
        """Reset a domain (SET ``xscfDomainAction`` = reset(3)).

        Arguments, return value and exceptions are as for ``status`` (``status`` is ``""``).
        """
        return await self._action(ACTION_RESET, address, port, ppar, domain, timeout, retries)

    async def _action(
        self,
        action: int,
        address: str,
        port: int,
        ppar: int,
        domain: str,
        timeout: float,
        retries: int,
    ) -> SnmpResult:
        oid = _column_oid(COL_ACTION, ppar, domain)
        failed = False
        try:
            await self._request("set", address, port, timeout, retries, [(oid, action)])
        except _CommitFailed:
            failed = True
        # The per-row text of the last action; best effort, the verdict above is authoritative.
        try:
            (text,) = await self._request(
                "get",
                address,
                port,
                timeout,
                retries,
                [(_column_oid(COL_ACTION_TEXT, ppar, domain), None)],
            )
            message = _text(text)
        except SnmpError:
            message = ""
        if not message:
            message = f"{_ACTION_NAMES[action]} {'failed' if failed else 'accepted'}"
        return SnmpResult(not failed, "", message)

    def _target(self, address: str, port: int, timeout: float, retries: int) -> str:
        """Name of the target-address row for this destination (created on first use)."""
        self.warm()
        eng = self._engine
        if config.get_transport(eng, udp.DOMAIN_NAME) is None:  # the engine's UDP client transport
            config.add_transport(eng, udp.DOMAIN_NAME, udp.UdpAsyncioTransport().open_client_mode())
        key = (address, port, timeout, retries)
        name = self._targets.get(key)
        if name is None:
            name = self._targets[key] = f"xscf-{len(self._targets)}"
            # snmpTargetAddrTimeout is in hundredths of a second
            config.add_target_address(
                eng,
                name,
                udp.DOMAIN_NAME,
                (address, port),
                self._PARAMS,
                timeout=round(timeout * 100),
                retryCount=retries,
            )
        return name

    async def _request(
        self,
        kind: str,
        address: str,
        port: int,
        timeout: float,
        retries: int,
        var_binds: list[tuple[tuple[int, ...], int | None]],
    ) -> list[Any]:
        target = self._target(address, port, timeout, retries)
        if kind == "get":
            vbs = [(oid, None) for oid, _ in var_binds]
            generator = self._get
        else:
            vbs = [(oid, v2c.Integer(v)) for oid, v in var_binds]
            generator = self._set
        future: asyncio.Future[tuple[Any, Any, Any, Any]] = asyncio.get_running_loop().create_future()

        def done(
            _eng: Any, _handle: Any, err_ind: Any, err_status: Any, err_index: Any, answer: Any, _ctx: Any
        ) -> None:
            if not future.done():
                future.set_result((err_ind, err_status, err_index, answer))

        generator.send_varbinds(self._engine, target, None, "", vbs, done)
        err_ind, err_status, err_index, answer = await future
        where = f"XSCF {address}:{port}"
        if err_ind:
            if isinstance(err_ind, errind.RequestTimedOut):
                total = timeout * (retries + 1)
                raise SnmpUnreachable(
                    f"{where} did not answer SNMP within {total:g} s: unreachable or wrong credentials"
                )
            if isinstance(err_ind, _AUTH_ERRORS):
                raise SnmpAuthError(
                    f"{where} rejected the SNMPv3 credentials ({err_ind}): wrong user, auth key or priv key"
                )
            raise SnmpError(f"{where}: SNMP error: {err_ind}")
        if int(err_status):
            name = err_status.prettyPrint() if hasattr(err_status, "prettyPrint") else str(err_status)
            if kind == "set" and name == "commitFailed":
                raise _CommitFailed
            raise SnmpError(f"{where}: SNMP {kind} failed: {name} at var-bind {int(err_index)}")
        values = [vb[1] for vb in answer]
        for value in values:
            if value.tagSet in _EXCEPTION_TAGS:
                raise SnmpError(f"{where}: object missing ({value.prettyPrint()}): not an emulated XSCF?")
        return values


class _CommitFailed(SnmpError):
    pass


_AUTH_ERRORS = (
    errind.WrongDigest,
    errind.UnknownUserName,
    errind.UnknownSecurityName,
    errind.DecryptionError,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
    errind.UnsupportedSecurityLevel,
    errind.NotInTimeWindow,
)

_EXCEPTION_TAGS = (
    v2c.NoSuchObject.tagSet,
    v2c.NoSuchInstance.tagSet,
    v2c.EndOfMibView.tagSet,
)


def _text(value: Any) -> str:
    return bytes(value.asOctets()).decode("utf-8", "replace")
