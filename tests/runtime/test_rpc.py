"""runtime.rpc: requests over unix sockets and mutual TLS; kept TLS channels (rpc.Channels)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clovm.runtime import pki, rpc
from clovm.runtime.home import Home
from helpers import wait_until_async

ADDR = "127.67.250.1"
PORT = 19796


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path)
    pki.ensure_pki(h, {"server": ADDR, "client": None})
    return h


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_channels_keep_one_connection_per_peer_and_replace_a_dropped_one(home: Home) -> None:
    conns: list[asyncio.Task[object]] = []

    def handler(op: str, args: dict, peer: str) -> object:
        task = asyncio.current_task()  # one serving task per connection
        assert task is not None
        if task not in conns:
            conns.append(task)
        if op == "fail":
            raise rpc.RpcError("NOPE", "it failed")
        return {"op": op, "args": args, "peer": peer}

    server = await rpc.serve_tls(ADDR, PORT, pki.server_context(home, "server"), handler)
    channels = rpc.Channels(pki.client_context(home, "client"))
    try:
        for i in range(3):
            assert await channels.call(ADDR, PORT, "echo", n=i) == {"op": "echo", "args": {"n": i}, "peer": "client"}
        with pytest.raises(rpc.RpcError) as ei:
            await channels.call(ADDR, PORT, "fail")
        assert ei.value.code == "NOPE"
        # concurrent calls to one peer take turns on its one connection
        answers = await asyncio.gather(*(channels.call(ADDR, PORT, "echo", n=i) for i in range(5)))
        assert [a["args"]["n"] for a in answers] == list(range(5))
        assert len(conns) == 1
        # one request per connection, as every admin command does, is still answered
        assert (await rpc.call_tls(ADDR, PORT, pki.client_context(home, "client"), "echo"))["op"] == "echo"
        assert len(conns) == 2

        # the peer restarts: the kept connection is dead; the call goes over a new one, once
        server.close()
        await server.wait_closed()
        for c in conns:
            c.cancel()  # (what the peer's exit does to its connections)
        await wait_until_async(
            lambda: all(c.done() for c in conns),
            5,
            what="the old server's connection tasks to end (and close their sockets)",
        )
        server = await rpc.serve_tls(ADDR, PORT, pki.server_context(home, "server"), handler)
        assert (await channels.call(ADDR, PORT, "echo", n=9))["args"] == {"n": 9}
        assert len(conns) == 3
    finally:
        channels.close()
        server.close()
        await server.wait_closed()
    # nobody listening: unreachable, one line
    with pytest.raises(rpc.RpcUnreachable, match=f"{ADDR}:{PORT}"):
        await rpc.Channels(pki.client_context(home, "client")).call(ADDR, PORT, "echo", timeout=2)
