"""The topology format: the default figure-17-1 and one clear line for every kind of mistake."""

from __future__ import annotations

from importlib import resources

import pytest

from clovm import topology

TEXT = (resources.files("clovm.topologies") / "figure-17-1.toml").read_text()


def test_figure_17_1_mirrors_the_seed():
    t = topology.load()
    assert [(s.name, s.lan0, s.lan1, s.ppars) for s in t.servers] == [
        ("m10-1", "127.20.30.71", "127.20.40.71", [0]),
        ("m10-2", "127.20.30.72", "127.20.40.72", [0]),
        ("m10-3", "127.20.30.73", "127.20.40.73", [1]),
    ]
    assert [(c.name, c.cf_name, c.server) for c in t.control_domains] == [
        ("primary1", "cfprimary1", "m10-1"),
        ("primary2", "cfprimary2", "m10-2"),
        ("primary3", "cfprimary3", "m10-3"),
    ]
    assert [(g.name, g.control_domain, g.cf_name) for g in t.guests] == [
        ("guest1", "primary1", "cfguest1"),
        ("guest2", "primary2", "cfguest2"),
    ]
    assert t.guest_cluster_of_domain("guest2").nodes == ["cfguest1", "cfguest2"]
    assert (t.xscf.user, t.xscf.connection) == ("xuser", "ssh")
    assert [(a.name, a.nodes) for a in t.apps] == [("app1", ["cfguest1", "cfguest2"])]


@pytest.mark.parametrize(
    "old,new,field",
    [
        ('name = "m10-2"', 'name = "m10-1"', "server[1].name"),
        ('lan1 = "127.20.40.72"', 'lan1 = "127.20.30.71"', "server[1].lan1"),
        ('server = "m10-3"', 'server = "m10-9"', "control_domain[2].server"),
        ('control_domain = "primary2"', 'control_domain = "nowhere"', "guest[1].control_domain"),
        ('cf_name = "cfguest2"', 'cf_name = "cfguest1"', "guest[1].cf_name"),
        ('address = "127.40.0.2"', 'address = "10.1.2.3"', "guest[1].address"),
        ("ppar = 1", "ppar = 3", "control_domain[2].ppar"),
        (
            'nodes = ["cfguest1", "cfguest2"]\nshutdown_priority',
            'nodes = ["cfguest1", "cfguest7"]\nshutdown_priority',
            "userapplication[0].nodes",
        ),
        (
            "memory_mb = 8192\nvcpu = 8\ndirty_rate_mb_s = 2000",
            'memory_mb = "big"\nvcpu = 8\ndirty_rate_mb_s = 2000',
            "guest[1].memory_mb",
        ),
        ("[xscf]", '[xscf]\ncolour = "red"', "colour"),
    ],
)
def test_invalid_topology_names_the_field(old, new, field):
    assert old in TEXT
    with pytest.raises(topology.TopologyError) as e:
        topology.loads(TEXT.replace(old, new, 1))
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def test_unknown_builtin_name_lists_the_known_ones():
    with pytest.raises(topology.TopologyError, match="figure-17-1"):
        topology.load("figure-99")


def test_generated_topology_is_valid_and_round_trips():
    t = topology.generate(16, 8)
    assert len(t.guests) == 16 and len(t.servers) == 8
    assert topology.loads(topology.dumps(t)) == t
