"""Tests for clovm.timeline: the SVG picture and the text summary of a `clovm migrate` journal."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET

import pytest

from clovm.timeline import (
    GapScale,
    NodePoint,
    merge_samples,
    render_svg,
    render_text_summary,
    suspend_intervals,
    tick_step,
    write_svg,
)

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = 5000.0  # emulated time of the first event: the picture must be relative to it
SUSPEND_START = T0 + 41.0
SUSPEND_END = T0 + 44.2  # the `done` progress sample after hand-off


def make_journal(
    nodes: int = 3,
    scoped: bool = False,
    unfinished: bool = False,
    proof_fail: bool = False,
    sample_every: float = 1.0,
) -> dict:
    """A realistic journal of guest1 (cfguest1) moving cd-a → cd-b with 2-3 CF nodes.

    prepare 0-4 s, migrate 4-45 s (pre-copy, suspend at 41 s, hand-off at 43 s, done at 44.2 s),
    complete 45-50 s, prove 50-53 s. During the suspend cfguest1 does not answer samples and the
    others' gap of it grows (~0.4 s → ~3.5 s); observers disagree slightly (max is taken).
    Manual window: every timeout is 600 s during the window and SF is stopped; scoped: only
    cfguest1's peers' view of it is widened (600), the rest stays 10 s and SF keeps running.
    """
    cfs = [f"cfguest{i + 1}" for i in range(nodes)]
    migrating = cfs[0]
    ev = []

    def event(t: float, step: str, what: str, text: str = "") -> None:
        ev.append({"t": T0 + t, "step": step, "what": what, "text": text})

    event(0, "prepare", "begin", "clovmmigrate -p")
    event(4, "prepare", "done", "timeouts widened")
    event(4, "migrate", "begin", "ldm migrate-domain -c guest1 cd-b")
    progress = [
        {"t": T0 + 4.5, "phase": "checks", "percent": 0},
        {"t": T0 + 6.0, "phase": "pre-copy", "percent": 0},
        {"t": T0 + 20.0, "phase": "pre-copy", "percent": 55},
        {"t": T0 + 35.0, "phase": "pre-copy", "percent": 90},
        {"t": SUSPEND_START, "phase": "suspend", "percent": 97},
        {"t": T0 + 43.0, "phase": "handoff", "percent": 100},
        {"t": SUSPEND_END, "phase": "done", "percent": 100},
    ]
    samples = []
    end_sampling = 30.0 if unfinished else 48.0
    t = 4.0
    while t <= end_sampling + 1e-9:
        window = 4.0 <= t < 47.0
        for oi, obs in enumerate(cfs):
            suspended = SUSPEND_START - T0 <= t < SUSPEND_END - T0
            if obs == migrating and suspended:
                continue  # the suspended guest answers nothing
            peers = {}
            for x in cfs:
                if x == obs:
                    continue
                gap = 0.4 + 0.05 * oi
                if x == migrating and suspended:
                    gap = (t - (SUSPEND_START - T0)) + 0.4 + 0.1 * oi
                timeout = 600 if window and (not scoped or x == migrating) else 10
                peers[x] = {"state": "UP", "gap": round(gap, 3), "timeout": timeout}
            samples.append(
                {
                    "t": T0 + t + 0.01 * oi,
                    "node": obs,
                    "sf": "stopped" if window and not scoped else "running",
                    "peers": peers,
                }
            )
        t += sample_every
    event(45, "migrate", "done", "migrated")
    event(45, "complete", "begin", "clovmmigrate -u")
    event(46, "complete", "note", "SF configuration now points at cd-b")
    event(50, "complete", "done", "")
    event(50, "prove", "begin", "")
    event(53, "prove", "done", "")
    proof = [
        {"name": "domain-on-target", "ok": True, "detail": "guest1 active on cd-b"},
        {
            "name": "timeouts-restored",
            "ok": not proof_fail,
            "detail": "cfguest2 CLUSTER_TIMEOUT 600, expected 10" if proof_fail else "all 10 s",
        },
        {"name": "sf-running", "ok": True, "detail": "sdtool -s: all agents TestWorked"},
    ]
    journal = {
        "version": 1,
        "domain": "guest1",
        "node": migrating,
        "nodes": cfs,
        "source": "cd-a",
        "target": "cd-b",
        "source_server": "srv-a",
        "target_server": "srv-b",
        "scoped": scoped,
        "timeouts": {c: 10 for c in cfs},
        "step": "done",
        "outcome": "migrated",
        "complete_to": "cd-b",
        "events": ev,
        "progress": progress,
        "samples": samples,
        "proof": proof,
        "result": "failed" if proof_fail else "ok",
    }
    if unfinished:
        journal["events"] = [e for e in ev if e["t"] <= T0 + 4]  # migrate begun, never done
        journal["progress"] = [p for p in progress if p["t"] <= T0 + 30]
        journal.update(step="migrate", outcome=None, complete_to=None, proof=[], result=None)
    return journal


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{{{NS['s']}}}{tag}") if cls in (e.get("class") or "").split()]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{{{NS['s']}}}text")]


def time_mapping(root: ET.Element) -> tuple[float, float]:
    """(x of t=0, px per second) fitted from the axis tick labels and tick lines."""
    labels = by_class(root, "text", "tick-label")
    assert len(labels) >= 2
    pts = [(float(e.text), float(e.get("x"))) for e in labels]
    (t_a, x_a), (t_b, x_b) = pts[0], pts[-1]
    scale = (x_b - x_a) / (t_b - t_a)
    return x_a - t_a * scale, scale


# --------------------------------------------------------------------------------------- analysis
def test_tick_step_spans() -> None:
    assert tick_step(5) == 1
    assert tick_step(30) == 5
    assert tick_step(53) == 10
    assert tick_step(600) == 100
    assert tick_step(2000) == 250
    for span in (0.3, 5, 7, 13, 53, 99, 600, 1234, 2000, 50000):
        step = tick_step(span)
        assert 2 <= span / step <= 8 + 1e-9, (span, step)
    assert tick_step(0) == 1 and tick_step(float("nan")) == 1


def test_suspend_interval_from_progress() -> None:
    assert suspend_intervals(make_journal()) == [(SUSPEND_START, SUSPEND_END)]
    # unfinished while suspended: ends at the last suspend/hand-off sample
    j = {"progress": [{"t": 1, "phase": "pre-copy"}, {"t": 2, "phase": "suspend"}, {"t": 3.5, "phase": "hand-off"}]}
    assert suspend_intervals(j) == [(2.0, 3.5)]
    # cancelled during suspend: the guest runs again at the cancelled sample
    j = {
        "progress": [
            {"t": 2, "phase": "suspend"},
            {"t": 4, "phase": "cancelled"},
            {"t": 9, "phase": "suspend"},
            {"t": 10, "phase": "done"},
        ]
    }
    assert suspend_intervals(j) == [(2.0, 4.0), (9.0, 10.0)]
    assert suspend_intervals({}) == [] and suspend_intervals({"progress": None}) == []


def test_merge_takes_max_gap_and_min_timeout_over_observers() -> None:
    j = {
        "nodes": ["a", "b", "c"],
        "samples": [
            {"t": 10.0, "node": "a", "sf": "running", "peers": {"c": {"state": "UP", "gap": 1.0, "timeout": 600}}},
            {
                "t": 10.02,
                "node": "b",
                "sf": "stopped",
                "peers": {
                    "c": {"state": "LEFTCLUSTER", "gap": None, "timeout": 10},
                    "a": {"state": "UP", "gap": 0.3, "timeout": 10},
                },
            },
            {"t": 11.0, "node": "a", "sf": "running", "peers": {"c": {"state": "UP", "gap": 2.5, "timeout": 600}}},
            {"t": 11.01, "node": "b", "peers": {"c": {"state": "UP", "gap": 3.25, "timeout": 600}}},
            {"t": 12.0, "node": "a", "peers": {"c": {"state": "DOWN", "gap": None, "timeout": 600}}},
        ],
    }
    m = merge_samples(j)
    assert list(m) == ["a", "b", "c"]
    assert m["c"] == [
        NodePoint(10.0, 1.0, 10, "LEFTCLUSTER", None, ("a", "b")),
        NodePoint(11.0, 3.25, 600, "UP", None, ("a", "b")),
        NodePoint(12.0, None, 600, "DOWN", None, ("a",)),
    ]
    assert [p.sf for p in m["a"]] == ["running", "running"]  # a's own sf; b saw a only in round 1
    assert m["a"][0].gap == 0.3 and m["a"][1].gap is None
    assert [p.sf for p in m["b"]] == ["stopped"]  # round 2: b sent no sf and nobody reported b
    assert merge_samples({}) == {}


def test_merge_of_realistic_journal_grows_gap_during_suspend() -> None:
    m = merge_samples(make_journal(nodes=3))
    assert list(m) == ["cfguest1", "cfguest2", "cfguest3"]
    during = [p for p in m["cfguest1"] if SUSPEND_START <= p.t < SUSPEND_END]
    before = [p for p in m["cfguest1"] if p.t < SUSPEND_START]
    assert during and before
    assert max(p.gap for p in during) == pytest.approx(3.0 + 0.4 + 0.2)  # observer 3 reports the most
    assert max(p.gap for p in before) < 0.6
    assert all(p.sf is None for p in during)  # the suspended node answered nothing
    assert all(p.observers == ("cfguest2", "cfguest3") for p in during)


# -------------------------------------------------------------------------------------------- SVG
@pytest.mark.parametrize("nodes", [2, 3])
@pytest.mark.parametrize("scoped", [False, True])
def test_svg_parses_with_one_lane_per_node(nodes: int, scoped: bool) -> None:
    j = make_journal(nodes=nodes, scoped=scoped)
    root = parse(render_svg(j))
    assert root.tag == f"{{{NS['s']}}}svg"
    lanes = by_class(root, "g", "node")
    assert [g.get("id") for g in lanes] == [f"lane-cfguest{i + 1}" for i in range(nodes)]
    for g in lanes:
        assert by_class(g, "polyline", "gap"), g.get("id")
        assert by_class(g, "path", "timeout"), g.get("id")
        assert by_class(g, "rect", "cf-state") and by_class(g, "rect", "sf-state")
    all_text = " ".join(texts(root))
    assert "guest1" in all_text and "cd-a → cd-b" in all_text
    assert ("scoped window" in all_text) == scoped
    assert ("manual window" in all_text) == (not scoped)
    assert "result: ok" in all_text
    for label in ("prepare", "migrate", "complete", "prove", "pre-copy", "timeout 600 s", "guest suspended 3.2 s"):
        assert label in all_text, label
    assert by_class(root, "g", "legend")


def test_suspend_highlight_spans_the_suspend_at_the_right_x() -> None:
    root = parse(render_svg(make_journal()))
    x_zero, px_per_s = time_mapping(root)
    rects = by_class(root, "rect", "suspend")
    assert len(rects) == 1
    r = rects[0]
    x0, w = float(r.get("x")), float(r.get("width"))
    assert x0 == pytest.approx(x_zero + (SUSPEND_START - T0) * px_per_s, abs=0.5)
    assert x0 + w == pytest.approx(x_zero + (SUSPEND_END - T0) * px_per_s, abs=0.5)
    # across the whole height: from the procedure lane's top to the last node lane's bottom
    lanes = by_class(root, "g", "node")
    last_bottom = max(float(e.get("y")) + float(e.get("height")) for e in by_class(lanes[-1], "rect", "cf-state"))
    assert float(r.get("y")) < last_bottom - 100 < last_bottom < float(r.get("y")) + float(r.get("height"))


def test_time_axis_is_relative_to_first_event_with_sane_ticks() -> None:
    root = parse(render_svg(make_journal()))
    labels = [e.text for e in by_class(root, "text", "tick-label")]
    assert labels == ["0", "10", "20", "30", "40", "50"]  # 53 s span
    x_zero, px = time_mapping(root)
    axis = by_class(root, "line", "axis")[0]
    assert x_zero == pytest.approx(float(axis.get("x1")), abs=0.01)  # t=0 at the axis' left end
    assert x_zero + 53 * px == pytest.approx(float(axis.get("x2")), abs=0.01)  # last entry at its right end
    first_bar = by_class(root, "rect", "step-bar")[0]
    assert float(first_bar.get("x")) == pytest.approx(x_zero, abs=0.01)
    lanes = by_class(root, "g", "node")
    assert "migrating node" in texts(lanes[0]) and "migrating node" not in texts(lanes[1])
    assert "CLUSTER_TIMEOUT 10 s" in texts(lanes[1])


def test_gap_polyline_rises_during_suspend_and_timeout_line_is_dashed() -> None:
    root = parse(render_svg(make_journal(nodes=2)))
    x_zero, px = time_mapping(root)
    lane = by_class(root, "g", "node")[0]  # cfguest1, the migrating node
    pts = [
        tuple(map(float, p.split(","))) for pl in by_class(lane, "polyline", "gap") for p in pl.get("points").split()
    ]
    in_suspend = [y for x, y in pts if x_zero + 41 * px <= x < x_zero + 44.2 * px]
    before = [y for x, y in pts if x < x_zero + 41 * px]
    assert in_suspend and before
    assert min(in_suspend) < min(before) - 15  # higher on the screen = bigger gap, clearly visible
    timeout = by_class(lane, "path", "timeout")[0]
    assert timeout.get("stroke-dasharray")
    # the 600 s timeout is above every gap point, and a 0.4 s gap is still off the bottom line
    timeout_ys = [float(v) for v in re.findall(r"[ML][\d.]+ ([\d.]+)", timeout.get("d"))]
    assert max(y for _, y in pts) > min(timeout_ys) + 40
    plot_bottom = max(float(e.get("y1")) for e in by_class(lane, "line", "ytick"))
    assert max(y for _, y in pts) < plot_bottom - 4
    assert "gap s: linear ≤ 5, log above" in texts(lane)


def test_gap_scale_keeps_small_gaps_visible_under_a_big_timeout() -> None:
    s = GapScale([0.3, 1.0], [600], py0=0, py1=100)
    assert s.split and s.linear_top == 2
    assert s.frac(1.0) == pytest.approx(0.375)  # 1 s of a 600 s timeout: 37 px of 100
    assert 0.9 < s.frac(600) < 1.0  # timeout line near, not on, the top
    assert s.frac(0) == 0 and s.frac(-1) == 0 and s.frac(1e9) == 1
    assert s.y(0) == 100 and s.y(2) == pytest.approx(25)
    lin = GapScale([12.0], [10], py0=0, py1=100)  # gap beyond the timeout: all linear, both visible
    assert not lin.split and lin.linear_top == 20 and lin.frac(10) == 0.5
    assert GapScale([], [], 0, 100).linear_top == 1


def test_scoped_timeout_line_differs_from_manual_for_bystander() -> None:
    def lane_timeouts(j: dict, node: str) -> str:
        lane = next(g for g in by_class(parse(render_svg(j)), "g", "node") if g.get("id") == f"lane-{node}")
        return "".join(by_class(lane, "path", "timeout")[0].itertext())

    assert "600" in lane_timeouts(make_journal(scoped=False), "cfguest2")
    assert "600" not in lane_timeouts(make_journal(scoped=True), "cfguest2")
    assert "600" in lane_timeouts(make_journal(scoped=True), "cfguest1")


def test_deterministic_bytes() -> None:
    j = make_journal(nodes=3, scoped=True)
    a = render_svg(j)
    b = render_svg(json.loads(json.dumps(j)))  # a reloaded journal, fresh objects
    shuffled = copy.deepcopy(j)
    shuffled["samples"] = list(reversed(shuffled["samples"]))  # sorted by t inside
    assert a == b == render_svg(shuffled)
    assert render_svg(make_journal(scoped=False)) != a


@pytest.mark.parametrize(
    "mutate",
    [
        lambda j: j.update(samples=[]),
        lambda j: j.pop("samples"),
        lambda j: j.update(progress=[]),
        lambda j: j.pop("progress"),
        lambda j: j.update(events=[], progress=[], samples=[]),
        lambda j: j.update(
            samples=[
                {"t": s["t"], "node": s["node"], "peers": {k: {**v, "gap": None} for k, v in s["peers"].items()}}
                for s in j["samples"]
            ]
        ),
        lambda j: j.update(samples=[{"t": "bad"}, 7, {"node": "x"}, {"t": 5001, "node": "cfguest2", "peers": None}]),
        lambda j: j.update(proof=None, timeouts=None, nodes=None, result=None, step=None),
    ],
    ids=["empty-samples", "no-samples", "empty-progress", "no-progress", "nothing", "null-gaps", "garbage", "nulls"],
)
def test_edge_cases_still_render(mutate) -> None:
    j = make_journal()
    mutate(j)
    root = parse(render_svg(j))
    assert by_class(root, "g", "legend")
    assert by_class(root, "text", "tick-label")


def test_empty_samples_keep_node_lanes_from_journal() -> None:
    j = make_journal(nodes=2)
    j["samples"] = []
    root = parse(render_svg(j))
    lanes = by_class(root, "g", "node")
    assert [g.get("id") for g in lanes] == ["lane-cfguest1", "lane-cfguest2"]
    assert not by_class(root, "polyline", "gap")
    assert "no samples of this node" in " ".join(texts(root))


def test_null_gaps_break_the_polyline() -> None:
    j = make_journal(nodes=2)
    for s in j["samples"]:
        if T0 + 20 <= s["t"] < T0 + 25:
            for v in s["peers"].values():
                v.update(gap=None, state="LEFTCLUSTER")
    root = parse(render_svg(j))
    lane = by_class(root, "g", "node")[0]
    assert len(by_class(lane, "polyline", "gap")) == 2
    assert any(r.get("fill") == "#f1ce63" for r in by_class(lane, "rect", "cf-state"))  # LEFTCLUSTER band


def test_unfinished_journal() -> None:
    j = make_journal(unfinished=True)
    root = parse(render_svg(j))
    bars = by_class(root, "rect", "step-bar")
    assert [("running" in (b.get("class") or "")) for b in bars] == [False, True]
    assert "migrate (running)" in texts(root)
    assert any(t.startswith("result: in progress (step migrate)") for t in texts(root))
    assert not by_class(root, "rect", "suspend")  # stopped in pre-copy
    # the running bar reaches the end of the plot (last journal time)
    x_zero, px = time_mapping(root)
    last_t = max(s["t"] for s in j["samples"]) - T0
    assert float(bars[1].get("x")) + float(bars[1].get("width")) == pytest.approx(x_zero + last_t * px, abs=0.5)


def test_text_is_escaped_and_control_chars_removed() -> None:
    j = make_journal()
    j["domain"] = 'g<1>&"x"'
    j["events"].append({"t": T0 + 10, "step": "migrate", "what": "note", "text": "a <b> & \x01 c"})
    svg = render_svg(j)
    root = parse(svg)
    assert any('g<1>&"x"' in t for t in texts(root))
    assert "\x01" not in svg


def test_long_span_ticks() -> None:
    j = make_journal()
    j["events"].append({"t": T0 + 1900, "step": "prove", "what": "note", "text": "late"})
    labels = [e.text for e in by_class(parse(render_svg(j)), "text", "tick-label")]
    assert labels == ["0", "250", "500", "750", "1000", "1250", "1500", "1750"]


def test_write_svg_atomic(tmp_path) -> None:
    j = make_journal(nodes=2)
    target = tmp_path / "sub" / "t.svg"
    write_svg(target, j)
    assert target.read_text(encoding="utf-8") == render_svg(j)
    assert [p.name for p in target.parent.iterdir()] == ["t.svg"]


# ----------------------------------------------------------------------------------- text summary
def test_text_summary_done() -> None:
    text = render_text_summary(make_journal(scoped=True))
    lines = text.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 100
    assert lines[0] == "clovm migrate guest1 (CF node cfguest1): cd-a -> cd-b [scoped window]"
    assert "outcome: migrated" in lines[1] and "SF completed to: cd-b" in lines[1]
    assert re.search(r"^  prepare\s+0\.0 ->\s+4\.0\s+4\.0 s  done$", text, re.MULTILINE)
    assert re.search(r"^  migrate\s+4\.0 ->\s+45\.0\s+41\.0 s  done$", text, re.MULTILINE)
    assert re.search(r"^  prove\s+50\.0 ->\s+53\.0\s+3\.0 s  done$", text, re.MULTILINE)
    assert "guest suspended 3.2 s (t 41.0 -> 44.2)" in text
    assert "cfguest1 3.6/600, cfguest2 0.5/10, cfguest3 0.5/10" in text  # max gap over observers / timeout then
    assert "SF configuration now points at cd-b" in text
    assert "proof: 3/3 checks ok" in text and "FAILED" not in text
    assert lines[-1] == "result: ok"


def test_text_summary_speaks_the_journals_stack() -> None:
    j = dict(make_journal(scoped=True), stack="pacemaker", node="vm1")
    lines = render_text_summary(j).splitlines()
    assert lines[0] == "clovm migrate guest1 (cluster node vm1): cd-a -> cd-b [scoped window]"
    assert "fence device completed to: cd-b" in lines[1] and "SF" not in lines[1]
    assert any(ln.startswith("corosync max gap / timeout then (s): ") for ln in lines)
    assert not any(ln.startswith("CF ") for ln in lines)
    sparc = render_text_summary(dict(make_journal(scoped=True), stack="sparc"))
    assert sparc == render_text_summary(make_journal(scoped=True))  # journals before the seam are SPARC's


def test_text_summary_failed_proof_and_unfinished() -> None:
    text = render_text_summary(make_journal(proof_fail=True))
    assert "proof: 2/3 checks ok" in text
    assert "  FAILED timeouts-restored: cfguest2 CLUSTER_TIMEOUT 600, expected 10" in text
    assert "  ok     domain-on-target: guest1 active on cd-b" in text
    assert text.endswith("result: failed\n")
    text = render_text_summary(make_journal(unfinished=True))
    assert "[manual window]" in text
    assert re.search(r"^  migrate\s+4\.0 ->\s+…\s+26\.0 s\+  running$", text, re.MULTILINE)
    assert "proof: not run yet" in text
    assert "result: none yet" in text
    assert render_text_summary({}).endswith("result: none yet (unfinished; `clovm migrate --resume` continues it)\n")


def test_gap_line_breaks_where_a_node_is_missing_from_rounds() -> None:
    # 2 nodes, scoped: while cfguest1 is suspended nobody observes cfguest2 (cfguest2 still sends
    # its own sample, so that round has a point without a gap); drop cfguest2's own samples too
    j = make_journal(nodes=2, scoped=True)
    j["samples"] = [
        s for s in j["samples"] if not (s["node"] == "cfguest2" and SUSPEND_START - 0.5 <= s["t"] < SUSPEND_END)
    ]
    m = merge_samples(j)
    assert not [p for p in m["cfguest2"] if SUSPEND_START - 0.5 <= p.t < SUSPEND_END]
    lane = next(g for g in by_class(parse(render_svg(j)), "g", "node") if g.get("id") == "lane-cfguest2")
    assert len(by_class(lane, "polyline", "gap")) == 2
