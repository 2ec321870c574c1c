"""Every default of the cluster's behaviour, defined once (``clovm.settings`` re-exports them).

The core machines take these as their constructor defaults, the drivers pass them, and the
product files ``clovm up`` writes start from them. Nothing here knows about I/O.
"""

from __future__ import annotations

EPOCH = 1_764_000_000.0  # emulated wall clock at emulated time 0: 2025-11-24T16:00:00Z
DEFAULT_CLUSTER_TIMEOUT = 10  # CF CLUSTER_TIMEOUT (s), cluster.config's default
MIGRATION_CLUSTER_TIMEOUT = 600  # the timeout clovmmigrate -p sets (s)
HEARTBEAT_INTERVAL = 1.0  # CF heartbeat period (s)
CF_STALL = 2.5  # a node that did not run for longer than this (s) does not count its peers' silence meanwhile
JOIN_TIMEOUT = 3.0  # how long a booting CF node waits for join answers (s)
DOMAIN_RECHECK_INTERVAL = 10.0  # CF asks the hypervisor about a LEFTCLUSTER peer this often (s)
SF_TEST_INTERVAL = 600.0  # SF tests every agent this often (s)
SF_LIGHTER_SIDE_DELAY = 30.0  # the lighter side of a split brain waits up to this long (s)
SF_KILL_RETRY = 30.0  # SF tries again to kill a node that every shutdown agent failed to kill, after (s)
SF_SPLIT_SETTLE = 2.0  # SF decides a split brain of more than two nodes this long after the first LEFTCLUSTER (s)
RMS_SYNC_THRESHOLD = 5.0  # RMS: a peer clock further off than this is out of time sync (s)
RMS_SYNC_PERIOD = 60.0  # RMS: (WRP, 35) repeats this often while out of sync (s)
RMS_SETTLE = 3.0  # RMS waits this long after start before placing applications (s)
CLOCK_SAMPLES = 5  # heartbeats per peer over which a node estimates the peer's clock
STALE_HEARTBEAT = 2.0  # a heartbeat older than this (s) says nothing about its sender's clock now
MIGRATE_POLL_SECONDS = 1.0  # clovm migrate looks at a running migration this often (emulated s)
INITIAL_SPCONFIG = "config1"  # the configuration the operator saved when the datacenter was built
XSCF_USER = "xuser"  # the XSCF user of the SF agents
