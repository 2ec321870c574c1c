"""``virsh`` of an emulated hypervisor host: the command line (sans-IO parse and render) and the
tiny client the host's ``/usr/local/sbin/virsh`` runs.

Formats are libvirt 9's, as far as fence_virsh parses them (agents/virsh/fence_virsh.py):
``list --all`` prints a header whose first two columns are ``Id Name`` and then one row per
domain with the name in column 2 and the state from column 3 on (``running``, ``paused``,
``shut off``); ``domstate DOM`` prints the state alone on a line; an unknown domain gives
``error: failed to get domain 'DOM'`` and exit status 1.

Commands: ``list [--all]``, ``domstate DOM``, ``start DOM``, ``destroy DOM``, ``reboot DOM``,
``migrate --live [--verbose] [--persistent] [--undefinesource] DOM DESTURI`` (DESTURI like
``qemu+ssh://kvm3/system``, ``qemu+ssh://root@kvm3/system`` or just ``kvm3``), ``domjobabort
DOM`` (cancels a migration on its source), ``version``, ``help``. A leading ``-c/--connect URI``
naming this host (``qemu:///system``) is accepted.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

VERSION_TEXT = (
    "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n"
    "Using API: QEMU 9.0.0\nRunning hypervisor: clovm-hv 1.0\n"
)
HELP_TEXT = (
    "Usage: virsh [-c URI] COMMAND [ARG]...\n"
    "  list [--all]\n  domstate DOMAIN\n  start DOMAIN\n  destroy DOMAIN\n  reboot DOMAIN\n"
    "  migrate --live [--verbose] DOMAIN DESTURI\n  domjobabort DOMAIN\n  version\n"
)
_URI = re.compile(r"^(?:[a-z0-9+]+://)?(?:[^@/]+@)?([^/:?]+)(?::\d+)?(?:/.*)?$")
_MIGRATE_FLAGS = {"--live", "--verbose", "--persistent", "--undefinesource", "--p2p", "--tunnelled"}


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # list, domstate, start, destroy, reboot, migrate, domjobabort, version, help
    domain: str = ""
    all: bool = False
    target: str = ""  # migrate: the destination host as written in the URI
    verbose: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    rc: int
    stdout: str = ""
    stderr: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


@dataclass(frozen=True, slots=True)
class DomainView:
    """One row as virsh shows it. ``id`` is None unless the domain runs."""

    name: str
    state: str  # running | paused | shut off
    id: int | None = None


class UsageError(Exception):
    pass


def _one_domain(verb: str, args: Sequence[str]) -> str:
    rest = [a for a in args if a != "--domain"]
    bad = [a for a in rest if a.startswith("-")]
    if bad:
        raise UsageError(f"command '{verb}' doesn't support option {bad[0]}")
    if not rest:
        raise UsageError(f"command '{verb}' requires <domain> option")
    if len(rest) > 1:
        raise UsageError(f"unexpected data '{rest[1]}'")
    return rest[0]


def parse(argv: Sequence[str]) -> Command:
    """A virsh command line (without the program name) as a :class:`Command`; UsageError."""
    args = list(argv)
    while args and args[0] in ("-c", "--connect", "-q", "--quiet"):
        if args[0] in ("-c", "--connect"):
            if len(args) < 2:
                raise UsageError("option '-c' requires an argument")
            if not args[1].startswith(("qemu:///", "qemu+unix:///")):
                raise UsageError(f"only the local hypervisor can be connected to, not {args[1]}")
            args = args[2:]
        else:
            args = args[1:]
    if not args:
        return Command("help")
    verb, rest = args[0], args[1:]
    if verb in ("help", "--help", "-h"):
        return Command("help")
    if verb in ("version", "--version", "-v"):
        return Command("version")
    if verb == "list":
        bad = [a for a in rest if a not in ("--all", "--inactive")]
        if bad:
            raise UsageError(f"command 'list' doesn't support option {bad[0]}")
        return Command("list", all="--all" in rest)
    if verb in ("domstate", "start", "destroy", "reboot", "domjobabort"):
        return Command(verb, _one_domain(verb, rest))
    if verb == "migrate":
        flags = {a for a in rest if a.startswith("-")}
        pos = [a for a in rest if not a.startswith("-")]
        unknown = sorted(flags - _MIGRATE_FLAGS)
        if unknown:
            raise UsageError(f"command 'migrate' doesn't support option {unknown[0]}")
        if "--live" not in flags:
            raise UsageError("this hypervisor supports live migration only: use migrate --live")
        if len(pos) != 2:
            raise UsageError("command 'migrate' requires <domain> and <desturi> options")
        m = _URI.match(pos[1])
        if m is None:
            raise UsageError(f"invalid destination URI '{pos[1]}'")
        return Command("migrate", pos[0], target=m.group(1), verbose="--verbose" in flags)
    raise UsageError(f"unknown command: '{verb}'")


def render_list(domains: Sequence[DomainView], *, all: bool) -> str:
    rows = [d for d in domains if all or d.state != "shut off"]
    cells = [("Id", "Name", "State")] + [("-" if d.id is None else str(d.id), d.name, d.state) for d in rows]
    w0 = max(len(c[0]) for c in cells)
    w1 = max(len(c[1]) for c in cells)
    lines = [f" {a:<{w0}}   {b:<{w1}}   {c}".rstrip() for a, b, c in cells]
    width = max(len(line) for line in lines) + 1
    return lines[0] + "\n" + "-" * width + "\n" + "".join(line + "\n" for line in lines[1:]) + "\n"


def unknown_domain(name: str) -> Result:
    return Result(1, "", f"error: failed to get domain '{name}'\n")


def render_domstate(domains: Mapping[str, DomainView], name: str) -> Result:
    d = domains.get(name)
    return unknown_domain(name) if d is None else Result(0, f"{d.state}\n\n")


_DONE = {
    "start": "Domain '{0}' started\n",
    "destroy": "Domain '{0}' destroyed\n",
    "reboot": "Domain '{0}' is being rebooted\n",
    "domjobabort": "",
}
_FAILED = {
    "start": "Failed to start domain '{0}'",
    "destroy": "Failed to destroy domain '{0}'",
    "reboot": "Failed to reboot domain '{0}'",
    "migrate": "Failed to migrate domain '{0}'",
    "domjobabort": "Failed to abort job for domain '{0}'",
}


def from_ldm(cmd: Command, rc: int, ldm_stderr: str) -> Result:
    """The virsh answer for an ``ldm`` reply of the hypervisor's migration/domain engine."""
    if rc == 0:
        out = (
            "Migration: [100 %]\n"
            if cmd.verb == "migrate" and cmd.verbose
            else _DONE.get(cmd.verb, "").format(cmd.domain)
        )
        return Result(0, out + ("\n" if out and cmd.verb != "migrate" else ""))
    lines = [ln.removeprefix("Error: ") for ln in ldm_stderr.splitlines() if ln.strip()]
    text = "".join(f"error: {ln}\n" for ln in lines) or "error: operation failed\n"
    return Result(rc, "", f"error: {_FAILED[cmd.verb].format(cmd.domain)}\n" + text)


def usage_error(e: UsageError) -> Result:
    return Result(1, "", f"error: {e}\n")


# --------------------------------------------------------------------------------- the client
def call(sock_path: str, op: str, timeout: float | None, **args: object) -> object:
    """One JSON-line request to the hypervisor daemon (clovm.runtime.rpc's wire format)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf or b"{}")
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error", "no answer"))
    return reply.get("value")


def main(argv: Sequence[str] | None = None, *, sock_path: str) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    long_running = "migrate" in args
    try:
        value = call(sock_path, "virsh", None if long_running else 60.0, argv=args)
    except (OSError, RuntimeError, ValueError) as e:
        sys.stderr.write(
            f"error: failed to connect to the hypervisor\nerror: Failed to connect socket to '{sock_path}': {e}\n"
        )
        return 1
    assert isinstance(value, dict)
    sys.stdout.write(str(value.get("stdout", "")))
    sys.stderr.write(str(value.get("stderr", "")))
    sys.stdout.flush()
    return int(value.get("rc", 1))
