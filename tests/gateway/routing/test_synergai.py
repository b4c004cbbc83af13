from __future__ import annotations

import random

import pytest

from gateway.routing.framework import Estimate
from gateway.routing.policies.synergai import SynergAI
from gateway.routing.registry import make_policy
from gateway.routing.scorers import (
    efficiency_cost,
    peak_ewma_cost,
    predicted_latency,
    queue_depth,
    slo_headroom,
)
from gateway.routing.types import Request
from gateway.routing.view import FleetView


def _load(view: FleetView, worker: str, n: int, svc: float = 10.0) -> None:
    for _ in range(n):
        view.start(worker, Request("m", 1e6), svc, 0.0)


@pytest.mark.parametrize(
    ("req", "loads", "expected", "reason"),
    [
        # idle fleet: a tight request goes to the close edge (11 ms) not the far cloud (22 ms)
        (Request("m", 15.0, category="latency"), {}, "e", "fit"),
        # loose throughput work: no tighter class to protect, the earliest fit (edge) wins
        (Request("m", 100.0, category="frequency"), {}, "e", "fit"),
        # edge busy: the tight request cannot fit anywhere; priority 1 -> best effort
        (Request("m", 15.0, priority=1), {"e0": 3, "e1": 3}, "c0", "best_effort"),
        # same, priority 0 and hopeless even on average -> shed
        (Request("m", 15.0, priority=0), {"e0": 3, "e1": 3}, None, "shed_slo"),
        # batch 8 only fits the cloud (edge max_batch 4)
        (Request("m", 100.0, batch=8), {}, "c0", "fit"),
    ],
)
def test_synergai_table(
    view: FleetView,
    rng: random.Random,
    req: Request,
    loads: dict[str, int],
    expected: str | None,
    reason: str,
) -> None:
    for w, n in loads.items():
        _load(view, w, n)
    d = SynergAI(explore=0.0).choose(req, view, 0.0, rng)
    assert d.reason == reason
    if expected is None or expected.startswith("c"):
        assert d.worker == expected
    else:
        assert d.worker is not None and d.worker.startswith(expected)


def test_synergai_learns_a_slow_worker(view: FleetView, rng: random.Random) -> None:
    pol = SynergAI(explore=0.0)
    t = 0.0
    for _ in range(30):  # e0 and e1 answer 3x slower than profiled
        for w in ("e0", "e1"):
            r = Request("m", 15.0)
            view.start(w, r, 10.0, t)
            view.finish(w, r, 10.0, 1.0 + 30.0, t + 0.031)
        t += 0.05
    d = pol.choose(Request("m", 40.0), view, t, rng)
    assert d.worker == "c0"  # the edge is predicted at ~31 ms + tail: only the cloud fits


def test_protection_keeps_the_edge_for_tight_traffic(view: FleetView, rng: random.Random) -> None:
    pol = SynergAI(explore=0.0)
    pol.choose(Request("tiny", 3.0), view, 0.0, rng)  # tiny's tight SLO is learnt: 3 ms
    _load(view, "e0", 1)
    _load(view, "e1", 1)
    # a looser latency request would be fastest on the edge, but would eat tiny's budget
    d = pol.choose(Request("m", 60.0, category="latency"), view, 0.0, rng)
    assert d.worker == "c0"


def _tiny_stream(pol: SynergAI, view: FleetView, rng: random.Random, n: int) -> None:
    for i in range(n):  # tiny (3 ms SLO, edge only) arrives n times over 0.1 s
        pol.choose(Request("tiny", 3.0), view, i * 0.1 / n, rng)


@pytest.mark.parametrize(
    ("tiny_requests", "priority", "expected", "reason"),
    [
        # frequent tight traffic: m's only fit (the edge) would make many tiny requests late,
        # so m yields: to the cloud (late itself) at priority 1, shed at priority 0
        (100, 1, "c0", "yield"),
        (100, 0, None, "shed_yield"),
        # one tiny request seen: blocking m for it would cost more than it saves
        (1, 1, "e", "fit_tight"),
    ],
)
def test_yield_weighs_tight_traffic_by_rate(
    view: FleetView,
    rng: random.Random,
    tiny_requests: int,
    priority: int,
    expected: str | None,
    reason: str,
) -> None:
    pol = SynergAI(explore=0.0)
    _tiny_stream(pol, view, rng, tiny_requests)
    for w in ("e0", "e1"):  # 5 ms of queue on each edge worker
        view.start(w, Request("m", 1e6), 5.0, 0.1)
    d = pol.choose(Request("m", 19.0, priority=priority), view, 0.1, rng)
    assert d.reason == reason
    if expected is None or expected.startswith("c"):
        assert d.worker == expected
    else:
        assert d.worker is not None and d.worker.startswith(expected)


def test_light_load_exact_profiles_is_earliest_completion(
    view: FleetView, rng: random.Random
) -> None:
    # no tighter class (fresh policy), no exploration: any category, any SLO that fits goes
    # where it completes first
    for cat in ("latency", "frequency"):
        for slo in (15.0, 40.0, 200.0):
            d = SynergAI(explore=0.0).choose(Request("m", slo, category=cat), view, 0.0, rng)
            assert d.worker is not None and d.worker.startswith("e")


def test_oracle_needs_truth(view: FleetView, rng: random.Random) -> None:
    with pytest.raises(RuntimeError, match="truth"):
        make_policy("oracle", view.book).choose(Request("m", 10.0), view, 0.0, rng)


def test_scorers(view: FleetView) -> None:
    s = view.state("e0")
    e = Estimate(s, predicted_ms=12.0, tail_ms=14.0, service_ms=10.0, cost_ms=10.0)
    assert predicted_latency(e) == 12.0
    assert slo_headroom(e, 20.0) == 6.0
    assert efficiency_cost(e) == 10.0
    assert queue_depth(s) == 0.0
    _load(view, "e0", 2)
    assert queue_depth(s) == 2.0
    assert peak_ewma_cost(s) == pytest.approx(30.0 * 3)
