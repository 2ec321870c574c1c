"""The SNMPv3 agent of one emulated XSCF (service-processor side): :class:`XscfSnmpAgent`.

The XSCF of each SPARC M10 server answers the shutdown agents over SNMPv3 (authPriv, HMAC-SHA-256
+ AES-128) on each of its two LANs; the MIB it serves is in :mod:`.codec`.

Design:

* **One SnmpEngine per XSCF, one UDP transport per LAN.** Each LAN's socket is registered with its
  own transport domain (``udp.DOMAIN_NAME + (lan + 1,)``), so the request's transport domain tells
  which LAN it came in on, and the response leaves through the same socket. ``set_lan(lan, False)``
  unregisters and closes that socket (requests then get no answer at all, like a cut cable);
  ``set_lan(lan, True)`` binds the same address and port again.
* **No pysnmp MIB instrumentation.** Rows are virtual (the backend decides which domains exist), so
  the agent registers its own command responder for GET/GETNEXT/GETBULK/SET PDUs and computes the
  response itself. This also lets the agent *not reply* when the backend returns ``None``.
  Access control is USM only: any request authenticated and decrypted as a configured user at
  security level authPriv is served (anything lower gets ``authorizationError``, or a USM
  "unsupported security level" report). A wrong user or key is answered by USM with a report
  (usmStatsUnknownUserNames / WrongDigests / DecryptionErrors); the client turns it into
  ``SnmpAuthError``, a subclass of ``SnmpUnreachable``. Managers that do not decode reports just
  see a timeout.
* **Concurrency.** GETs are stateless. A SET of ``xscfDomainAction`` reports success or failure of
  *that* request in the PDU error-status (``noError`` or ``commitFailed``), so concurrent managers
  never see each other's outcome; the explanatory text is kept per row in
  ``xscfDomainActionText`` (best effort under concurrency on the same row). A retransmitted SET
  (same source and request-id) is answered from a short cache instead of being executed twice.
* Backend callbacks may be plain functions or return awaitables; every PDU is processed in its own
  task.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, cast

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config, engine
from pysnmp.proto import rfc1905
from pysnmp.proto.api import v2c

from . import mibcache  # noqa: F401 - installs the MIB bytecode cache before any engine exists
from .codec import (
    _ACTION_NAMES,
    _ENTRY,
    _LOCAL_COLUMNS,
    _SCALARS,
    _STATUS_COLUMNS,
    ACTION_PANIC,
    ACTION_STATUS,
    COL_ACTION,
    COL_ACTION_RESULT,
    COL_ACTION_TEXT,
    COL_RESULT,
    COL_STATUS,
    COL_TEXT,
    OID_AGENT_LAN,
    OID_AGENT_NAME,
    RESULT_ERROR,
    RESULT_NONE,
    RESULT_OK,
    _parse_row_index,
)
from .model import SnmpCredentials

__all__ = ["ActionReply", "StatusReply", "XscfSnmpAgent", "XscfSnmpBackend"]

_SET_DEDUP_SECONDS = 30.0

StatusReply = tuple[bool, str, str] | None
ActionReply = tuple[bool, str] | None


class XscfSnmpBackend(Protocol):
    """What the agent asks. Any method may also return an awaitable of the same value.

    ``None`` means "no answer" (for example the LAN is down in the emulated XSCF): the agent then
    sends no response at all.
    """

    def status(self, lan: int, ppar: int, domain: str) -> StatusReply:
        """Return ``(ok, status, text)`` for the domain, or ``None`` for no answer."""
        ...

    def panic(self, lan: int, ppar: int, domain: str) -> ActionReply:
        """Panic the domain; return ``(ok, text)``, or ``None`` for no answer."""
        ...

    def reset(self, lan: int, ppar: int, domain: str) -> ActionReply:
        """Reset the domain; return ``(ok, text)``, or ``None`` for no answer."""
        ...


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class _Drop(Exception):
    """Internal: send no response to this PDU."""


@dataclass(slots=True)
class _Lan:
    address: str
    port: int
    domain: tuple[int, ...]
    sock: socket.socket | None = None
    transport: Any = None


class XscfSnmpAgent:
    """SNMPv3 agent of one emulated XSCF, listening on one UDP endpoint per LAN.

    Example::

        agent = XscfSnmpAgent(backend, [("127.20.30.73", 16161), ("127.20.40.73", 16161)],
                              SnmpCredentials("fenceuser", "authpass123", "privpass123"))
        await agent.start()
        ...
        agent.close()

    Args:
        backend: object with ``status``/``panic``/``reset`` callbacks (see ``XscfSnmpBackend``).
        endpoints: ``(address, port)`` per LAN; LAN number = position (LAN#0 first). Port 0
            picks a free port; for LAN#1.. a port of 0 first tries LAN#0's port, so both LANs
            usually share one port number (read the result from ``endpoints``).
        credentials: one or more USM users accepted by the agent.
        name: value of ``xscfAgentName`` (for example the server name).
    """

    def __init__(
        self,
        backend: XscfSnmpBackend,
        endpoints: Sequence[tuple[str, int]],
        credentials: SnmpCredentials | Sequence[SnmpCredentials],
        *,
        name: str = "",
        engine_id: bytes | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one (address, port) endpoint is required")
        self._backend = backend
        self._creds = [credentials] if isinstance(credentials, SnmpCredentials) else list(credentials)
        if not self._creds:
            raise ValueError("at least one SNMPv3 user is required")
        self._name = name
        # A fixed snmpEngineID (RFC 3411) survives a restart of the agent, as a real XSCF's does:
        # managers keep talking to it. Without one pysnmp makes a new one per engine, and a
        # manager that discovered the old one gets no answer from the restarted agent.
        self._engine_id = engine_id
        self._lans = [_Lan(addr, int(port), udp.DOMAIN_NAME + (i + 1,)) for i, (addr, port) in enumerate(endpoints)]
        self._engine: engine.SnmpEngine | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._actions: dict[tuple[int, str], tuple[int, int, str]] = {}  # row -> (action, result, text)
        self._set_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._closed = False

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the engine and bind every LAN endpoint.

        Raises:
            OSError: an address/port cannot be bound (nothing is left open then).
            RuntimeError: already started or closed.
        """
        if self._engine is not None or self._closed:
            raise RuntimeError("XscfSnmpAgent.start() called twice or after close()")
        eng = (
            engine.SnmpEngine()
            if self._engine_id is None
            else engine.SnmpEngine(snmpEngineID=v2c.OctetString(self._engine_id))
        )
        # An explicit dispatcher: pysnmp then never closes it when the last transport goes away.
        eng.register_transport_dispatcher(AsyncioDispatcher())
        for cred in self._creds:
            config.add_v3_user(
                eng,
                cred.user,
                config.USM_AUTH_HMAC192_SHA256,
                cred.auth_key,
                config.USM_PRIV_CFB128_AES,
                cred.priv_key,
            )
        eng.message_dispatcher.register_context_engine_id(eng.snmpEngineID, _PDU_TYPES, self._process_pdu)
        self._engine = eng
        try:
            for lan in range(len(self._lans)):
                self._open(lan)
            for entry in self._lans:
                await entry.transport._lport  # endpoint really created
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every LAN socket, cancel pending requests and release the engine. Idempotent."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        eng, self._engine = self._engine, None
        if eng is None:
            return
        for lan in range(len(self._lans)):
            self._shut(eng, lan)
        try:
            eng.message_dispatcher.unregister_context_engine_id(eng.snmpEngineID, _PDU_TYPES)
        finally:
            eng.close_dispatcher()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """Bound ``(address, port)`` per LAN (ports resolved after ``start()``)."""
        return [(e.address, e.port) for e in self._lans]

    def lan_up(self, lan: int) -> bool:
        """Whether the LAN's socket is currently open."""
        return self._lans[lan].sock is not None

    def set_lan(self, lan: int, up: bool) -> None:
        """Bring one LAN down (close its socket: no answer) or up again (rebind same address/port).

        Args:
            lan: LAN number (index into ``endpoints``).
            up: the new state; setting the current state again does nothing.

        Raises:
            OSError: the address/port cannot be rebound.
            RuntimeError: the agent is not started.
        """
        eng = self._engine
        if eng is None:
            raise RuntimeError("XscfSnmpAgent is not started")
        if up and self._lans[lan].sock is None:
            self._open(lan)
        elif not up and self._lans[lan].sock is not None:
            self._shut(eng, lan)

    def _open(self, lan: int) -> None:
        assert self._engine is not None
        entry = self._lans[lan]
        port = entry.port
        if port == 0 and lan > 0 and self._lans[0].port:
            port = self._lans[0].port
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            try:
                sock.bind((entry.address, port))
            except OSError:
                if entry.port != 0 or port == 0:
                    raise
                sock.bind((entry.address, 0))  # LAN#0's port was taken on this address
            sock.setblocking(False)
            transport = udp.UdpTransport().open_server_mode(sock=sock)
            config.add_transport(self._engine, entry.domain, transport)
        except BaseException:
            sock.close()
            raise
        entry.port = sock.getsockname()[1]
        entry.sock, entry.transport = sock, transport

    def _shut(self, eng: engine.SnmpEngine, lan: int) -> None:
        entry = self._lans[lan]
        sock, transport = entry.sock, entry.transport
        entry.sock = entry.transport = None
        if transport is not None:
            if config.get_transport(eng, entry.domain) is not None:
                config.delete_transport(eng, entry.domain)
            transport.close_transport()
        if sock is not None:
            sock.close()

    # ---- request processing ---------------------------------------------------------------

    def _process_pdu(
        self,
        snmpEngine: engine.SnmpEngine,  # pysnmp's callback signature, names and all
        messageProcessingModel: Any,
        securityModel: Any,
        securityName: Any,
        securityLevel: Any,
        contextEngineId: Any,
        contextName: Any,
        pduVersion: Any,
        PDU: Any,
        maxSizeResponseScopedPDU: Any,
        stateReference: Any,
    ) -> None:
        t_domain, t_address = snmpEngine.message_dispatcher.get_transport_info(stateReference)
        lan = next((i for i, e in enumerate(self._lans) if e.domain == tuple(t_domain)), None)
        if lan is None or self._closed:
            return

        def respond(status: str | int, index: int, var_binds: Sequence[Any]) -> None:
            if self._engine is not snmpEngine or self._lans[lan].sock is None:
                return  # closed, or the LAN went down while the backend was thinking
            assert snmpEngine is not None  # (it is self._engine: mypy narrows it to that Optional)
            rsp = v2c.apiPDU.get_response(PDU)
            v2c.apiPDU.set_error_status(rsp, status)
            v2c.apiPDU.set_error_index(rsp, index)
            v2c.apiPDU.set_varbinds(rsp, var_binds)
            try:
                snmpEngine.message_dispatcher.return_response_pdu(
                    snmpEngine,
                    messageProcessingModel,
                    securityModel,
                    securityName,
                    securityLevel,
                    contextEngineId,
                    contextName,
                    pduVersion,
                    rsp,
                    maxSizeResponseScopedPDU,
                    stateReference,
                    {},
                )
            except Exception:  # noqa: BLE001 - a response we cannot send is a dropped response
                return

        if int(securityLevel) < 3:
            respond("authorizationError", 1 if v2c.apiPDU.get_varbinds(PDU) else 0, v2c.apiPDU.get_varbinds(PDU))
            return
        task = asyncio.get_running_loop().create_task(
            self._serve(lan, (str(t_address[0]), int(t_address[1])), PDU, respond)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self,
        lan: int,
        peer: tuple[str, int],
        pdu: Any,
        respond: Callable[[str | int, int, Sequence[Any]], None],
    ) -> None:
        var_binds = [(tuple(oid), val) for oid, val in v2c.apiPDU.get_varbinds(pdu)]
        tag = pdu.tagSet
        try:
            if tag == rfc1905.GetRequestPDU.tagSet:
                respond(0, 0, await self._get(lan, var_binds))
            elif tag == rfc1905.GetNextRequestPDU.tagSet:
                respond(0, 0, [(self._next(lan, oid)) for oid, _ in var_binds])
            elif tag == rfc1905.GetBulkRequestPDU.tagSet:
                respond(0, 0, self._bulk(lan, pdu, var_binds))
            elif tag == rfc1905.SetRequestPDU.tagSet:
                await self._set_deduplicated(lan, peer, pdu, var_binds, respond)
        except _Drop:
            return
        except Exception:  # noqa: BLE001 - a failing backend must not kill the agent
            respond("genErr", 1 if var_binds else 0, var_binds)

    # GET ----------------------------------------------------------------------------------

    async def _get(self, lan: int, var_binds: list[tuple[tuple[int, ...], Any]]) -> list[Any]:
        rows: dict[tuple[int, str], tuple[bool, str, str]] = {}
        out: list[Any] = []
        for oid, _ in var_binds:
            value = self._scalar(lan, oid)
            if value is None:
                hit = self._column(oid)
                if hit is None:
                    value = v2c.NoSuchObject()
                elif hit[1] is None:
                    value = v2c.NoSuchInstance()
                else:
                    column, row = cast("tuple[int, tuple[int, str]]", hit)  # (hit[1] is not None)
                    if column in _STATUS_COLUMNS:
                        if row not in rows:
                            rows[row] = await self._status(lan, *row)
                        ok, status, text = rows[row]
                        value = {
                            COL_RESULT: v2c.Integer(RESULT_OK if ok else RESULT_ERROR),
                            COL_STATUS: v2c.OctetString(status.encode()),
                            COL_TEXT: v2c.OctetString(text.encode()),
                        }[column]
                    else:
                        action, result, text = self._actions.get(row, (ACTION_STATUS, RESULT_NONE, ""))
                        value = {
                            COL_ACTION: v2c.Integer(action),
                            COL_ACTION_RESULT: v2c.Integer(result),
                            COL_ACTION_TEXT: v2c.OctetString(text.encode()),
                        }[column]
            out.append((oid, value))
        return out

    def _scalar(self, lan: int, oid: tuple[int, ...]) -> Any:
        if oid == OID_AGENT_NAME:
            return v2c.OctetString(self._name.encode())
        if oid == OID_AGENT_LAN:
            return v2c.Integer(lan)
        return None

    @staticmethod
    def _column(oid: tuple[int, ...]) -> tuple[int, tuple[int, str] | None] | None:
        """``None`` = no such object; ``(col, None)`` = no such instance; else ``(col, row)``."""
        n = len(_ENTRY)
        if len(oid) <= n or oid[:n] != _ENTRY:
            return None
        column = oid[n]
        if column not in _STATUS_COLUMNS + _LOCAL_COLUMNS:
            return None
        return column, _parse_row_index(oid[n + 1 :])

    async def _status(self, lan: int, ppar: int, domain: str) -> tuple[bool, str, str]:
        reply = await _maybe_await(self._backend.status(lan, ppar, domain))
        if reply is None:
            raise _Drop
        ok, status, text = reply
        return bool(ok), str(status), str(text)

    # GETNEXT / GETBULK: only the scalars are walkable (rows are virtual) ------------------

    def _next(self, lan: int, oid: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        for candidate in _SCALARS:
            if candidate > oid:
                return candidate, self._scalar(lan, candidate)
        return oid, v2c.EndOfMibView()

    def _bulk(self, lan: int, pdu: Any, var_binds: list[tuple[tuple[int, ...], Any]]) -> list[Any]:
        non_rep = max(int(v2c.apiBulkPDU.get_non_repeaters(pdu)), 0)
        max_rep = max(int(v2c.apiBulkPDU.get_max_repetitions(pdu)), 0)
        n = min(non_rep, len(var_binds))
        out = [self._next(lan, oid) for oid, _ in var_binds[:n]]
        current = [oid for oid, _ in var_binds[n:]]
        for _ in range(min(max_rep, 64 // max(len(current), 1)) if current else 0):
            step = [self._next(lan, oid) for oid in current]
            out.extend(step)
            current = [oid for oid, _ in step]
        return out

    # SET ----------------------------------------------------------------------------------

    async def _set_deduplicated(
        self,
        lan: int,
        peer: tuple[str, int],
        pdu: Any,
        var_binds: list[tuple[tuple[int, ...], Any]],
        respond: Callable[[str | int, int, Sequence[Any]], None],
    ) -> None:
        now = time.monotonic()
        for key in [k for k, (t, _) in self._set_cache.items() if now - t > _SET_DEDUP_SECONDS]:
            del self._set_cache[key]
        key = (lan, peer, int(v2c.apiPDU.get_request_id(pdu)), tuple(oid for oid, _ in var_binds))
        cached = self._set_cache.get(key)
        if cached is not None:
            if cached[1] is not None:  # retransmission of an answered SET: same answer
                respond(*cached[1])
            return  # still executing: the original answers
        self._set_cache[key] = (now, None)
        try:
            answer = await self._set(lan, var_binds)
        except BaseException:
            self._set_cache.pop(key, None)
            raise
        self._set_cache[key] = (now, answer)
        respond(*answer)

    async def _set(self, lan: int, var_binds: list[tuple[tuple[int, ...], Any]]) -> tuple[str | int, int, list[Any]]:
        requests: list[tuple[int, tuple[int, str]]] = []
        for i, (oid, value) in enumerate(var_binds, start=1):
            hit = self._column(oid)
            if hit is None or hit[0] != COL_ACTION:
                return "notWritable", i, var_binds
            if hit[1] is None:
                return "noCreation", i, var_binds
            if value.tagSet != v2c.Integer.tagSet:
                return "wrongType", i, var_binds
            if int(value) not in _ACTION_NAMES:
                return "wrongValue", i, var_binds
            requests.append((int(value), hit[1]))
        for i, (action, (ppar, domain)) in enumerate(requests, start=1):
            if action == ACTION_STATUS:
                ok, status, text = await self._status(lan, ppar, domain)
                text = text or status
            else:
                callback = self._backend.panic if action == ACTION_PANIC else self._backend.reset
                reply = await _maybe_await(callback(lan, ppar, domain))
                if reply is None:
                    raise _Drop
                ok, text = bool(reply[0]), str(reply[1])
            self._actions[(ppar, domain)] = (action, RESULT_OK if ok else RESULT_ERROR, text)
            if not ok:
                return "commitFailed", i, var_binds
        return 0, 0, var_binds


_PDU_TYPES = (
    rfc1905.GetRequestPDU.tagSet,
    rfc1905.GetNextRequestPDU.tagSet,
    rfc1905.GetBulkRequestPDU.tagSet,
    rfc1905.SetRequestPDU.tagSet,
)
