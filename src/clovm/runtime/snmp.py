"""SNMPv3 adapter of the emulated XSCF: agent (service-processor side) and manager (fence side).

The XSCF of each SPARC M10 server answers the shutdown agents over SNMPv3 (authPriv, HMAC-SHA-256
+ AES-128) on each of its two LANs. The MIB (an *emulation* subtree under Fujitsu's enterprise
number, not a real Fujitsu MIB) is described in ``docs/xscf-mib.md``; in short::

    xscfEmuMIB         1.3.6.1.4.1.211.1.3.99
      xscfAgentName    .1.1.0   DisplayString  read-only
      xscfAgentLan     .1.2.0   Integer32      read-only   LAN the request arrived on (0, 1)
      xscfDomainEntry  .1.3.1   INDEX { xscfDomainPpar, xscfDomainName }  (ppar, len, chars...)
        .3 xscfDomainResult        INTEGER ok(1) error(2)           read-only  (asks backend.status)
        .4 xscfDomainStatus        DisplayString                    read-only  (asks backend.status)
        .5 xscfDomainText          DisplayString                    read-only  (asks backend.status)
        .6 xscfDomainAction        INTEGER status(1) panic(2) reset(3) read-write
        .7 xscfDomainActionResult  INTEGER none(0) ok(1) error(2)   read-only  (last action on row)
        .8 xscfDomainActionText    DisplayString                    read-only  (last action on row)

Design (agent):

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

pysnmp timers run on the wall clock: keep this module out of virtual-time code (use a fake at the
adapter boundary there).
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import inspect
import os
import runpy
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config, engine
from pysnmp.proto import errind, rfc1905
from pysnmp.proto.api import v2c
from pysnmp.smi import builder as _mib_builder

__all__ = [
    "ACTION_PANIC",
    "ACTION_RESET",
    "ACTION_STATUS",
    "COL_ACTION",
    "COL_ACTION_RESULT",
    "COL_ACTION_TEXT",
    "COL_RESULT",
    "COL_STATUS",
    "COL_TEXT",
    "OID_AGENT_LAN",
    "OID_AGENT_NAME",
    "OID_DOMAIN_ENTRY",
    "XSCF_EMU_MIB",
    "SnmpCredentials",
    "SnmpAuthError",
    "SnmpError",
    "SnmpResult",
    "SnmpUnreachable",
    "XscfSnmpAgent",
    "XscfSnmpBackend",
    "XscfSnmpClient",
    "domain_row_index",
]

# ---- start-up cost: pysnmp's MIB modules from the bytecode cache -------------------------------
# Every SnmpEngine (one per xscfd, one per guest node's SNMP client) loads ~17 MIB modules, which
# pysnmp's builder reads as .py files and compiles twice (once in MibSource.read, once more in
# runpy.run_path, which it calls instead of executing the code it read unless python runs with
# -O): ~0.1 s of CPU per engine, with ~25 of them starting at once in a 16-guest datacenter.
# The same code objects come from the __pycache__ bytecode pip wrote when it installed pysnmp,
# validated against the source as the import system does (SourceFileLoader.get_code, which
# compiles the source if the cache is stale or missing). Only where the source file is plain
# (no legacy ``NAME.pyc`` beside it, which pysnmp would prefer); anything else goes to pysnmp.


def _mib_code(path: str) -> Any:
    return importlib.machinery.SourceFileLoader("<mib>", path).get_code("<mib>")


class _CachedRunpy:
    """``runpy`` as pysnmp's builder uses it: ``run_path`` of a MIB file, with cached bytecode."""

    @staticmethod
    def run_path(path_name: str, init_globals: dict[str, Any] | None = None,
                 run_name: str | None = None) -> dict[str, Any]:
        run_module_code = getattr(runpy, "_run_module_code", None)
        if run_module_code is None or not str(path_name).endswith(".py"):
            return runpy.run_path(path_name, init_globals, run_name)
        # what runpy.run_path does for a path that is not a sys.path entry, minus the compile
        return run_module_code(_mib_code(path_name), init_globals, run_name or "<run_path>",
                               pkg_name="", script_name=path_name)


def _install_mib_bytecode_cache() -> None:
    source = getattr(_mib_builder, "DirMibSource", None)
    if source is None or getattr(_mib_builder, "runpy", None) is not runpy:
        return  # not the pysnmp this was written for: leave it alone
    read = source.read

    def cached_read(self: Any, f: str) -> tuple[Any, str]:
        base = os.path.join(self._srcName, f)
        if os.path.isfile(base + ".py") and not os.path.exists(base + ".pyc"):
            return _mib_code(base + ".py"), ".py"
        return read(self, f)

    source.read = cached_read
    _mib_builder.runpy = _CachedRunpy


_install_mib_bytecode_cache()


# --------------------------------------------------------------------------------------------
# MIB

XSCF_EMU_MIB: tuple[int, ...] = (1, 3, 6, 1, 4, 1, 211, 1, 3, 99)
"""Root of the emulation subtree (Fujitsu enterprise 211; not a real Fujitsu MIB)."""

_OBJECTS = XSCF_EMU_MIB + (1,)
OID_AGENT_NAME = _OBJECTS + (1, 0)
OID_AGENT_LAN = _OBJECTS + (2, 0)
OID_DOMAIN_ENTRY = _OBJECTS + (3, 1)
_ENTRY = OID_DOMAIN_ENTRY

COL_RESULT = 3
COL_STATUS = 4
COL_TEXT = 5
COL_ACTION = 6
COL_ACTION_RESULT = 7
COL_ACTION_TEXT = 8
_STATUS_COLUMNS = (COL_RESULT, COL_STATUS, COL_TEXT)
_LOCAL_COLUMNS = (COL_ACTION, COL_ACTION_RESULT, COL_ACTION_TEXT)

ACTION_STATUS = 1
ACTION_PANIC = 2
ACTION_RESET = 3
_ACTION_NAMES = {ACTION_STATUS: "status", ACTION_PANIC: "panic", ACTION_RESET: "reset"}

RESULT_NONE = 0
RESULT_OK = 1
RESULT_ERROR = 2

_MAX_NAME = 64
_SCALARS = (OID_AGENT_NAME, OID_AGENT_LAN)  # sorted; the only walkable objects
_SET_DEDUP_SECONDS = 30.0


def domain_row_index(ppar: int, domain: str) -> tuple[int, ...]:
    """Encode the ``xscfDomainEntry`` index for a domain.

    Args:
        ppar: PPAR-ID (0..2147483647; an M10 has 0..15).
        domain: logical-domain name, 1..64 UTF-8 bytes.

    Returns:
        ``(ppar, len(name), byte1, byte2, ...)`` (a non-IMPLIED OCTET STRING index).

    Raises:
        ValueError: the PPAR-ID or the name is out of range.
    """
    raw = domain.encode("utf-8")
    if not 0 <= ppar <= 0x7FFFFFFF:
        raise ValueError(f"PPAR-ID out of range: {ppar}")
    if not 1 <= len(raw) <= _MAX_NAME:
        raise ValueError(f"domain name must be 1..{_MAX_NAME} bytes: {domain!r}")
    return (ppar, len(raw), *raw)


def _parse_row_index(suffix: tuple[int, ...]) -> tuple[int, str] | None:
    if len(suffix) < 3:
        return None
    ppar, length, chars = suffix[0], suffix[1], suffix[2:]
    if not 0 <= ppar <= 0x7FFFFFFF or not 1 <= length <= _MAX_NAME or len(chars) != length:
        return None
    if any(not 0 <= c <= 255 for c in chars):
        return None
    try:
        return ppar, bytes(chars).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _column_oid(column: int, ppar: int, domain: str) -> tuple[int, ...]:
    return _ENTRY + (column,) + domain_row_index(ppar, domain)


# --------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True, slots=True)
class SnmpCredentials:
    """An SNMPv3 USM user at security level authPriv (HMAC-SHA-256 + AES-128).

    Attributes:
        user: USM user name.
        auth_key: authentication pass phrase (at least 8 characters).
        priv_key: privacy pass phrase (at least 8 characters).
    """

    user: str
    auth_key: str
    priv_key: str


@dataclass(frozen=True, slots=True)
class SnmpResult:
    """Outcome of one XSCF request.

    Attributes:
        ok: the XSCF accepted the request (status: the domain is known; panic/reset: done).
        status: domain status word for a status query; ``""`` for panic and reset.
        text: human-readable text from the XSCF (reason on failure).
    """

    ok: bool
    status: str
    text: str


class SnmpError(Exception):
    """The XSCF answered, but not in a way this client understands (protocol-level error)."""


class SnmpUnreachable(SnmpError):
    """The XSCF did not answer usably: LAN/agent down, or the credentials are wrong.

    Fence agents should treat every ``SnmpUnreachable`` alike ("SP unreachable or credentials
    wrong"). A timeout raises this class itself; an explicit USM rejection raises the subclass
    ``SnmpAuthError``.
    """


class SnmpAuthError(SnmpUnreachable):
    """The XSCF answered with a USM report: wrong user, authentication key or privacy key."""


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


# --------------------------------------------------------------------------------------------
# Agent


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
    ) -> None:
        if not endpoints:
            raise ValueError("at least one (address, port) endpoint is required")
        self._backend = backend
        self._creds = [credentials] if isinstance(credentials, SnmpCredentials) else list(credentials)
        if not self._creds:
            raise ValueError("at least one SNMPv3 user is required")
        self._name = name
        self._lans = [
            _Lan(addr, int(port), udp.DOMAIN_NAME + (i + 1,)) for i, (addr, port) in enumerate(endpoints)
        ]
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
        eng = engine.SnmpEngine()
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
        eng.message_dispatcher.register_context_engine_id(
            eng.snmpEngineID, _PDU_TYPES, self._process_pdu
        )
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

    async def __aenter__(self) -> XscfSnmpAgent:
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
        snmpEngine: engine.SnmpEngine,  # noqa: N803 - pysnmp callback signature
        messageProcessingModel: Any,  # noqa: N803
        securityModel: Any,  # noqa: N803
        securityName: Any,  # noqa: N803
        securityLevel: Any,  # noqa: N803
        contextEngineId: Any,  # noqa: N803
        contextName: Any,  # noqa: N803
        pduVersion: Any,  # noqa: N803
        PDU: Any,  # noqa: N803
        maxSizeResponseScopedPDU: Any,  # noqa: N803
        stateReference: Any,  # noqa: N803
    ) -> None:
        t_domain, t_address = snmpEngine.message_dispatcher.get_transport_info(stateReference)
        lan = next((i for i, e in enumerate(self._lans) if e.domain == tuple(t_domain)), None)
        if lan is None or self._closed:
            return

        def respond(status: str | int, index: int, var_binds: Sequence[Any]) -> None:
            if self._engine is not snmpEngine or self._lans[lan].sock is None:
                return  # closed, or the LAN went down while the backend was thinking
            rsp = v2c.apiPDU.get_response(PDU)
            v2c.apiPDU.set_error_status(rsp, status)
            v2c.apiPDU.set_error_index(rsp, index)
            v2c.apiPDU.set_varbinds(rsp, var_binds)
            try:
                snmpEngine.message_dispatcher.return_response_pdu(
                    snmpEngine, messageProcessingModel, securityModel, securityName,
                    securityLevel, contextEngineId, contextName, pduVersion, rsp,
                    maxSizeResponseScopedPDU, stateReference, {},
                )
            except Exception:  # noqa: BLE001 - a response we cannot send is a dropped response
                return

        if int(securityLevel) < 3:
            respond("authorizationError", 1 if v2c.apiPDU.get_varbinds(PDU) else 0,
                    v2c.apiPDU.get_varbinds(PDU))
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
                    column, row = hit
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
        return column, _parse_row_index(oid[n + 1:])

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

    async def _set(
        self, lan: int, var_binds: list[tuple[tuple[int, ...], Any]]
    ) -> tuple[str | int, int, list[Any]]:
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


# --------------------------------------------------------------------------------------------
# Manager


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
        from pysnmp.entity.rfc3413 import cmdgen  # import cost paid once, on first client

        self._get = cmdgen.GetCommandGenerator()
        self._set = cmdgen.SetCommandGenerator()
        self._user, self._auth_key, self._priv_key = user, auth_key, priv_key
        self._engine: Any = None
        self._targets: dict[tuple[str, int, float, int], str] = {}

    def warm(self) -> None:
        """Create the engine now (MIB loading: a burst of CPU) rather than on the first request."""
        if self._engine is None:
            eng = engine.SnmpEngine()
            config.add_v3_user(eng, self._user, config.USM_AUTH_HMAC192_SHA256, self._auth_key,
                               config.USM_PRIV_CFB128_AES, self._priv_key)
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

    async def __aenter__(self) -> XscfSnmpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def status(
        self, address: str, port: int, ppar: int, domain: str,
        timeout: float = 2.0, retries: int = 0,
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
        self, address: str, port: int, ppar: int, domain: str,
        timeout: float = 2.0, retries: int = 0,
    ) -> SnmpResult:
        """Panic a domain (SET ``xscfDomainAction`` = panic(2)).

        Arguments, return value and exceptions are as for ``status`` (``status`` is ``""``).
        """
        return await self._action(ACTION_PANIC, address, port, ppar, domain, timeout, retries)

    async def reset(
        self, address: str, port: int, ppar: int, domain: str,
        timeout: float = 2.0, retries: int = 0,
    ) -> SnmpResult:
        """Reset a domain (SET ``xscfDomainAction`` = reset(3)).

        Arguments, return value and exceptions are as for ``status`` (``status`` is ``""``).
        """
        return await self._action(ACTION_RESET, address, port, ppar, domain, timeout, retries)

    async def _action(
        self, action: int, address: str, port: int, ppar: int, domain: str,
        timeout: float, retries: int,
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
                "get", address, port, timeout, retries,
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
            config.add_target_address(eng, name, udp.DOMAIN_NAME, (address, port), self._PARAMS,
                                      timeout=round(timeout * 100), retryCount=retries)
        return name

    async def _request(
        self, kind: str, address: str, port: int, timeout: float, retries: int,
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

        def done(_eng: Any, _handle: Any, err_ind: Any, err_status: Any, err_index: Any, answer: Any,
                 _ctx: Any) -> None:
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
                    f"{where} rejected the SNMPv3 credentials ({err_ind}): "
                    "wrong user, auth key or priv key"
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
                raise SnmpError(
                    f"{where}: object missing ({value.prettyPrint()}): not an emulated XSCF?"
                )
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

