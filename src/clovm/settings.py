"""Every path, port and default of clovm in one place (the pcs settings.py rule)."""

from __future__ import annotations

import os
from pathlib import Path

# ---- ports (each emulated host has its own loopback address, so ports can be fixed) ----------
SNMP_PORT = 16161  # XSCF SNMP agent, on LAN#0 and LAN#1 (real XSCF: 161)
XSCF_SSH_PORT = 10022  # XSCF SSH CLI, on LAN#0 and LAN#1 (real XSCF: 22)
LDMD_PORT = 8101  # ldmd-to-ldmd migration channel (the real ldmd's port), TLS
CF_PORT = 9382  # CF heartbeats, UDP on the node's interconnect address
NODE_PORT = 9796  # node admin channel for clovmmigrate, TLS

# ---- cluster defaults --------------------------------------------------------------------------
DEFAULT_CLUSTER_TIMEOUT = 10
MIGRATION_CLUSTER_TIMEOUT = 600
HEARTBEAT_INTERVAL = 1.0
SF_TEST_INTERVAL = 600.0
RMS_SYNC_THRESHOLD = 5.0
RMS_SYNC_PERIOD = 60.0
DEFAULT_TIME_SCALE = 1.0
# Real-time floors of the runtime at high time scales (docs/runtime-design.md, "Time floors"):
# a loaded machine cannot keep sub-second real-time promises, so these many *real* seconds are the
# least that CF's failure detection, CF's join window and one shutdown-agent run get, whatever the
# time scale. At scale 1 (and up to 10 for detection) they change nothing.
CF_MIN_DETECTION_REAL = 1.0
CF_MIN_JOIN_REAL = 0.5
SF_MIN_AGENT_REAL = 2.0
EPOCH = 1_764_000_000.0  # emulated wall clock when a datacenter starts: 2025-11-24T16:00:00Z

# ---- credentials created by `clovm up` (stored 0600 in the home's secrets file) ---------------
XSCF_USER = "xuser"
INITIAL_SPCONFIG = "config1"

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
COMMAND_PATHS = {  # full product path -> command name
    "/etc/opt/FJSVcluster/bin/clovmmigrate": "clovmmigrate",
    "/etc/opt/FJSVcluster/bin/clsnmpsetup": "clsnmpsetup",
    "/opt/SMAW/bin/sdtool": "sdtool",
    "/opt/SMAW/bin/cftool": "cftool",
    "/opt/SMAW/bin/cfset": "cfset",
    "/opt/SMAW/bin/hvdisp": "hvdisp",
    "/usr/sbin/ldm": "ldm",
}

CALL_TIMEOUT = 10.0  # real seconds for one RPC
READY_TIMEOUT = 30.0  # real seconds `clovm up` waits for every daemon


def default_home() -> Path:
    """``$CLOVM_HOME``, else the per-user state folder."""
    env = os.environ.get("CLOVM_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "clovm"
