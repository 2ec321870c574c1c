"""Every path, port and default of clovm in one place (the pcs settings.py rule)."""

from __future__ import annotations

import os
from pathlib import Path

# ---- cluster defaults: defined once in core.defaults (the core machines use them too) ----------
from .core.defaults import (
    CF_STALL,
    CLOCK_SAMPLES,
    DEFAULT_CLUSTER_TIMEOUT,
    EPOCH,
    HEARTBEAT_INTERVAL,
    INITIAL_SPCONFIG,
    JOIN_TIMEOUT,
    RMS_SYNC_PERIOD,
    RMS_SYNC_THRESHOLD,
    SF_TEST_INTERVAL,
    STALE_HEARTBEAT,
    XSCF_USER,
)

__all__ = [
    "CF_STALL",
    "CLOCK_SAMPLES",
    "DEFAULT_CLUSTER_TIMEOUT",
    "EPOCH",
    "HEARTBEAT_INTERVAL",
    "INITIAL_SPCONFIG",
    "JOIN_TIMEOUT",
    "RMS_SYNC_PERIOD",
    "RMS_SYNC_THRESHOLD",
    "SF_TEST_INTERVAL",
    "STALE_HEARTBEAT",
    "XSCF_USER",
]


# ---- ports (each emulated host has its own loopback address, so ports can be fixed) ----------
SNMP_PORT = 16161  # XSCF SNMP agent, on LAN#0 and LAN#1 (real XSCF: 161)
XSCF_SSH_PORT = 10022  # XSCF SSH CLI, on LAN#0 and LAN#1 (real XSCF: 22)
LDMD_PORT = 8101  # ldmd-to-ldmd migration channel (the real ldmd's port), TLS
CF_PORT = 9382  # CF heartbeats, UDP on the node's interconnect address
NODE_PORT = 9796  # node admin channel for clovmmigrate, TLS

# ---- the runtime's own defaults -----------------------------------------------------------------
DEFAULT_TIME_SCALE = 1.0
# Real-time floors of the runtime at high time scales (docs/runtime-design.md, "Time floors"):
# a loaded machine cannot keep sub-second real-time promises, so these many *real* seconds are the
# least that CF's failure detection, CF's join window and one shutdown-agent run get, whatever the
# time scale. At scale 1 (and up to 10 for detection) they change nothing.
CF_MIN_DETECTION_REAL = 1.0
CF_MIN_JOIN_REAL = 0.5
CF_MIN_STALL_REAL = 0.5  # a node agent that did not run for this long (or CF_STALL) counts no silence meanwhile
SF_MIN_AGENT_REAL = 2.0

# ---- product paths, relative to a host's root -------------------------------------------------
CLUSTER_CONFIG = "etc/default/cluster.config"
RCSD_CFG = "etc/opt/SMAW/SMAWsf/rcsd.cfg"
SA_XSCFSNMP_CFG = "etc/opt/SMAW/SMAWsf/SA_xscfsnmp.cfg"
HOSTS = "etc/inet/hosts"
KNOWN_HOSTS = "root/.ssh/known_hosts"
MESSAGES = "var/adm/messages"
RCSD_LOG = "var/opt/SMAWsf/log/rcsd.log"
SA_LOG_DIR = "var/opt/SMAWsf/log"
SWITCHLOG = "var/opt/SMAWRrms/log/switchlog"
MIGRATE_DIR = "var/opt/FJSVcluster/clovmmigrate"
CLOVMMIGRATE_CONF = "etc/opt/FJSVcluster/etc/clovmmigrate.conf"  # on a control domain
# ---- a home's run directory --------------------------------------------------------------------
PARTITION_FILE = "partition.json"  # clovm fault partition (see runtime/home.py)
# the product commands' full paths on a host
CLOVMMIGRATE_PATH = "/etc/opt/FJSVcluster/bin/clovmmigrate"
CLSNMPSETUP_PATH = "/etc/opt/FJSVcluster/bin/clsnmpsetup"
SDTOOL_PATH = "/opt/SMAW/bin/sdtool"
CFTOOL_PATH = "/opt/SMAW/bin/cftool"
CFSET_PATH = "/opt/SMAW/bin/cfset"
HVDISP_PATH = "/opt/SMAW/bin/hvdisp"
LDM_PATH = "/usr/sbin/ldm"
COMMAND_PATHS = {  # full product path -> command name
    CLOVMMIGRATE_PATH: "clovmmigrate",
    CLSNMPSETUP_PATH: "clsnmpsetup",
    SDTOOL_PATH: "sdtool",
    CFTOOL_PATH: "cftool",
    CFSET_PATH: "cfset",
    HVDISP_PATH: "hvdisp",
    LDM_PATH: "ldm",
}

CALL_TIMEOUT = 10.0  # real seconds for one RPC
READY_TIMEOUT = 30.0  # real seconds `clovm up` waits for every daemon
UP_READY_TIMEOUT = 45.0  # real seconds `clovm up` then waits for the cluster (CF, RMS, SF) to be ready

# ---- the supervisor (runtime/supervisor.py, core/supervision.py): SMF's restarter ------------------
SUPERVISOR_RESTART_DELAY = 0.5  # real seconds between a daemon's exit and its restart
SUPERVISOR_RESTART_LIMIT = 5  # restarts allowed within the window; one more exit: maintenance
SUPERVISOR_RESTART_WINDOW = 60.0  # real seconds
SUPERVISOR_REJOIN_TIMEOUT = 60.0  # real seconds a restarted cluster node waits for its peers to let it go

# ---- ldmd to ldmd (runtime/ldmd.py) --------------------------------------------------------------
LDMD_LINK_PING = 0.25  # real seconds between two checks of the peer of a migration in progress
LDMD_LINK_GRACE = 5.0  # real seconds a peer that does not answer (but does not refuse) is given
LDMD_CONNECT_RETRY = 3.0  # real seconds a refused connection to a peer ldmd is tried again


def default_home() -> Path:
    """``$CLOVM_HOME``, else the per-user state folder."""
    env = os.environ.get("CLOVM_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "clovm"
