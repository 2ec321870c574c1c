"""The Pacemaker topology: Figure 17.1 on the open HA stack (corosync 3, pacemaker 2, fence_virsh).

Three emulated hypervisor hosts kvm1..kvm3 (network + mount namespaces, Debian's sshd, clovm's
hypervisor with a virsh whose live migration is ldm's engine) and two VMs vm1, vm2 (network,
mount, PID, IPC and UTS namespaces) forming the two-node cluster ``pcmkcluster``.

Entry points (lazily imported, so that the hosts' ``virsh`` stays quick to start):
``up(home, *, time_scale=1.0)``, ``down(home)``, ``exec_in(home, host, argv)``,
``pause(home, vm, seconds)``, ``status(home)``, ``run_virsh(home, host, *args)``, ``where(home, vm)``,
``cluster_view(home, node)``, ``stonith_history(home, node)``, ``wait_ready(home)``,
``is_pacemaker_home(home)``.

Modules: layout (names, addresses, paths), configs (file texts), platform (the adapter for ip,
nsenter, mount, cgroups), net (bridges and veths), record (what up made; teardown plan), files
(the home's keys and files), hvcore (the sans-IO hypervisor over core.ldm), virsh (its command
line and client), hvd / hostinit / vminit (the processes), readiness (crm_mon verdicts), api (the
use cases), migrate_env (``clovm migrate`` here: the adapter of core.stacks.pacemaker), demo
(``clovm demo --topology pacemaker``). Error codes are core.codes'.
"""

from __future__ import annotations

from typing import Any

_API = (
    "up",
    "down",
    "exec_in",
    "exec_argv",
    "pause",
    "status",
    "run_virsh",
    "where",
    "cluster_view",
    "stonith_history",
    "wait_ready",
    "is_pacemaker_home",
)
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
