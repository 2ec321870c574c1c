"""The layout of a datacenter home: run state, secrets, PKI and one product tree per host."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from .. import settings, topology


class Home:
    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    # ---- run state --------------------------------------------------------------------------
    @property
    def topology_file(self) -> Path:
        return self.root / "topology.toml"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def clock_file(self) -> Path:
        return self.run_dir / "clock.json"

    @property
    def offsets_file(self) -> Path:
        return self.run_dir / "offsets.json"

    @property
    def partition_file(self) -> Path:
        """``clovm fault partition``: ``{"groups": [[host...], ...]}`` (the CF interconnect split)."""
        return self.run_dir / settings.PARTITION_FILE

    def pid_file(self, name: str) -> Path:
        return self.run_dir / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"

    def placement_file(self, domain: str) -> Path:
        """``{"pid", "host", "server"}`` of a guest domain, written by the ldmd that owns it: which
        control domain runs it, and (while the datacenter runs) its process. It outlives ``clovm
        down``: the next ``clovm up`` boots the domain where it was."""
        return self.run_dir / "domains" / f"{domain}.json"

    @property
    def supervisor_file(self) -> Path:
        """The supervisor's view of every daemon it watches (``runtime/supervisor.py``)."""
        return self.run_dir / "supervisor.json"

    @property
    def armed_kills_file(self) -> Path:
        """``clovm fault kill DAEMON HOST --at POINT``: the kills armed for points of a migration."""
        return self.run_dir / "kill-at.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    # ---- sockets (short paths: AF_UNIX paths are limited to 107 bytes) ----------------------
    def xscf_socket(self, server: str) -> Path:
        return self.run_dir / "s" / f"x-{server}"

    def ldmd_socket(self, host: str) -> Path:
        return self.run_dir / "s" / f"l-{host}"

    def node_socket(self, host: str) -> Path:
        return self.run_dir / "s" / f"n-{host}"

    # ---- per server / per host ---------------------------------------------------------------
    def server_dir(self, server: str) -> Path:
        return self.root / "servers" / server

    def sp_file(self, server: str, ppar: int) -> Path:
        """The service processor's store of one PPAR's saved configurations (``ldm add-spconfig``):
        written by the ldmd of that PPAR, read by a restarting ldmd and by the server's xscfd."""
        return self.server_dir(server) / f"spconfig-ppar{ppar}.json"

    def host_root(self, host: str) -> Path:
        return self.root / "hosts" / host

    def cluster_config(self, host: str) -> Path:
        return self.host_root(host) / settings.CLUSTER_CONFIG

    def rcsd_cfg(self, host: str) -> Path:
        return self.host_root(host) / settings.RCSD_CFG

    def sa_xscfsnmp_cfg(self, host: str) -> Path:
        return self.host_root(host) / settings.SA_XSCFSNMP_CFG

    def hosts_file(self, host: str) -> Path:
        return self.host_root(host) / settings.HOSTS

    def known_hosts(self, host: str) -> Path:
        return self.host_root(host) / settings.KNOWN_HOSTS

    def messages(self, host: str) -> Path:
        return self.host_root(host) / settings.MESSAGES

    def rcsd_log(self, host: str) -> Path:
        return self.host_root(host) / settings.RCSD_LOG

    def sa_log(self, host: str, agent: str) -> Path:
        return self.host_root(host) / settings.SA_LOG_DIR / f"{agent}.log"

    def switchlog(self, host: str) -> Path:
        return self.host_root(host) / settings.SWITCHLOG

    def migrate_dir(self, host: str) -> Path:
        return self.host_root(host) / settings.MIGRATE_DIR

    def clovmmigrate_conf(self, host: str) -> Path:
        return self.host_root(host) / settings.CLOVMMIGRATE_CONF

    # ---- loaded once per process ----------------------------------------------------------
    @cached_property
    def _topology(self) -> topology.Topology:
        return topology.load(self.topology_file)

    def topology(self) -> topology.Topology:
        return self._topology

    def secrets(self) -> dict[str, Any]:
        return cast("dict[str, Any]", json.loads(self.secrets_file.read_text()))
