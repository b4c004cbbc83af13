"""The scenario's ``overhead_ms``: the live path's fixed cost per request in the simulator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.prediction.model import PredictorConfig
from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook
from gateway.routing.registry import make_policy
from gateway.routing.view import FleetView
from gateway.scenario import Overhead, Scenario
from gateway.yamlio import FormatError
from loadtest.sim.engine import OK, simulate
from loadtest.sim.replicas import simulate_replicas
from loadtest.sim.trace import build_trace


def _book() -> ProfileBook:
    return ProfileBook({("a", "m"): Profile("a", "m", 8, (LatencyPoint(1, 10.0, 10.0),))}, {})


def _scenario(overhead: Any = None, time_scale: float = 1.0, rate: float = 20.0) -> Scenario:
    raw: dict[str, Any] = {
        "name": "oh",
        "duration_s": 5.0,
        "time_scale": time_scale,
        "pools": [{"name": "p", "arch": "a", "workers": 1, "rtt_ms": 2.0, "models": ["m"]}],
        "workload": [{"model": "m", "rate_rps": rate, "arrival": "constant", "slo_ms": 13.0}],
    }
    if overhead is not None:
        raw["overhead_ms"] = overhead
    return Scenario.model_validate(raw).with_profiles(_book()).scaled()


def test_default_is_zero_and_constant_adds_to_every_latency() -> None:
    base = _scenario()
    assert base.overhead == Overhead(p50=0.0) and base.overhead.mean_ms == 0.0
    sc = _scenario(1.5)
    for s in (base, sc):
        assert build_trace(s, 1).overhead_ms is None  # a constant needs no array
    r0 = simulate(base, build_trace(base, 1), make_policy("round_robin", base.profile_book), 1)
    r1 = simulate(sc, build_trace(sc, 1), make_policy("round_robin", sc.profile_book), 1)
    assert np.allclose(r0.latency_ms, 12.0)
    assert np.allclose(r1.latency_ms, 13.5)  # rtt 2 + service 10 + overhead 1.5


def test_not_scaled_by_time_scale() -> None:
    sc = _scenario(1.5, time_scale=4.0, rate=20.0)
    res = simulate(sc, build_trace(sc, 1), make_policy("round_robin", sc.profile_book), 1)
    assert np.allclose(res.latency_ms, 4.0 * 12.0 + 1.5)


def test_overhead_does_not_occupy_the_slot() -> None:
    # back to back (constant arrivals every 10 ms = the service): no wait builds up
    sc = _scenario(3.0, rate=100.0)
    res = simulate(sc, build_trace(sc, 1), make_policy("round_robin", sc.profile_book), 1)
    assert np.allclose(res.latency_ms, 15.0)


def test_lognormal_overhead_per_request_same_for_every_policy() -> None:
    sc = _scenario({"p50": 1.0, "p99": 3.0})
    tr = build_trace(sc, 5)
    assert tr.overhead_ms is not None and len(tr.overhead_ms) == len(tr)
    assert float(np.median(tr.overhead_ms)) == pytest.approx(1.0, rel=0.2)
    again = build_trace(sc, 5).overhead_ms
    assert again is not None and again.tolist() == tr.overhead_ms.tolist()  # seeded
    # arrivals and service quantiles are those of the scenario without it
    plain = build_trace(_scenario(), 5)
    assert tr.t.tolist() == plain.t.tolist() and tr.z.tolist() == plain.z.tolist()
    res = simulate(sc, tr, make_policy("round_robin", sc.profile_book), 5)
    assert np.allclose(res.latency_ms, 12.0 + tr.overhead_ms)


def test_replicas_engine_agrees() -> None:
    sc = _scenario({"p50": 1.0, "p99": 3.0}, rate=60.0)
    tr = build_trace(sc, 2)
    one = simulate(sc, tr, make_policy("round_robin", sc.profile_book), 2)
    two = simulate_replicas(sc, tr, [make_policy("round_robin", sc.profile_book)], 2)
    assert np.array_equal(one.status, two.status)
    assert np.allclose(one.latency_ms, two.latency_ms)


def test_router_predicts_with_it_and_sheds_what_cannot_fit() -> None:
    # 2 + 10 = 12 ms fits a 13 ms SLO; with 1.5 ms of overhead it cannot: synergai sheds
    # (priority 0) instead of sending a request that will be late; it only probes now and then
    sc = _scenario(1.5)
    res = simulate(sc, build_trace(sc, 1), make_policy("synergai", sc.profile_book), 1)
    assert (res.status == OK).mean() < 0.1
    base = _scenario()
    res0 = simulate(base, build_trace(base, 1), make_policy("synergai", base.profile_book), 1)
    assert (res0.status == OK).all()


def test_view_reads_it_as_network_time() -> None:
    from gateway.routing.types import WorkerInfo

    info = WorkerInfo("w", "p", "a", ("m",), 1, 2.0)
    view = FleetView([info], _book(), predictor=PredictorConfig(overhead_ms=1.5))
    assert view.state("w").rtt_ms == pytest.approx(3.5)


def test_bad_overhead_is_a_format_error(tmp_path: Any) -> None:
    from gateway.scenario import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: x\nduration_s: 1\noverhead_ms: -1\npools:\n"
        "  - {name: p, arch: jetson-agx-orin, models: [resnet50]}\n"
        "workload:\n  - {model: resnet50, rate_rps: 1, slo_ms: 50}\n"
    )
    with pytest.raises(FormatError, match="overhead_ms"):
        load_scenario(path)


def test_device_part_holds_the_slot() -> None:
    # a request every 50 ms: each takes rtt 2 + service 10 + device 2; every 10 ms (= the
    # service), the device part makes the server fall 2 ms further behind per request
    idle = _scenario({"p50": 0.0, "device": {"p50": 2.0, "p99": 2.0}})
    tr = build_trace(idle, 1)
    assert tr.overhead_ms is None and tr.device_ms is not None
    res = simulate(idle, tr, make_policy("round_robin", idle.profile_book), 1)
    assert np.allclose(res.latency_ms, 14.0)
    busy = _scenario({"p50": 0.0, "device": {"p50": 2.0}}, rate=100.0)
    res = simulate(busy, build_trace(busy, 1), make_policy("round_robin", busy.profile_book), 1)
    assert np.allclose(np.diff(res.latency_ms), 2.0)
    two = simulate_replicas(
        busy, build_trace(busy, 1), [make_policy("round_robin", busy.profile_book)], 1
    )
    assert np.allclose(two.latency_ms, res.latency_ms)
    # the arrivals and the outside-the-slot draws are those of the scenario without it
    plain = build_trace(_scenario({"p50": 1.0, "p99": 3.0}), 5)
    both = build_trace(_scenario({"p50": 1.0, "p99": 3.0, "device": {"p50": 0.5, "p99": 4}}), 5)
    assert both.overhead_ms is not None and plain.overhead_ms is not None
    assert both.overhead_ms.tolist() == plain.overhead_ms.tolist()
