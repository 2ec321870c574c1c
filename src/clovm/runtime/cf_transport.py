"""The CF interconnect of one node: authenticated UDP datagrams carrying ``core.node`` messages.

One UDP socket on ``(address, CF_PORT)``. A datagram is a msgspec JSON object
``{"t": kind, "from": cf, ...fields of the message, "mac": hex}`` (kinds and fields:
:data:`clovm.core.node.MESSAGE_KINDS`); ``mac`` is HMAC-SHA256 with the home's cluster key over
the canonical JSON (sorted keys) of every other field. A datagram is dropped unless its mac
verifies, it decodes into a message of its kind, its sender is a node of the topology, it comes
from that node's address, and no partition fault separates the two hosts. Only loopback
destinations are ever used.

*Partition fault.* ``run/partition.json`` ``{"groups": [[host...], [host...]]}`` (host = domain or
control-domain name) is re-read when it changes. Two hosts listed in different groups cannot
exchange datagrams (checked when sending and when receiving); a host listed in no group is not
affected.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import msgspec
import structlog

from .. import settings
from ..core.node import MESSAGE_KIND, MESSAGE_KINDS, PeerMessage
from ..fsutil import WatchedJson

log = structlog.get_logger()

DRAIN_MAX = 1024  # datagrams read in one turn of the event loop (see _CfProtocol)

_enc = msgspec.json.Encoder(order="sorted")


def datagram_mac(key: bytes, fields: dict[str, Any]) -> str:
    """Hex HMAC-SHA256 over the canonical JSON (sorted keys, no spaces) of ``fields``."""
    return hmac.new(key, _enc.encode(fields), hashlib.sha256).hexdigest()


def encode_datagram(key: bytes, fields: dict[str, Any]) -> bytes:
    """``fields`` plus their ``mac``, as JSON bytes."""
    return _enc.encode({**fields, "mac": datagram_mac(key, fields)})


def decode_datagram(key: bytes, data: bytes) -> dict[str, Any] | None:
    """The fields of an authentic datagram (``mac`` removed), or None for anything else."""
    try:
        msg = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    mac = msg.pop("mac", None)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, datagram_mac(key, msg)):
        return None
    if not isinstance(msg.get("t"), str) or not isinstance(msg.get("from"), str):
        return None
    return msg


def to_message(fields: dict[str, Any]) -> PeerMessage | None:
    """The message an authentic datagram carries (None: unknown kind or malformed fields)."""
    cls = MESSAGE_KINDS.get(fields["t"])
    if cls is None:
        return None
    body = {k: v for k, v in fields.items() if k not in ("t", "from")}
    try:
        return msgspec.convert(body, cls, strict=False)
    except msgspec.ValidationError:
        return None


def message_fields(message: PeerMessage) -> dict[str, Any]:
    return {"t": MESSAGE_KIND[type(message)], **asdict(message)}


@functools.lru_cache(maxsize=1024)
def require_loopback(address: str) -> str:
    """``address`` itself, if it is in 127.0.0.0/8 (remembered: every datagram and agent run asks)."""
    if not ipaddress.ip_address(address).is_loopback:
        raise RuntimeError(f"{address} is outside 127.0.0.0/8: the emulated datacenter uses loopback only")
    return address


class _CfProtocol(asyncio.DatagramProtocol):
    """Hands every datagram on, and drains the socket while at it.

    asyncio reads one datagram per turn of the event loop. When the loop is slow (a node
    starting its shutdown agents on a machine where 40 daemons boot at once), 15 peers' heartbeats
    arrive faster than one per turn: they would queue in the socket buffer, and CF would count a
    peer whose heartbeat is waiting there as silent. So every turn that reads one reads them all.
    """

    def __init__(self, on_datagram: Callable[[bytes, Any], None], sock: socket.socket):
        self.on_datagram, self.sock = on_datagram, sock

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.on_datagram(data, addr)
        for _ in range(DRAIN_MAX):
            try:
                data, addr = self.sock.recvfrom(65536)
            except OSError:  # drained (BlockingIOError), or an ICMP error: best effort, as below
                return
            self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a peer that is not running: heartbeats are best effort


class CfTransport:
    """The node's CF socket: ``send`` messages to peers, ``on_message(sender, message)`` for each
    authentic one received."""

    def __init__(
        self,
        *,
        host: str,
        cf: str,
        address: str,
        key: bytes,
        peers: dict[str, tuple[str, str]],
        partition: WatchedJson,
        on_message: Callable[[str, PeerMessage], None],
    ):
        self.host, self.cf, self.address, self.key = host, cf, require_loopback(address), key
        self.peers = peers  # cf -> (host name, address)
        self._partition = partition
        self.on_message = on_message
        self._udp: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.address, settings.CF_PORT))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(lambda: _CfProtocol(self._received, sock), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._udp = transport

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def separated(self, peer_cf: str) -> bool:
        """True if a partition fault puts this host and the peer's host in different groups."""
        p = self._partition.get()
        if not isinstance(p, dict):
            return False
        mine = theirs = None
        peer_host = self.peers[peer_cf][0]
        for i, group in enumerate(p.get("groups") or []):
            if not isinstance(group, list):
                continue
            if self.host in group:
                mine = i
            if peer_host in group:
                theirs = i
        return mine is not None and theirs is not None and mine != theirs

    def send(self, peer_cf: str, message: PeerMessage) -> None:
        if self._udp is None or peer_cf not in self.peers or self.separated(peer_cf):
            return
        addr = require_loopback(self.peers[peer_cf][1])
        fields = {**message_fields(message), "from": self.cf}
        self._udp.sendto(encode_datagram(self.key, fields), (addr, settings.CF_PORT))

    def _received(self, data: bytes, addr: tuple[Any, int]) -> None:
        fields = decode_datagram(self.key, data)
        if fields is None:
            log.warning("datagram dropped: not authentic", source=str(addr[0]))
            return
        sender = fields["from"]
        peer = self.peers.get(sender)
        if peer is None or peer[1] != addr[0] or self.separated(sender):
            return
        message = to_message(fields)
        if message is None:
            log.warning("datagram dropped: malformed", sender=sender, kind=fields["t"])
            return
        self.on_message(sender, message)
