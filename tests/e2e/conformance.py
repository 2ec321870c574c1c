"""The driver conformance harness: one scripted case, run on the simulator and on the datacenter.

A *driver* offers the same few verbs on both sides — wait, ask a node, run a product command,
inject a fault, read a node's logs — and :func:`observe` turns what the nodes show into a value
that must be equal on both: the rows of ``cftool -n`` (every live node), ``sdtool -s`` and
``hvdisp -a`` (every live guest), and the product log lines (``var/adm/messages`` and the RMS
switchlog) each node wrote since the last observation, without time stamps and with measured
durations (``10.3 s``) written as ``# s``. The lines of one log are compared as a sorted list: the
order in which independent agent runs of one node finish is the emulator's scheduling, not the
product's behaviour.

:class:`SimDriver` runs a :class:`clovm.sim.world.World` in virtual time; :class:`RuntimeDriver`
runs ``clovm up`` on a home and drives it only through the ``clovm`` command, the node agents'
admin sockets, the guest domains' processes and the home's files.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clovm import formats, settings, topology
from clovm.core import node as nodemod
from clovm.runtime import rpc
from clovm.runtime.cf_transport import decode_datagram, encode_datagram, message_fields, to_message
from clovm.runtime.home import Home
from clovm.sim.world import World

_DURATION = re.compile(r"\b\d+(\.\d+)? s\b")


def normalise(line: str) -> str:
    return _DURATION.sub("# s", line)


@dataclass
class Result:
    rc: int
    lines: list[str]


class Driver(Protocol):
    topo: topology.Topology

    def advance(self, seconds: float) -> None: ...
    def until(self, pred: Callable[[], bool], within: float) -> bool: ...
    def ask(self, host: str, op: str, **args: Any) -> Any: ...
    def alive(self, host: str) -> bool: ...
    def command(self, host: str, name: str, *argv: str) -> Result: ...
    def crash(self, domain: str) -> None: ...
    def pause(self, domain: str) -> None: ...
    def partition(self, a: list[str], b: list[str]) -> None: ...
    def heal(self) -> None: ...
    def clock(self, server: str, delta: float) -> None: ...
    def forget_key(self, host: str, server: str) -> None: ...
    def learn_key(self, host: str, server: str) -> None: ...
    def logs(self, host: str, dest: str) -> list[str]: ...
    def play_peer(self, cf: str) -> PeerPlayer: ...


class PeerPlayer(Protocol):
    """Plays cluster node ``cf`` by hand: what the others send it, and messages as if from it."""

    def wait_for(self, kind: type, within: float) -> Any: ...
    def send(self, to: str, message: nodemod.PeerMessage) -> None: ...
    def close(self) -> None: ...


# ---- what must be the same on both drivers ----------------------------------------------------
class Observer:
    def __init__(self, d: Driver):
        self.d = d
        self.seen: dict[tuple[str, str], int] = {}

    def observe(
        self,
        logs: bool = True,
        hosts: tuple[str, ...] | None = None,
        views: tuple[str, ...] = ("cftool -n", "sdtool -s", "hvdisp -a"),
        unlogged: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """What the nodes show now (``hosts``: only these; ``views``: only these tables; the new log
        lines of ``unlogged`` hosts are passed over)."""
        d, out = self.d, {}
        guests = {g.name for g in d.topo.guests}
        for h in d.topo.hosts():
            if hosts is not None and h.name not in hosts:
                continue
            if not d.alive(h.name):
                out[h.name] = "not running"
                continue
            view: dict[str, Any] = {"cftool -n": d.ask(h.name, "cftool_n")}
            if h.name in guests and "sdtool -s" in views:
                sd = d.ask(h.name, "sdtool", flag="s")
                view["sdtool -s"] = sd["rows"] if sd["running"] else "not running"
            if h.name in guests and "hvdisp -a" in views:
                view["hvdisp -a"] = d.ask(h.name, "hvdisp")
            out[h.name] = view
        for h in d.topo.hosts():
            if hosts is not None and h.name not in hosts:
                continue
            for dest in ("messages", "switchlog"):
                lines = d.logs(h.name, dest)
                new = lines[self.seen.get((h.name, dest), 0) :]
                self.seen[(h.name, dest)] = len(lines)
                if logs and new and h.name not in unlogged:
                    out[f"{h.name} {dest}"] = sorted(normalise(x) for x in new)
        return out


def settled(d: Driver, down: tuple[str, ...] = ()) -> Callable[[], bool]:
    """Every host but ``down`` runs and sees every other such node UP (and ``down`` DOWN); every
    running guest's SF is running with nothing being tested; every application is online."""
    guests = {g.name for g in d.topo.guests}

    def check() -> bool:
        live = [h for h in d.topo.hosts() if h.name not in down]
        if not all(d.alive(h.name) for h in live):
            return False
        for h in live:
            cluster = next(c for c in d.topo.clusters if h.cf_name in c.nodes)
            states = {r[0]: r[2] for r in d.ask(h.name, "cftool_n")}
            for cf in cluster.nodes:
                if states[cf] != ("DOWN" if d.topo.host_of_cf(cf).name in down else "UP"):
                    return False
            if h.name in guests:
                sd = d.ask(h.name, "sdtool", flag="s")
                if not sd["running"] or any(r[2] != "Idle" or r[4] == "Unknown" for r in sd["rows"]):
                    return False
        apps = [r for h in live if h.name in guests for r in d.ask(h.name, "hvdisp") if r[1] == "userApplication"]
        return all(any(r[0] == a.name and r[3] == "Online" for r in apps) for a in d.topo.apps)

    return check


# ---- the simulator --------------------------------------------------------------------------
class SimDriver:
    def __init__(self, topo_text: str, seed: int = 0):
        self.topo = topology.loads(topo_text)
        self._taps: list[Callable[[str, str, Any], None]] = []
        self.w = World(self.topo, seed, tap=lambda a, b, m: [t(a, b, m) for t in self._taps])
        self._cf = {h.name: h.cf_name for h in self.topo.hosts()}

    def advance(self, seconds: float) -> None:
        self.w.run(self.w.sched.now + seconds)

    def until(self, pred: Callable[[], bool], within: float) -> bool:
        end = self.w.sched.now + within
        while not pred():
            if self.w.sched.now >= end:
                return False
            self.advance(0.5)
        return True

    def _node(self, host: str) -> Any:
        return self.w.nodes[self._cf[host]]

    def alive(self, host: str) -> bool:
        n = self._node(host)
        return n.alive and not n.suspended

    def ask(self, host: str, op: str, **args: Any) -> Any:
        return self.w.ask(self._cf[host], op, args)

    def command(self, host: str, name: str, *argv: str) -> Result:
        if name == "clovmmigrate":
            mode = {"-p": "prepare", "-u": "update"}[argv[0]]
            p = self.w.clovmmigrate(host, mode, *argv[1:])
        else:
            p = self.w.ldm_command(host, *argv)
        self.until(lambda: p.done, 3600.0)
        if name == "clovmmigrate":
            return Result(p.value.rc, [t for _, t in p.lines])
        r = p.value
        return Result(r.rc, (r.stdout + r.stderr).splitlines())

    def crash(self, domain: str) -> None:
        self.w.kill(self._node(domain), "crashed (fault injected)")

    def pause(self, domain: str) -> None:
        self.w.pause(domain)

    def partition(self, a: list[str], b: list[str]) -> None:
        self.w.net.partition({self._cf[h] for h in a}, {self._cf[h] for h in b})

    def heal(self) -> None:
        self.w.net.heal()

    def clock(self, server: str, delta: float) -> None:
        self.w.set_clock_offset(server, self.w.offsets[server] + delta)

    def forget_key(self, host: str, server: str) -> None:
        self._node(host).files.known_xscf.discard(server)

    def learn_key(self, host: str, server: str) -> None:
        self._node(host).files.known_xscf.add(server)

    def logs(self, host: str, dest: str) -> list[str]:
        return self.w.log_texts(self._cf[host], dest)

    def play_peer(self, cf: str) -> _SimPeer:
        return _SimPeer(self, cf)


class _SimPeer:
    def __init__(self, d: SimDriver, cf: str):
        self.d, self.cf, self.inbox = d, cf, []
        d._taps.append(self._tap)

    def _tap(self, sender: str, receiver: str, message: Any) -> None:
        if receiver == self.cf:
            self.inbox.append((sender, message))

    def wait_for(self, kind: type, within: float) -> Any:
        """The first message of ``kind`` sent to us (earlier ones of other kinds are dropped)."""

        def first() -> Any:
            while self.inbox:
                _, m = self.inbox.pop(0)
                if isinstance(m, kind):
                    return m
            return None

        found: list[Any] = []
        self.d.until(lambda: bool(found) or found.append(first()) or bool(found[-1]), within)
        return next((m for m in found if m is not None), None)

    def send(self, to: str, message: nodemod.PeerMessage) -> None:
        self.d.w.feed(self.d.w.nodes[to], nodemod.MessageReceived(self.cf, message))

    def close(self) -> None:
        self.d._taps.remove(self._tap)


# ---- the emulated datacenter ------------------------------------------------------------------
class RuntimeDriver:
    def __init__(self, home: Path, topo_file: Path, scale: float):
        self.home, self.scale = home, scale
        self.topo = topology.load(topo_file)
        self.h = Home(home)
        self._cf = {h.name: h.cf_name for h in self.topo.hosts()}
        r = self.clovm("up", "--time-scale", str(scale), "--topology", str(topo_file), timeout=150)
        if r.returncode != 0:
            raise RuntimeError(f"clovm up failed: {r.stdout}{r.stderr}")

    def clovm(self, cmd: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clovm.cli.main", cmd, "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def down(self) -> None:
        self.clovm("down", timeout=60)

    def advance(self, seconds: float) -> None:
        time.sleep(seconds / self.scale)

    def until(self, pred: Callable[[], bool], within: float) -> bool:
        end = time.monotonic() + within / self.scale
        while not pred():
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def _pid(self, domain: str) -> int | None:
        try:
            pid = json.loads(self.h.placement_file(domain).read_text()).get("pid")
        except (OSError, ValueError):
            return None
        return pid if isinstance(pid, int) and pid > 0 else None

    def alive(self, host: str) -> bool:
        if host not in {g.name for g in self.topo.guests}:
            return True
        pid = self._pid(host)
        if pid is None:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return False
        return state not in ("T", "Z", "X", "t")

    def ask(self, host: str, op: str, **args: Any) -> Any:
        return asyncio.run(rpc.call_unix(self.h.node_socket(host), op, **args))

    def command(self, host: str, name: str, *argv: str) -> Result:
        path = {"clovmmigrate": settings.CLOVMMIGRATE_PATH, "ldm": settings.LDM_PATH}[name]
        r = self.clovm("exec", host, "--", path, *argv, timeout=600)
        return Result(r.returncode, (r.stdout + r.stderr).splitlines())

    def crash(self, domain: str) -> None:
        pid = self._pid(domain)
        assert pid is not None, f"{domain} has no process"
        os.kill(pid, signal.SIGKILL)

    def pause(self, domain: str) -> None:
        pid = self._pid(domain)
        assert pid is not None, f"{domain} has no process"
        os.kill(pid, signal.SIGSTOP)

    def partition(self, a: list[str], b: list[str]) -> None:
        assert self.clovm("fault", "partition", *a, "--", *b).returncode == 0

    def heal(self) -> None:
        assert self.clovm("fault", "heal").returncode == 0

    def clock(self, server: str, delta: float) -> None:
        assert self.clovm("fault", "clock", server, f"{delta:+g}").returncode == 0

    def forget_key(self, host: str, server: str) -> None:
        assert self.clovm("fault", "forget-xscf-key", host, server).returncode == 0

    def learn_key(self, host: str, server: str) -> None:
        from clovm.runtime import ssh

        srv = self.topo.server(server)
        key = ssh.load_or_create_host_key(self.h.server_dir(server) / "ssh_host_key")
        for addr in (srv.lan0, srv.lan1):
            ssh.add_known_host(self.h.known_hosts(host), ssh.host_key_line(addr, settings.XSCF_SSH_PORT, key))

    def logs(self, host: str, dest: str) -> list[str]:
        path = {"messages": self.h.messages(host), "switchlog": self.h.switchlog(host)}[dest]
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        return [formats.log_message(dest, ln) for ln in text.splitlines()]

    def play_peer(self, cf: str) -> _RuntimePeer:
        return _RuntimePeer(self, cf)


class _RuntimePeer:
    """A UDP socket on ``cf``'s interconnect address, speaking the datagrams with the home's key."""

    def __init__(self, d: RuntimeDriver, cf: str):
        self.d, self.cf = d, cf
        self.key = str(d.h.secrets()["cluster_key"]).encode()
        self.addr = {h.cf_name: h.address for h in d.topo.hosts()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.addr[cf], settings.CF_PORT))

    def wait_for(self, kind: type, within: float) -> Any:
        """The first message of ``kind`` sent to us (earlier ones of other kinds are dropped)."""
        end = time.monotonic() + within / self.d.scale
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return None
            fields = decode_datagram(self.key, data)
            assert fields is not None, "a datagram that does not authenticate"
            message = to_message(fields)
            if message is None and fields["t"] == "joinans":  # a join answer without the incarnation
                message = nodemod.JoinAnswer(bool(fields["accepted"]), str(fields["reason"]), -1)
            assert message is not None, f"a malformed datagram: {fields}"
            if isinstance(message, kind):
                return message
        return None

    def send(self, to: str, message: nodemod.PeerMessage) -> None:
        fields = {**message_fields(message), "from": self.cf}
        self.sock.sendto(encode_datagram(self.key, fields), (self.addr[to], settings.CF_PORT))

    def close(self) -> None:
        self.sock.close()
