"""The emulated hypervisor of one host (sans-IO): virsh on top of ldm's domain and migration engine.

:class:`Hypervisor` owns a :class:`clovm.core.ldm.Ldmd` (the domain table and the live-migration
engine: offer/accept, pre-copy rounds, final suspend, hand-off, cancel, failure) and translates:

* ``VirshReceived(req_id, argv)`` → ldm commands (``start-domain``, ``stop-domain``,
  ``migrate-domain -c DOM TARGET``, ``cancel-operation migration DOM``) or a direct answer
  (``list``, ``domstate``); every ldm ``Reply`` becomes exactly one :class:`VirshReplied` with
  virsh's output (``migrate`` answers when the migration ends, as ldm's ``migrate-domain``).
* ldm's other events (peer messages, unreachable peers, domain process exits, ticks) pass through;
  its effects (start/kill/suspend/resume/adopt/release a domain, send to a peer, logs) are
  returned for the driver to execute, in order.

It also keeps what virsh shows beyond ldm's table: the domain ids, which running domains are
paused (frozen by a migration's final phase), autostart flags, and the persistent table
(:meth:`snapshot`, written by the driver after every change; :meth:`load` on restart).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core._state import DomainState
from ..core.base import Effect, Event
from ..core.ldm import (
    PRIMARY,
    SUSPEND_OVERHEAD_S,
    AdoptDomainProcess,
    CommandReceived,
    KillDomainProcess,
    Ldmd,
    MigrationProgress,
    ReleaseDomain,
    Reply,
    ResumeDomainProcess,
    StartDomainProcess,
    SuspendDomainProcess,
)
from . import layout as L
from . import virsh


@dataclass(frozen=True, slots=True)
class VirshReceived(Event):
    req_id: int
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VirshReplied(Effect):
    req_id: int
    result: virsh.Result


class Hypervisor:
    def __init__(
        self,
        host: str,
        *,
        memory_mb: int = L.HOST_MEMORY_MB,
        bandwidth_mb_s: float = L.MIGRATION_BANDWIDTH_MB_S,
        addresses: Mapping[str, str] = L.ADDRESSES,
        hosts: Iterable[str] = L.HOSTS,
    ) -> None:
        self.host = host
        self.ldm = Ldmd(host, 0, host, memory_mb=memory_mb, bandwidth_mb_s=bandwidth_mb_s)
        self._hosts = tuple(hosts)
        self._by_address = {a: n for n, a in addresses.items() if n in self._hosts}
        self._inner = itertools.count(1)
        self._waiting: dict[int, tuple[int, virsh.Command]] = {}  # ldm req id -> (virsh req, cmd)
        self._ids: dict[str, int] = {}
        self._next_id = 1
        self._paused: set[str] = set()
        self._autostart: dict[str, bool] = {}
        self._progress: dict[str, MigrationProgress] = {}  # the last progress of each outgoing migration

    # ---------------------------------------------------------------- persistence
    def load(self, state: Mapping[str, Any], running: Iterable[str], now: float = 0.0) -> list[str]:
        """Restore the table from :meth:`snapshot` output. ``running``: domains whose processes
        exist now (they are taken back as running). Returns the autostart domains to boot."""
        alive = set(running)
        self._next_id = int(state.get("next_id", 1))
        boot = []
        for d in state.get("domains", []):
            name = str(d["name"])
            up = name in alive
            self.ldm.add_domain(
                name,
                int(d["memory_mb"]),
                int(d["vcpu"]),
                float(d["dirty_rate_mb_s"]),
                DomainState.ACTIVE if up else DomainState.INACTIVE,
                started_at=now,
            )
            self._autostart[name] = bool(d.get("autostart", False))
            if up:
                self._ids[name] = int(d.get("id") or self._take_id())
            elif self._autostart[name]:
                boot.append(name)
        return boot

    def snapshot(self) -> dict[str, Any]:
        doms = []
        for d in self.ldm.domains():
            if d.name == PRIMARY or d.name in self.ldm.incoming():
                continue
            up = d.state is DomainState.ACTIVE
            doms.append(
                {
                    "name": d.name,
                    "memory_mb": d.memory_mb,
                    "vcpu": d.vcpu,
                    "dirty_rate_mb_s": d.dirty_rate_mb_s,
                    "state": "running" if up else "shut off",
                    "autostart": self._autostart.get(d.name, False),
                    "id": self._ids.get(d.name) if up else None,
                }
            )
        return {"host": self.host, "domains": doms, "next_id": self._next_id}

    # ---------------------------------------------------------------- views
    def views(self) -> list[virsh.DomainView]:
        out = []
        for d in self.ldm.domains():
            if d.name == PRIMARY:
                continue
            if d.name in self.ldm.incoming():
                out.append(virsh.DomainView(d.name, "paused"))
            elif d.state is DomainState.ACTIVE:
                state = "paused" if d.name in self._paused else "running"
                out.append(virsh.DomainView(d.name, state, self._ids.get(d.name)))
            else:
                out.append(virsh.DomainView(d.name, "shut off"))
        return sorted(out, key=lambda v: (v.id is None, v.id or 0, v.name))

    def running(self) -> list[str]:
        return [v.name for v in self.views() if v.state != "shut off" and v.name not in self.ldm.incoming()]

    def migrating(self) -> dict[str, dict[str, Any]]:
        """Outgoing migrations: ``{domain: {target, phase, round, percent, rounds_max}}``
        (``percent``: the share of the memory already consistent on the target, as ldm's)."""
        out = {}
        for d in self.ldm.domains():
            m = self.ldm.migration(d.name)
            if m is not None:
                last = self._progress.get(d.name)
                out[d.name] = {
                    "target": m.target,
                    "phase": str(m.phase),
                    "round": m.round,
                    "percent": last.percent if last is not None and last.phase == str(m.phase) else 0,
                    "rounds_max": self.ldm.max_precopy_rounds,
                }
        return out

    def info(self) -> dict[str, Any]:
        """The host's memory and migration engine, and each domain's size and dirty rate (what an
        estimate of a live migration's final suspend needs)."""
        doms = {
            d.name: {"memory_mb": d.memory_mb, "vcpu": d.vcpu, "dirty_rate_mb_s": d.dirty_rate_mb_s}
            for d in self.ldm.domains()
            if d.name != PRIMARY and d.name not in self.ldm.incoming()
        }
        return {
            "memory_mb": self.ldm.memory_mb,
            "free_mb": self.ldm.free_memory_mb(),
            "bandwidth_mb_s": self.ldm.bandwidth_mb_s,
            "converge_mb": self.ldm.converge_mb,
            "max_rounds": self.ldm.max_precopy_rounds,
            "suspend_overhead_s": SUSPEND_OVERHEAD_S,
            "domains": doms,
        }

    def next_deadline(self) -> float | None:
        return self.ldm.next_deadline()

    # ---------------------------------------------------------------- events
    def handle(self, now: float, event: Event) -> list[Effect]:
        if isinstance(event, VirshReceived):
            return self._virsh(now, event.req_id, event.argv)
        return self._post(self.ldm.handle(now, event))

    def _virsh(self, now: float, req_id: int, argv: tuple[str, ...]) -> list[Effect]:
        try:
            cmd = virsh.parse(argv)
        except virsh.UsageError as e:
            return [VirshReplied(req_id, virsh.usage_error(e))]
        views = {v.name: v for v in self.views()}
        if cmd.verb == "help":
            return [VirshReplied(req_id, virsh.Result(0, virsh.HELP_TEXT))]
        if cmd.verb == "version":
            return [VirshReplied(req_id, virsh.Result(0, virsh.VERSION_TEXT))]
        if cmd.verb == "list":
            return [VirshReplied(req_id, virsh.Result(0, virsh.render_list(list(views.values()), all=cmd.all)))]
        if cmd.verb == "domstate":
            return [VirshReplied(req_id, virsh.render_domstate(views, cmd.domain))]
        if cmd.domain not in views or cmd.domain == PRIMARY:
            return [VirshReplied(req_id, virsh.unknown_domain(cmd.domain))]
        if cmd.verb == "migrate":
            target = self._by_address.get(cmd.target, cmd.target)
            if target not in self._hosts:
                return [
                    VirshReplied(
                        req_id,
                        virsh.Result(
                            1,
                            "",
                            f"error: Failed to migrate domain '{cmd.domain}'\nerror: unable to connect to "
                            f"server at '{cmd.target}:22': Name or service not known\n",
                        ),
                    )
                ]
            if target == self.host:
                return [
                    VirshReplied(
                        req_id,
                        virsh.Result(
                            1,
                            "",
                            "error: Requested operation is not valid: Attempt to migrate guest to the same host\n",
                        ),
                    )
                ]
            return self._ldm(now, req_id, cmd, ("migrate-domain", "-c", cmd.domain, target))
        if cmd.verb == "start":
            return self._ldm(now, req_id, cmd, ("start-domain", cmd.domain))
        if cmd.verb == "destroy":
            if views[cmd.domain].state == "shut off":
                return [
                    VirshReplied(
                        req_id,
                        virsh.Result(
                            1,
                            "",
                            f"error: Failed to destroy domain '{cmd.domain}'\nerror: Requested operation is "
                            "not valid: domain is not running\n",
                        ),
                    )
                ]
            return self._ldm(now, req_id, cmd, ("stop-domain", cmd.domain))
        if cmd.verb == "domjobabort":
            return self._ldm(now, req_id, cmd, ("cancel-operation", "migration", cmd.domain))
        # reboot: a hard reset (stop, then start); the guest's processes are new ones
        stop = self._ldm(now, -1, cmd, ("stop-domain", cmd.domain))
        failed = [e for e in stop if isinstance(e, VirshReplied) and e.result.rc != 0]
        if failed:
            return [VirshReplied(req_id, failed[0].result)]
        rest = [e for e in stop if not isinstance(e, VirshReplied)]
        return rest + self._ldm(now, req_id, cmd, ("start-domain", cmd.domain))

    def _ldm(self, now: float, req_id: int, cmd: virsh.Command, argv: tuple[str, ...]) -> list[Effect]:
        inner = next(self._inner)
        self._waiting[inner] = (req_id, cmd)
        return self._post(self.ldm.handle(now, CommandReceived(inner, argv)))

    def _post(self, effects: Iterable[Effect]) -> list[Effect]:
        """Translate ldm's replies, and follow ids/paused marks from its effects."""
        out: list[Effect] = []
        for e in effects:
            match e:
                case Reply(req_id=inner, rc=rc, stderr=stderr):
                    waiting = self._waiting.pop(inner, None)
                    if waiting is None:
                        continue
                    req_id, cmd = waiting
                    out.append(VirshReplied(req_id, virsh.from_ldm(cmd, rc, stderr)))
                    continue
                case StartDomainProcess(name=name):
                    self._ids[name] = self._take_id()
                    self._paused.discard(name)
                case AdoptDomainProcess(name=name):
                    self._ids[name] = self._take_id()
                    self._autostart.setdefault(name, False)
                case MigrationProgress(domain=name):
                    self._progress[name] = e
                case SuspendDomainProcess(name=name):
                    self._paused.add(name)
                case ResumeDomainProcess(name=name):
                    self._paused.discard(name)
                case KillDomainProcess(name=name) | ReleaseDomain(name=name):
                    self._paused.discard(name)
                    if isinstance(e, ReleaseDomain):
                        self._ids.pop(name, None)
                        self._autostart.pop(name, None)
            out.append(e)
        return out

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1
