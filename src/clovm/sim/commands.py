"""How the simulator answers the calls of a command machine (``clovmmigrate -p/-u``, ``clovm migrate``).

:class:`CommandCalls` is mixed into :class:`~clovm.sim.world.World`. Every ``Call`` of the
machine is answered with the semantics of the tables in :mod:`clovm.core.migration` and
``docs/safe-migration.md``: control-domain calls here (ldm, the migration in the background,
``cd_info`` from the topology's :class:`~clovm.core.node.ControlDomainFacts`), ``guest_nodes``
and ``resolve`` by the local control domain's node, node operations by the node itself — each
reached over the simulated network, so a dead or suspended node gives no answer and the call
times out after CALL_TIMEOUT (plus what ``sf_wait`` waits by itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import migration as mig
from ..core.base import Effect
from .hosts import CommandRun, Pending, SimNode

if TYPE_CHECKING:
    from .world import World

CALL_TIMEOUT = 30.0


class CommandCalls:
    """The command-running half of :class:`~clovm.sim.world.World`."""

    def clovmmigrate(self: World, host: str, mode: str, domain: str, target: str = "") -> Pending:
        """Run clovmmigrate -p/-u on control domain ``host``; resolves to the Finished effect."""
        run = mig.ClovmmigrateRun(mig.Request(mode, domain, host, target), self.journals.get((host, domain)))
        flag = "-p" if mode == "prepare" else "-u"
        return self.run_machine(host, run, f"clovmmigrate {flag} {domain} {target}".rstrip())

    def run_machine(self: World, host: str, run: CommandRun, label: str) -> Pending:
        """Run a command machine on control domain ``host`` (``label`` goes to the trace);
        resolves to its ``Finished`` effect."""
        p = Pending()
        self.trace(host, "cmd", label)
        self._run_effects(host, run, run.handle(self.sched.now, mig.RunStarted()), p)
        return p

    def _run_effects(self: World, host: str, run: CommandRun, effects: list[Effect], p: Pending) -> None:
        for e in effects:
            if isinstance(e, mig.Print):
                self.trace(host, "cmd", e.text)
                p.lines.append((e.err, e.text))
            elif isinstance(e, mig.Persist):
                if e.journal is None:
                    self.journals.pop((host, e.domain), None)
                else:
                    self.journals[(host, e.domain)] = dict(e.journal)
            elif isinstance(e, mig.Finished):
                p.resolve(e)
            elif isinstance(e, mig.Call):
                answered = [False]

                def reply(ok: bool, value: Any = None, error: str = "", call: mig.Call = e,
                          answered: list[bool] = answered) -> None:  # (bound per call: a batch has several)
                    if answered[0]:
                        return
                    answered[0] = True
                    self._run_effects(host, run, run.handle(self.sched.now, mig.CallReturned(call.call_id, ok, value, error)), p)

                limit = CALL_TIMEOUT + float(e.args.get("seconds", 0.0))  # sf_wait waits by itself
                self.sched.after(limit, lambda reply=reply, c=e, limit=limit: reply(
                    False, error=f"timeout: {c.target} did not answer within {limit:.0f} s"))
                self._call(host, e, reply)

    def _cd_name(self: World, target: str) -> str | None:
        """The control domain named or addressed by ``target`` (None if it is none)."""
        if target in self.ldm:
            return target
        return next((cd.name for cd in self.topo.control_domains if cd.address == target), None)

    def _remote(self: World, host: str, cd: str, answer: Callable[[], Any], reply: Callable[..., None]) -> None:
        """Ask control domain ``cd`` (from ``host``) over the network; reply with what it answers."""
        def there() -> None:
            value = answer()
            self.net.send(cd, host, lambda: reply(True, value), reliable=True)
        self.net.send(host, cd, there, reliable=True)

    def _activity(self: World, cd: str) -> dict[str, list[str]]:
        journals = sorted({d.removesuffix(".migrate") for h, d in self.journals if h == cd})
        d = self.ldm[cd]
        migrating = sorted({x.name for x in d.domains() if d.migration(x.name) is not None} | set(d.incoming()))
        return {"journals": journals, "migrating": migrating}

    def _where(self: World, cd: str, domain: str) -> dict[str, Any] | None:
        d = self.ldm[cd]
        dom = d.domain(domain)
        if dom is None:
            return None
        prog = self._progress.get((cd, domain)) if d.migration(domain) is not None else None
        return {"state": str(dom.state), "flags": dom.flags,
                "migration": None if prog is None else {"phase": str(prog.phase), "percent": prog.percent}}

    def _call(self: World, host: str, c: mig.Call, reply: Callable[..., None]) -> None:
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
                local, "migrate-domain", "-c", domain, self._cd_name(target) or target)
            reply(True, None)
        elif c.op == "migrate_result":
            bg = self._background.get((local, str(c.args["domain"])))
            r = bg.value if bg is not None and bg.done else None
            reply(True, None if r is None else {"rc": r.rc, "stdout": r.stdout, "stderr": r.stderr})
        elif c.op == "ldm":
            if c.target not in self.ldm:
                return reply(False, error=f"unknown control domain {c.target}")
            self.net.send(host, c.target, lambda: self.ldm_command(c.target, *c.args["argv"]).add_callback(
                lambda r: self.net.send(c.target, host, lambda: reply(True, {"rc": r.rc, "stdout": r.stdout,
                                                                             "stderr": r.stderr}), reliable=True)),
                reliable=True)
        elif c.op in ("guest_nodes", "resolve"):  # answered by the local control domain's node
            self._at_node(host, self._cd_node(host), c, reply)
        elif c.op == "cd_info":  # answered by the control domain named or addressed
            cd = self._cd_name(c.target)
            if cd is None:
                return reply(False, error=f"no control domain answers at {c.target}")
            self._remote(host, cd, lambda: t.control_domain_facts(cd).info(), reply)
        else:
            n = self.nodes.get(c.target)
            if n is None:
                return reply(False, error=f"unknown cluster node {c.target}")
            self._at_node(host, n, c, reply)

    def _cd_node(self: World, host: str) -> SimNode:
        return self.nodes[self.topo.control_domain(host).cf_name]

    def _at_node(self: World, host: str, n: SimNode, c: mig.Call, reply: Callable[..., None]) -> None:
        """Carry call ``c`` from control domain ``host`` to node ``n`` and its answer back; a dead or
        suspended node gives no answer (the call times out)."""
        def at_node() -> None:
            if n.alive and not n.suspended:
                self._node_op(n, c, lambda *a, **k: self.net.send(n.cf, host, lambda: reply(*a, **k), reliable=True),
                              host)
        self.net.send(host, n.cf, at_node, reliable=True)

    def _node_op(self: World, n: SimNode, c: mig.Call, reply: Callable[..., None], caller: str = "") -> None:
        self.operation(n, c.op, c.args, caller, reply)
