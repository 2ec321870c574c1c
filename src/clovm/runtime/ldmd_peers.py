"""ldmd's peers: the ldmd-to-ldmd wire format and the links of the migrations in progress.

:func:`encode_peer_msg` / :func:`decode_peer_msg` are the wire form of the core's
:data:`~clovm.core.ldm.PeerMsg` (``{"type": ClassName, **fields}``; also spoken by the Pacemaker
stack's ``hvd``). :class:`PeerLinks` is mixed into :class:`~clovm.runtime.ldmd.LdmdDaemon`: it
sends each peer's messages in order over mutual TLS (``peer {msg, instance, to}``), watches the
peers of the migrations in progress (``link``, every :data:`settings.LDMD_LINK_PING` seconds), and
turns a lost link — a refused connection, a broken one, another ldmd instance answering, or
:data:`settings.LDMD_LINK_GRACE` seconds of silence — into the core's events
(:class:`~clovm.core.ldm.PlacementMoved`, :class:`~clovm.core.ldm.HandoffNotTaken`,
:class:`~clovm.core.ldm.PeerUnreachable`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from .. import settings
from ..core import codes
from ..core._state import MigrationPhase
from ..core.base import Event
from ..core.ldm import (
    Handoff,
    HandoffAcked,
    HandoffNotTaken,
    Ldmd,
    MigrationCancelled,
    MigrationFailed,
    MigrationOffer,
    OfferAccepted,
    OfferRejected,
    PeerMsg,
    PeerUnreachable,
    PlacementMoved,
)
from ..topology import Topology
from . import pki
from .home import Home
from .rpc import RpcError, RpcUnreachable, call_tls

_PEER_TYPES: dict[str, type[PeerMsg]] = {
    c.__name__: c
    for c in (MigrationOffer, OfferAccepted, OfferRejected, Handoff, HandoffAcked, MigrationCancelled, MigrationFailed)
}


def encode_peer_msg(msg: PeerMsg) -> dict[str, Any]:
    """``{"type": ClassName, **fields}``: the wire form of one ldmd-to-ldmd message."""
    return {"type": type(msg).__name__, **msgspec.to_builtins(msg)}


def decode_peer_msg(raw: Any) -> PeerMsg:
    """The inverse of :func:`encode_peer_msg`; raises ``RpcError(codes.BAD_REQUEST)``."""
    if not isinstance(raw, dict):
        raise RpcError(codes.BAD_REQUEST, "peer message must be an object")
    fields = dict(raw)
    cls = _PEER_TYPES.get(str(fields.pop("type", "")))
    if cls is None:
        raise RpcError(codes.BAD_REQUEST, f"unknown peer message type {raw.get('type')!r}")
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as e:
        raise RpcError(codes.BAD_REQUEST, f"bad {cls.__name__}: {e}") from None


def _refused(e: RpcError) -> bool:
    """The connection was refused (or the socket is missing): nothing reached the peer."""
    text = e.message.lower()
    return "refused" in text or "no such file" in text or "connect call failed" in text


def _definite(e: RpcError) -> bool:
    """The peer ldmd is gone for sure: it refused, the connection broke, or it is another ldmd."""
    return e.code == codes.PEER_RESTARTED or (
        isinstance(e, RpcUnreachable) and (_refused(e) or "closed" in e.message.lower() or "reset" in e.message.lower())
    )


class PeerLinks:
    """The peer half of :class:`~clovm.runtime.ldmd.LdmdDaemon` (which provides the attributes
    and the methods declared here)."""

    home: Home
    name: str
    topo: Topology
    machine: Ldmd
    log: Any
    instance: str
    _cd_names: set[str]
    _peer_queues: dict[str, asyncio.Queue[PeerMsg]]
    _link_epoch: dict[str, int]
    _peer_instance: dict[str, str]

    if TYPE_CHECKING:

        def feed(self, event: Event) -> None: ...
        def _spawn_task(self, coro: Any) -> None: ...
        def _read_placement(self, name: str) -> dict[str, Any] | None: ...

    def _send_to_peer(self, peer: str, msg: PeerMsg) -> None:
        q = self._peer_queues.get(peer)
        if q is None:
            q = self._peer_queues[peer] = asyncio.Queue()
            self._spawn_task(self._peer_sender(peer, q))
        q.put_nowait(msg)

    async def _peer_sender(self, peer: str, q: asyncio.Queue[PeerMsg]) -> None:
        """Send ``peer``'s messages one at a time, in order; a failed send → PeerUnreachable.

        A refused connection (nothing was delivered: the peer ldmd is not listening, e.g. while the
        supervisor restarts it) is tried again for :data:`settings.LDMD_CONNECT_RETRY` seconds. The
        messages queued before the link to ``peer`` was lost (:meth:`_link_lost`) are dropped: the
        migrations they belong to ended with the loss."""
        ctx = pki.client_context(self.home, self.name)
        while True:
            msg = await q.get()
            epoch = self._link_epoch.get(peer, 0)
            deadline = time.monotonic() + settings.LDMD_CONNECT_RETRY
            while True:
                try:
                    addr = self.topo.control_domain(peer).address
                    # a message of a migration in progress is for the ldmd instance it began with (an
                    # offer begins one: any instance will do)
                    to = None if isinstance(msg, MigrationOffer) else self._peer_instance.get(peer)
                    v = await call_tls(
                        addr, settings.LDMD_PORT, ctx, "peer", msg=encode_peer_msg(msg), instance=self.instance, to=to
                    )
                    if isinstance(v, dict) and isinstance(v.get("instance"), str):
                        self._peer_seen(peer, v["instance"])
                    break
                except (RpcError, StopIteration) as e:
                    if self._link_epoch.get(peer, 0) != epoch:
                        break  # the link was lost meanwhile
                    if isinstance(e, RpcUnreachable) and _refused(e) and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                        continue
                    self.log.warning("peer_unreachable", peer=peer, msg=type(msg).__name__, error=str(e))
                    # (a StopIteration: topo.control_domain() of an unknown peer, which has no code)
                    code = e.code if isinstance(e, RpcError) else None
                    if code == codes.PEER_RESTARTED:
                        self._peer_instance.pop(peer, None)  # learnt again from its next answer
                    try:
                        self._link_lost(peer, str(e), definite=isinstance(e, RpcError) and _definite(e))
                    except Exception:
                        self.log.exception("feed_failed", peer=peer)
                    break

    # ---------------------------------------------------------------- links of migrations in progress
    def _migration_peers(self) -> set[str]:
        """The peers a migration in progress here depends on: the target of each outgoing one and,
        while an incoming copy is held, every other control domain (its source among them)."""
        peers = {m.target for d in self.machine.domains() if (m := self.machine.migration(d.name)) is not None}
        if self.machine.incoming():
            peers |= self._cd_names - {self.name}
        return peers

    async def _link_monitor(self) -> None:
        """Watch the peers of the migrations in progress, as the migration's connection would: a
        peer whose ldmd refuses connections or answers as another instance (it restarted and
        kept nothing of the migration) has lost the link (:meth:`_link_lost`); one that does not
        answer at all is given :data:`settings.LDMD_LINK_GRACE` seconds."""
        ctx = pki.client_context(self.home, self.name)
        silent: dict[str, float] = {}
        while True:
            await asyncio.sleep(settings.LDMD_LINK_PING)
            peers = self._migration_peers()
            for gone in set(silent) - peers:
                silent.pop(gone, None)
            for gone in set(self._peer_instance) - peers:
                self._peer_instance.pop(gone, None)
            for peer in sorted(peers):
                try:
                    addr = self.topo.control_domain(peer).address
                    v = await call_tls(addr, settings.LDMD_PORT, ctx, "link", timeout=1.0)
                except RpcUnreachable as e:
                    first = silent.setdefault(peer, time.monotonic())
                    if _definite(e) or time.monotonic() - first > settings.LDMD_LINK_GRACE:
                        self._link_lost(peer, e.message, definite=_definite(e))
                        silent.pop(peer, None)
                    continue
                except RpcError as e:
                    self.log.warning("link_refused", peer=peer, code=e.code, error=e.message)
                    continue
                silent.pop(peer, None)
                if isinstance(v, dict) and isinstance(v.get("instance"), str):
                    self._peer_seen(peer, v["instance"])

    def _peer_seen(self, peer: str, instance: str) -> None:
        """``peer`` answered (or wrote) as ``instance``: if that is another ldmd than before, the one
        before is gone, and with it every migration it shared with this one."""
        if peer not in self._migration_peers():
            self._peer_instance.pop(peer, None)  # nothing in progress with it: nothing to lose
            return
        old = self._peer_instance.setdefault(peer, instance)
        if old != instance:
            self._peer_instance.pop(peer, None)
            self._link_lost(peer, "its ldmd restarted", definite=True)

    def _link_lost(self, peer: str, why: str, definite: bool) -> None:
        """The link to ``peer`` broke (``definite``: its ldmd is gone — it refused, the connection
        broke, or another ldmd answers — rather than merely silent). A hand-off to it ends as its
        placement says: the guest placed on ``peer`` (it took it over: :class:`PlacementMoved`), or,
        when the loss is definite, still here (:class:`HandoffNotTaken`: this ldmd resumes it);
        everything else involving ``peer`` ends as the core says for :class:`PeerUnreachable`."""
        if peer not in self._migration_peers():
            return
        self.log.warning("link_lost", peer=peer, why=why, definite=definite)
        self._link_epoch[peer] = self._link_epoch.get(peer, 0) + 1
        q = self._peer_queues.get(peer)
        while q is not None and not q.empty():
            q.get_nowait()
        for d in self.machine.domains():
            m = self.machine.migration(d.name)
            if m is not None and m.target == peer and m.phase is MigrationPhase.HANDOFF:
                placed = self._read_placement(d.name)
                if placed is not None and placed.get("host") == peer:
                    self.feed(PlacementMoved(d.name, peer))
                elif definite and placed is not None and placed.get("host") == self.name:
                    self.feed(HandoffNotTaken(d.name, peer))
        self.feed(PeerUnreachable(peer))
