"""ldmd's pushes to the XSCF: what runs in the PPAR and what its SP saved, told to the xscfd.

:class:`XscfPushes` is mixed into :class:`~clovm.runtime.ldmd.LdmdDaemon`. The PPAR's running
guests (``domains_running``) are pushed to the server's xscfd after every handled event and
``spconfig_saved`` on :class:`~clovm.core.ldm.ConfigSaved`, in order, coalescing consecutive
``domains_running`` pushes and retrying every :data:`PUSH_RETRY_S` seconds (or at once when there
is something new to push) while the xscfd is not reachable.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.ldm import Ldmd
from ..topology import ControlDomain
from .home import Home
from .rpc import RpcError, RpcUnreachable, call_unix

PUSH_RETRY_S = 0.5  # real seconds between attempts to reach an absent xscfd (the supervisor restarts it)


class XscfPushes:
    """The xscfd half of :class:`~clovm.runtime.ldmd.LdmdDaemon` (which provides the attributes
    declared here)."""

    home: Home
    cd: ControlDomain
    machine: Ldmd
    log: Any
    _push_queue: list[tuple[str, dict[str, Any]]]
    _push_wakeup: asyncio.Event

    def running(self) -> list[str]:
        return sorted(self.machine.running())

    def _push_running(self) -> None:
        args = {"ppar": self.cd.ppar, "running": self.running(), "held": sorted(self.machine.domain_names())}
        if self._push_queue and self._push_queue[-1][0] == "domains_running":
            self._push_queue[-1] = ("domains_running", args)
        else:
            self._push_queue.append(("domains_running", args))
        self._push_wakeup.set()

    async def _pusher(self) -> None:
        """Deliver queued pushes to the xscfd in order; retry while it is unreachable."""
        sock = self.home.xscf_socket(self.cd.server)
        while True:
            await self._push_wakeup.wait()
            self._push_wakeup.clear()
            while self._push_queue:
                op, args = self._push_queue.pop(0)
                try:
                    await call_unix(sock, op, **args)
                except RpcUnreachable as e:
                    self.log.info("xscfd_unreachable", op=op, error=str(e))
                    newer = op == "domains_running" and self._push_queue and self._push_queue[0][0] == "domains_running"
                    if not newer:
                        self._push_queue.insert(0, (op, args))
                    # again after a while, or at once when there is news (a restarted xscfd asks)
                    try:
                        await asyncio.wait_for(self._push_wakeup.wait(), PUSH_RETRY_S)
                    except TimeoutError:
                        pass
                    self._push_wakeup.clear()
                except RpcError as e:
                    self.log.warning("xscfd_refused", op=op, code=e.code, error=e.message)
