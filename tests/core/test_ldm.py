"""Tests of the ldmd machine, with an in-memory pair of ldmds (like h11's ConnectionPair)."""

from __future__ import annotations

from collections import deque

import pytest

from clovm.core._state import DomainState, MigrationPhase
from clovm.core.base import Effect, Event, Ticked
from clovm.core.ldm import (
    AdoptDomainProcess,
    CommandReceived,
    ConfigSaved,
    DomainProcessExited,
    Handoff,
    KillDomainProcess,
    Ldmd,
    MigrationAbortArmed,
    MigrationFailed,
    MigrationOffer,
    MigrationProgress,
    OfferAccepted,
    PeerMessageReceived,
    PeerUnreachable,
    ReleaseDomain,
    Reply,
    ResumeDomainProcess,
    SendToPeer,
    StartDomainProcess,
    SuspendDomainProcess,
    format_memory,
    format_uptime,
)

SRC, DST = "ctl1", "ctl2"


class Pair:
    """Two ldmds; SendToPeer is delivered in FIFO order, time jumps to the next deadline."""

    def __init__(self, a: Ldmd, b: Ldmd) -> None:
        self.nodes = {a.host: a, b.host: b}
        self.now = 0.0
        self.queue: deque[tuple[str, Event]] = deque()
        self.trace: list[tuple[float, str, Effect]] = []  # (time, host, effect)
        self.replies: dict[int, Reply] = {}
        self._req = 0
        self.hold = False  # stop delivering peer messages (to freeze a phase)

    def feed(self, host: str, event: Event) -> list[Effect]:
        effects = self.nodes[host].handle(self.now, event)
        for e in effects:
            self.trace.append((self.now, host, e))
            if isinstance(e, SendToPeer):
                self.queue.append((e.peer, PeerMessageReceived(host, e.msg)))
            elif isinstance(e, Reply):
                assert e.req_id not in self.replies, "two replies to one command"
                self.replies[e.req_id] = e
        return effects

    def cmd(self, host: str, *argv: str) -> int:
        self._req += 1
        self.feed(host, CommandReceived(self._req, argv))
        return self._req

    def run(self, host: str, *argv: str) -> Reply:
        req = self.cmd(host, *argv)
        return self.replies[req]

    def step(self) -> bool:
        if self.queue and not self.hold:
            self.feed(*self.queue.popleft())
            return True
        deadlines = [(d, h) for h, n in self.nodes.items() if (d := n.next_deadline()) is not None]
        if not deadlines:
            return False
        d, h = min(deadlines)
        self.now = max(self.now, d)
        self.feed(h, Ticked())
        return True

    def run_until(self, cond=lambda: False, limit: int = 1000) -> None:
        for _ in range(limit):
            if cond() or not self.step():
                return
        raise AssertionError("did not settle")

    def effects(self, kind: type, host: str | None = None) -> list[tuple[float, str, Effect]]:
        return [t for t in self.trace if isinstance(t[2], kind) and (host is None or t[1] == host)]

    def index(self, kind: type, host: str) -> int:
        return next(i for i, t in enumerate(self.trace) if isinstance(t[2], kind) and t[1] == host)


def make_pair(*, dst_memory: int = 65536, dirty: float = 2000.0, guest_mem: int = 8192) -> Pair:
    a = Ldmd(SRC, 0, "m10-1", memory_mb=65536, bandwidth_mb_s=500.0)
    b = Ldmd(DST, 1, "m10-2", memory_mb=dst_memory, bandwidth_mb_s=500.0)
    a.add_domain("guest1", 4096, 4, 10.0)
    a.add_domain("guest2", guest_mem, 8, dirty)
    return Pair(a, b)


def names(ldmd: Ldmd) -> list[str]:
    return [d.name for d in ldmd.domains()]


def snapshot(ldmd: Ldmd) -> tuple:
    return (ldmd.domains(), ldmd.spconfigs(), ldmd.next_deadline())


def phase_of(p: Pair, name: str = "guest2") -> MigrationPhase | None:
    m = p.nodes[SRC].migration(name)
    return None if m is None else m.phase


# ------------------------------------------------------------------------------ ldm list
def test_list_format() -> None:
    p = make_pair()
    p.nodes[SRC].add_domain("guest3", 1536, 2, 0.0, DomainState.BOUND)
    p.now = 3720.0
    out = p.run(SRC, "list")
    assert out.rc == 0 and out.stderr == ""
    assert out.stdout.splitlines() == [
        "NAME             STATE      FLAGS   CONS    VCPU  MEMORY   UTIL  UPTIME",
        "primary          active     -n-cv-  UART    8     4G       0.2%  1h 2m",
        "guest1           active     -n----  5000    4     4G       0.1%  1h 2m",
        "guest2           active     -n----  5001    8     8G       0.1%  1h 2m",
        "guest3           bound      ------  5002    2     1536M    -     -",
    ]
    one = p.run(SRC, "list-domain", "guest2").stdout.splitlines()
    assert len(one) == 2 and one[1].startswith("guest2 ")


def test_uptime_follows_start_time() -> None:
    p = make_pair()
    p.run(SRC, "stop-domain", "guest1")
    p.now = 100.0
    p.run(SRC, "start-domain", "guest1")
    p.now = 100.0 + 12 * 60 + 5
    row = p.run(SRC, "list", "guest1").stdout.splitlines()[1]
    assert row.endswith("0.1%  12m")
    assert format_uptime(59) == "59s" and format_uptime(90061) == "1d 1h 1m"
    assert format_memory(2048) == "2G" and format_memory(1000) == "1000M"


# ------------------------------------------------------------------------------ spconfig
def labels(p: Pair, host: str = SRC) -> list[str]:
    return p.run(host, "list-spconfig").stdout.splitlines()


def test_spconfig_add_labels_and_saved_domains() -> None:
    p = make_pair()
    assert labels(p) == ["factory-default [current]"]
    r = p.run(SRC, "add-spconfig", "cfg1")
    assert r.rc == 0
    assert labels(p) == ["factory-default", "cfg1 [current]"]
    saved = [e for _, _, e in p.effects(ConfigSaved)]
    assert saved == [ConfigSaved(0, "cfg1", frozenset({"primary", "guest1", "guest2"}))]
    p.run(SRC, "add-spconfig", "cfg2")
    assert labels(p) == ["factory-default", "cfg1", "cfg2 [current]"]
    assert p.run(SRC, "set-spconfig", "cfg1").rc == 0
    assert labels(p) == ["factory-default", "cfg1 [next poweron]", "cfg2"]
    assert p.nodes[SRC].saved_count() == 2
    assert p.nodes[SRC].spconfig_names() == ("factory-default", "cfg1", "cfg2")


def test_spconfig_start_stop_does_not_change_label_but_migration_does() -> None:
    p = make_pair(dirty=10.0)
    p.run(SRC, "add-spconfig", "cfg1")
    p.run(DST, "add-spconfig", "dcfg")
    p.run(SRC, "stop-domain", "guest1")
    p.run(SRC, "start-domain", "guest1")
    assert labels(p) == ["factory-default", "cfg1 [current]"]
    req = p.cmd(SRC, "migrate-domain", "-c", "guest2", DST)
    p.run_until()
    assert p.replies[req].rc == 0
    assert labels(p, SRC) == ["factory-default", "cfg1 [next poweron]"]
    assert labels(p, DST) == ["factory-default", "dcfg [next poweron]"]
    p.run(DST, "add-spconfig", "dcfg2")
    assert labels(p, DST) == ["factory-default", "dcfg", "dcfg2 [current]"]


def test_spconfig_max_eight_including_factory_default() -> None:
    p = make_pair()
    for i in range(7):
        assert p.run(SRC, "add-spconfig", f"c{i}").rc == 0
    before = snapshot(p.nodes[SRC])
    r = p.run(SRC, "add-spconfig", "c7")
    assert r.rc == 1 and "at most 8" in r.stderr and "factory-default" in r.stderr
    assert r.stderr.count("\n") == 1
    assert snapshot(p.nodes[SRC]) == before and p.nodes[SRC].saved_count() == 7
    assert p.run(SRC, "remove-spconfig", "c0").rc == 0
    assert p.run(SRC, "add-spconfig", "c7").rc == 0
    assert len(p.nodes[SRC].spconfig_names()) == 8


def test_spconfig_errors() -> None:
    p = make_pair()
    p.run(SRC, "add-spconfig", "cfg1")
    before = snapshot(p.nodes[SRC])
    dup = p.run(SRC, "add-spconfig", "cfg1")
    assert dup.rc == 1 and dup.stderr == "Error: The configuration cfg1 already exists\n"
    fd = p.run(SRC, "remove-spconfig", "factory-default")
    assert fd.rc == 1 and "cannot be removed" in fd.stderr
    assert p.run(SRC, "add-spconfig", "factory-default").rc == 1
    assert p.run(SRC, "remove-spconfig", "nope").stderr == "Error: The configuration nope does not exist\n"
    assert p.run(SRC, "set-spconfig", "nope").rc == 1
    assert "invalid configuration name" in p.run(SRC, "add-spconfig", "bad name").stderr
    assert p.run(SRC, "add-spconfig", "-r").rc == 1
    assert snapshot(p.nodes[SRC]) == before


def test_remove_next_poweron_config_falls_back_to_factory_default() -> None:
    p = make_pair()
    p.run(SRC, "add-spconfig", "cfg1")
    assert p.run(SRC, "remove-spconfig", "cfg1").rc == 0
    assert labels(p) == ["factory-default [next poweron]"]


# ------------------------------------------------------------------------------ migration
def test_full_migration_figure_numbers() -> None:
    p = make_pair()  # guest2: 8192 MB, dirty 2000 MB/s, bandwidth 500 MB/s
    req = p.cmd(SRC, "migrate-domain", "-c", "guest2", DST)
    assert req not in p.replies
    p.run_until(lambda: req in p.replies)
    assert p.replies[req].rc == 0 and p.replies[req].stderr == ""

    phases = [e.phase for _, _, e in p.effects(MigrationProgress, SRC)]
    assert phases == ["checks"] + ["pre-copy"] * 5 + ["suspend", "hand-off", "done"]
    assert not p.effects(MigrationProgress, DST)
    # the reply is sent only at the end
    assert p.index(Reply, SRC) > p.index(ReleaseDomain, SRC)

    ((t_susp, _, _),) = p.effects(SuspendDomainProcess, SRC)
    ((t_res, _, _),) = p.effects(ResumeDomainProcess, DST)
    assert t_res - t_susp > 10.0
    assert t_res - t_susp == pytest.approx(8192 / 500 + 0.1)  # remaining 8 GiB + 0.1 s overhead
    assert t_susp == pytest.approx(5 * 8192 / 500)  # five full rounds: never converges
    # process effects on the right side, in the right order
    assert [h for _, h, _ in p.effects(SuspendDomainProcess)] == [SRC]
    assert [h for _, h, _ in p.effects(AdoptDomainProcess)] == [DST]
    assert [h for _, h, _ in p.effects(ResumeDomainProcess)] == [DST]
    assert [h for _, h, _ in p.effects(ReleaseDomain)] == [SRC]
    assert (
        p.index(SuspendDomainProcess, SRC)
        < p.index(AdoptDomainProcess, DST)
        < p.index(ResumeDomainProcess, DST)
        < p.index(ReleaseDomain, SRC)
    )
    assert p.effects(AdoptDomainProcess)[0][2] == AdoptDomainProcess("guest2", SRC)
    assert not p.effects(KillDomainProcess)

    assert "guest2" not in names(p.nodes[SRC]) and "guest2" not in p.run(SRC, "list").stdout
    d = p.nodes[DST].domain("guest2")
    assert d is not None and d.state is DomainState.ACTIVE and d.flags == "-n----"
    assert d.started_at == 0.0  # guest uptime carried over
    row = p.run(DST, "list", "guest2").stdout.splitlines()[1].split()
    assert row[:3] == ["guest2", "active", "-n----"]
    assert p.nodes[SRC].migration("guest2") is None and p.nodes[SRC].next_deadline() is None
    assert p.nodes[DST].free_memory_mb() == 65536 - 4096 - 8192


def test_flags_during_migration() -> None:
    p = make_pair()
    p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY)
    assert p.nodes[SRC].domain("guest2").flags == "-n---s"
    t = p.nodes[DST].domain("guest2")
    assert t.state is DomainState.BOUND and t.flags == "-----t"
    assert p.run(DST, "list", "guest2").stdout.splitlines()[1].split()[1:3] == ["bound", "-----t"]


def test_converging_migration_has_short_suspend() -> None:
    p = make_pair(dirty=10.0)
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: req in p.replies)
    assert p.replies[req].rc == 0
    progress = [e for _, _, e in p.effects(MigrationProgress, SRC)]
    assert [e.phase for e in progress] == ["checks", "pre-copy", "pre-copy", "suspend", "hand-off", "done"]
    assert progress[2].percent == 98 and progress[-1].percent == 100
    ((t_susp, _, _),) = p.effects(SuspendDomainProcess, SRC)
    ((t_res, _, _),) = p.effects(ResumeDomainProcess, DST)
    assert t_res - t_susp < 0.2


def test_dry_run_success_changes_nothing() -> None:
    p = make_pair()
    before = (snapshot(p.nodes[SRC]), snapshot(p.nodes[DST]))
    req = p.cmd(SRC, "migrate-domain", "-n", "guest2", DST)
    p.run_until()
    r = p.replies[req]
    assert r.rc == 0 and "would succeed" in r.stdout
    assert (snapshot(p.nodes[SRC]), snapshot(p.nodes[DST])) == before
    assert not p.effects(SuspendDomainProcess)


def test_dry_run_failure_wording() -> None:
    p = make_pair(dst_memory=8192)
    req = p.cmd(SRC, "migrate-domain", "-n", "-p", "/tmp/pw", "guest2", DST)
    p.run_until()
    r = p.replies[req]
    assert r.rc == 1
    assert r.stderr.splitlines()[-1] == "Domain Migration of LDom guest2 would fail if attempted"


def test_rejected_for_lack_of_memory() -> None:
    p = make_pair(dst_memory=8192)  # primary takes 4G: 4G free
    before = snapshot(p.nodes[SRC])
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until()
    r = p.replies[req]
    assert r.rc == 1
    lines = r.stderr.splitlines()
    assert "Unable to bind 8G memory region" in lines[0] and "4G free" in lines[0]
    assert lines[1] == "Domain Migration of LDom guest2 failed"
    assert snapshot(p.nodes[SRC]) == before
    assert names(p.nodes[DST]) == ["primary"]
    assert [e.phase for _, _, e in p.effects(MigrationProgress)] == ["checks"]


def test_rejected_for_duplicate_name() -> None:
    p = make_pair()
    p.nodes[DST].add_domain("guest2", 1024, 1, 0.0)
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until()
    r = p.replies[req]
    assert r.rc == 1 and "already exists" in r.stderr
    assert r.stderr.endswith("Domain Migration of LDom guest2 failed\n")
    assert p.nodes[SRC].domain("guest2").flags == "-n----"
    assert p.nodes[DST].domain("guest2").memory_mb == 1024


def test_cancel_in_precopy() -> None:
    p = make_pair()
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY and p.nodes[SRC].migration("guest2").round == 2)
    c = p.run(SRC, "cancel-operation", "migration", "guest2")
    assert c.rc == 0
    p.run_until()
    r = p.replies[req]
    assert r.rc == 1 and r.stderr == "Migration of domain guest2 was cancelled\n"
    assert p.nodes[SRC].domain("guest2").flags == "-n----"
    assert p.nodes[SRC].domain("guest2").state is DomainState.ACTIVE
    assert "guest2" not in names(p.nodes[DST])
    assert not p.effects(SuspendDomainProcess) and not p.effects(ResumeDomainProcess)
    assert not p.effects(KillDomainProcess) and not p.effects(ReleaseDomain)
    assert p.effects(MigrationProgress, SRC)[-1][2].phase == "cancelled"


def test_cancel_in_suspend_resumes_on_source() -> None:
    p = make_pair()
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.SUSPENDED)
    assert p.run(SRC, "cancel-operation", "migration", "guest2").rc == 0
    p.run_until()
    assert p.replies[req].rc == 1 and "was cancelled" in p.replies[req].stderr
    assert [h for _, h, _ in p.effects(ResumeDomainProcess)] == [SRC]
    assert p.index(SuspendDomainProcess, SRC) < p.index(ResumeDomainProcess, SRC)
    assert not p.effects(AdoptDomainProcess) and not p.effects(ReleaseDomain)
    assert p.nodes[SRC].domain("guest2").flags == "-n----"
    assert "guest2" not in names(p.nodes[DST])


def test_abort_fault_leaves_source_in_error_state() -> None:
    p = make_pair()
    p.feed(SRC, MigrationAbortArmed("guest2"))
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until()
    r = p.replies[req]
    assert r.rc == 1 and r.stderr.endswith("Domain Migration of LDom guest2 failed\n")
    d = p.nodes[SRC].domain("guest2")
    assert d.state is DomainState.BOUND and d.flags == "-----e"
    assert [(h, e) for _, h, e in p.effects(KillDomainProcess)] == [(SRC, KillDomainProcess("guest2"))]
    assert p.index(SuspendDomainProcess, SRC) < p.index(KillDomainProcess, SRC)
    assert "guest2" not in names(p.nodes[DST])
    assert not p.effects(Handoff) and not p.effects(AdoptDomainProcess)
    row = p.run(SRC, "list", "guest2").stdout.splitlines()[1].split()
    assert row[1:3] == ["bound", "-----e"]
    # the fault fired once; the operator restarts the guest and the next migration works
    assert p.run(SRC, "start-domain", "guest2").rc == 0
    assert p.nodes[SRC].domain("guest2").flags == "-n----"
    req2 = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until()
    assert p.replies[req2].rc == 0


def test_cancel_operation_clears_error_flag() -> None:
    p = make_pair()
    p.feed(SRC, MigrationAbortArmed("guest2"))
    p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until()
    assert p.run(SRC, "cancel-operation", "migration", "guest2").rc == 0
    assert p.nodes[SRC].domain("guest2").flags == "------"
    assert p.run(SRC, "cancel-operation", "migration", "guest2").rc == 1


def test_peer_unreachable_cancels_migration() -> None:
    p = make_pair()
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.SUSPENDED)
    p.feed(SRC, PeerUnreachable(DST))
    p.feed(DST, PeerUnreachable(SRC))
    r = p.replies[req]
    assert r.rc == 1 and "Lost connection to target host ctl2" in r.stderr and "cancelled" in r.stderr
    assert p.nodes[SRC].domain("guest2").flags == "-n----"
    assert [h for _, h, _ in p.effects(ResumeDomainProcess)] == [SRC]
    assert "guest2" not in names(p.nodes[DST])


def test_handoff_phase_cannot_be_cancelled_and_link_loss_fails() -> None:
    p = make_pair()
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.SUSPENDED)
    p.hold = True
    p.run_until(lambda: phase_of(p) is MigrationPhase.HANDOFF)
    c = p.run(SRC, "cancel-operation", "migration", "guest2")
    assert c.rc == 1 and "can no longer be cancelled" in c.stderr
    p.feed(SRC, PeerUnreachable(DST))
    assert p.replies[req].rc == 1
    assert p.nodes[SRC].domain("guest2").flags == "-----e"
    assert [h for _, h, _ in p.effects(KillDomainProcess)] == [SRC]


def test_target_that_lost_the_copy_answers_handoff_with_failure() -> None:
    src = Ldmd(SRC, 0, "s")
    src.add_domain("guest2", 1024, 1, 0.0)
    src.handle(0.0, CommandReceived(1, ("migrate-domain", "guest2", DST)))
    src.handle(0.0, PeerMessageReceived(DST, OfferAccepted(1, "guest2")))
    while (d := src.next_deadline()) is not None:
        src.handle(d, Ticked())
    assert src.migration("guest2").phase is MigrationPhase.HANDOFF
    eff = src.handle(5.0, PeerMessageReceived(DST, MigrationFailed(1, "guest2")))
    assert KillDomainProcess("guest2") in eff
    assert any(isinstance(e, Reply) and e.rc == 1 for e in eff)
    assert src.domain("guest2").flags == "-----e"


def test_stale_answer_of_old_attempt_is_ignored() -> None:
    src = Ldmd(SRC, 0, "s")
    src.add_domain("guest2", 1024, 1, 0.0)
    src.handle(0.0, CommandReceived(1, ("migrate-domain", "guest2", DST)))
    src.handle(0.0, CommandReceived(2, ("cancel-operation", "migration", "guest2")))
    src.handle(0.0, CommandReceived(3, ("migrate-domain", "guest2", DST)))
    src.handle(0.0, PeerMessageReceived(DST, OfferAccepted(1, "guest2")))
    assert src.migration("guest2").phase is MigrationPhase.CHECKS
    src.handle(0.0, PeerMessageReceived(DST, OfferAccepted(2, "guest2")))
    assert src.migration("guest2").phase is MigrationPhase.PRECOPY


def test_offer_message_carries_domain_facts() -> None:
    p = make_pair()
    p.cmd(SRC, "migrate-domain", "guest2", DST)
    ((_, _, send),) = p.effects(SendToPeer, SRC)
    assert send.peer == DST
    assert send.msg == MigrationOffer(1, "guest2", 8192, 8, 2000.0, SRC, 0.0, 0.1, False)


def test_operations_refused_while_migrating() -> None:
    p = make_pair()
    p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY)
    before = (snapshot(p.nodes[SRC]), snapshot(p.nodes[DST]))
    for host, argv in [
        (SRC, ("stop-domain", "guest2")),
        (SRC, ("start-domain", "guest2")),
        (SRC, ("migrate-domain", "guest2", DST)),
        (DST, ("start-domain", "guest2")),
        (DST, ("cancel-operation", "migration", "guest2")),
    ]:
        r = p.run(host, *argv)
        assert r.rc == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, argv
    assert (snapshot(p.nodes[SRC]), snapshot(p.nodes[DST])) == before


def test_bound_domain_is_not_live_migrated() -> None:
    p = make_pair()
    p.run(SRC, "stop-domain", "guest2")
    r = p.run(SRC, "migrate-domain", "guest2", DST)
    assert r.rc == 1 and "only live migration" in r.stderr
    assert p.nodes[SRC].migration("guest2") is None
    assert p.run(SRC, "migrate-domain", "primary", DST).rc == 1


# ------------------------------------------------------------------------------ domain lifecycle
def test_crash_of_domain_process_makes_it_bound() -> None:
    p = make_pair()
    eff = p.feed(SRC, DomainProcessExited("guest1"))
    d = p.nodes[SRC].domain("guest1")
    assert d.state is DomainState.BOUND and d.flags == "------" and d.started_at is None
    assert not any(isinstance(e, (Reply, KillDomainProcess)) for e in eff)
    assert p.run(SRC, "list", "guest1").stdout.splitlines()[1].split()[-2:] == ["-", "-"]


def test_crash_during_precopy_cancels_migration() -> None:
    p = make_pair()
    req = p.cmd(SRC, "migrate-domain", "guest2", DST)
    p.run_until(lambda: phase_of(p) is MigrationPhase.PRECOPY)
    p.feed(SRC, DomainProcessExited("guest2"))
    p.run_until()
    assert p.replies[req].rc == 1 and "stopped during migration" in p.replies[req].stderr
    assert p.nodes[SRC].domain("guest2").state is DomainState.BOUND
    assert "guest2" not in names(p.nodes[DST])
    assert not p.effects(ResumeDomainProcess)


def test_stop_and_start_domain() -> None:
    p = make_pair()
    p.now = 50.0
    r = p.run(SRC, "stop-domain", "guest1")
    assert r.rc == 0 and p.effects(KillDomainProcess, SRC)[0][2] == KillDomainProcess("guest1")
    assert p.nodes[SRC].domain("guest1").state is DomainState.BOUND
    p.now = 60.0
    r = p.run(SRC, "start-domain", "guest1")
    assert r.rc == 0 and p.effects(StartDomainProcess, SRC)[0][2] == StartDomainProcess("guest1")
    d = p.nodes[SRC].domain("guest1")
    assert d.state is DomainState.ACTIVE and d.flags == "-n----" and d.started_at == 60.0
    again = p.run(SRC, "start-domain", "guest1")
    assert again.rc == 1 and "already active" in again.stderr
    assert len(p.effects(StartDomainProcess)) == 1
    assert p.run(SRC, "stop-domain", "primary").rc == 1


def test_bind_unbind() -> None:
    p = make_pair()
    p.run(SRC, "stop-domain", "guest1")
    assert p.run(SRC, "unbind-domain", "guest1").rc == 0
    assert p.nodes[SRC].domain("guest1").state is DomainState.INACTIVE
    assert p.run(SRC, "stop-domain", "guest1").rc == 1
    assert p.run(SRC, "bind-domain", "guest1").rc == 0
    assert p.nodes[SRC].domain("guest1").state is DomainState.BOUND
    assert p.run(SRC, "bind-domain", "guest1").rc == 1


@pytest.mark.parametrize(
    "argv, expect",
    [
        ((), "no subcommand"),
        (("frob",), "Error: unknown subcommand 'frob'; see ldm --help"),
        (("list", "-z"), "unknown option '-z'"),
        (("list", "guest9"), "Error: Domain guest9 not found"),
        (("list", "guest1", "guest2"), "unexpected argument 'guest2'"),
        (("start-domain",), "missing argument"),
        (("stop-domain", "guest9"), "Error: Domain guest9 not found"),
        (("migrate-domain", "guest2"), "missing argument"),
        (("migrate-domain", "-x", "guest2", DST), "unknown option '-x'"),
        (("migrate-domain", "-c", "-p", "f", "guest2", DST), "mutually exclusive"),
        (("migrate-domain", "guest2", SRC), "is the source host"),
        (("migrate-domain", "guest9", DST), "Error: Domain guest9 not found"),
        (("cancel-operation", "migration", "guest2"), "No migration of domain guest2"),
        (("cancel-operation", "reconf", "guest2"), "only 'migration'"),
        (("add-spconfig",), "missing argument"),
    ],
)
def test_bad_input_changes_nothing(argv: tuple[str, ...], expect: str) -> None:
    p = make_pair()
    p.run(SRC, "add-spconfig", "cfg1")
    before = snapshot(p.nodes[SRC])
    n_effects = len(p.trace)
    r = p.run(SRC, *argv)
    assert r.rc == 1 and r.stdout == ""
    assert expect in r.stderr and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert len(p.trace) == n_effects + 1  # the reply only
    assert snapshot(p.nodes[SRC]) == before and not p.queue


def test_help_and_spurious_tick() -> None:
    p = make_pair()
    assert "migrate-domain" in p.run(SRC, "--help").stdout
    before = snapshot(p.nodes[SRC])
    assert p.feed(SRC, Ticked()) == []
    assert snapshot(p.nodes[SRC]) == before
