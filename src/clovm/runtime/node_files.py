"""A node's disk on the real file system: its product files, read at start and written atomically.

Everything of a node that survives a restart (:class:`clovm.core.node.NodeDisk`) is a file under
``home.host_root(HOST)``, at the product's path:

=================  ===============================================================================
``timeout``        ``etc/default/cluster.config`` (CLUSTER_TIMEOUT; the rest of the file is kept)
``sf_config``      ``etc/opt/SMAW/SMAWsf/rcsd.cfg`` + ``SA_xscfsnmp.cfg`` (written together)
``record``         ``var/opt/FJSVcluster/clovmmigrate/timeout.saved`` (the pre-migration timeout)
``window``         ``.../clovmmigrate/window`` exists ⇔ the ``-p`` window is open
``sf_disabled``    ``.../clovmmigrate/sf.disabled`` exists ⇔ SF was stopped (``sdtool -e``,
                   clovmmigrate) and must not start with the cluster services
``widen``          ``.../clovmmigrate/widen.json`` ``{"peers": {cf: {"seconds", "until",
                   "hypervisor"}}}`` (``until`` in absolute emulated seconds)
``hosts``          ``etc/inet/hosts`` (read only)
=================  ===============================================================================

State goes through :func:`clovm.fsutil.atomic_write`; logs are appended line by line
(``var/adm/messages`` in syslog format, ``rcsd.log``, ``SA_<agent>.log`` and the RMS switchlog as
:func:`clovm.formats.node_log_line` writes them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from .. import formats
from ..core.node import NodeDisk, file_read
from ..core.sfconfig import SfConfig
from ..fsutil import append_line, atomic_write, atomic_write_many, read_text_or
from .home import Home

log = structlog.get_logger()

SAVED_FILE = "timeout.saved"
WINDOW_FILE = "window"
SF_DISABLED_FILE = "sf.disabled"
WIDEN_FILE = "widen.json"


class NodeFiles:
    """The files of host ``host`` in ``home``."""

    def __init__(self, home: Home, host: str, peers: tuple[str, ...]):
        self.home, self.host, self.peers = home, host, peers
        self.migrate_dir = home.migrate_dir(host)
        self._writers: dict[str, Callable[[Any], None]] = {
            "timeout": self._write_timeout,
            "record": self._write_record,
            "window": lambda v: self._set_flag(WINDOW_FILE, v),
            "sf_disabled": lambda v: self._set_flag(SF_DISABLED_FILE, v),
            "sf_config": self._write_sf_config,
            "widen": self._write_widen,
        }

    # ---- reading ------------------------------------------------------------------------------
    def load(self) -> NodeDisk:
        """The node's disk as it is now (raises :class:`clovm.formats.FormatError` if a product
        configuration file does not parse: the node does not start on a broken configuration)."""
        return NodeDisk(
            timeout=self.read_timeout(),
            record=self._record(),
            window=self._flag(WINDOW_FILE),
            sf_disabled=self._flag(SF_DISABLED_FILE),
            sf_config=self.read_sf_config(),
            widen=self._read_widen(),
            hosts=self.read_hosts(),
        )

    def read_timeout(self) -> int:
        return formats.get_cluster_timeout(read_text_or(self.home.cluster_config(self.host), ""))

    def read_sf_config(self) -> SfConfig:
        hosts = formats.parse_rcsd(read_text_or(self.home.rcsd_cfg(self.host), ""))
        xscf = formats.parse_sa_xscfsnmp(read_text_or(self.home.sa_xscfsnmp_cfg(self.host), ""))
        return SfConfig(hosts, xscf)

    def read_hosts(self) -> dict[str, str]:
        return formats.parse_hosts(read_text_or(self.home.hosts_file(self.host), ""))

    def with_file_reads(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` plus what operation ``op`` re-reads (:func:`clovm.core.node.file_read`)."""
        what = file_read(op, args)
        if what is None:
            return args
        try:
            if what == "timeout":
                return {**args, "file_timeout": self.read_timeout()}
            if what == "sf":
                return {**args, "file_sf": self.read_sf_config()}
            return {**args, "file_hosts": self.read_hosts()}
        except formats.FormatError as e:
            return {**args, "file_error": str(e)}

    def _flag(self, name: str) -> bool:
        return (self.migrate_dir / name).exists()

    def _record(self) -> int | None:
        text = read_text_or(self.migrate_dir / SAVED_FILE, None)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def _read_widen(self) -> dict[str, dict[str, Any]]:
        try:
            value = json.loads(read_text_or(self.migrate_dir / WIDEN_FILE, "{}"))
            peers = value.get("peers", {}) if isinstance(value, dict) else {}
            return {
                str(p): {
                    "seconds": float(w["seconds"]),
                    "until": float(w["until"]),
                    "hypervisor": bool(w["hypervisor"]),
                }
                for p, w in peers.items()
                if p in self.peers
            }
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("widen.json unreadable: ignored", path=str(self.migrate_dir / WIDEN_FILE))
            return {}

    # ---- writing ------------------------------------------------------------------------------
    def store(self, key: str, value: Any) -> None:
        """Write the file behind ``key`` (:data:`clovm.core.node.STORE_KEYS`)."""
        self._writers[key](value)

    def _write_timeout(self, seconds: int) -> None:
        path = self.home.cluster_config(self.host)
        atomic_write(path, formats.set_cluster_timeout(read_text_or(path, ""), int(seconds)))

    def _write_record(self, record: int | None) -> None:
        path = self.migrate_dir / SAVED_FILE
        if record is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, f"{record}\n")

    def _set_flag(self, name: str, on: bool) -> None:
        path = self.migrate_dir / name
        if not on:
            path.unlink(missing_ok=True)
        elif not path.exists():
            atomic_write(path, "")

    def _write_sf_config(self, config: SfConfig) -> None:
        atomic_write_many(
            {
                self.home.sa_xscfsnmp_cfg(self.host): formats.render_sa_xscfsnmp(config.xscf),
                self.home.rcsd_cfg(self.host): formats.render_rcsd(config.hosts),
            }
        )

    def _write_widen(self, peers: Mapping[str, Mapping[str, Any]]) -> None:
        path = self.migrate_dir / WIDEN_FILE
        if peers:
            atomic_write(path, json.dumps({"peers": peers}, indent=1, sort_keys=True) + "\n")
        else:
            path.unlink(missing_ok=True)

    # ---- logs ---------------------------------------------------------------------------------
    def log_path(self, dest: str) -> Path | None:
        if dest == "messages":
            return self.home.messages(self.host)
        if dest == "rcsd":
            return self.home.rcsd_log(self.host)
        if dest == "switchlog":
            return self.home.switchlog(self.host)
        if dest.startswith("SA_"):
            return self.home.sa_log(self.host, dest)
        return None

    def append_log(self, wall: float, tag: str, dest: str, text: str, msgid: str) -> None:
        path = self.log_path(dest)
        if path is None:
            log.warning("log to unknown destination", dest=dest, text=text)
            return
        append_line(path, formats.node_log_line(wall, self.host, tag, dest, text, msgid))
