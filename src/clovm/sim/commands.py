"""How the simulator answers the calls of a command machine (``clovmmigrate -p/-u``, ``clovm migrate``).

:class:`CommandCalls` is mixed into :class:`~clovm.sim.world.World`. Every ``Call`` of the
machine is answered with the semantics of the tables in :mod:`clovm.core.migration` and
``docs/safe-migration.md``: control-domain calls here (ldm, the migration in the background,
``cd_info`` from the topology's :class:`~clovm.core.node.ControlDomainFacts`), ``guest_nodes``
and ``resolve`` by the local control domain's node, node operations by the node itself — each
reached over the simulated network, so a dead or suspended node gives no answer and the call
times out after CALL_TIMEOUT (plus what ``sf_wait`` waits by itself).

A command is a process of its control domain: :meth:`CommandCalls.kill_commands` (the control
domain crashed) or ``kill_after=N`` (SIGKILL once it has made N calls) ends it between two of its
effects; its ``Pending`` then resolves to a ``Finished`` with rc :data:`KILLED`, the calls it had
already sent still run at their targets, and their answers go nowhere. Journals are what
``runtime/migrate_env.py`` writes: a ``clovm migrate`` journal that reaches step ``done`` becomes
the domain's last journal (``World.last_journals``) and no longer counts as a migration in
progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import migration as mig
from ..core.base import Effect
from .hosts import CommandRun, Pending, SimNode

if TYPE_CHECKING:
    from ..core import ldm as ldmmod
    from ..topology import Topology
    from .hosts import TraceLog
    from .invariants import Invariants
    from .network import SimNetwork
    from .scheduler import Scheduler

CALL_TIMEOUT = 30.0
KILLED = -9  # the rc of a command that was killed (SIGKILL: it printed nothing more)


@dataclass(eq=False)
class Command:
    """One running command process on a control domain."""

    host: str
    run: CommandRun
    pending: Pending
    label: str
    kill_after: int | None = None  # SIGKILL once this many calls were made
    calls: int = 0
    dead: bool = False


class CommandCalls:
    """The command-running half of :class:`~clovm.sim.world.World` (which provides the attributes
    and the methods declared here)."""

    topo: Topology
    sched: Scheduler
    net: SimNetwork
    trace: TraceLog
    check: Invariants
    nodes: dict[str, SimNode]
    ldm: dict[str, ldmmod.Ldmd]
    ldm_down: set[str]
    cd_down: set[str]
    journals: dict[tuple[str, str], dict[str, Any]]
    last_journals: dict[tuple[str, str], dict[str, Any]]
    commands: list[Command]
    _progress: dict[tuple[str, str], ldmmod.MigrationProgress]
    _background: dict[tuple[str, str], Pending]

    if TYPE_CHECKING:

        def ldm_command(self, host: str, *argv: str) -> Pending: ...
        def operation(
            self,
            n: SimNode,
            op: str,
            args: dict[str, Any] | None = None,
            caller: str | None = None,
            reply: Callable[..., None] | None = None,
        ) -> None: ...

    def clovmmigrate(
        self, host: str, mode: str, domain: str, target: str = "", *, kill_after: int | None = None
    ) -> Pending:
        """Run clovmmigrate -p/-u on control domain ``host``; resolves to the Finished effect."""
        run = mig.ClovmmigrateRun(mig.Request(mode, domain, host, target), self.journals.get((host, domain)))
        flag = "-p" if mode == "prepare" else "-u"
        return self.run_machine(host, run, f"clovmmigrate {flag} {domain} {target}".rstrip(), kill_after=kill_after)

    def run_machine(self, host: str, run: CommandRun, label: str, *, kill_after: int | None = None) -> Pending:
        """Run a command machine on control domain ``host`` (``label`` goes to the trace);
        resolves to its ``Finished`` effect (rc :data:`KILLED` if it was killed)."""
        p = Pending()
        cmd = Command(host, run, p, label, kill_after)
        self.trace(host, "cmd", label)
        if host in self.cd_down:  # nothing runs on a control domain that is down
            self._end_command(cmd, "the control domain is down")
            return p
        self.commands.append(cmd)
        self._run_effects(cmd, run.handle(self.sched.now, mig.RunStarted()))
        return p

    def kill_commands(self, host: str, why: str) -> None:
        """Every command running on control domain ``host`` dies (SIGKILL, or the host went down)."""
        for cmd in [c for c in self.commands if c.host == host]:
            self._end_command(cmd, why)

    def _end_command(self, cmd: Command, why: str) -> None:
        cmd.dead = True
        if cmd in self.commands:
            self.commands.remove(cmd)
        self.trace(cmd.host, "cmd", f"{cmd.label}: killed ({why})")
        cmd.pending.resolve(mig.Finished(KILLED, "KILLED", f"{cmd.label}: killed ({why})"))

    def _run_effects(self, cmd: Command, effects: list[Effect]) -> None:
        host, run, p = cmd.host, cmd.run, cmd.pending
        for e in effects:
            if cmd.dead:
                return
            if isinstance(e, mig.Print):
                self.trace(host, "cmd", e.text)
                p.lines.append((e.err, e.text))
            elif isinstance(e, mig.Persist):
                self._persist(host, e)
            elif isinstance(e, mig.Finished):
                if cmd in self.commands:
                    self.commands.remove(cmd)
                self.check.finished(cmd, e)
                p.resolve(e)
            elif isinstance(e, mig.Call):
                if cmd.kill_after is not None and cmd.calls >= cmd.kill_after:
                    self._end_command(cmd, f"SIGKILL after {cmd.calls} calls")
                    return
                cmd.calls += 1
                answered = [False]

                def reply(
                    ok: bool, value: Any = None, error: str = "", call: mig.Call = e, answered: list[bool] = answered
                ) -> None:  # (bound per call: a batch has several)
                    if answered[0] or cmd.dead:
                        return
                    answered[0] = True
                    self._run_effects(cmd, run.handle(self.sched.now, mig.CallReturned(call.call_id, ok, value, error)))

                limit = CALL_TIMEOUT + float(e.args.get("seconds", 0.0))  # sf_wait waits by itself

                def timed_out(reply: Callable[..., None] = reply, c: mig.Call = e, limit: float = limit) -> None:
                    reply(False, error=f"timeout: {c.target} did not answer within {limit:.0f} s")

                self.sched.after(limit, timed_out)
                self._call(host, e, reply)

    def _persist(self, host: str, e: mig.Persist) -> None:
        """Write a journal on ``host`` (as runtime/migrate_env.py does)."""
        key = (host, e.domain)
        j = e.journal
        if j is not None and e.domain.endswith(".migrate") and j.get("step") == "done":
            self.last_journals[key] = dict(j)  # DOMAIN.migrate-last.json: no longer in progress
            j = None
        if j is None:
            self.journals.pop(key, None)
        else:
            self.journals[key] = dict(j)
        self.check.journal(host, e.domain, j)

    def _cd_name(self, target: str) -> str | None:
        """The control domain named or addressed by ``target`` (None if it is none)."""
        if target in self.ldm:
            return target
        return next((cd.name for cd in self.topo.control_domains if cd.address == target), None)

    def _remote(self, host: str, cd: str, answer: Callable[[], Any], reply: Callable[..., None]) -> None:
        """Ask control domain ``cd`` (from ``host``) over the network; reply with what it answers."""

        def there() -> None:
            if cd in self.cd_down:
                return  # the host is off: nothing answers (the call times out)
            if cd in self.ldm_down:
                self.net.send(
                    cd,
                    host,
                    lambda: reply(False, error=f"{cd}: connection refused (ldmd is not running)"),
                    reliable=True,
                )
                return
            value = answer()
            self.net.send(cd, host, lambda: reply(True, value), reliable=True)

        self.net.send(host, cd, there, reliable=True)

    def _activity(self, cd: str) -> dict[str, list[str]]:
        journals = sorted({d.removesuffix(".migrate") for h, d in self.journals if h == cd})
        d = self.ldm[cd]
        migrating = sorted({x.name for x in d.domains() if d.migration(x.name) is not None} | set(d.incoming()))
        return {"journals": journals, "migrating": migrating}

    def _where(self, cd: str, domain: str) -> dict[str, Any] | None:
        d = self.ldm[cd]
        dom = d.domain(domain)
        if dom is None:
            return None
        prog = self._progress.get((cd, domain)) if d.migration(domain) is not None else None
        return {
            "state": str(dom.state),
            "flags": dom.flags,
            "migration": None if prog is None else {"phase": str(prog.phase), "percent": prog.percent},
        }

    def _call(self, host: str, c: mig.Call, reply: Callable[..., None]) -> None:
        t = self.topo
        local = self._cd_name(c.target) or host
        if c.op == "sleep":
            self.sched.after(float(c.args["seconds"]), lambda: reply(True, None))
        elif c.op == "control_domains":
            reply(True, [{"host": cd.name, "address": cd.address} for cd in t.control_domains])
        elif c.op in ("activity", "where"):
            cd = self._cd_name(c.target)
            if cd is None:
                return reply(False, error=f"unknown control domain {c.target}")
            if c.op == "activity":
                self._remote(host, cd, lambda: self._activity(cd), reply)
            else:
                self._remote(host, cd, lambda: self._where(cd, str(c.args["domain"])), reply)
        elif c.op == "migrate_start":
            domain, target = str(c.args["domain"]), str(c.args["target"])
            self._progress.pop((local, domain), None)
            self.trace(local, "cmd", f"ldm migrate-domain -c {domain} {target} (background)")
            self._background[(local, domain)] = self.ldm_command(
                local, "migrate-domain", "-c", domain, self._cd_name(target) or target
            )
            reply(True, None)
        elif c.op == "migrate_result":
            bg = self._background.get((local, str(c.args["domain"])))
            r = bg.value if bg is not None and bg.done else None
            reply(True, None if r is None else {"rc": r.rc, "stdout": r.stdout, "stderr": r.stderr})
        elif c.op == "ldm":
            if c.target not in self.ldm:
                return reply(False, error=f"unknown control domain {c.target}")

            def at_target() -> None:
                if c.target not in self.cd_down:
                    self.ldm_command(c.target, *c.args["argv"]).add_callback(
                        lambda r: self.net.send(
                            c.target,
                            host,
                            lambda: reply(True, {"rc": r.rc, "stdout": r.stdout, "stderr": r.stderr}),
                            reliable=True,
                        )
                    )

            self.net.send(host, c.target, at_target, reliable=True)
        elif c.op in ("guest_nodes", "resolve"):  # answered by the local control domain's node
            self._at_node(host, self._cd_node(host), c, reply)
        elif c.op == "cd_info":  # answered by the control domain named or addressed
            answering = self._cd_name(c.target)
            if answering is None:
                return reply(False, error=f"no control domain answers at {c.target}")
            self._remote(host, answering, lambda: t.control_domain_facts(answering).info(), reply)
        else:
            n = self.nodes.get(c.target)
            if n is None:
                return reply(False, error=f"unknown cluster node {c.target}")
            self._at_node(host, n, c, reply)

    def _cd_node(self, host: str) -> SimNode:
        return self.nodes[self.topo.control_domain(host).cf_name]

    def _at_node(self, host: str, n: SimNode, c: mig.Call, reply: Callable[..., None]) -> None:
        """Carry call ``c`` from control domain ``host`` to node ``n`` and its answer back; a dead or
        suspended node gives no answer (the call times out)."""

        def at_node() -> None:
            if n.alive and not n.suspended:
                self._node_op(
                    n, c, lambda *a, **k: self.net.send(n.cf, host, lambda: reply(*a, **k), reliable=True), host
                )

        self.net.send(host, n.cf, at_node, reliable=True)

    def _node_op(self, n: SimNode, c: mig.Call, reply: Callable[..., None], caller: str = "") -> None:
        self.operation(n, c.op, c.args, caller, reply)
