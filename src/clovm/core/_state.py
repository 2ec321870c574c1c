"""Every state and every transition of the core machines, as data.

Two rules, as in h11's ``_state.py``:
  1. Everything that decides which state follows which lives in this module. The machines look
     transitions up here; they never hard-code ``if state == X: state = Y``.
  2. This module knows nothing about I/O, time or which node it runs on.

Each table maps ``(state, trigger) -> new state``. A trigger is a short lowercase string named
after the event that causes it. A pair that is missing from a table is a transition that must not
happen; :func:`step` raises :class:`~clovm.core.base.TransitionError` for it, so a machine that
receives an event its state does not allow fails loudly in tests instead of drifting.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from .base import TransitionError


class _Named(str, Enum):
    _value_: str

    def __str__(self) -> str:  # print the product's spelling
        return self.value


# --------------------------------------------------------------------------------------------
# CF membership: the state of a *remote* node as seen by the local node (cftool -n "State").
# A node never sees itself LEFTCLUSTER. Questionable (no heartbeat for half the timeout) is a
# flag on UP, not a state: cftool still prints UP.
class NodeState(_Named):
    UP = "UP"
    LEFTCLUSTER = "LEFTCLUSTER"
    DOWN = "DOWN"
    COMINGUP = "COMINGUP"  # local node only: started, join not yet answered
    INVALID = "INVALID"  # local node only: join refused (SF/CRM/RMS do not start)


MEMBERSHIP: Mapping[tuple[NodeState, str], NodeState] = {
    # remote views
    (NodeState.UP, "heartbeat_lost"): NodeState.LEFTCLUSTER,
    (NodeState.LEFTCLUSTER, "eliminated"): NodeState.DOWN,  # SF killed it
    (NodeState.LEFTCLUSTER, "domain_stopped"): NodeState.DOWN,  # -p window: hypervisor says stopped
    (NodeState.LEFTCLUSTER, "marked_down"): NodeState.DOWN,  # operator (cftool -k)
    (NodeState.UP, "eliminated"): NodeState.DOWN,  # another node's SF killed it first
    (NodeState.DOWN, "joined"): NodeState.UP,
    (NodeState.DOWN, "silent_running"): NodeState.LEFTCLUSTER,  # no join answer, but its domain runs
    (NodeState.LEFTCLUSTER, "answered"): NodeState.UP,  # that silent peer accepted / asked to join
    (NodeState.DOWN, "eliminated"): NodeState.DOWN,
    (NodeState.DOWN, "domain_stopped"): NodeState.DOWN,
    # local view
    (NodeState.COMINGUP, "join_accepted"): NodeState.UP,
    (NodeState.COMINGUP, "join_refused"): NodeState.INVALID,
}


# --------------------------------------------------------------------------------------------
# SF (shutdown facility). The daemon (rcsd) is running or stopped (sdtool -b / -e). Each
# (cluster host, agent) pair has the four columns of ``sdtool -s``.
class SfDaemonState(_Named):
    RUNNING = "running"
    STOPPED = "stopped"


SF_DAEMON: Mapping[tuple[SfDaemonState, str], SfDaemonState] = {
    (SfDaemonState.STOPPED, "start"): SfDaemonState.RUNNING,
    (SfDaemonState.RUNNING, "stop"): SfDaemonState.STOPPED,
    (SfDaemonState.RUNNING, "reconfig"): SfDaemonState.RUNNING,
}


class SaState(_Named):
    IDLE = "Idle"
    INIT_ING = "Init-ing"
    INIT_WORKED = "InitWorked"
    INIT_FAILED = "InitFailed"
    TESTING = "Testing"
    TEST_WORKED = "TestWorked"
    TEST_FAILED = "TestFailed"
    KILLING = "Killing"
    KILL_WORKED = "KillWorked"
    KILL_FAILED = "KillFailed"


class ShutState(_Named):
    UNKNOWN = "Unknown"
    KILLING = "Killing"
    KILL_WORKED = "KillWorked"
    KILL_FAILED = "KillFailed"


class TestState(_Named):
    __test__ = False  # not a pytest class
    UNKNOWN = "Unknown"
    TESTING = "Testing"
    TEST_WORKED = "TestWorked"
    TEST_FAILED = "TestFailed"


class InitState(_Named):
    UNKNOWN = "Unknown"
    INIT_ING = "Init-ing"
    INIT_WORKED = "InitWorked"
    INIT_FAILED = "InitFailed"


# (column, trigger) tables for one agent row. Triggers: begin / worked / failed.
INIT: Mapping[tuple[InitState, str], InitState] = {
    (InitState.UNKNOWN, "begin"): InitState.INIT_ING,
    (InitState.INIT_WORKED, "begin"): InitState.INIT_ING,
    (InitState.INIT_FAILED, "begin"): InitState.INIT_ING,
    (InitState.INIT_ING, "worked"): InitState.INIT_WORKED,
    (InitState.INIT_ING, "failed"): InitState.INIT_FAILED,
}
TEST: Mapping[tuple[TestState, str], TestState] = {
    (TestState.UNKNOWN, "begin"): TestState.TESTING,
    (TestState.TEST_WORKED, "begin"): TestState.TESTING,
    (TestState.TEST_FAILED, "begin"): TestState.TESTING,
    (TestState.TESTING, "worked"): TestState.TEST_WORKED,
    (TestState.TESTING, "failed"): TestState.TEST_FAILED,
}
SHUT: Mapping[tuple[ShutState, str], ShutState] = {
    (ShutState.UNKNOWN, "begin"): ShutState.KILLING,
    (ShutState.KILL_WORKED, "begin"): ShutState.KILLING,
    (ShutState.KILL_FAILED, "begin"): ShutState.KILLING,
    (ShutState.KILLING, "worked"): ShutState.KILL_WORKED,
    (ShutState.KILLING, "failed"): ShutState.KILL_FAILED,
}

# The six XSCF SNMP agents for a guest-domain node, in the order SF tries them.
XSCF_AGENTS: tuple[str, ...] = ("SA_xscfsnmpg0p", "SA_xscfsnmpg1p", "SA_xscfsnmpg0r", "SA_xscfsnmpg1r")
AGENT_LAN: Mapping[str, int] = {"SA_xscfsnmpg0p": 0, "SA_xscfsnmpg1p": 1, "SA_xscfsnmpg0r": 0, "SA_xscfsnmpg1r": 1}
AGENT_ACTION: Mapping[str, str] = {
    "SA_xscfsnmpg0p": "panic",
    "SA_xscfsnmpg1p": "panic",
    "SA_xscfsnmpg0r": "reset",
    "SA_xscfsnmpg1r": "reset",
}


# --------------------------------------------------------------------------------------------
# RMS
class AppState(_Named):
    ONLINE = "Online"
    OFFLINE = "Offline"
    STANDBY = "Standby"


class SyncState(_Named):
    IN_SYNC = "in-sync"
    OUT_OF_SYNC = "out-of-sync"


TIME_SYNC: Mapping[tuple[SyncState, str], SyncState] = {
    (SyncState.IN_SYNC, "agree"): SyncState.IN_SYNC,
    (SyncState.IN_SYNC, "differ"): SyncState.OUT_OF_SYNC,  # (WRP, 34) once
    (SyncState.OUT_OF_SYNC, "differ"): SyncState.OUT_OF_SYNC,  # (WRP, 35) each period
    (SyncState.OUT_OF_SYNC, "agree"): SyncState.IN_SYNC,  # silence
}


# --------------------------------------------------------------------------------------------
# ldm: logical-domain STATE column, and the live-migration phases of one migration.
class DomainState(_Named):
    ACTIVE = "active"
    BOUND = "bound"
    INACTIVE = "inactive"


DOMAIN: Mapping[tuple[DomainState, str], DomainState] = {
    (DomainState.INACTIVE, "bind"): DomainState.BOUND,
    (DomainState.BOUND, "start"): DomainState.ACTIVE,
    (DomainState.INACTIVE, "start"): DomainState.ACTIVE,  # ldm start-domain binds implicitly
    (DomainState.ACTIVE, "stop"): DomainState.BOUND,
    (DomainState.ACTIVE, "crash"): DomainState.BOUND,
    (DomainState.BOUND, "unbind"): DomainState.INACTIVE,
    (DomainState.BOUND, "stop"): DomainState.BOUND,
}


class MigrationPhase(_Named):
    CHECKS = "checks"  # phase 1: ldmd to ldmd, compatibility checks
    PRECOPY = "pre-copy"  # phases 2-3: iterative memory copy while the guest runs
    SUSPENDED = "suspend"  # phase 4: guest stopped, remaining dirty pages sent
    HANDOFF = "hand-off"  # phase 5: target resumes, source destroyed
    DONE = "done"
    CANCELLED = "cancelled"  # source resumed, target destroyed
    FAILED = "failed"  # source left in error state ('e' flag)


MIGRATION: Mapping[tuple[MigrationPhase, str], MigrationPhase] = {
    (MigrationPhase.CHECKS, "accepted"): MigrationPhase.PRECOPY,
    (MigrationPhase.CHECKS, "rejected"): MigrationPhase.FAILED,
    (MigrationPhase.CHECKS, "cancel"): MigrationPhase.CANCELLED,
    (MigrationPhase.PRECOPY, "round_done"): MigrationPhase.PRECOPY,
    (MigrationPhase.PRECOPY, "converged"): MigrationPhase.SUSPENDED,
    (MigrationPhase.PRECOPY, "cancel"): MigrationPhase.CANCELLED,
    (MigrationPhase.PRECOPY, "link_lost"): MigrationPhase.CANCELLED,
    (MigrationPhase.SUSPENDED, "copied"): MigrationPhase.HANDOFF,
    (MigrationPhase.SUSPENDED, "cancel"): MigrationPhase.CANCELLED,
    (MigrationPhase.SUSPENDED, "aborted"): MigrationPhase.FAILED,  # fault: fails after the copy
    (MigrationPhase.HANDOFF, "acked"): MigrationPhase.DONE,
    (MigrationPhase.HANDOFF, "aborted"): MigrationPhase.FAILED,
    # the target's ldmd is gone and never took the domain over (core.ldm.HandoffNotTaken)
    (MigrationPhase.HANDOFF, "not_taken"): MigrationPhase.CANCELLED,
}


# --------------------------------------------------------------------------------------------
# XSCF: status of a logical domain as the service processor reports it (showdomainstatus).
class SpDomainStatus(_Named):
    RUNNING = "Solaris running"
    STOPPED = "Host stopped"
    PANIC = "Solaris panic"
    RESET = "Reset"
    UNKNOWN = "Unknown"  # e.g. migrated here but no spconfig saved yet


# --------------------------------------------------------------------------------------------
# clovmmigrate: one run of -p or -u.
class RunState(_Named):
    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


RUN: Mapping[tuple[RunState, str], RunState] = {
    (RunState.PLANNED, "begin"): RunState.RUNNING,
    (RunState.PLANNED, "refused"): RunState.FAILED,
    (RunState.RUNNING, "step_done"): RunState.RUNNING,
    (RunState.RUNNING, "all_done"): RunState.SUCCEEDED,
    (RunState.RUNNING, "step_failed"): RunState.FAILED,
}


# --------------------------------------------------------------------------------------------
# clovm migrate (core.safemigrate): the journal's step. The step is recorded *before* it is
# taken, so a resumed run starts the recorded step again (every step is idempotent).
class MigrateStep(_Named):
    PREPARE = "prepare"  # clovmmigrate -p (or its --scoped variant)
    MIGRATE = "migrate"  # ldm migrate-domain, watched
    RECOVER = "recover"  # the guest stopped: wait until it is DOWN, start it on the source
    COMPLETE = "complete"  # clovmmigrate -u to the target (or back to the source)
    PROVE = "prove"  # the proof checks
    DONE = "done"


MIGRATE_STEPS: Mapping[tuple[MigrateStep, str], MigrateStep] = {
    (MigrateStep.PREPARE, "prepared"): MigrateStep.MIGRATE,
    (MigrateStep.MIGRATE, "migrated"): MigrateStep.COMPLETE,  # guest active on the target
    (MigrateStep.MIGRATE, "cancelled"): MigrateStep.COMPLETE,  # guest still active on the source
    (MigrateStep.MIGRATE, "stopped"): MigrateStep.RECOVER,  # guest stopped (failed migration)
    (MigrateStep.RECOVER, "restarted"): MigrateStep.COMPLETE,
    (MigrateStep.COMPLETE, "completed"): MigrateStep.PROVE,
    (MigrateStep.PROVE, "proven"): MigrateStep.DONE,
}

S = TypeVar("S")


def step(table: Mapping[tuple[S, str], S], state: S, trigger: str) -> S:
    """Return the state that follows ``state`` on ``trigger``, or raise TransitionError."""
    try:
        return table[(state, trigger)]
    except KeyError:
        raise TransitionError(f"no transition from {state!s} on {trigger!r}") from None


def allowed(table: Mapping[tuple[S, str], S], state: S, trigger: str) -> bool:
    return (state, trigger) in table


# --------------------------------------------------------------------------------------------
# The supervisor (core.supervision): one supervised daemon, as SMF's restarter sees a service.
class SupervisedState(_Named):
    RUNNING = "running"
    RESTARTING = "restarting"  # it exited; restarted after the restart delay
    STARTING = "starting"  # started again, not ready yet
    MAINTENANCE = "maintenance"  # exited too often in a short time: no longer restarted


SUPERVISED: Mapping[tuple[SupervisedState, str], SupervisedState] = {
    (SupervisedState.RUNNING, "exited"): SupervisedState.RESTARTING,
    (SupervisedState.RUNNING, "flapped"): SupervisedState.MAINTENANCE,
    (SupervisedState.RESTARTING, "due"): SupervisedState.STARTING,
    (SupervisedState.STARTING, "ready"): SupervisedState.RUNNING,
    (SupervisedState.STARTING, "exited"): SupervisedState.RESTARTING,  # it did not get ready
    (SupervisedState.STARTING, "flapped"): SupervisedState.MAINTENANCE,
}
