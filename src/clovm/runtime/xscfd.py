"""xscfd: the XSCF (service processor) of one emulated SPARC M10 server, as a real daemon.

``python -m clovm.runtime.xscfd --home H --name SERVER`` runs the :class:`clovm.core.sp.Xscf`
core of server ``SERVER`` of the home's topology and serves it on three channels:

* **SNMPv3** (``runtime/snmp.py``) on ``(lan0, SNMP_PORT)`` and ``(lan1, SNMP_PORT)``: the shutdown
  agents' status / panic / reset requests become ``DomainStatusRequested`` /
  ``DomainPanicRequested`` / ``DomainResetRequested`` events addressed to the LAN's *address*;
  the core's :class:`~clovm.core.sp.SpReply` is the answer, and no reply (LAN down in the core)
  means no SNMP response at all.
* **SSH** (``runtime/ssh.py``) on both LANs at ``XSCF_SSH_PORT`` with the XSCF CLI commands
  ``showdomainstatus -p N [-g DOMAIN]``, ``showpparstatus -a|-p N``, ``version [-c xcp]`` and
  ``showhostkey`` (see :meth:`XscfDaemon.cli`).
* The **hypervisor channel**, a unix socket at ``Home.xscf_socket(SERVER)`` (``rpc.serve_unix``):
  ``domains_running {ppar, running}``, ``spconfig_saved {ppar, domains}``,
  ``lan {lan: 0|1, up}`` (also closes / reopens that LAN's SNMP and SSH sockets, so a LAN that is
  down is really silent) and ``status {ppar}`` → ``{domain: status}``.

``PanicDomain`` / ``ResetDomain`` effects of the core are carried out by the ldmd of the PPAR's
control domain: ``kill_domain {domain, how: "panic"|"reset"}`` on ``Home.ldmd_socket(host)``, in a
background task (a failure is logged; the XSCF has already answered the agent).

The core has no timers, so it is driven synchronously: every event goes straight to
``Xscf.handle(clock.now(), event)`` and the effects are applied at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence
from typing import Any

import structlog

from .. import settings
from ..core import codes
from ..core._state import SpDomainStatus
from ..core.base import Effect, Event
from ..core.sp import (
    DomainPanicRequested,
    DomainResetRequested,
    DomainsRunningReported,
    DomainStatusRequested,
    LanStateChanged,
    PanicDomain,
    ResetDomain,
    SpconfigSaved,
    SpReply,
    Xscf,
)
from ..topology import Topology
from . import proc, rpc
from .clock import EmuClock
from .home import Home
from .snmp import SnmpCredentials, XscfSnmpAgent
from .ssh import XscfSshServer

__all__ = ["XCP_VERSION", "XscfDaemon", "main", "run"]

XCP_VERSION = "2361"
"""The XCP firmware version the emulated XSCF reports (``version -c xcp``)."""

CONTROL_DOMAIN = "primary"
"""How the XSCF names the control domain of every PPAR."""

CliResult = tuple[int, str, str]

_NAME_WIDTH = 25  # "Logical Domain Name" column of showdomainstatus
_PPAR_WIDTH = 15  # "PPAR-ID" column of showpparstatus


class XscfDaemon:
    """One server's XSCF: the core machine plus its SNMP agent, SSH CLI and hypervisor channel.

    Args:
        home: the datacenter home.
        name: the server name in the home's topology.

    Raises:
        KeyError: the topology has no server ``name``.
    """

    def __init__(self, home: Home, name: str) -> None:
        self.home, self.name = home, name
        self.topology: Topology = home.topology()
        try:
            server = self.topology.server(name)
        except StopIteration:
            raise KeyError(f"server {name!r} is not in {home.topology_file}") from None
        self.lans: tuple[str, str] = (server.lan0, server.lan1)
        self.core = Xscf(name, server.lan0, server.lan1, server.ppars)
        self.clock = EmuClock(home)
        self.log = structlog.get_logger().bind(daemon="xscfd", name=name)
        self._req_ids = itertools.count(1)
        self._kills: set[asyncio.Task[None]] = set()
        self._snmp: XscfSnmpAgent | None = None
        self._ssh: XscfSshServer | None = None
        self._rpc: asyncio.Server | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the hypervisor socket, the SNMP agent and the SSH server (all or nothing)."""
        secrets = self.home.secrets()
        try:
            self._snmp = XscfSnmpAgent(
                self,
                [(lan, settings.SNMP_PORT) for lan in self.lans],
                SnmpCredentials(secrets["xscf_user"], secrets["snmp_auth"], secrets["snmp_priv"]),
                name=self.name,
                engine_id=snmp_engine_id(self.name),
            )
            await self._snmp.start()
            self._ssh = XscfSshServer(
                self.cli,
                list(self.lans),
                settings.XSCF_SSH_PORT,
                self.home.server_dir(self.name) / "ssh_host_key",
                {secrets["xscf_user"]: secrets["xscf_password"]},
            )
            await self._ssh.start()
            self._rpc = await rpc.serve_unix(self.home.xscf_socket(self.name), self.handle_rpc)
        except BaseException:
            await self.close()
            raise
        self.log.info("xscf started", lan0=self.lans[0], lan1=self.lans[1], ppars=list(self.core.ppars))

    def restore(self) -> None:
        """What the XSCF keeps across its own restart: the saved configuration of each PPAR (the
        domains it addresses), from the service processor's store (``Home.sp_file``, written by
        the PPAR's ldmd). What runs now is the hypervisor's to say: see :meth:`resync`."""
        for ppar in self.core.ppars:
            try:
                saved = json.loads(self.home.sp_file(self.name, ppar).read_text()).get("saved")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(saved, list) and all(isinstance(x, str) for x in saved):
                self.feed(SpconfigSaved(ppar, frozenset(saved)))
                self.log.info("saved configuration restored", ppar=ppar, domains=sorted(saved))

    async def resync(self) -> None:
        """Ask the ldmd of every PPAR to report what runs (and what it saved) again: a restarted
        XSCF must not take a running domain for a stopped one. An ldmd that is not up yet reports
        by itself when it starts."""
        for ppar in self.core.ppars:
            host = self.control_domain_of(ppar)
            if host is None:
                continue
            try:
                await rpc.call_unix(self.home.ldmd_socket(host), "push", timeout=5.0)
            except rpc.RpcError as exc:
                self.log.info("no resync from the ldmd", ppar=ppar, host=host, error=exc.message)

    async def close(self) -> None:
        """Stop every channel, let pending ``kill_domain`` calls finish briefly, remove the socket."""
        if self._rpc is not None:
            self._rpc.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._rpc.wait_closed(), 5)
            self._rpc = None
            with contextlib.suppress(FileNotFoundError):
                self.home.xscf_socket(self.name).unlink()
        if self._ssh is not None:
            await self._ssh.close()
            self._ssh = None
        if self._snmp is not None:
            self._snmp.close()
            self._snmp = None
        if self._kills:
            _, pending = await asyncio.wait(set(self._kills), timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- the core -----------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Effect]:
        """Hand one event to the core, carry out its hypervisor effects and return all effects."""
        effects = self.core.handle(self.clock.now(), event)
        for eff in effects:
            if isinstance(eff, PanicDomain | ResetDomain):
                how = "panic" if isinstance(eff, PanicDomain) else "reset"
                task = asyncio.get_running_loop().create_task(self._kill(eff.ppar, eff.domain, how))
                self._kills.add(task)
                task.add_done_callback(self._kills.discard)
        return effects

    def _request(
        self,
        kind: type[DomainStatusRequested | DomainPanicRequested | DomainResetRequested],
        lan: int,
        ppar: int,
        domain: str,
    ) -> SpReply | None:
        req_id = next(self._req_ids)
        effects = self.feed(kind(req_id, self.lans[lan], ppar, domain))
        return next((e for e in effects if isinstance(e, SpReply) and e.req_id == req_id), None)

    def control_domain_of(self, ppar: int) -> str | None:
        """The topology's control domain of PPAR ``ppar`` of this server, if any."""
        return next((c.name for c in self.topology.control_domains if c.server == self.name and c.ppar == ppar), None)

    async def _kill(self, ppar: int, domain: str, how: str) -> None:
        host = self.control_domain_of(ppar)
        if host is None:
            self.log.error("no control domain to carry out the order", ppar=ppar, domain=domain, how=how)
            return
        self.log.info("ordering the hypervisor", ppar=ppar, domain=domain, how=how, host=host)
        try:
            await rpc.call_unix(self.home.ldmd_socket(host), "kill_domain", domain=domain, how=how)
        except rpc.RpcError as exc:
            self.log.error(
                "kill_domain failed", ppar=ppar, domain=domain, how=how, host=host, code=exc.code, error=exc.message
            )

    # ---- SNMP backend (XscfSnmpBackend) -------------------------------------------------------

    def status(self, lan: int, ppar: int, domain: str) -> tuple[bool, str, str] | None:
        """SNMP status query on LAN ``lan``: ``(ok, status, text)``, ``None`` = no answer."""
        reply = self._request(DomainStatusRequested, lan, ppar, domain)
        return None if reply is None else (reply.ok, str(reply.status), reply.text)

    def panic(self, lan: int, ppar: int, domain: str) -> tuple[bool, str] | None:
        """SNMP panic order on LAN ``lan``: ``(ok, text)``, ``None`` = no answer."""
        reply = self._request(DomainPanicRequested, lan, ppar, domain)
        return None if reply is None else (reply.ok, reply.text)

    def reset(self, lan: int, ppar: int, domain: str) -> tuple[bool, str] | None:
        """SNMP reset order on LAN ``lan``: ``(ok, text)``, ``None`` = no answer."""
        reply = self._request(DomainResetRequested, lan, ppar, domain)
        return None if reply is None else (reply.ok, reply.text)

    # ---- hypervisor channel (unix RPC) --------------------------------------------------------

    async def handle_rpc(self, op: str, args: dict[str, Any], peer: str) -> Any:
        """Serve one request of the hypervisor channel (see the module docstring)."""
        if op == "domains_running":
            held = _names(args, "held") if "held" in args else None
            self._core_input(DomainsRunningReported(_ppar(args), _names(args, "running"), held))
            return None
        if op == "spconfig_saved":
            self._core_input(SpconfigSaved(_ppar(args), _names(args, "domains")))
            return None
        if op == "status":
            ppar = _ppar(args)
            if ppar not in self.core.ppars:
                raise rpc.RpcError(codes.NO_SUCH_PPAR, f"PPAR-ID {ppar} is not on server {self.name}")
            return {d: str(st) for d, st in self.core.status(ppar).items()}
        if op == "lan":
            lan, up = args.get("lan"), args.get("up")
            if lan not in (0, 1) or isinstance(lan, bool) or not isinstance(up, bool):
                raise rpc.RpcError(codes.BAD_REQUEST, "lan needs lan: 0|1 and up: true|false")
            await self.set_lan(lan, up)
            return {"lan0": self.core.lan_up(self.lans[0]), "lan1": self.core.lan_up(self.lans[1])}
        raise rpc.RpcError(codes.UNKNOWN_OP, f"xscfd has no operation {op!r}")

    def _core_input(self, event: Event) -> None:
        try:
            self.feed(event)
        except ValueError as exc:
            raise rpc.RpcError(codes.BAD_REQUEST, str(exc)) from None

    async def set_lan(self, lan: int, up: bool) -> None:
        """Bring XSCF-LAN#``lan`` up or down in the core and on the SNMP and SSH sockets."""
        assert self._snmp is not None and self._ssh is not None
        if not up:
            self.feed(LanStateChanged(self.lans[lan], False))
        try:
            self._snmp.set_lan(lan, up)
            await self._ssh.set_lan(lan, up)
        except OSError as exc:
            raise rpc.RpcError(codes.LAN_ERROR, f"cannot bring XSCF-LAN#{lan} up: {exc}") from None
        if up:
            self.feed(LanStateChanged(self.lans[lan], True))
        self.log.info("xscf lan changed", lan=lan, address=self.lans[lan], up=up)

    # ---- SSH CLI ------------------------------------------------------------------------------

    def cli(self, argv: list[str]) -> CliResult:
        """Run one XSCF CLI command: ``(rc, stdout, stderr)``."""
        command, args = argv[0], argv[1:]
        if command == "showdomainstatus":
            return self._showdomainstatus(args)
        if command == "showpparstatus":
            return self._showpparstatus(args)
        if command == "version":
            return self._version(args)
        if command == "showhostkey":
            return self._showhostkey(args)
        return 1, "", f"{command}: command not found\n"

    def _ppar_option(self, opts: dict[str, str] | None, usage: str) -> int | CliResult:
        """The validated ``-p PPAR-ID`` of a command, or the error result to return."""
        if opts is None or "-p" not in opts:
            return 1, "", usage
        ppar = _ppar_id(opts["-p"])
        if ppar is None:
            return 1, "", f"Invalid parameter.\n{usage}"
        if ppar not in self.core.ppars:
            return 1, "", f"PPAR-ID {ppar} is not configured\n"
        return ppar

    def _showdomainstatus(self, args: Sequence[str]) -> CliResult:
        usage = "usage: showdomainstatus -p ppar_id [-g domainname]\n"
        opts = _options(args, {"-p", "-g"})
        ppar = self._ppar_option(opts, usage)
        if isinstance(ppar, tuple):
            return ppar
        assert opts is not None
        rows = {str(d): str(st) for d, st in self.core.status(ppar).items()}
        table = [(CONTROL_DOMAIN, rows.pop(CONTROL_DOMAIN, str(SpDomainStatus.RUNNING))), *rows.items()]
        if "-g" in opts:
            table = [row for row in table if row[0] == opts["-g"]]
            if not table:
                return 1, "", f"Domain {opts['-g']} is not found in PPAR-ID {ppar}\n"
        width = max(_NAME_WIDTH, *(len(d) + 1 for d, _ in table))
        lines = [f"{'Logical Domain Name':<{width}}Status", *(f"{d:<{width}}{st}" for d, st in table)]
        return 0, "\n".join(lines) + "\n", ""

    def _showpparstatus(self, args: Sequence[str]) -> CliResult:
        usage = "usage: showpparstatus [-a | -p ppar_id]\n"
        if list(args) == ["-a"]:
            ppars: Sequence[int] = self.core.ppars
        else:
            ppar = self._ppar_option(_options(args, {"-p"}), usage)
            if isinstance(ppar, tuple):
                return ppar
            ppars = [ppar]
        lines = [f"{'PPAR-ID':<{_PPAR_WIDTH}}PPAR Status", *(f"{p:02d}{'':<{_PPAR_WIDTH - 2}}Running" for p in ppars)]
        return 0, "\n".join(lines) + "\n", ""

    def _version(self, args: Sequence[str]) -> CliResult:
        if list(args) not in ([], ["-c", "xcp"]):
            return 1, "", "usage: version -c xcp\n"
        return 0, (f"BB#00-XSCF#0 (Master)\nXCP0 (Current): {XCP_VERSION}\nXCP1 (Reserve): {XCP_VERSION}\n"), ""

    def _showhostkey(self, args: Sequence[str]) -> CliResult:
        if args:
            return 1, "", "usage: showhostkey\n"
        assert self._ssh is not None
        key = self._ssh.host_key
        public = " ".join(key.export_public_key("openssh").decode().split()[:2])
        algorithm = public.split()[0].removeprefix("ssh-").upper()
        return (
            0,
            (
                f"{algorithm} key:\n{public}\nFingerprint:\n"
                f"{key.get_fingerprint('sha256')} /etc/ssh/ssh_host_{algorithm.lower()}_key.pub\n"
            ),
            "",
        )


def snmp_engine_id(server: str) -> bytes:
    """The XSCF's snmpEngineID (RFC 3411, text format under Fujitsu's enterprise number 211): the
    same after every restart of its xscfd, so the shutdown agents' SNMP managers keep reaching it."""
    return b"\x80\x00\x00\xd3\x04" + server.encode()[:27]


# ---- argument helpers ------------------------------------------------------------------------


def _ppar(args: dict[str, Any]) -> int:
    ppar = args.get("ppar")
    if not isinstance(ppar, int) or isinstance(ppar, bool):
        raise rpc.RpcError(codes.BAD_REQUEST, "ppar must be an integer PPAR-ID")
    return ppar


def _names(args: dict[str, Any], key: str) -> frozenset[str]:
    value = args.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise rpc.RpcError(codes.BAD_REQUEST, f"{key} must be a list of domain names")
    return frozenset(value)


def _options(args: Sequence[str], allowed: set[str]) -> dict[str, str] | None:
    """``-x VALUE`` pairs (each option at most once), or ``None`` if the command line is wrong."""
    if len(args) % 2:
        return None
    opts: dict[str, str] = {}
    for flag, value in zip(args[::2], args[1::2]):
        if flag not in allowed or flag in opts:
            return None
        opts[flag] = value
    return opts


def _ppar_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 <= int(text) <= 15 else None


# ---- daemon entry point ----------------------------------------------------------------------


async def run(home: Home, name: str, ready: proc.Ready, stop: asyncio.Event) -> None:
    """Serve the XSCF of server ``name`` until ``stop`` is set (see the module docstring)."""
    daemon = XscfDaemon(home, name)
    daemon.restore()
    await daemon.start()
    try:
        ready()
        resync = asyncio.ensure_future(daemon.resync())
        await stop.wait()
        resync.cancel()
    finally:
        await daemon.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m clovm.runtime.xscfd --home H --name SERVER``."""
    return proc.daemon_main("xscfd", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
