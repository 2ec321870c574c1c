"""Provisioning a home: the files every daemon reads, written before (or while) they start.

:func:`provision_base` writes the run directories, the topology, the secrets, the clock and the
clock offsets (all an xscfd needs); :func:`provision` the PKI, every host's ``etc/inet/hosts``,
cluster.config, the SF configuration of the guest nodes and the control domains'
clovmmigrate.conf; :func:`provision_xscf_keys` every host's known_hosts, once the xscfds made
their SSH host keys. Existing product files (a cluster.config changed by hand) are kept.
"""

from __future__ import annotations

import json
import secrets as secretsmod
import shutil
import time
from pathlib import Path

from .. import formats, settings, topology
from ..core import codes
from ..fsutil import atomic_write
from ..runtime.home import Home
from .errors import ClovmError
from .processes import read_json


def resolve_ref(home: Home, ref: str | None) -> str:
    if ref is None:
        return str(home.topology_file) if home.topology_file.exists() else topology.DEFAULT
    return ref


def load_topology(home: Home, ref: str | None) -> topology.Topology:
    try:
        return topology.load(resolve_ref(home, ref))
    except topology.TopologyError as e:
        raise ClovmError(codes.BAD_TOPOLOGY, str(e)) from None


def _write_secrets(home: Home, t: topology.Topology) -> None:
    """secrets.json (0600): keep existing values, create missing ones."""
    old = read_json(home.secrets_file)
    sec: dict[str, str] = dict(old) if isinstance(old, dict) else {}
    for key in ("xscf_password", "snmp_auth", "snmp_priv", "cluster_key", "ldm_password"):
        if not isinstance(sec.get(key), str) or len(sec[key]) < 8:
            sec[key] = secretsmod.token_urlsafe(18)
    sec["xscf_user"] = t.xscf.user
    sec["snmp_user"] = t.xscf.user
    atomic_write(home.secrets_file, json.dumps(sec, indent=2) + "\n", mode=0o600)


def provision_base(home: Home, t: topology.Topology, time_scale: float) -> None:
    """The files every daemon reads, and all an xscfd needs: run directories, topology, secrets,
    clock and clock offsets.

    The clock of a home that ran before goes on from where ``clovm down`` stopped it (its
    ``stopped_at``), so journals, leases and log times keep their order across a power cycle;
    every ``up`` gets a new ``boot`` (what a daemon compares its records with). The servers'
    clock offsets (``clovm fault clock``) are kept."""
    for d in (home.run_dir / "pids", home.run_dir / "domains", home.run_dir / "s", home.log_file("x").parent):
        d.mkdir(parents=True, exist_ok=True)
    atomic_write(home.topology_file, topology.dumps(t))
    _write_secrets(home, t)
    atomic_write(
        home.clock_file,
        json.dumps(
            {
                "epoch": settings.EPOCH,
                "start": time.monotonic() - resume_at(home) / time_scale,
                "time_scale": time_scale,
                "boot": secretsmod.token_hex(8),
            }
        )
        + "\n",
    )
    old = read_json(home.offsets_file)
    offsets = {s.name: s.clock_offset for s in t.servers}
    if isinstance(old, dict):
        offsets.update({k: float(v) for k, v in old.items() if k in offsets and isinstance(v, (int, float))})
    atomic_write(home.offsets_file, json.dumps(offsets) + "\n")


def resume_at(home: Home) -> float:
    """The emulated second a home's clock goes on from: where ``clovm down`` stopped it, else
    (a datacenter that crashed) where it would be now, else 0."""
    c = read_json(home.clock_file)
    if not isinstance(c, dict):
        return 0.0
    try:
        if c.get("stopped_at") is not None:
            return max(0.0, float(c["stopped_at"]))
        return max(0.0, float(c["time_scale"]) * (time.monotonic() - float(c["start"])))
    except (TypeError, ValueError, KeyError):
        return 0.0


def record_stop(home: Home) -> None:
    """``clovm down``: remember the emulated second the datacenter stopped at (see :func:`resume_at`)."""
    c = read_json(home.clock_file)
    if isinstance(c, dict) and c.get("stopped_at") is None:
        c["stopped_at"] = resume_at(home)
        atomic_write(home.clock_file, json.dumps(c) + "\n")


def saved_state(home: Home) -> list[str]:
    """What a stopped home keeps of its datacenter (empty for a new home): where the guests run,
    the saved configurations, every host's files."""
    found = []
    placements = sorted(home.placement_file("x").parent.glob("*.json"))
    if placements:
        found.append("where the guest domains run (" + ", ".join(_where(p) for p in placements) + ")")
    sps = sorted(home.root.glob("servers/*/spconfig-ppar*.json"))
    if sps:
        found.append(f"the saved configurations of {len(sps)} PPAR(s)")
    hosts = home.host_root("x").parent
    if hosts.is_dir() and any(hosts.iterdir()):
        found.append(
            "every host's files under hosts/ (SF configuration, CF timeouts, clovmmigrate records and journals, logs)"
        )
    return found


def _where(placement: Path) -> str:
    rec = read_json(placement)
    host = rec.get("host") if isinstance(rec, dict) else None
    return f"{placement.stem} on {host}" if host else placement.stem


def discard_state(home: Home) -> None:
    """``clovm up --fresh``: forget everything :func:`saved_state` lists, and the clock (the
    secrets, the CA and the XSCFs' host keys are kept)."""
    for p in home.placement_file("x").parent.glob("*.json"):
        p.unlink(missing_ok=True)
    for p in home.root.glob("servers/*/spconfig-ppar*.json"):
        p.unlink(missing_ok=True)
    shutil.rmtree(home.host_root("x").parent, ignore_errors=True)
    home.clock_file.unlink(missing_ok=True)
    home.offsets_file.unlink(missing_ok=True)


def provision(home: Home, t: topology.Topology) -> list[str]:
    """After :func:`provision_base`, every other file the daemons read except the known_hosts
    files (:func:`provision_xscf_keys`): PKI, hosts, cluster.config, SF configuration,
    clovmmigrate.conf. Returns warnings."""
    from ..runtime import pki
    from ..runtime.migrate_env import render_clovmmigrate_conf

    warnings: list[str] = []
    pki.ensure_pki(home, {h.name: h.address for h in t.hosts()})
    hosts_text = formats.render_hosts(t.hosts_table())
    for h in t.hosts():
        atomic_write(home.hosts_file(h.name), hosts_text)
        disk = t.initial_disk(h.name)  # (the same files the simulator's nodes start from)
        if not home.cluster_config(h.name).exists():
            atomic_write(home.cluster_config(h.name), formats.set_cluster_timeout("", disk.timeout))
        if disk.sf_config.hosts:
            if not home.rcsd_cfg(h.name).exists():
                atomic_write(home.rcsd_cfg(h.name), formats.render_rcsd(disk.sf_config.hosts))
            if not home.sa_xscfsnmp_cfg(h.name).exists():
                atomic_write(home.sa_xscfsnmp_cfg(h.name), formats.render_sa_xscfsnmp(disk.sf_config.xscf))
        if isinstance(h, topology.ControlDomain):
            atomic_write(home.clovmmigrate_conf(h.name), render_clovmmigrate_conf(t, h.name))
    return warnings


def provision_xscf_keys(home: Home, t: topology.Topology) -> None:
    """Both LANs of every server, with its SSH host key, in every host's known_hosts. The key is
    the one its xscfd loaded or created (:func:`clovm.runtime.ssh.load_or_create_host_key`),
    created here if it is missing. Called by :func:`launch` once every xscfd is READY, before any
    ldmd (and so any guest, the only reader of known_hosts) starts. A host that has a
    known_hosts already (a home that ran before) keeps it as it is: what its operator accepted
    or removed (``clovm fault forget-xscf-key``) survives a power cycle."""
    from ..runtime import ssh

    key_lines: list[str] = []
    for s in t.servers:
        key = ssh.load_or_create_host_key(home.server_dir(s.name) / "ssh_host_key")
        key_lines += [ssh.host_key_line(a, settings.XSCF_SSH_PORT, key) for a in (s.lan0, s.lan1)]
    for h in t.hosts():
        if not home.known_hosts(h.name).exists():
            ssh.add_known_hosts(home.known_hosts(h.name), key_lines)
