"""The admin commands and clovmmigrate's runtime executor against fake daemons.

A temporary home holds a small datacenter (addresses under 127.69.0.0/16). Fake unix and
mutual-TLS RPC servers, run on an event loop in a background thread, stand in for the node agents
and the ldmds and answer with canned data (the node ops of clovmmigrate keep state).
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clovm import settings, topology
from clovm.cli import admin, render
from clovm.core import migration as mig
from clovm.core.sfconfig import XscfEntry
from clovm.formats import FormatError, render_hosts
from clovm.runtime import migrate_env, pki, rpc
from clovm.runtime.home import Home

pytestmark = pytest.mark.timeout(60)

TOPOLOGY = """
[[server]]
name = "s1"
lan0 = "127.69.10.1"
lan1 = "127.69.20.1"
ppars = [0]

[[server]]
name = "s2"
lan0 = "127.69.10.2"
lan1 = "127.69.20.2"
ppars = [1]

[[control_domain]]
name = "primary1"
server = "s1"
ppar = 0
cf_name = "cfprimary1"
address = "127.69.0.1"
sf_weight = 2

[[control_domain]]
name = "primary2"
server = "s2"
ppar = 1
cf_name = "cfprimary2"
address = "127.69.0.2"

[[guest]]
name = "guest1"
control_domain = "primary1"
cf_name = "cfguest1"
address = "127.69.1.1"

[[guest]]
name = "guest2"
control_domain = "primary2"
cf_name = "cfguest2"
address = "127.69.1.2"

[[cluster]]
name = "ctl"
kind = "control"
nodes = ["cfprimary1", "cfprimary2"]

[[cluster]]
name = "gc"
kind = "guest"
nodes = ["cfguest1", "cfguest2"]
"""

SEED_CLSNMPSETUP = """\
device-name cluster-host-name  PPAR-ID  domain-name  IP-address1     IP-address2     user-name      connection-type
-------------------------------------------------------------------------------------------------------------------
xscf        cfguest1           0        guest1       10.20.30.71     10.20.40.71     xuser          ssh
xscf        cfguest2           1        guest2       10.20.30.73     10.20.40.73     xuser          ssh
"""

SEED_SDTOOL = """\
Cluster Host    Agent                SA State      Shut State  Test State  Init State
------------    -----                --------      ----------  ----------  ----------
cfguest1        SA_xscfsnmpg0p.so    Idle          Unknown     TestWorked  InitWorked
cfguest1        SA_xscfsnmpg1p.so    Idle          Unknown     TestWorked  InitWorked
cfguest1        SA_xscfsnmpg0r.so    Idle          Unknown     TestWorked  InitWorked
cfguest1        SA_xscfsnmpg1r.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg0p.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg1p.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg0r.so    Idle          Unknown     TestWorked  InitWorked
cfguest2        SA_xscfsnmpg1r.so    Idle          Unknown     TestWorked  InitWorked
"""

AGENTS = ("SA_xscfsnmpg0p", "SA_xscfsnmpg1p", "SA_xscfsnmpg0r", "SA_xscfsnmpg1r")
CD_INFO = {
    "primary1": {
        "host": "primary1",
        "server": "s1",
        "ppar": 0,
        "lan0": "127.69.10.1",
        "lan1": "127.69.20.1",
        "sf_weight": 2,
        "user": "xuser",
        "connection": "ssh",
    },
    "primary2": {
        "host": "primary2",
        "server": "s2",
        "ppar": 1,
        "lan0": "127.69.10.2",
        "lan1": "127.69.20.2",
        "sf_weight": 1,
        "user": "xuser",
        "connection": "ssh",
    },
}
GUEST_ADDR = {"guest1": "127.69.1.1", "guest2": "127.69.1.2"}
CF_OF = {"guest1": "cfguest1", "guest2": "cfguest2"}


# ---- the fake datacenter ---------------------------------------------------------------------------------
class FakeDC:
    """State of every fake daemon; every handler runs on the background loop."""

    def __init__(self) -> None:
        self.nodes = {
            cf: {"timeout": 10, "sf": "running", "record": None, "window": False, "entry": None, "weight": None}
            for cf in ("cfguest1", "cfguest2")
        }
        self.domains = {"primary1": {"guest1": "active"}, "primary2": {"guest2": "active"}}
        self.spconfigs = {h: ["factory-default", "config1"] for h in ("primary1", "primary2")}
        self.current = {h: "config1" for h in ("primary1", "primary2")}
        self.calls: list[tuple[str, str, str, dict]] = []  # (where, peer, op, args)

    def snapshot(self) -> tuple:
        return copy.deepcopy((self.nodes, self.domains, self.spconfigs, self.current))

    def changes(self) -> list[tuple]:
        reads = {"node_status", "cd_info", "cftool_n", "cfset_a", "clsnmpsetup_l", "hvdisp", "sf_wait"}
        return [
            c for c in self.calls if c[2] not in reads and not (c[2] == "ldm" and c[3]["argv"][0].startswith("list"))
        ]

    # -- node agent, unix (local admin commands) -------------------------------------------------------
    def node_local(self, host: str):
        def handler(op: str, args: dict, peer: str) -> Any:
            self.calls.append((f"node-unix:{host}", peer, op, args))
            cf = CF_OF.get(host, "cf" + host)
            if op == "cftool_n":
                return [{"node": "cfguest1", "number": 1, "state": "UP"}, ["cfguest2", 2, "LEFTCLUSTER"]]
            if op == "cfset_a":
                return {"CLUSTER_TIMEOUT": str(self.nodes[cf]["timeout"]), "CFSH": "cfsh", "CFCP": "cfcp"}
            if op == "cfset_r":
                return None
            if op == "sdtool":
                if args["flag"] == "s":
                    if self.nodes[cf]["sf"] == "gone":  # the other accepted way of saying "not running"
                        raise rpc.RpcError("SF_NOT_RUNNING", "the shutdown facility is not running")
                    rows = [
                        [h, a, "Idle", "Unknown", "TestWorked", "InitWorked"]
                        for h in ("cfguest1", "cfguest2")
                        for a in AGENTS
                    ]
                    return {"running": self.nodes[cf]["sf"] == "running", "rows": rows}  # nodeagent's shape
                self.nodes[cf]["sf"] = {"b": "running", "e": "stopped"}.get(args["flag"], self.nodes[cf]["sf"])
                return None
            if op == "clsnmpsetup_l":
                return [
                    {
                        "cf_name": "cfguest1",
                        "ppar_id": 0,
                        "domain": "guest1",
                        "lan0": "10.20.30.71",
                        "lan1": "10.20.40.71",
                        "user": "xuser",
                        "connection": "ssh",
                    },
                    ["cfguest2", 1, "guest2", "10.20.30.73", "10.20.40.73", "xuser", "ssh"],
                ]
            if op == "hvdisp":
                return {
                    "local_system": f"{cf}RMS",
                    "rows": [
                        {"name": f"{cf}RMS", "type": "SysNode", "host": "", "state": "Online"},
                        ["app1", "userApplication", "cfguest1RMS", "Online"],
                    ],
                }
            raise rpc.RpcError("UNKNOWN_OP", f"unknown operation {op}")

        return handler

    # -- node agent, TLS (clovmmigrate) ----------------------------------------------------------------
    def node_tls(self, cf: str):
        def handler(op: str, args: dict, peer: str) -> Any:
            self.calls.append((f"node-tls:{cf}", peer, op, args))
            if peer not in ("primary1", "primary2"):
                raise rpc.RpcError("FORBIDDEN", f"{peer} is not a control domain")
            n = self.nodes[cf]
            if op == "node_status":
                return {k: n[k] for k in ("timeout", "sf", "record", "window")}
            if op == "record_timeout":
                if n["record"] is None:
                    n["record"] = n["timeout"]
                return n["record"]
            if op == "set_timeout":
                n["timeout"] = int(args["seconds"])
            elif op == "window":
                n["window"] = bool(args["open"])
            elif op == "sf_stop":
                n["sf"] = "stopped"
            elif op == "sf_start":
                n["sf"] = "running"
            elif op == "set_sf_entry":
                n["entry"], n["weight"] = args["entry"], args["weight"]
            elif op == "sf_wait":
                return [
                    [h, a, "Idle", "Unknown", "TestWorked", "InitWorked"]
                    for h in ("cfguest1", "cfguest2")
                    for a in AGENTS
                ]
            elif op == "clear_record":
                n["record"] = None
            else:
                raise rpc.RpcError("UNKNOWN_OP", f"unknown operation {op}")
            return None

        return handler

    # -- ldmd (unix and TLS) -------------------------------------------------------------------------------
    def ldmd(self, host: str, kind: str):
        def handler(op: str, args: dict, peer: str) -> Any:
            self.calls.append((f"ldmd-{kind}:{host}", peer, op, args))
            if op == "cd_info":
                return CD_INFO[host]
            if op != "ldm":
                raise rpc.RpcError("UNKNOWN_OP", f"unknown operation {op}")
            argv = args["argv"]
            names = self.spconfigs[host]
            if argv[0] == "list":
                st = self.domains[host].get(argv[1])
                if st is None:
                    return {"rc": 1, "stdout": "", "stderr": f"Domain {argv[1]} not found\n"}
                return {
                    "rc": 0,
                    "stdout": f"NAME STATE FLAGS CONS VCPU MEMORY UTIL UPTIME\n"
                    f"{argv[1]} {st} -n---- 5000 8 8G 0.1% 1h\n",
                    "stderr": "",
                }
            if argv[0] == "list-spconfig":
                return {
                    "rc": 0,
                    "stdout": render.ldm_list_spconfig(
                        (n, "current" if n == self.current[host] else "") for n in names
                    ),
                    "stderr": "",
                }
            if argv[0] == "add-spconfig":
                names.append(argv[1])
                self.current[host] = argv[1]
            elif argv[0] == "remove-spconfig":
                names.remove(argv[1])
            else:
                return {"rc": 1, "stdout": "", "stderr": f"Unknown command {argv[0]}\n"}
            return {"rc": 0, "stdout": "", "stderr": ""}

        return handler


class LoopThread:
    """An asyncio loop in a daemon thread, for the fake servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.Server] = []

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def serve(self, coro: Any) -> None:
        self.servers.append(self.run(coro))

    def close(self) -> None:
        async def stop() -> None:
            for s in self.servers:
                s.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class World:
    def __init__(self, home: Home, dc: FakeDC, loop: LoopThread) -> None:
        self.home, self.dc, self.loop = home, dc, loop

    def run(self, cmd: str, *argv: str, host: str | None = "guest2") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = admin.run_command(cmd, list(argv), host, self.home, out, err)
        return rc, out.getvalue(), err.getvalue()

    def migrate(self, req: mig.Request) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = migrate_env.run_clovmmigrate(self.home, req.local_host, req, out, err)
        return rc, out.getvalue(), err.getvalue()


def make_home(root: Path) -> Home:
    home = Home(root)
    home.topology_file.write_text(TOPOLOGY)
    topo = home.topology()
    home.run_dir.mkdir(parents=True)
    home.clock_file.write_text(json.dumps({"epoch": settings.EPOCH, "start": 0.0, "time_scale": 10.0}))
    hosts = render_hosts([(h.name, h.address) for h in topo.hosts()])
    for h in topo.hosts():
        home.hosts_file(h.name).parent.mkdir(parents=True, exist_ok=True)
        home.hosts_file(h.name).write_text(hosts)
    for cd in topo.control_domains:
        conf = home.host_root(cd.name) / migrate_env.CLOVMMIGRATE_CONF
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(migrate_env.render_clovmmigrate_conf(topo, cd.name))
    pki.ensure_pki(home, {h.name: h.address for h in topo.hosts()})
    return home


@pytest.fixture
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="clovm-adm-", dir="/tmp"))  # short: AF_UNIX paths ≤ 107 bytes
    home = make_home(root)
    dc, loop = FakeDC(), LoopThread()
    try:
        for g in ("guest1", "guest2"):
            loop.serve(rpc.serve_unix(home.node_socket(g), dc.node_local(g)))
            loop.serve(
                rpc.serve_tls(GUEST_ADDR[g], settings.NODE_PORT, pki.server_context(home, g), dc.node_tls(CF_OF[g]))
            )
        for cd, addr in (("primary1", "127.69.0.1"), ("primary2", "127.69.0.2")):
            loop.serve(rpc.serve_unix(home.ldmd_socket(cd), dc.ldmd(cd, "unix")))
            loop.serve(rpc.serve_tls(addr, settings.LDMD_PORT, pki.server_context(home, cd), dc.ldmd(cd, "tls")))
        yield World(home, dc, loop)
    finally:
        loop.close()
        shutil.rmtree(root, ignore_errors=True)


# ---- tables --------------------------------------------------------------------------------------------------
def test_cftool_n(world: World) -> None:
    rc, out, err = world.run("cftool", "-n")
    assert (rc, err) == (0, "")
    assert out == (
        "Node        Number State       Os      Cpu\n"
        "cfguest1    1      UP          Solaris Sparc\n"
        "cfguest2    2      LEFTCLUSTER Solaris Sparc\n"
    )


def test_cfset_a_g_r(world: World) -> None:
    rc, out, err = world.run("cfset", "-a")
    assert (rc, err) == (0, "")
    assert out == (
        "From cfset configuration in CF module:\n"
        "KEY: CFCP  VALUE: cfcp\n"
        "KEY: CFSH  VALUE: cfsh\n"
        "KEY: CLUSTER_TIMEOUT  VALUE: 10\n"
    )
    assert world.run("cfset", "-g", "CLUSTER_TIMEOUT") == (0, "KEY: CLUSTER_TIMEOUT  VALUE: 10\n", "")
    assert world.run("/opt/SMAW/bin/cfset", "-r") == (0, "", "")
    assert world.dc.calls[-1][2] == "cfset_r"
    rc, out, err = world.run("cfset", "-g", "NOPE")
    assert (rc, out) == (1, "") and err == "cfset: NOPE is not set in the CF module (see cfset -a)\n"


def test_sdtool_s_is_the_seed_table(world: World) -> None:
    assert world.run("/opt/SMAW/bin/sdtool", "-s") == (0, SEED_SDTOOL, "")


def test_sdtool_s_when_sf_stopped_is_one_line_rc_1(world: World) -> None:
    assert world.run("sdtool", "-e") == (0, "", "")
    rc, out, err = world.run("sdtool", "-s")
    assert (rc, out) == (1, "")
    assert err == "sdtool: The shutdown facility is not running; start it with /opt/SMAW/bin/sdtool -b\n"
    assert world.run("sdtool", "-b") == (0, "", "")
    assert world.run("sdtool", "-s")[0] == 0
    world.dc.nodes["cfguest2"]["sf"] = "gone"
    assert world.run("sdtool", "-s") == (1, "", err)


def test_sdtool_on_a_control_domain_passes_the_agents_error(world: World) -> None:
    rc, _out, _err = world.run("cftool", "-n", host="primary1")  # (no fake agent: unreachable, see below)
    assert rc == 1
    world.loop.serve(rpc.serve_unix(world.home.node_socket("primary1"), _not_available))
    assert world.run("sdtool", "-s", host="primary1") == (
        1,
        "",
        "sdtool: primary1 is not a node of a guest-domain cluster: no SF / RMS\n",
    )


def _not_available(op: str, args: dict, peer: str) -> Any:
    raise rpc.RpcError("NOT_AVAILABLE", "primary1 is not a node of a guest-domain cluster: no SF / RMS")


def test_clsnmpsetup_l_by_full_path_is_the_seed_table(world: World) -> None:
    assert world.run("/etc/opt/FJSVcluster/bin/clsnmpsetup", "-l") == (0, SEED_CLSNMPSETUP, "")


def test_hvdisp(world: World) -> None:
    rc, out, err = world.run("hvdisp", "-a")
    assert (rc, err) == (0, "")
    assert out.splitlines()[0] == "Local System:  cfguest2RMS"
    assert out.splitlines()[-1].split() == ["app1", "userApplication", "cfguest1RMS", "Online"]


# ---- ldm ----------------------------------------------------------------------------------------------------
def test_ldm_passes_through_on_a_control_domain(world: World) -> None:
    rc, out, err = world.run("ldm", "list-spconfig", host="primary2")
    assert (rc, out, err) == (0, "factory-default\nconfig1 [current]\n", "")
    rc, out, err = world.run("/usr/sbin/ldm", "list", "guest9", host="primary2")
    assert (rc, out, err) == (1, "", "Domain guest9 not found\n")


def test_ldm_on_a_guest_is_refused(world: World) -> None:
    assert world.run("ldm", "list", host="guest2") == (
        1,
        "",
        "ldm: command not available on guest2: ldm runs on control domains\n",
    )


# ---- usage, hosts, reachability --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cmd, argv, usage",
    [
        ("cftool", ["-x"], "cftool -n"),
        ("cftool", [], "cftool -n"),
        ("cftool", ["-n", "extra"], "cftool -n"),
        ("sdtool", ["-s", "-b"], "sdtool -s | -b | -e | -r"),
        ("cfset", ["-g"], "cfset -a | -r | -g name"),
        ("clsnmpsetup", ["-l", "-l"], "clsnmpsetup -l"),
        ("ldm", [], "ldm subcommand [options] [operands]"),
        ("clovmmigrate", [], "clovmmigrate -p source-ldom | -u source-ldom target-host"),
        ("clovmmigrate", ["-u", "guest2"], "clovmmigrate -p source-ldom | -u source-ldom target-host"),
        ("clovmmigrate", ["-p", "guest2", "primary1"], "clovmmigrate -p source-ldom | -u source-ldom target-host"),
        ("clovmmigrate", ["-p"], "clovmmigrate -p source-ldom | -u source-ldom target-host"),
        ("cftool", ["-n", "--host"], "cftool -n"),
    ],
)
def test_bad_usage_is_one_line_rc_2_and_contacts_nothing(world: World, cmd: str, argv: list[str], usage: str) -> None:
    rc, out, err = world.run(cmd, *argv, host="primary2")
    assert (rc, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"{cmd}: ") and err.endswith(f"; usage: {usage}\n"), err
    assert world.dc.calls == []


def test_unknown_host_and_unknown_command(world: World) -> None:
    assert world.run("cftool", "-n", host="nohost") == (1, "", "cftool: unknown host nohost (see clovm status)\n")
    assert world.run("/bin/frobnicate", "-n") == (127, "", "/bin/frobnicate: command not found\n")


def test_unreachable_daemon_names_the_host_and_the_remedy(world: World) -> None:
    rc, out, err = world.run("cftool", "-n", host="primary1")  # no fake node agent for primary1
    assert (rc, out) == (1, "")
    assert err.startswith("cftool: cannot reach the cluster node agent on primary1: ")
    assert err.endswith("; is the datacenter up (clovm status)?\n") and err.count("\n") == 1


def test_host_and_home_from_options_and_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert admin.main_sdtool(["--host", "guest2", f"--home={world.home.root}", "-s"], out=out, err=err) == 0
    assert out.getvalue() == SEED_SDTOOL
    monkeypatch.setenv("CLOVM_HOST", "guest2")
    monkeypatch.setenv("CLOVM_HOME", str(world.home.root))
    out = io.StringIO()
    assert admin.main_clsnmpsetup(["-l"], out=out, err=err) == 0 and out.getvalue() == SEED_CLSNMPSETUP
    monkeypatch.delenv("CLOVM_HOST")
    err = io.StringIO()
    assert admin.main_cftool(["-n"], out=out, err=err) == 2
    assert err.getvalue() == "cftool: no host given: use --host HOST or set CLOVM_HOST; usage: cftool -n\n"


def test_clovmmigrate_only_on_control_domains(world: World) -> None:
    assert world.run("clovmmigrate", "-p", "guest2", host="guest1") == (
        1,
        "",
        (
            "clovmmigrate: command not available on guest1: run clovmmigrate on the cluster node of the "
            "source control domain\n"
        ),
    )
    assert world.dc.calls == []


# ---- clovmmigrate.conf ------------------------------------------------------------------------------------
def test_clovmmigrate_conf_round_trip_and_errors() -> None:
    topo = topology.loads(TOPOLOGY)
    text = migrate_env.render_clovmmigrate_conf(topo, "primary1")
    assert "guest2          cfguest2  127.69.1.2    gc\n" in text
    assert migrate_env.parse_clovmmigrate_conf(text) == (
        migrate_env.ConfEntry("guest1", "cfguest1", "127.69.1.1", "gc"),
        migrate_env.ConfEntry("guest2", "cfguest2", "127.69.1.2", "gc"),
    )
    with pytest.raises(FormatError, match="line 2: 'x' is not an IP address"):
        migrate_env.parse_clovmmigrate_conf("# c\ng1 cf1 x gc\n")
    with pytest.raises(FormatError, match="line 1: expected 4 fields"):
        migrate_env.parse_clovmmigrate_conf("g1 cf1 127.0.0.1\n")
    with pytest.raises(FormatError, match="line 2: guest domain g1 is listed twice"):
        migrate_env.parse_clovmmigrate_conf("g1 cf1 127.0.0.1 c\ng1 cf2 127.0.0.2 c\n")


# ---- clovmmigrate end to end against the fakes ------------------------------------------------------------
P = mig.Request("prepare", "guest2", "primary2")


def test_prepare_end_to_end(world: World) -> None:
    world.dc.nodes["cfguest1"]["timeout"] = 30
    rc, out, err = world.migrate(P)
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "clovmmigrate: guest2 is cluster node cfguest2 of the guest cluster cfguest1 cfguest2",
        "cfguest1: CF cluster interconnect timeout 30 -> 600 s",
        "cfguest1: shutdown facility stopped",
        "cfguest2: CF cluster interconnect timeout 10 -> 600 s",
        "cfguest2: shutdown facility stopped",
        (
            "clovmmigrate: guest2 (cfguest2) is ready for live migration; after it (also if it is cancelled or fails) "
            "run clovmmigrate -u guest2 TARGET-HOST"
        ),
    ]
    for n in world.dc.nodes.values():
        assert (n["timeout"], n["sf"], n["window"]) == (600, "stopped", True)
    assert {c[1] for c in world.dc.calls if c[0].startswith("node-tls")} == {"primary2"}  # its own certificate
    assert ("ldmd-unix:primary2", "local", "ldm", {"argv": ["list", "guest2"]}) in world.dc.calls
    j = migrate_env.journal_path(world.home, "primary2", "guest2")
    assert stat.S_IMODE(os.stat(j).st_mode) == 0o600
    assert json.loads(j.read_text())["timeouts"] == {"cfguest1": 30, "cfguest2": 10}


def test_prepare_via_the_cli_of_the_product_path(world: World) -> None:
    rc, out, err = world.run("/etc/opt/FJSVcluster/bin/clovmmigrate", "-p", "guest2", host="primary2")
    assert (rc, err) == (0, "") and "is ready for live migration" in out


def test_prepare_of_a_domain_not_in_the_conf_is_refused(world: World) -> None:
    world.dc.domains["primary2"]["guest7"] = "active"
    rc, _out, err = world.migrate(mig.Request("prepare", "guest7", "primary2"))
    assert rc == mig.RC_REFUSED
    assert "guest7 is not a node of a guest-domain cluster" in err and world.dc.changes() == []


def test_update_refused_by_too_many_spconfigs_changes_nothing(world: World) -> None:
    assert world.migrate(P)[0] == 0
    dc = world.dc
    dc.domains["primary2"].pop("guest2")
    dc.domains["primary1"]["guest2"] = "active"  # migrated to primary1
    dc.spconfigs["primary1"] = ["factory-default", *(f"cfg{i}" for i in range(7))]
    before, n_changes = dc.snapshot(), len(dc.changes())
    rc, out, err = world.migrate(mig.Request("update", "guest2", "primary2", "primary1"))
    assert rc == mig.RC_REFUSED and out == ""
    assert err.count("\n") == 1
    assert "primary1 has 7 saved configurations" in err and "at most 6 allowed" in err
    assert err.endswith("Nothing was changed.\n")
    assert dc.snapshot() == before and len(dc.changes()) == n_changes
    assert ("ldmd-tls:primary1", "primary2", "cd_info", {}) in dc.calls  # the target, over TLS


def test_prepare_then_update_end_to_end(world: World) -> None:
    assert world.migrate(P)[0] == 0
    dc = world.dc
    dc.domains["primary2"].pop("guest2")
    dc.domains["primary1"]["guest2"] = "active"
    rc, out, err = world.migrate(mig.Request("update", "guest2", "primary2", "primary1"))
    assert (rc, err) == (0, ""), err
    lines = out.splitlines()
    assert "primary2: logical domain configuration saved as config1" in lines
    assert "primary1: logical domain configuration saved as config1" in lines
    assert lines[-1] == (
        "clovmmigrate: guest2 (cfguest2) now runs on primary1 (PPAR-ID 0); cluster settings "
        "restored on cfguest1 cfguest2"
    )
    for n in dc.nodes.values():
        assert (n["timeout"], n["sf"], n["window"], n["record"], n["weight"]) == (10, "running", False, None, 2)
        assert XscfEntry(**n["entry"]) == XscfEntry("cfguest2", 0, "guest2", "127.69.10.1", "127.69.20.1")
    assert dc.spconfigs == {h: ["factory-default", "config1"] for h in ("primary1", "primary2")}
    assert not migrate_env.journal_path(world.home, "primary2", "guest2").exists()


def test_unreachable_node_refuses_prepare(world: World) -> None:
    conf = world.home.host_root("primary2") / migrate_env.CLOVMMIGRATE_CONF
    conf.write_text(conf.read_text().replace("127.69.1.1", "127.69.1.99"))  # nobody listens there
    rc, _out, err = world.migrate(P)
    assert rc == mig.RC_REFUSED
    assert err.startswith("clovmmigrate: cfguest1: node_status failed: 127.69.1.99:9796: ")
    assert world.dc.changes() == []


def test_clovm_demo_offers_exactly_the_demo_scenarios():
    from clovm.api import demo
    from clovm.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    choices = next(a for a in sub.choices["demo"]._actions if a.dest == "scenario").choices
    assert sorted(choices) == sorted(demo.SCENARIOS)
