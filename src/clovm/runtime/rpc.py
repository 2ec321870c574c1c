"""Request/reply over unix sockets (local, mode 0600) and mutual-TLS TCP (between hosts).

One request per connection, one JSON line each way:
``{"op": str, "args": {...}}`` → ``{"ok": true, "value": ...}`` or
``{"ok": false, "code": "CODE", "error": "one line"}``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import ssl
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgspec

from .. import settings

Handler = Callable[[str, dict, str], Any | Awaitable[Any]]
MAX_LINE = 16 * 1024 * 1024


class RpcError(Exception):
    """The remote side answered with an error (``code`` is stable, ``message`` one line)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class RpcUnreachable(RpcError):
    def __init__(self, where: str, why: str):
        super().__init__("UNREACHABLE", f"{where}: {why}")


_enc = msgspec.json.Encoder()


async def _serve_conn(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
    try:
        line = await reader.readline()
        if not line:
            return
        try:
            req = msgspec.json.decode(line)
            op, args = req["op"], dict(req.get("args") or {})
            value = handler(op, args, peer)
            if inspect.isawaitable(value):
                value = await value
            reply = {"ok": True, "value": value}
        except RpcError as e:
            reply = {"ok": False, "code": e.code, "error": e.message}
        except (msgspec.DecodeError, KeyError, TypeError) as e:
            reply = {"ok": False, "code": "BAD_REQUEST", "error": f"bad request: {e}"}
        except Exception as e:  # a bug in a handler must not kill the daemon
            reply = {"ok": False, "code": "INTERNAL", "error": f"{type(e).__name__}: {e}"}
        writer.write(_enc.encode(reply) + b"\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()  # one request per connection; no need to wait for the close handshake


async def serve_unix(path: str | Path, handler: Handler) -> asyncio.Server:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    old = os.umask(0o177)
    try:
        srv = await asyncio.start_unix_server(lambda r, w: _serve_conn(handler, r, w, "local"), str(path), limit=MAX_LINE)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return srv


def _peer_cn(writer: asyncio.StreamWriter) -> str:
    cert = writer.get_extra_info("peercert") or {}
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return ""


async def serve_tls(addr: str, port: int, ctx: ssl.SSLContext, handler: Handler) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: _serve_conn(handler, r, w, _peer_cn(w)), addr, port, ssl=ctx,
                                      limit=MAX_LINE, reuse_address=True)


async def _call(open_conn: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]], where: str,
                op: str, timeout: float, args: dict) -> Any:
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
    reply = msgspec.json.decode(line)
    if not reply.get("ok"):
        raise RpcError(reply.get("code", "ERROR"), reply.get("error", "error"))
    return reply.get("value")


async def call_unix(path: str | Path, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any) -> Any:
    return await _call(lambda: asyncio.open_unix_connection(str(path), limit=MAX_LINE), str(path), op, timeout, args)


async def call_tls(addr: str, port: int, ctx: ssl.SSLContext, op: str, timeout: float = settings.CALL_TIMEOUT,
                   **args: Any) -> Any:
    return await _call(lambda: asyncio.open_connection(addr, port, ssl=ctx, server_hostname=None, limit=MAX_LINE),
                       f"{addr}:{port}", op, timeout, args)


def call_unix_sync(path: str | Path, op: str, timeout: float = settings.CALL_TIMEOUT, **args: Any) -> Any:
    return asyncio.run(call_unix(path, op, timeout, **args))


def call_tls_sync(addr: str, port: int, ctx: ssl.SSLContext, op: str, timeout: float = settings.CALL_TIMEOUT,
                  **args: Any) -> Any:
    return asyncio.run(call_tls(addr, port, ctx, op, timeout, **args))
