"""Per-policy results from client outcomes (DESIGN.md §3 semantics), and the fidelity test."""

from __future__ import annotations

import pytest

from loadtest.bench_fidelity import agree, fidelity
from loadtest.bench_stack import decision_us_p50
from loadtest.bench_stats import percentile, summarize
from loadtest.client import Arrival, Outcome


def _a(prio: int = 0, slo: float = 100.0) -> Arrival:
    return Arrival(t_s=0.0, model="m", slo_ms=slo, priority=prio)


def test_every_kind_of_failure_is_a_violation() -> None:
    trace = [_a(1), _a(1), _a(0), _a(0), _a(0), _a(0)]
    outcomes = [
        Outcome("ok", 50.0, worker="a"),  # in time
        Outcome("ok", 150.0, worker="b"),  # late
        Outcome("shed", 1.0, code="429"),
        Outcome("error", 3.0, code="503"),
        Outcome("lost", 5000.0),
        Outcome("ok", 100.0, worker="a"),  # exactly at the SLO counts as met
    ]
    r = summarize(trace, outcomes, duration_s=2.0, decision_us_p50=12.345)
    assert r["requests"] == 6
    assert r["ok"] == 3
    assert r["slo_violations"] == 4
    assert r["violation_rate"] == pytest.approx(4 / 6, abs=1e-4)
    assert (r["shed"], r["errors"], r["lost"]) == (1, 2, 1)
    assert r["goodput_rps"] == 1.0
    assert r["p50_ms"] == 100.0
    assert r["decision_us_p50"] == 12.35
    assert r["workers"] == {"a": 2, "b": 1}
    assert set(r["per_priority"]) == {"0", "1"}
    assert r["per_priority"]["1"]["slo_violations"] == 1
    assert r["per_priority"]["0"]["slo_violations"] == 3
    for key in (
        "requests",
        "ok",
        "slo_violations",
        "violation_rate",
        "shed",
        "errors",
        "goodput_rps",
        "p50_ms",
        "p99_ms",
    ):
        assert key in r["per_priority"]["0"]


def test_no_answers_gives_null_percentiles() -> None:
    r = summarize([_a()], [Outcome("shed", 1.0)], 1.0)
    assert r["p50_ms"] is None and r["p99_ms"] is None
    assert r["violation_rate"] == 1.0


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        summarize([_a()], [], 1.0)


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


@pytest.mark.parametrize(
    ("sim", "live", "ok"),
    [
        (0.10, 0.12, True),  # 20 % relative
        (0.10, 0.13, False),  # 3 points and 30 % relative: outside both
        (0.40, 0.52, False),  # 30 % relative and 12 points
        (0.01, 0.029, True),  # < 2 points
        (0.00, 0.03, False),
        (0.50, 0.60, True),  # 20 % relative
    ],
)
def test_agree(sim: float, live: float, ok: bool) -> None:
    assert agree(sim, live) is ok


def test_fidelity_ranks_and_conflicts() -> None:
    sim = {
        "a": {"violation_rate": 0.5},
        "b": {"violation_rate": 0.1},
        "c": {"violation_rate": 0.11},
    }
    live = {
        "a": {"violation_rate": 0.55},
        "b": {"violation_rate": 0.12},
        "c": {"violation_rate": 0.105},
    }
    f = fidelity(sim, live)
    assert f["agreeing"] == 3
    assert f["same_ranking"] is True  # b/c swap within 2 points is noise
    assert f["same_ranking_strict"] is False
    assert f["policies"]["a"]["sim_rank"] == 3
    live["b"] = {"violation_rate": 0.6}
    f = fidelity(sim, live)
    assert f["same_ranking"] is False
    assert ["a", "b"] in f["ranking_conflicts"]


def test_decision_histogram_median() -> None:
    text = (
        "# TYPE synergai_routing_decision_seconds histogram\n"
        'synergai_routing_decision_seconds_bucket{le="1e-05"} 0.0\n'
        'synergai_routing_decision_seconds_bucket{le="2e-05"} 50.0\n'
        'synergai_routing_decision_seconds_bucket{le="4e-05"} 100.0\n'
        'synergai_routing_decision_seconds_bucket{le="+Inf"} 100.0\n'
    )
    # two replicas with the same histogram: median at the top of the 10-20 µs bucket
    assert decision_us_p50([text, text]) == pytest.approx(20.0)
    assert decision_us_p50(["", "nothing here"]) is None
