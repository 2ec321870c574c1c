"""Bad input changes nothing: a matrix of refused commands on a running datacenter and on no datacenter.

Every case must give one clear line (the remedy named in it), a nonzero exit status and no
traceback, and leave the home exactly as it was: every file byte-identical, no file added, none
removed. Cases run on one quiet figure-17-1 datacenter at time scale 1 (so that nothing moves by
itself while a case runs: no SF test falls due for 600 real s, no log line is written), and on a
home without a datacenter for the commands that start one (those run first: the datacenter's
module fixture would otherwise hold the addresses an ``up`` needs, and refuse it for that).

The home's snapshot leaves out only what the daemons write without being asked: their own
structlog files (``log/``) and the XSCF agents' periodic test logs (``var/opt/SMAWsf/log/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_procedure import DC, wait_healthy

from conftest import Datacenter, clovm, worker_topology
from xdist_net import net

MIGRATE = "/etc/opt/FJSVcluster/bin/clovmmigrate"
CLSNMPSETUP = "/etc/opt/FJSVcluster/bin/clsnmpsetup"
SDTOOL = "/opt/SMAW/bin/sdtool"
CFTOOL = "/opt/SMAW/bin/cftool"
CFSET = "/opt/SMAW/bin/cfset"
HVDISP = "/opt/SMAW/bin/hvdisp"
SKIP_DIRS = ("log", "var/opt/SMAWsf/log")


def snapshot(home: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file of the home (sockets: their name only)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(home):
        rel_dir = os.path.relpath(dirpath, home)
        dirnames[:] = [
            d
            for d in dirnames
            if not any(os.path.join(rel_dir, d).endswith(s) for s in SKIP_DIRS) and os.path.join(rel_dir, d) != "log"
        ]
        for f in filenames:
            p = Path(dirpath) / f
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if p.is_socket():
                out[rel] = "socket"
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return (
        [f"added {p}" for p in sorted(after.keys() - before.keys())]
        + [f"removed {p}" for p in sorted(before.keys() - after.keys())]
        + [f"changed {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
    )


def outside_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


# (id, clovm arguments after "--home HOME", words that must be in the one line)
PRODUCT = [
    ("cftool-bad-flag", ["exec", "guest1", "--", CFTOOL, "-x"], []),
    ("cftool-extra", ["exec", "guest1", "--", CFTOOL, "-n", "extra"], []),
    ("cfset-bad-flag", ["exec", "guest1", "--", CFSET, "-x"], []),
    ("cfset-g-unknown", ["exec", "guest1", "--", CFSET, "-g", "NOSUCH"], ["NOSUCH"]),
    ("sdtool-bad-flag", ["exec", "guest1", "--", SDTOOL, "-x"], []),
    ("sdtool-two-flags", ["exec", "guest1", "--", SDTOOL, "-s", "-b"], []),
    ("clsnmpsetup-bad-flag", ["exec", "guest1", "--", CLSNMPSETUP, "-x"], []),
    ("hvdisp-bad-flag", ["exec", "guest1", "--", HVDISP, "-x"], []),
    ("sdtool-on-control-domain", ["exec", "primary1", "--", SDTOOL, "-s"], []),
    ("ldm-unknown-subcommand", ["exec", "primary2", "--", "ldm", "nosuch"], []),
    ("ldm-list-unknown-domain", ["exec", "primary2", "--", "ldm", "list", "nosuch"], ["nosuch"]),
    ("ldm-add-spconfig-path", ["exec", "primary2", "--", "ldm", "add-spconfig", "../../evil"], []),
    ("ldm-add-spconfig-empty", ["exec", "primary2", "--", "ldm", "add-spconfig", ""], []),
    ("ldm-add-spconfig-exists", ["exec", "primary2", "--", "ldm", "add-spconfig", "config1"], ["config1"]),
    ("ldm-remove-spconfig-unknown", ["exec", "primary2", "--", "ldm", "remove-spconfig", "nosuch"], ["nosuch"]),
    ("ldm-remove-factory-default", ["exec", "primary2", "--", "ldm", "remove-spconfig", "factory-default"], []),
    ("ldm-migrate-unknown-domain", ["exec", "primary2", "--", "ldm", "migrate-domain", "-c", "nosuch", "primary3"], []),
    ("ldm-migrate-unknown-target", ["exec", "primary2", "--", "ldm", "migrate-domain", "-c", "guest2", "nosuch"], []),
    ("ldm-migrate-to-itself", ["exec", "primary2", "--", "ldm", "migrate-domain", "-c", "guest2", "primary2"], []),
    ("ldm-start-unknown", ["exec", "primary2", "--", "ldm", "start-domain", "nosuch"], []),
    ("ldm-start-running", ["exec", "primary2", "--", "ldm", "start-domain", "guest2"], []),
    ("ldm-stop-unknown", ["exec", "primary2", "--", "ldm", "stop-domain", "nosuch"], []),
    ("ldm-on-guest", ["exec", "guest1", "--", "ldm", "list"], []),
    ("clovmmigrate-no-args", ["exec", "primary2", "--", MIGRATE], []),
    ("clovmmigrate-bad-flag", ["exec", "primary2", "--", MIGRATE, "-x", "guest2"], []),
    ("clovmmigrate-p-no-domain", ["exec", "primary2", "--", MIGRATE, "-p"], []),
    ("clovmmigrate-p-unknown", ["exec", "primary2", "--", MIGRATE, "-p", "nosuch"], ["nosuch"]),
    ("clovmmigrate-p-path", ["exec", "primary2", "--", MIGRATE, "-p", "../../../../evil"], []),
    ("clovmmigrate-p-space", ["exec", "primary2", "--", MIGRATE, "-p", "guest2 x"], []),
    ("clovmmigrate-p-not-hosted", ["exec", "primary2", "--", MIGRATE, "-p", "guest1"], ["guest1"]),
    ("clovmmigrate-p-extra", ["exec", "primary2", "--", MIGRATE, "-p", "guest2", "primary3"], []),
    ("clovmmigrate-u-no-target", ["exec", "primary2", "--", MIGRATE, "-u", "guest2"], []),
    ("clovmmigrate-u-unknown-target", ["exec", "primary2", "--", MIGRATE, "-u", "guest2", "nosuch"], ["nosuch"]),
    ("clovmmigrate-u-bad-address", ["exec", "primary2", "--", MIGRATE, "-u", "guest2", "999.1.1.1"], []),
    ("clovmmigrate-u-not-prepared", ["exec", "primary2", "--", MIGRATE, "-u", "guest2", "primary2"], []),
    ("clovmmigrate-u-path", ["exec", "primary2", "--", MIGRATE, "-u", "../x", "primary3"], []),
    ("clovmmigrate-on-guest", ["exec", "guest1", "--", MIGRATE, "-p", "guest2"], []),
    ("migrate-no-args", ["exec", "primary2", "--", "clovm", "migrate"], []),
    ("migrate-unknown-domain", ["exec", "primary2", "--", "clovm", "migrate", "nosuch", "primary3"], ["nosuch"]),
    ("migrate-path-domain", ["exec", "primary2", "--", "clovm", "migrate", "../../evil", "primary3"], []),
    ("migrate-same-host", ["exec", "primary2", "--", "clovm", "migrate", "guest2", "primary2"], []),
    ("migrate-unknown-target", ["exec", "primary2", "--", "clovm", "migrate", "guest2", "nosuch"], ["nosuch"]),
    ("migrate-resume-nothing", ["exec", "primary2", "--", "clovm", "migrate", "--resume", "guest2"], []),
    ("migrate-bad-option", ["exec", "primary2", "--", "clovm", "migrate", "--bogus", "guest2", "primary3"], []),
    ("migrate-status-path", ["exec", "primary2", "--", "clovm", "migrate", "--status", "../evil"], []),
    # the host-side commands
    ("exec-unknown-host", ["exec", "nosuch", "--", CFTOOL, "-n"], ["nosuch"]),
    ("exec-path-host", ["exec", "../../etc", "--", CFTOOL, "-n"], []),
    ("exec-no-command", ["exec", "guest1"], []),
    ("exec-unknown-command", ["exec", "guest1", "--", "nosuchcommand"], ["nosuchcommand"]),
    ("shell-unknown-host", ["shell", "nosuch"], ["nosuch"]),
    ("fault-unknown", ["fault", "nosuch"], ["nosuch"]),
    ("fault-clock-not-a-number", ["fault", "clock", "m10-1", "abc"], ["abc"]),
    ("fault-clock-unknown-server", ["fault", "clock", "nosuch", "+5"], ["nosuch"]),
    ("fault-clock-infinite", ["fault", "clock", "m10-1", "inf"], []),
    ("fault-xscf-bad-lan", ["fault", "xscf-down", "m10-1", "--lan", "2"], []),
    ("fault-partition-nobody", ["fault", "partition"], []),
    ("fault-partition-unknown", ["fault", "partition", "nosuch"], ["nosuch"]),
    ("fault-partition-both-sides", ["fault", "partition", "guest1", "--", "guest1"], []),
    ("fault-abort-unknown", ["fault", "migration-abort", "nosuch"], ["nosuch"]),
    ("fault-forget-unknown-server", ["fault", "forget-xscf-key", "guest1", "nosuch"], ["nosuch"]),
    ("up-while-running", ["up"], []),
]

NO_DATACENTER = [
    ("up-negative-scale", ["up", "--time-scale", "-1"], []),
    ("up-zero-scale", ["up", "--time-scale", "0"], []),
    ("up-scale-not-a-number", ["up", "--time-scale", "abc"], []),
    ("up-unknown-topology", ["up", "--topology", "nosuch"], ["nosuch"]),
    ("up-broken-topology", ["up", "--topology", "{broken}"], ["broken.toml"]),
    ("up-invalid-topology", ["up", "--topology", "{invalid}"], ["duplicate address"]),
    ("up-path-names-topology", ["up", "--topology", "{pathnames}"], ["../guest2"]),
    ("status-no-datacenter", ["status"], []),
    ("exec-no-datacenter", ["exec", "guest1", "--", CFTOOL, "-n"], []),
    ("fault-no-datacenter", ["fault", "migration-abort", "guest2"], []),
    ("timeline-missing", ["timeline", "{home}/nosuch.json"], []),
    ("timeline-not-json", ["timeline", "{notjson}"], []),
    ("timeline-not-a-journal", ["timeline", "{notajournal}"], []),
    ("sim-unknown-scenario", ["sim", "nosuch"], []),
    ("sim-negative-seeds", ["sim", "live-migration", "--seeds", "-1"], []),
    ("sim-seeds-not-a-number", ["sim", "live-migration", "--seeds", "abc"], []),
]


def _one_refusal(case: str, r: subprocess.CompletedProcess[str], words: list[str]) -> str:
    text = (r.stdout + r.stderr).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    record = os.environ.get("CLOVM_BAD_INPUT_TABLE")  # docs/reliability.md's table: tools/bad-input-table
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": case, "argv": r.args[3:], "rc": r.returncode, "lines": lines}) + "\n")
    assert r.returncode != 0, f"exit status 0 for bad input: {text}"
    assert "Traceback" not in text, text
    assert len(lines) == 1, f"{len(lines)} lines instead of one:\n{text}"
    for w in words:
        assert w in lines[0], f"the line does not name {w!r}: {lines[0]}"
    return lines[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("case", "args", "words"), NO_DATACENTER, ids=[c[0] for c in NO_DATACENTER])
def test_bad_input_without_a_datacenter(tmp_path: Path, case: str, args: list[str], words: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    files = {
        "broken": tmp_path / "broken.toml",
        "invalid": tmp_path / "invalid.toml",
        "pathnames": tmp_path / "pathnames.toml",
        "notjson": tmp_path / "notjson.json",
        "notajournal": tmp_path / "notajournal.json",
    }
    files["broken"].write_text("[[server]\nname = ")
    text = worker_topology(tmp_path, "figure-17-1").read_text()
    invalid = text.replace(net('address = "127.40.0.2"'), net('address = "127.40.0.1"'))
    assert invalid != text
    files["invalid"].write_text(invalid)
    files["pathnames"].write_text(
        text.replace('name = "guest2"', 'name = "../guest2"').replace('"guest2"', '"../guest2"')
    )
    files["notjson"].write_text("{not json")
    files["notajournal"].write_text(json.dumps([1, 2, 3]))
    args = [a.format(home=home, **{k: str(v) for k, v in files.items()}) for a in args]
    before, around = snapshot(home), outside_files(tmp_path)
    try:
        r = clovm(
            args[0], *(["--home", str(home)] if args[0] not in ("timeline", "sim") else []), *args[1:], timeout=60
        )
    finally:
        if args[0] == "up":  # (should it have come up after all: the failure is the test's, not the next one's)
            clovm("down", "--home", str(home), timeout=60)
    _one_refusal(case, r, words)
    assert _diff(before, snapshot(home)) == []
    assert outside_files(tmp_path) - around == set(), "files created"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("badinput")
    home = root / "home"
    topo = worker_topology(root, "figure-17-1")
    up = clovm("up", "--home", str(home), "--time-scale", "1", "--topology", str(topo), timeout=150)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        wait_healthy(DC(Datacenter(home, up), 1.0), "after clovm up", within=60)
        yield root, home
    finally:
        clovm("down", "--home", str(home), timeout=60)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("case", "args", "words"), PRODUCT, ids=[c[0] for c in PRODUCT])
def test_bad_input_on_a_running_datacenter(
    running: tuple[Path, Path], case: str, args: list[str], words: list[str]
) -> None:
    root, home = running
    before, around = snapshot(home), outside_files(root.parent)
    r = clovm(args[0], "--home", str(home), *args[1:], timeout=60)
    _one_refusal(case, r, words)
    assert _diff(before, snapshot(home)) == []
    assert outside_files(root.parent) - around == set(), "files created outside the home"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "which", ["cluster.config", "SA_xscfsnmp.cfg", "rcsd.cfg", "journal", "migrate-journal", "clovmmigrate.conf"]
)
def test_broken_product_files_are_named_and_changed_by_nobody(running: tuple[Path, Path], which: str) -> None:
    _, home = running
    g1 = home / "hosts" / "guest1"
    p2 = home / "hosts" / "primary2"
    path, command = {
        "cluster.config": (g1 / "etc/default/cluster.config", ["exec", "guest1", "--", CFSET, "-r"]),
        "SA_xscfsnmp.cfg": (g1 / "etc/opt/SMAW/SMAWsf/SA_xscfsnmp.cfg", ["exec", "guest1", "--", CLSNMPSETUP, "-l"]),
        "rcsd.cfg": (g1 / "etc/opt/SMAW/SMAWsf/rcsd.cfg", ["exec", "guest1", "--", SDTOOL, "-r"]),
        "journal": (
            p2 / "var/opt/FJSVcluster/clovmmigrate/guest2.journal.json",
            ["exec", "primary2", "--", MIGRATE, "-u", "guest2", "primary2"],
        ),
        "migrate-journal": (
            p2 / "var/opt/FJSVcluster/clovmmigrate/guest2.migrate.json",
            ["exec", "primary2", "--", "clovm", "migrate", "--resume", "guest2"],
        ),
        "clovmmigrate.conf": (
            p2 / "etc/opt/FJSVcluster/etc/clovmmigrate.conf",
            ["exec", "primary2", "--", MIGRATE, "-p", "guest2"],
        ),
    }[which]
    old = path.read_bytes() if path.exists() else None
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("this is { not what the file should hold\n")
        before = snapshot(home)
        r = clovm(command[0], "--home", str(home), *command[1:], timeout=60)
        line = _one_refusal(f"broken-{which}", r, [])
        assert path.name in line or which.split(".")[0] in line, f"the line does not name the file: {line}"
        assert _diff(before, snapshot(home)) == []
    finally:
        if old is None:
            path.unlink(missing_ok=True)
            for p in made:
                p.rmdir()
        else:
            path.write_bytes(old)
    if which in ("cluster.config", "rcsd.cfg", "SA_xscfsnmp.cfg"):  # the node still runs on what it had
        ok = clovm("exec", "--home", str(home), "guest1", "--", SDTOOL, "-s", timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr
