"""ldmd's requests: the operations its unix socket and its TLS server serve.

:class:`LdmdRequests` is mixed into :class:`~clovm.runtime.ldmd.LdmdDaemon`; the operations and
their answers are listed in that module's docstring. ``ldm migrate-domain`` is prepared here
before the core sees it: the target host resolved through this control domain's
``etc/inet/hosts`` to a control domain's name, ``-p FILE`` checked against the secrets'
``ldm_password``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import formats
from ..core import codes
from ..core.base import Event
from ..core.ldm import CommandReceived, Ldmd, MigrationAbortArmed, PeerMessageReceived, Reply
from ..fsutil import read_text_or
from ..topology import ControlDomain, Topology
from .clock import EmuClock
from .home import Home
from .ldmd_peers import decode_peer_msg
from .ldmd_procs import _Proc
from .rpc import RpcError


class LdmdRequests:
    """The request half of :class:`~clovm.runtime.ldmd.LdmdDaemon` (which provides the attributes
    and the methods declared here)."""

    home: Home
    name: str
    topo: Topology
    cd: ControlDomain
    clock: EmuClock
    machine: Ldmd
    log: Any
    instance: str
    _cd_names: set[str]
    _req_ids: itertools.count[int]
    _pending: dict[int, asyncio.Future[Reply]]
    _loop: asyncio.AbstractEventLoop
    _procs: dict[str, _Proc]
    _sp_saved: list[str] | None
    _push_queue: list[tuple[str, dict[str, Any]]]

    if TYPE_CHECKING:

        def feed(self, event: Event) -> None: ...
        def _push_running(self) -> None: ...
        def _peer_seen(self, peer: str, instance: str) -> None: ...
        def _kill_pid(self, pid: int, sig: int) -> bool: ...

    async def _handle_unix(self, op: str, args: dict[str, Any], peer: str) -> Any:
        match op:
            case "kill_domain":
                return self._kill_domain(str(args["domain"]), str(args.get("how", "kill")))
            case "arm_abort":
                self.feed(MigrationAbortArmed(str(args["domain"])))
                return None
            case "push":  # a restarted xscfd asks for what runs (and what the SP saved) again
                if self._sp_saved is not None:
                    self._push_queue.append(("spconfig_saved", {"ppar": self.cd.ppar, "domains": self._sp_saved}))
                self._push_running()
                return None
        return await self._handle_common(op, args)

    async def _handle_tls(self, op: str, args: dict[str, Any], peer: str) -> Any:
        if peer not in self._cd_names:
            raise RpcError(codes.FORBIDDEN, f"{peer or 'anonymous'} is not a control domain")
        if op == "peer":
            msg = decode_peer_msg(args.get("msg"))
            to = args.get("to")
            if to and to != self.instance:
                # meant for the ldmd that ran here before this one: it knows nothing of that migration
                raise RpcError(
                    codes.PEER_RESTARTED,
                    f"ldmd on {self.name} restarted; it knows nothing of the migrations of the one before",
                )
            inst = args.get("instance") if isinstance(args.get("instance"), str) else None
            if inst is not None:
                self._peer_seen(peer, inst)  # a new instance: what the one before shared with us is lost
            self.feed(PeerMessageReceived(peer, msg))
            if inst is not None:
                self._peer_seen(peer, inst)  # (for the migration this message began)
            return {"instance": self.instance}
        if op == "link":
            return {"instance": self.instance}
        return await self._handle_common(op, args)

    async def _handle_common(self, op: str, args: dict[str, Any]) -> Any:
        """The operations both channels serve."""
        match op:
            case "ldm":
                return await self._ldm(args.get("argv"))
            case "domains":
                return self._domains()
            case "cd_info":
                return self._cd_info()
            case "activity":
                return self._activity()
            case "where":
                return self._where(args.get("domain"))
        raise RpcError(codes.UNKNOWN_OP, f"unknown op {op!r}")

    async def _ldm(self, argv: Any) -> dict[str, Any]:
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise RpcError(codes.BAD_REQUEST, "argv must be a list of strings")
        args = tuple(argv)
        if args and args[0] == "migrate-domain":
            prepared = self._prepare_migrate(args)
            if isinstance(prepared, str):
                return {"rc": 1, "stdout": "", "stderr": prepared}
            args = prepared
        req_id = next(self._req_ids)
        fut: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[req_id] = fut
        self.feed(CommandReceived(req_id, args))
        r = await fut
        return {"rc": r.rc, "stdout": r.stdout, "stderr": r.stderr}

    def _prepare_migrate(self, argv: tuple[str, ...]) -> tuple[str, ...] | str:
        """Resolve the target host and check ``-p``; the new argv, or an error text (rc 1).

        Malformed command lines are passed through unchanged: the core owns their messages.
        """
        pos: list[int] = []
        pwfile: str | None = None
        i = 1
        while i < len(argv):
            a = argv[i]
            if a == "-p":
                if i + 1 >= len(argv):
                    return argv
                pwfile = argv[i + 1]
                i += 1
            elif not a.startswith("-"):
                pos.append(i)
            i += 1
        if len(pos) != 2 or ("-c" in argv and pwfile is not None):
            return argv
        target = argv[pos[1]].rpartition("@")[2]
        if ":" in target:
            return argv
        addr = formats.resolve(read_text_or(self.home.hosts_file(self.name), ""), target)
        if addr is None:
            return f"Error: cannot resolve target host {target}\n"
        cd = next((c for c in self.topo.control_domains if c.address == addr), None)
        if cd is None:
            return f"Error: {target} is not a control domain running ldmd\n"
        if pwfile is not None:
            err = self._check_password(pwfile)
            if err:
                return err
        out = list(argv)
        out[pos[1]] = cd.name
        return tuple(out)

    def _check_password(self, pwfile: str) -> str | None:
        root = self.home.host_root(self.name)
        candidates = [root / pwfile.lstrip("/"), Path(pwfile)]
        for path in candidates:
            try:
                text = path.read_text(encoding="utf-8")
                break
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            except OSError as e:
                return f"Error: cannot read password file {pwfile}: {e.strerror}\n"
        else:
            return f"Error: password file {pwfile} not found\n"
        given = (text.splitlines() or [""])[0]
        wanted = str(self.home.secrets().get("ldm_password", ""))
        if not wanted or not hmac.compare_digest(given.encode(), wanted.encode()):
            return "Error: authentication to target failed\n"
        return None

    def _kill_domain(self, domain: str, how: str) -> dict[str, Any]:
        p = self._procs.get(domain)
        if p is None:
            raise RpcError(codes.NOT_RUNNING, f"domain {domain} has no running process on {self.name}")
        self.log.info("kill_domain", domain=domain, how=how, pid=p.pid)
        self._kill_pid(p.pid, signal.SIGKILL)
        return {"pid": p.pid}

    def _domains(self) -> list[dict[str, Any]]:
        out = []
        now = self.clock.now()
        for d in self.machine.domains():
            p = self._procs.get(d.name)
            out.append(
                {
                    "name": d.name,
                    "state": str(d.state),
                    "flags": d.flags,
                    "cons": d.cons,
                    "vcpu": d.vcpu,
                    "memory_mb": d.memory_mb,
                    "pid": p.pid if p else None,
                    "migration": self.machine.migration_status(d.name, now),
                }
            )
        return out

    def _activity(self) -> dict[str, list[str]]:
        journals: set[str] = set()
        d = self.home.migrate_dir(self.name)
        for suffix in (".journal.json", ".migrate.json"):
            journals.update(p.name.removesuffix(suffix) for p in d.glob(f"*{suffix}") if p.is_file())
        migrating = {x.name for x in self.machine.domains() if self.machine.migration(x.name) is not None}
        return {"journals": sorted(journals), "migrating": sorted(migrating | self.machine.incoming())}

    def _where(self, domain: Any) -> dict[str, Any] | None:
        if not isinstance(domain, str):
            raise RpcError(codes.BAD_REQUEST, "where: domain must be a domain name")
        row = next((x for x in self._domains() if x["name"] == domain), None)
        if row is None:
            return None
        moving = self.machine.migration(domain) is not None
        return {"state": row["state"], "flags": row["flags"], "migration": row["migration"] if moving else None}

    def _cd_info(self) -> dict[str, Any]:
        return self.topo.control_domain_facts(self.name).info()
