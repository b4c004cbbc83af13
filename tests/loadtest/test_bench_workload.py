"""The live trace is the simulator's trace; the locust mix follows the rates."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from gateway.scenario import load_scenario
from loadtest.bench_workload import RequestMix, live_trace, scenario_for_run
from loadtest.sim.trace import build_trace

DEMO = Path(__file__).resolve().parents[2] / "loadtest" / "scenarios" / "demo.yaml"


def test_live_trace_is_the_simulator_trace() -> None:
    sc = scenario_for_run(DEMO, 6.0)  # 6 real seconds at time_scale 3 = 2 scenario seconds
    assert sc.duration_s == pytest.approx(6.0 / sc.time_scale)
    live = live_trace(sc)
    sim = build_trace(sc.scaled(), sc.seed)
    assert len(live) == len(sim) > 0
    assert np.allclose([a.t_s for a in live], sim.t)
    streams = sc.scaled().workload
    assert [a.model for a in live] == [streams[i].model for i in sim.stream.tolist()]
    assert all(a.t_s < 6.0 for a in live)
    # SLOs in real milliseconds (time_scale applied)
    raw = {w.model: w.slo_ms for w in load_scenario(DEMO).workload}
    assert {a.model: a.slo_ms for a in live} == {m: s * sc.time_scale for m, s in raw.items()}


def test_same_seed_same_trace_and_duration_validation() -> None:
    a = live_trace(scenario_for_run(DEMO, 3.0))
    b = live_trace(scenario_for_run(DEMO, 3.0))
    assert a == b
    assert live_trace(scenario_for_run(DEMO, 3.0), seed=99) != a
    with pytest.raises(ValueError):
        scenario_for_run(DEMO, 0)


def test_mix_follows_rates() -> None:
    mix = RequestMix.from_scenario(DEMO)
    rng = random.Random(1)
    picks = [mix.pick(rng).model for _ in range(3000)]
    share = {m: picks.count(m) / len(picks) for m in set(picks)}
    assert set(share) == {"resnet50", "bert-base", "mobilenet-v2"}
    assert all(abs(s - 1 / 3) < 0.05 for s in share.values())
    w = mix.streams[0]
    assert mix.hints(w) == {
        "x-slo-ms": f"{w.slo_ms:g}",
        "x-priority": str(w.priority),
        "x-category": w.category,
    }
    assert mix.total_rps == pytest.approx(60.0)


def test_time_scale_override_then_duration() -> None:
    sc = scenario_for_run(DEMO, 10.0, time_scale=5.0)
    assert sc.time_scale == 5.0
    assert sc.duration_s == pytest.approx(2.0)
    assert sc.scaled().duration_s == pytest.approx(10.0)
    with pytest.raises(ValueError):
        scenario_for_run(DEMO, None, time_scale=0)
