"""What a node's shutdown agents do on the wire: SSH and SNMPv3 to the XSCFs, reported as events.

The core node decides *when* an agent runs and *what its result means*
(:func:`clovm.core.node.agent_result`); this module only talks to the XSCF and says what happened:

* **init / test** (a *probe*): SSH ``showdomainstatus -p PPAR`` on the agent's LAN (an unknown
  host key there is :class:`~clovm.core.node.XscfHostKeyUnknown` — the product's message 7245),
  then an SNMP status query of the domain (:class:`~clovm.core.node.XscfAnswered`);
* **kill**: an SNMP panic or reset, as the agent's name says;
* anything else that goes wrong is :class:`~clovm.core.node.XscfRequestFailed` with one line;
  a run that takes longer than its timeout reports nothing (SF's own deadline counts it).

The XSCF address is the entry's LAN#0 or LAN#1 per ``_state.AGENT_LAN``.

Probe sharing (an execution strategy, not a rule of the product). The agents ``…g0p``/``…g0r`` of
a node (and ``g1p``/``g1r``) probe the same thing, and an init is followed at once by a test: a
probe of the same (generation, address, PPAR, domain, user) that is running is joined, and one that
finished less than PROBE_FRESH real seconds ago answers again. The generation is the core node's
SF request generation, so the runs an operator's ``sdtool -b``/``-r``, ``sf_test`` or
clovmmigrate's SF start begin always probe afresh. At most PROBE_CONCURRENCY probes of a node run
at once, first come first served, so that N restarted shutdown facilities do not starve the
heartbeats of 2 CPUs; each node tests on its own schedule.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from .. import settings
from ..core import messages
from ..core._state import AGENT_ACTION, AGENT_LAN
from ..core.base import Event
from ..core.fencing import KILL_ACTION, RunAgent
from ..core.node import XscfAnswered, XscfHostKeyUnknown, XscfRequestFailed
from ..core.sfconfig import XscfEntry
from .cf_transport import require_loopback

log = structlog.get_logger()

PROBE_FRESH = 0.25  # real seconds a finished XSCF probe still answers for another agent run
PROBE_CONCURRENCY = 4  # XSCF probes one node runs at once
PROBE_SNMP_TIMEOUT = 2.0  # real seconds a probe's SNMP query waits (less only if its run has less left)
DOMAIN_STATUS_TIMEOUT = 2.0  # real seconds a domain status query waits per LAN
XSCF_CHECK_SNMP_TIMEOUT = 1.0  # real seconds an xscf_check SNMP query waits per LAN


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _left(deadline: float) -> float:
    """Real seconds an SNMP query may wait before ``deadline`` (loop time). Quantised to 0.5 s, at
    least 0.5: XscfSnmpClient keeps one transport target per (address, port, timeout)."""
    return max(0.5, round((deadline - asyncio.get_running_loop().time()) * 2) / 2)


class XscfAgents:
    """The XSCF clients of one node (made at the first use: a control domain never needs them)."""

    def __init__(self, host: str, secrets: dict[str, Any], known_hosts: Any):
        self.host, self.secrets, self.known_hosts = host, secrets, known_hosts
        self._snmp: Any = None
        self._ssh: dict[str, Any] = {}  # XSCF user -> XscfSshPool
        self._probes: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._probe_done: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._slots = asyncio.Semaphore(PROBE_CONCURRENCY)

    def snmp(self) -> Any:
        if self._snmp is None:
            from .snmp import XscfSnmpClient  # pysnmp: only nodes that run SF import it

            s = self.secrets
            user = s.get("xscf_user") or s.get("snmp_user") or settings.XSCF_USER  # the XSCFs' USM user
            self._snmp = XscfSnmpClient(str(user), str(s["snmp_auth"]), str(s["snmp_priv"]))
        return self._snmp

    def _pool(self, user: str) -> Any:
        pool = self._ssh.get(user)
        if pool is None:
            from .ssh import XscfSshPool

            v = self.secrets.get("xscf_password", self.secrets.get("password"))
            pool = self._ssh[user] = XscfSshPool(user, None if v is None else str(v), self.known_hosts)
        return pool

    def close(self) -> None:
        if self._snmp is not None:
            self._snmp.close()
        for pool in self._ssh.values():
            pool.close()

    # ---- agent runs ---------------------------------------------------------------------------
    async def run(self, run: RunAgent, generation: int, real_timeout: float) -> Event | None:
        """One agent run: what the XSCF did (None: no answer within ``real_timeout`` seconds)."""
        from .ssh import XscfHostKeyUnknown as _Unknown

        entry = run.entry
        try:
            addr = require_loopback(entry.lan0 if AGENT_LAN[run.agent] == 0 else entry.lan1)
            async with asyncio.timeout(real_timeout):
                if run.action == KILL_ACTION:
                    client = self.snmp()
                    act = client.panic if AGENT_ACTION[run.agent] == "panic" else client.reset
                    r = await act(
                        addr,
                        settings.SNMP_PORT,
                        entry.ppar_id,
                        entry.domain,
                        timeout=_left(asyncio.get_running_loop().time() + real_timeout),
                    )
                    return XscfAnswered(run, r.ok, str(r.status or ""), r.text)
                ok, status, text = await self._probe(generation, entry, addr, real_timeout)
                return XscfAnswered(run, ok, status, text)
        except TimeoutError:
            return None
        except _Unknown:
            return XscfHostKeyUnknown(run)
        except Exception as ex:  # noqa: BLE001 - every failure of an agent is a one-line result, never a crash
            return XscfRequestFailed(run, one_line(ex))

    async def _probe(self, generation: int, entry: XscfEntry, addr: str, real: float) -> tuple[bool, str, str]:
        key = (generation, addr, entry.ppar_id, entry.domain, entry.user)
        loop = asyncio.get_running_loop()
        done = self._probe_done.get(key)
        if done is not None and loop.time() - done[0] <= PROBE_FRESH:
            outcome = done[1]
        else:
            task = self._probes.get(key)
            if task is None:
                task = self._probes[key] = asyncio.ensure_future(self._probe_once(entry, addr, real))

                def finished(t: asyncio.Future[Any], key: tuple[Any, ...] = key) -> None:
                    self._probe_finished(key, t)

                task.add_done_callback(finished)
            outcome = await asyncio.shield(task)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    def _probe_finished(self, key: tuple[Any, ...], task: asyncio.Future[Any]) -> None:
        if self._probes.get(key) is task:
            del self._probes[key]
        if not task.cancelled():
            now = asyncio.get_running_loop().time()
            self._probe_done = {k: v for k, v in self._probe_done.items() if now - v[0] <= PROBE_FRESH}
            self._probe_done[key] = (now, task.result())

    async def _probe_once(self, entry: XscfEntry, addr: str, real: float) -> tuple[bool, str, str] | Exception:
        try:
            async with self._slots:
                deadline = asyncio.get_running_loop().time() + real
                async with asyncio.timeout_at(deadline):
                    return await self._query(entry, addr, deadline)
        except Exception as ex:  # noqa: BLE001 - handed to every agent run that joined this probe
            return ex

    async def _query(self, entry: XscfEntry, addr: str, deadline: float) -> tuple[bool, str, str]:
        """SSH ``showdomainstatus`` then the SNMP status of the domain: (ok, status, text)."""
        client = self.snmp()
        command = ["showdomainstatus", "-p", str(entry.ppar_id)]
        rc, out, err = await self._pool(entry.user).exec(addr, settings.XSCF_SSH_PORT, command, timeout=_left(deadline))
        if rc != 0:
            raise RuntimeError(messages.xscf_command_failed(addr, command[0], rc, err or out))
        # One fixed SNMP timeout (the run's own deadline bounds the whole probe): the client keeps
        # one transport target per (address, timeout), so a probe never builds a new one.
        r = await client.status(
            addr, settings.SNMP_PORT, entry.ppar_id, entry.domain, timeout=min(PROBE_SNMP_TIMEOUT, _left(deadline))
        )
        return r.ok, str(r.status or ""), r.text

    # ---- the hypervisor side, as CF asks about it ---------------------------------------------
    async def domain_status(self, node: str, entry: XscfEntry) -> str | None:
        """The XSCF's status of ``node``'s domain, asked on LAN#0 then LAN#1 (None: no answer)."""
        for addr in (entry.lan0, entry.lan1):
            try:
                r = await self.snmp().status(
                    require_loopback(addr),
                    settings.SNMP_PORT,
                    entry.ppar_id,
                    entry.domain,
                    timeout=DOMAIN_STATUS_TIMEOUT,
                )
            except Exception as ex:  # noqa: BLE001 - no answer from that LAN: try the next one
                log.info("domain status: XSCF did not answer", node=node, xscf=addr, error=one_line(ex))
                continue
            if r.ok:
                return str(r.status)
        return None

    async def check(self, lan0: str, lan1: str, ppar: int, domain: str) -> tuple[bool, tuple[tuple[str, bool], ...]]:
        """``xscf_check``: both host keys in known_hosts (the lookup the SSH agents make before
        they report 7245), and whether each LAN's SNMP agent answers at all."""
        from .ssh import has_entry

        known = all(has_entry(self.known_hosts, a, settings.XSCF_SSH_PORT) for a in (lan0, lan1))

        async def answers(addr: str) -> bool:
            try:
                await self.snmp().status(
                    require_loopback(addr), settings.SNMP_PORT, ppar, domain, timeout=XSCF_CHECK_SNMP_TIMEOUT
                )
                return True
            except Exception:  # noqa: BLE001 - unreachable, refused, not an address of the emulated datacenter
                return False

        up = await asyncio.gather(answers(lan0), answers(lan1))
        return known, (("lan0", up[0]), ("lan1", up[1]))
