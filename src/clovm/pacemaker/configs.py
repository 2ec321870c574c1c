"""The text of every file `up` writes (corosync.conf, sshd_config, hosts, known_hosts, ...) and the
cluster configuration commands it runs. Pure functions of the layout: no I/O.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping

from . import layout as L
from .layout import Layout


def corosync_conf(token_ms: int) -> str:
    """Two nodes over knet, two_node quorum, logs in the node's own /var/log/corosync."""
    nodes = "".join(
        f"    node {{\n        ring0_addr: {L.ADDRESSES[vm]}\n        name: {vm}\n"
        f"        nodeid: {L.NODE_IDS[vm]}\n    }}\n"
        for vm in L.VMS
    )
    return (
        "# written by clovm (pacemaker topology)\n"
        "totem {\n"
        "    version: 2\n"
        f"    cluster_name: {L.CLUSTER_NAME}\n"
        "    transport: knet\n"
        f"    token: {token_ms}\n"
        "    crypto_cipher: aes256\n"
        "    crypto_hash: sha256\n"
        "}\n"
        "nodelist {\n" + nodes + "}\n"
        "quorum {\n"
        "    provider: corosync_votequorum\n"
        "    two_node: 1\n"
        "}\n"
        "logging {\n"
        "    to_logfile: yes\n"
        "    logfile: /var/log/corosync/corosync.log\n"
        "    to_syslog: no\n"
        "    to_stderr: no\n"
        "    timestamp: hires\n"
        "}\n"
    )


_TOTEM = re.compile(r"^(totem\s*\{)(.*?)^(\})", re.MULTILINE | re.DOTALL)
_TOKEN = re.compile(r"^(\s*token\s*:\s*)(\d+)\s*$", re.MULTILINE)


def with_token(conf: str, token_ms: int) -> str:
    """``conf`` (a corosync.conf) with ``totem.token`` set to ``token_ms``: the ``token:`` line of
    the totem section replaced (added if missing); every other line as it was. ValueError if the
    text has no totem section."""
    m = _TOTEM.search(conf)
    if m is None:
        raise ValueError("corosync.conf has no totem section")
    body = m.group(2)
    if _TOKEN.search(body):
        body = _TOKEN.sub(lambda t: f"{t.group(1)}{int(token_ms)}", body, count=1)
    else:
        body = body.rstrip(" ") + f"    token: {int(token_ms)}\n"
    return conf[: m.start(2)] + body + conf[m.end(2) :]


def token_of(conf: str) -> int | None:
    """The ``totem.token`` a corosync.conf sets (None: corosync's default applies)."""
    m = _TOTEM.search(conf)
    t = _TOKEN.search(m.group(2)) if m else None
    return int(t.group(2)) if t else None


def etc_hosts() -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{addr}\t{name}" for name, addr in L.ADDRESSES.items()]
    return "\n".join(lines) + "\n"


def known_hosts(host_pubkeys: Mapping[str, str]) -> str:
    """``kvmN,ADDRESS KEYTYPE KEY`` for every host (the VMs' fence agents know them all)."""
    out = []
    for host, pub in host_pubkeys.items():
        keytype, key = pub.split()[:2]
        out.append(f"{host},{L.ADDRESSES[host]} {keytype} {key}")
    return "\n".join(out) + "\n"


def sshd_config(lay: Layout, host: str) -> str:
    return (
        "# written by clovm: the hypervisor host's sshd (root login with the fence key only)\n"
        f"ListenAddress {L.ADDRESSES[host]}\n"
        "Port 22\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        f"AuthorizedKeysFile {lay.authorized_keys(host)}\n"
        "StrictModes no\n"
        "PidFile none\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        "UseDNS no\n"
        "MaxStartups 50:30:100\n"
        "LogLevel INFO\n"
    )


def virsh_script(python: str, sock_path: str) -> str:
    """The host's ``virsh`` (on root's PATH via /usr/local/sbin): a client of the hypervisor."""
    return (
        f"#!{python} -s\n"
        "# clovm's virsh: talks to this host's hypervisor daemon (clovm.pacemaker.hvd)\n"
        "import sys\n"
        "from clovm.pacemaker.virsh import main\n"
        f"sys.exit(main(sock_path={sock_path!r}))\n"
    )


def host_state(host: str) -> str:
    """The initial domain table of a host: its VMs of Figure 17.1, shut off, autostarted."""
    doms = [
        {
            "name": vm,
            "memory_mb": L.VM_MEMORY_MB,
            "vcpu": L.VM_VCPU,
            "dirty_rate_mb_s": L.VM_DIRTY_MB_S,
            "state": "shut off",
            "autostart": True,
        }
        for vm, h in L.INITIAL_PLACEMENT.items()
        if h == host
    ]
    return json.dumps({"host": host, "domains": doms, "next_id": 1}, indent=2) + "\n"


DC_DEADTIME = "2s"  # pacemaker's 20 s default is how long a node with no DC waits before electing


def cib_commands(cib: str) -> list[list[str]]:
    """The commands that write the initial CIB file ``cib`` (offline: ``CIB_file``/``pcs -f``;
    the caller starts from ``cibadmin --empty``). Both nodes boot from it, so the cluster comes
    up configured: the DC election does not wait 20 s, and each node has its fence device.

    A node's device runs on the other node (it fences this one), talks to the host's sshd as root
    with the fence key, and covers exactly this node (``pcmk_host_list``).
    """
    cmds = [["crm_attribute", "--type", "crm_config", "--name", "dc-deadtime", "--update", DC_DEADTIME]]
    for vm in L.VMS:
        dev = L.STONITH_ID.format(vm=vm)
        host = L.INITIAL_PLACEMENT[vm]
        cmds.append(
            [
                "pcs",
                "-f",
                cib,
                "stonith",
                "create",
                dev,
                "fence_virsh",
                f"ip={host}",
                f"plug={vm}",
                "username=root",
                f"identity_file={L.FENCE_KEY}",
                f"pcmk_host_list={vm}",
                "op",
                "monitor",
                "interval=60s",
            ]
        )
        cmds.append(["pcs", "-f", cib, "constraint", "location", dev, "avoids", vm])
    return cmds


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
