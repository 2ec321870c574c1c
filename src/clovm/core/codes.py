"""Every stable report code of clovm, in one registry (pcs ``common/reports/codes.py``).

A code names *why* something was refused or failed; programs test codes, people read the
message beside them. Codes are plain strings so that they cross process boundaries (RPC
answers, journals, ``--json`` output) unchanged. Every module that reports a code imports it
from here; ``tests/test_codes.py`` checks that every constant is its own name, that every code
here is used in ``src/`` and that no code is spelled anywhere else.
"""

from __future__ import annotations

Code = str

# ---- a node's operations (the node agent's admin channels; core.node) ------------------------
BAD_REQUEST: Code = "BAD_REQUEST"  # an operation's arguments are malformed
BAD_CONFIG: Code = "BAD_CONFIG"  # a product configuration file does not parse
NOT_AVAILABLE: Code = "NOT_AVAILABLE"  # the operation needs SF/RMS (a guest node) or a control domain
SF_REFUSED: Code = "SF_REFUSED"  # SF cannot start: the node's join was refused
UNKNOWN_OP: Code = "UNKNOWN_OP"  # no such operation on this channel
FORBIDDEN: Code = "FORBIDDEN"  # the caller may not do this operation
NOT_A_CLUSTER_DOMAIN: Code = "NOT_A_CLUSTER_DOMAIN"  # the domain is no node of a guest cluster

# ---- the RPC layer (runtime.rpc) and the other daemons (runtime.ldmd, runtime.xscfd) ----------
UNREACHABLE: Code = "UNREACHABLE"  # no connection, no answer in time, or the connection closed
INTERNAL: Code = "INTERNAL"  # a handler raised an unexpected exception (a bug in the daemon)
BAD_ANSWER: Code = "BAD_ANSWER"  # an answer does not have the expected shape (also: an error without a code)
NO_SUCH_PPAR: Code = "NO_SUCH_PPAR"  # xscfd: the PPAR-ID is not on this server
LAN_ERROR: Code = "LAN_ERROR"  # xscfd: an XSCF-LAN cannot be brought up
PEER_RESTARTED: Code = "PEER_RESTARTED"  # ldmd: a message for the ldmd that ran before this one (it restarted)

# ---- the datacenter's use cases (api.datacenter, api.faults) ----------------------------------
HOME_IN_USE: Code = "HOME_IN_USE"  # the home already runs a datacenter
ADDRESS_IN_USE: Code = "ADDRESS_IN_USE"  # an address/port of the topology is taken
BAD_TOPOLOGY: Code = "BAD_TOPOLOGY"  # the topology does not load or validate
BAD_ARGUMENT: Code = "BAD_ARGUMENT"  # a use case was given a bad value (time scale, fault arguments)
NOT_RUNNING: Code = "NOT_RUNNING"  # the home runs no datacenter (or not the daemon / domain asked for)
DAEMON_FAILED: Code = "DAEMON_FAILED"  # a daemon did not start or did not answer
DEGRADED: Code = "DEGRADED"  # clovm status: the datacenter runs, but a daemon is down or does not answer
RESTARTING: Code = "RESTARTING"  # clovm status: the supervisor is restarting the daemon
MAINTENANCE: Code = "MAINTENANCE"  # clovm status: the daemon exited too often; the supervisor gave up on it
NOT_READY: Code = "NOT_READY"  # clovm up: the datacenter runs, but its clusters did not become ready in time
UNKNOWN_HOST: Code = "UNKNOWN_HOST"  # not a control domain or guest of the topology
UNKNOWN_SERVER: Code = "UNKNOWN_SERVER"  # not a server of the topology
UNKNOWN_DOMAIN: Code = "UNKNOWN_DOMAIN"  # not a guest domain of the topology
UNKNOWN_FAULT: Code = "UNKNOWN_FAULT"  # not a fault kind `clovm fault` knows
REMOTE_ERROR: Code = "REMOTE_ERROR"  # a daemon answered a request with an error

# ---- the product's admin commands (api.commands) ---------------------------------------------
BAD_NAME: Code = "BAD_NAME"  # a name that would become part of a path breaks the product's naming rules
BAD_USAGE: Code = "BAD_USAGE"  # the command line does not parse (rc 2)
NOT_A_CONTROL_DOMAIN: Code = "NOT_A_CONTROL_DOMAIN"  # the command runs on control domains only
SF_NOT_RUNNING: Code = "SF_NOT_RUNNING"  # sdtool -s: the shutdown facility is not running
NOT_SET: Code = "NOT_SET"  # cfset -g: the name is not set in the CF module
LOCKED: Code = "LOCKED"  # another clovmmigrate / clovm migrate for the domain runs on the host
BAD_JOURNAL: Code = "BAD_JOURNAL"  # a clovmmigrate / clovm migrate journal does not parse
SEVERAL_MIGRATIONS: Code = "SEVERAL_MIGRATIONS"  # clovm migrate --resume: name the domain
INTERRUPTED: Code = "INTERRUPTED"  # the command was interrupted (run it again / --resume)

# ---- clovmmigrate -p / -u (core.migration) ---------------------------------------------------
STEP_FAILED: Code = "STEP_FAILED"  # a node or ldm call failed part way (run the command again)
LDM_FAILED: Code = "LDM_FAILED"  # an ldm sub-command exited nonzero
NODE_UNREACHABLE: Code = "NODE_UNREACHABLE"  # a node of the guest cluster does not answer
DOMAIN_NOT_HOSTED: Code = "DOMAIN_NOT_HOSTED"  # the domain is not on this control domain
DOMAIN_STOPPED: Code = "DOMAIN_STOPPED"  # the domain is not running
SF_ALREADY_STOPPED: Code = "SF_ALREADY_STOPPED"  # -p: SF was stopped by someone else
TARGET_UNRESOLVED: Code = "TARGET_UNRESOLVED"  # target-host is no address and not in etc/inet/hosts
TARGET_NOT_CONTROL_DOMAIN: Code = "TARGET_NOT_CONTROL_DOMAIN"  # target-host's ldmd does not answer cd_info
DOMAIN_NOT_ON_TARGET: Code = "DOMAIN_NOT_ON_TARGET"  # -u: the domain is not on target-host
SPCONFIG_LIMIT: Code = "SPCONFIG_LIMIT"  # more than 6 saved configurations, or a config_tmp
NOT_PREPARED: Code = "NOT_PREPARED"  # -u without a -p in force
TIMEOUT_UNKNOWN: Code = "TIMEOUT_UNKNOWN"  # -u: the pre-migration timeout is recorded nowhere
SF_TEST_FAILED: Code = "SF_TEST_FAILED"  # -u: an SF agent did not test / init successfully

# ---- clovm migrate (core.safemigrate) --------------------------------------------------------
NO_JOURNAL: Code = "NO_JOURNAL"  # --resume: no migration of the domain is recorded
RECORDED: Code = "RECORDED"  # --dry-run: a migration of the domain is recorded
OTHER_TARGET: Code = "OTHER_TARGET"  # a migration to another target is recorded
MIGRATION_RUNNING: Code = "MIGRATION_RUNNING"  # a migration of the domain is already in progress
SAME_HOST: Code = "SAME_HOST"  # target-host is the source control domain
PREFLIGHT_FAILED: Code = "PREFLIGHT_FAILED"  # the preflight found problems; nothing was changed
MIGRATION_STUCK: Code = "MIGRATION_STUCK"  # the migration did not end in time (resumable)
NOT_DOWN: Code = "NOT_DOWN"  # recover: the stopped node did not become DOWN in time
DOMAIN_LOST: Code = "DOMAIN_LOST"  # recover: the domain is not on the source any more
START_FAILED: Code = "START_FAILED"  # recover: ldm start-domain failed
SCOPED_NOT_POSSIBLE: Code = "SCOPED_NOT_POSSIBLE"  # --scoped on a stack that cannot widen detection per node
NOT_JOINED: Code = "NOT_JOINED"  # recover: the restarted node did not join the cluster
PROOF_FAILED: Code = "PROOF_FAILED"  # a proof check failed (resume proves again)
NOT_MIGRATED: Code = "NOT_MIGRATED"  # not migrated, but restored and proven on the source (rc 5)

# ---- the Pacemaker topology (clovm.pacemaker; spelled in pacemaker/codes.py until it imports these) --
NOT_ROOT: Code = "NOT_ROOT"  # namespaces, mounts and cgroups need root
MISSING_PACKAGES: Code = "MISSING_PACKAGES"  # corosync/pacemaker/fence-agents/sshd/pcs not installed
NOT_A_VM: Code = "NOT_A_VM"  # the operation needs a VM but was given a hypervisor host
VM_NOT_RUNNING: Code = "VM_NOT_RUNNING"  # the VM has no running processes
HOST_NOT_RUNNING: Code = "HOST_NOT_RUNNING"  # the hypervisor host's init process is gone
PLATFORM_FAILED: Code = "PLATFORM_FAILED"  # ip / unshare / nsenter / mount / cgroup refused something
UP_FAILED: Code = "UP_FAILED"  # the topology did not come up (everything made was removed again)
CLUSTER_NOT_READY: Code = "CLUSTER_NOT_READY"  # nodes not online, stonith not started or failed actions
EXEC_TIMEOUT: Code = "EXEC_TIMEOUT"  # a command run inside a host did not finish in time

# ---- clovm migrate on the Pacemaker stack (core.stacks.pacemaker, clovm.pacemaker.migrate_env) -------
UNKNOWN_TARGET: Code = "UNKNOWN_TARGET"  # the target is no hypervisor host of the datacenter
NOT_APPLIED: Code = "NOT_APPLIED"  # a change read back differs from what was written (token, cluster property)
