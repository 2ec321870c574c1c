"""The environment of the product-command use cases (pcs ``lib/env.py``): the one injection point.

:class:`Env` is everything :mod:`clovm.api.commands` needs of the world: the datacenter's
topology, one request to a host's node agent or ldmd, and running a clovmmigrate or clovm
migrate machine (:mod:`clovm.core.migration`, :mod:`clovm.core.safemigrate`) on a control domain.
:class:`HomeEnv` is the real one, over a home's unix sockets (:mod:`clovm.runtime.rpc`) and
:mod:`clovm.runtime.migrate_env`; the tests use fakes. Every failure is a
:class:`~clovm.api.errors.ClovmError` whose code is the daemon's own, or UNREACHABLE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from .. import settings, topology
from ..core import codes
from ..core import migration as mig
from ..core import safemigrate as sm
from ..runtime.home import Home
from .errors import ClovmError

Daemon = Literal["node", "ldmd"]
WHAT = {"node": "the cluster node agent", "ldmd": "the logical domains manager (ldmd)"}


class Env(Protocol):
    """What the product commands do to the world (all of it)."""

    def topology(self) -> topology.Topology:
        """The datacenter's topology; NOT_RUNNING if there is no datacenter, BAD_TOPOLOGY."""

    def call(
        self, host: str, daemon: Daemon, op: str, /, *, timeout: float = settings.CALL_TIMEOUT, **args: Any
    ) -> Any:
        """One operation of ``host``'s node agent or ldmd; its value. ClovmError UNREACHABLE (a
        message naming the daemon, the host and the remedy) or with the daemon's code."""

    def clovmmigrate(self, request: mig.Request, out: TextIO, err: TextIO) -> mig.Finished:
        """Run clovmmigrate on ``request.local_host``, its lines to ``out`` / ``err`` as they come."""

    def safe_migration(
        self, request: sm.MigrateRequest, out: TextIO, err: TextIO
    ) -> tuple[mig.Finished, dict[str, Any] | None]:
        """Run clovm migrate on ``request.local_host``; how it finished and its last journal."""

    def recorded_migrations(self, host: str, *, finished: bool = False) -> list[str]:
        """Domains with a clovm migrate journal in progress on ``host`` (``finished``: or done)."""

    def migrate_journal(self, host: str, domain: str) -> tuple[str, dict[str, Any]] | None:
        """(path relative to the host's root, journal) of ``domain``'s clovm migrate in progress,
        else its last finished one, else None; ValueError if it does not parse."""


class HomeEnv:
    """:class:`Env` over a datacenter home (the daemons' unix sockets, the migration journals)."""

    def __init__(self, home: Home) -> None:
        self.home = home

    def topology(self) -> topology.Topology:
        if not self.home.topology_file.exists():
            raise ClovmError(codes.NOT_RUNNING, f"no datacenter in {self.home.root} (start one with clovm up)")
        try:
            return self.home.topology()
        except topology.TopologyError as e:
            raise ClovmError(codes.BAD_TOPOLOGY, f"cannot load the datacenter's topology: {e}") from None

    def call(
        self, host: str, daemon: Daemon, op: str, /, *, timeout: float = settings.CALL_TIMEOUT, **args: Any
    ) -> Any:
        from ..runtime import rpc

        path = self.home.node_socket(host) if daemon == "node" else self.home.ldmd_socket(host)
        try:
            return rpc.call_unix_sync(path, op, timeout, **args)
        except rpc.RpcUnreachable as e:
            raise ClovmError(
                codes.UNREACHABLE,
                f"cannot reach {WHAT[daemon]} on {host}: {_reason(e.message, path)}; "
                f"is the datacenter up (clovm status)?",
            ) from None
        except rpc.RpcError as e:
            raise ClovmError(e.code, e.message) from None

    def clovmmigrate(self, request: mig.Request, out: TextIO, err: TextIO) -> mig.Finished:
        from ..runtime import migrate_env

        return migrate_env.clovmmigrate(self.home, request.local_host, request, out, err)

    def safe_migration(
        self, request: sm.MigrateRequest, out: TextIO, err: TextIO
    ) -> tuple[mig.Finished, dict[str, Any] | None]:
        from ..runtime import migrate_env

        return migrate_env.safe_migration(self.home, request.local_host, request, out, err)

    def recorded_migrations(self, host: str, *, finished: bool = False) -> list[str]:
        from ..runtime import migrate_env

        return migrate_env.recorded_migrations(self.home, host, finished=finished)

    def migrate_journal(self, host: str, domain: str) -> tuple[str, dict[str, Any]] | None:
        from ..runtime import migrate_env

        found = migrate_env.load_migrate_journal(self.home, host, domain)
        if found is None:
            return None
        path, journal = found
        return path.relative_to(self.home.host_root(host)).as_posix(), journal


def _reason(message: str, path: Path) -> str:
    """An RpcUnreachable's message without its ``PATH: `` prefix."""
    prefix = f"{path}: "
    return message.removeprefix(prefix)
