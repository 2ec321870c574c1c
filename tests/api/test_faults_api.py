"""``clovm fault``'s use cases (clovm.api.faults) with typed arguments, on a home where nothing runs."""

from __future__ import annotations

import json
import math

import pytest

from clovm.api import faults
from clovm.api.errors import ClovmError
from clovm.core import codes
from clovm.runtime.home import Home

pytestmark = pytest.mark.timeout(30)


def test_partition_against_everybody_else_and_heal(home: Home) -> None:
    assert faults.partition(home, ["guest1"]) == "partition: guest1 | primary1 primary2 primary3 guest2"
    assert json.loads((home.run_dir / "partition.json").read_text())["groups"][0] == ["guest1"]
    assert faults.partition(home, ["cfguest1"], ["guest2"]) == "partition: guest1 | guest2"  # CF names too
    assert faults.heal(home) == "partition healed"
    assert not (home.run_dir / "partition.json").exists()


@pytest.mark.parametrize(
    "group, other, code",
    [
        (["guest1"], ["guest1"], codes.BAD_ARGUMENT),
        ([], None, codes.BAD_ARGUMENT),
        (["guest1"], [], codes.BAD_ARGUMENT),
        (["guest9"], None, codes.UNKNOWN_HOST),
    ],
)
def test_partition_refuses_bad_groups(home: Home, group: list[str], other: list[str] | None, code: str) -> None:
    with pytest.raises(ClovmError) as e:
        faults.partition(home, group, other)
    assert e.value.code == code
    assert not (home.run_dir / "partition.json").exists()


def test_clock_adds_to_the_servers_offset(home: Home) -> None:
    assert faults.clock(home, "m10-3", 30.0) == "clock of m10-3: offset +30 s"
    assert faults.clock(home, "m10-3", -45.5) == "clock of m10-3: offset -15.5 s"
    assert json.loads(home.offsets_file.read_text()) == {"m10-3": -15.5}
    for bad, code in ((math.nan, codes.BAD_ARGUMENT), (math.inf, codes.BAD_ARGUMENT)):
        with pytest.raises(ClovmError) as e:
            faults.clock(home, "m10-3", bad)
        assert e.value.code == code
    with pytest.raises(ClovmError) as e:
        faults.clock(home, "m10-9", 1.0)
    assert e.value.code == codes.UNKNOWN_SERVER and "m10-1" in e.value.message


def test_daemon_faults_need_a_running_datacenter(home: Home) -> None:
    with pytest.raises(ClovmError) as e:
        faults.migration_abort(home, "guest2")
    assert e.value.code == codes.NOT_RUNNING
    with pytest.raises(ClovmError) as e:
        faults.migration_abort(home, "guest9")
    assert e.value.code == codes.UNKNOWN_DOMAIN
    with pytest.raises(ClovmError) as e:
        faults.xscf_lan(home, "m10-1", up=False, lans=[0])
    assert e.value.code == codes.NOT_RUNNING
    with pytest.raises(ClovmError) as e:
        faults.xscf_lan(home, "m10-1", up=False, lans=[2])
    assert e.value.code == codes.BAD_ARGUMENT


def test_forget_xscf_key(home: Home) -> None:
    kh = home.known_hosts("guest1")
    kh.parent.mkdir(parents=True)
    kh.write_text(
        "[127.20.30.73]:10022 ssh-ed25519 AAAA\n[127.20.40.73]:10022 ssh-ed25519 AAAA\n"
        "[127.20.30.71]:10022 ssh-ed25519 BBBB\n"
    )
    assert faults.forget_xscf_key(home, "guest1", "m10-3") == "guest1 forgot 2 host key(s) of XSCF m10-3"
    assert kh.read_text() == "[127.20.30.71]:10022 ssh-ed25519 BBBB\n"


def test_no_home_is_not_running(tmp_path) -> None:
    with pytest.raises(ClovmError) as e:
        faults.heal(Home(tmp_path / "nothing"))
    assert e.value.code == codes.NOT_RUNNING
