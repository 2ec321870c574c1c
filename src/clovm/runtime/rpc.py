"""Request/reply over unix sockets (local, mode 0600) and mutual-TLS TCP (between hosts).

One JSON line each way per request:
``{"op": str, "args": {...}}`` → ``{"ok": true, "value": ...}`` or
``{"ok": false, "code": CODE, "error": "one line"}`` (CODE from :mod:`clovm.core.codes`). A server answers requests on a connection
one after the other until the client closes it: ``call_*`` use one connection per request,
:class:`Channels` keeps one per peer for a run of many calls (clovmmigrate asks every node of a
guest cluster several times; a TLS handshake costs more than the request).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import msgspec

from .. import settings
from ..core import codes

Handler = Callable[[str, dict[str, Any], str], Any | Awaitable[Any]]
MAX_LINE = 16 * 1024 * 1024


class RpcError(Exception):
    """The remote side answered with an error (``code`` is stable, ``message`` one line)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class RpcUnreachable(RpcError):
    def __init__(self, where: str, why: str):
        super().__init__(codes.UNREACHABLE, f"{where}: {why}")


_enc = msgspec.json.Encoder()


async def _serve_conn(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            writer.write(_enc.encode(await _answer(handler, line, peer)) + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()  # no need to wait for the close handshake


async def _answer(handler: Handler, line: bytes, peer: str) -> dict[str, Any]:
    try:
        req = msgspec.json.decode(line)
        op, args = req["op"], dict(req.get("args") or {})
        value = handler(op, args, peer)
        if inspect.isawaitable(value):
            value = await value
        return {"ok": True, "value": value}
    except RpcError as e:
        return {"ok": False, "code": e.code, "error": e.message}
    except (msgspec.DecodeError, KeyError, TypeError) as e:
        return {"ok": False, "code": codes.BAD_REQUEST, "error": f"bad request: {e}"}
    except Exception as e:  # noqa: BLE001 - a bug in a handler must not kill the daemon
        return {"ok": False, "code": codes.INTERNAL, "error": f"{type(e).__name__}: {e}"}


async def serve_unix(path: str | Path, handler: Handler) -> asyncio.Server:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    old = os.umask(0o177)
    try:
        srv = await asyncio.start_unix_server(
            lambda r, w: _serve_conn(handler, r, w, "local"), str(path), limit=MAX_LINE
        )
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return srv


def _peer_cn(writer: asyncio.StreamWriter) -> str:
    cert = writer.get_extra_info("peercert") or {}
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return cast(str, v)
    return ""


async def serve_tls(addr: str, port: int, ctx: ssl.SSLContext, handler: Handler) -> asyncio.Server:
    return await asyncio.start_server(
        lambda r, w: _serve_conn(handler, r, w, _peer_cn(w)), addr, port, ssl=ctx, limit=MAX_LINE, reuse_address=True
    )


async def _call(
    open_conn: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
    where: str,
    op: str,
    timeout: float,
    args: dict[str, Any],
) -> Any:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await open_conn()
            try:
                writer.write(_enc.encode({"op": op, "args": args}) + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        raise RpcUnreachable(where, f"no answer within {timeout:g} s") from None
    except (OSError, ssl.SSLError) as e:
        raise RpcUnreachable(where, e.strerror or str(e)) from None
    if not line:
        raise RpcUnreachable(where, "connection closed without an answer")
    return _value(line)


def _value(line: bytes) -> Any:
    reply = msgspec.json.decode(line)
    if not reply.get("ok"):
        raise RpcError(reply.get("code") or codes.BAD_ANSWER, reply.get("error", "error"))
    return reply.get("value")


class Channels:
    """Mutual-TLS connections kept open, one per (address, port), for a run of many calls.

    One request at a time goes over each connection (calls to the same peer wait their turn;
    calls to different peers run concurrently). A kept connection that the peer closed meanwhile
    (it restarted) is replaced once, and the request sent again: every request clovm sends this
    way may be repeated (clovmmigrate's node operations are idempotent). ``close()`` ends them all.
    """

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx
        self._conns: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def call(self, addr: str, port: int, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any) -> Any:
        key, where = (addr, port), f"{addr}:{port}"
        async with self._locks.setdefault(key, asyncio.Lock()):
            for _ in range(2):
                conn = self._conns.get(key)
                kept = conn is not None
                try:
                    async with asyncio.timeout(timeout):
                        if conn is None:
                            conn = await asyncio.open_connection(
                                addr, port, ssl=self._ctx, server_hostname=None, limit=MAX_LINE
                            )
                            self._conns[key] = conn
                        reader, writer = conn
                        writer.write(_enc.encode({"op": op, "args": args}) + b"\n")
                        await writer.drain()
                        line = await reader.readline()
                except TimeoutError:
                    self._drop(key)
                    raise RpcUnreachable(where, f"no answer within {timeout:g} s") from None
                except (OSError, ssl.SSLError) as e:
                    self._drop(key)
                    if kept:
                        continue
                    raise RpcUnreachable(where, e.strerror or str(e)) from None
                if not line:
                    self._drop(key)
                    if kept:
                        continue
                    raise RpcUnreachable(where, "connection closed without an answer")
                return _value(line)
            raise RpcUnreachable(where, "connection closed without an answer")

    def _drop(self, key: tuple[str, int]) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn[1].close()

    def close(self) -> None:
        for key in list(self._conns):
            self._drop(key)


async def call_unix(path: str | Path, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any) -> Any:
    return await _call(lambda: asyncio.open_unix_connection(str(path), limit=MAX_LINE), str(path), op, timeout, args)


async def call_tls(
    addr: str, port: int, ctx: ssl.SSLContext, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any
) -> Any:
    return await _call(
        lambda: asyncio.open_connection(addr, port, ssl=ctx, server_hostname=None, limit=MAX_LINE),
        f"{addr}:{port}",
        op,
        timeout,
        args,
    )


def call_unix_sync(path: str | Path, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any) -> Any:
    return asyncio.run(call_unix(path, op, timeout, **args))


def call_tls_sync(
    addr: str, port: int, ctx: ssl.SSLContext, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any
) -> Any:
    return asyncio.run(call_tls(addr, port, ctx, op, timeout, **args))
