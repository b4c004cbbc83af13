from __future__ import annotations

import math

import pytest

from loadtest.sim.families import FAMILIES, build_scenario
from loadtest.sim.families.build import SITES

CASES = [(f, s) for f in FAMILIES for s in (11, 12, 13)]


@pytest.mark.parametrize(("family", "seed"), CASES)
def test_scenario_within_its_family(family: str, seed: int) -> None:
    kn = FAMILIES[family]
    d = build_scenario(family, seed)
    sc = d.scenario
    assert sc.name == f"{family}-{seed}" and sc.seed == seed
    n = sum(p.workers for p in sc.pools)
    assert kn.fleet[0] <= n <= kn.fleet[1] and d.info["workers"] == n
    assert all(p.workers <= kn.pool_max and p.instances in kn.instances for p in sc.pools)
    assert all(0.5 <= (p.rtt_ms or 0) <= 50.0 for p in sc.pools)
    assert kn.load[0] <= d.info["load"] <= kn.load[1]
    total = sum(w.rate_rps for w in sc.workload)
    assert total * sc.duration_s <= kn.max_requests * 1.01 + 0.1 * len(sc.workload) * 40
    assert sc.duration_s <= kn.duration[1]
    book = sc.profile_book
    for w in sc.workload:  # every SLO is at least the best idle tail of a pool that serves it
        tails = [
            (p.rtt_ms or 0) + book.get(p.arch, w.model).p99(w.batch) * p.speed_at(0)  # type: ignore[union-attr]
            for p in sc.pools
            if w.model in p.models and w.batch <= book.get(p.arch, w.model).max_batch  # type: ignore[union-attr]
        ]
        assert tails and w.slo_ms >= min(tails) * kn.tight_slo[0] * 0.999
        assert w.arrival in kn.arrivals
        assert w.batch in kn.batches or w.batch < max(kn.batches)  # or capped by max_batch
    if kn.priorities[0] > 1:
        assert len({w.priority for w in sc.workload}) >= kn.priorities[0]
    if kn.sparse:
        for m in {w.model for w in sc.workload}:
            assert sum(m in p.models for p in sc.pools) <= 2
    if family in ("flapping", "faults"):
        assert sc.faults
    if family == "flapping":
        slow = [f for f in sc.faults if f.kind == "slowdown"]
        assert len(slow) >= 1 and all(1.0 <= (f.for_s or 0) <= 5.0 for f in slow)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_deterministic_and_distinct(family: str) -> None:
    a, b, c = build_scenario(family, 5), build_scenario(family, 5), build_scenario(family, 6)
    assert a.scenario.model_dump() == b.scenario.model_dump() and a.info == b.info
    assert a.scenario.profile_book.profiles == b.scenario.profile_book.profiles
    assert a.scenario.model_dump()["pools"] != c.scenario.model_dump()["pools"]


def test_families_cover_the_ranges_users_run() -> None:
    """Over a few seeds per family: 2-500 servers, 10-20k req/s, RTT near and far, 8 slots."""
    draws = [build_scenario(f, s) for f in FAMILIES for s in range(8)]
    workers = [d.info["workers"] for d in draws]
    rates = [d.info["rate_rps"] for d in draws]
    rtts = [p.rtt_ms or 0.0 for d in draws for p in d.scenario.pools]
    assert min(workers) <= 4 and max(workers) >= 150
    assert min(rates) <= 100 and max(rates) >= 5000
    assert min(rtts) < SITES["near"][1] and max(rtts) > SITES["far"][0]
    assert any(p.instances == 8 for d in draws for p in d.scenario.pools)
    assert any(d.info["load"] > 1.2 for d in draws)
    assert any(d.info["miscalibrated_pools"] for d in draws)
    assert not any(math.isnan(d.scenario.duration_s) for d in draws)
