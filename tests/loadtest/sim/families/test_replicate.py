from __future__ import annotations

import pytest

from loadtest.sim.families import build_scenario, replicate


def test_replicate_scales_fleet_and_rates_not_the_rest() -> None:
    sc = build_scenario("faults", 21).scenario
    r = replicate(sc, 4)
    assert r.name == f"{sc.name}-x4"
    assert [p.workers for p in r.pools] == [4 * p.workers for p in sc.pools]
    assert [w.rate_rps for w in r.workload] == pytest.approx([4 * w.rate_rps for w in sc.workload])
    keep = ("instances", "rtt_ms", "models", "speed", "arch")
    assert [[getattr(p, k) for k in keep] for p in r.pools] == [
        [getattr(p, k) for k in keep] for p in sc.pools
    ]
    assert [(w.slo_ms, w.batch, w.arrival) for w in r.workload] == [
        (w.slo_ms, w.batch, w.arrival) for w in sc.workload
    ]
    assert r.duration_s == sc.duration_s and r.profile_book is sc.profile_book


def test_replicate_copies_server_faults_to_every_copy() -> None:
    sc = build_scenario("faults", 21).scenario
    n = {p.name: p.workers for p in sc.pools}
    r = replicate(sc, 3)
    for f in sc.faults:
        copies = [g for g in r.faults if (g.at_s, g.pool, g.kind) == (f.at_s, f.pool, f.kind)]
        if f.worker is None:
            assert [g.worker for g in copies] == [None]
        else:
            assert sorted(g.worker for g in copies if g.worker is not None) == [
                f.worker + j * n[f.pool] for j in range(3)
            ]


def test_replicate_one_is_identity_and_zero_is_an_error() -> None:
    sc = build_scenario("mixed", 2).scenario
    assert replicate(sc, 1) is sc
    with pytest.raises(ValueError):
        replicate(sc, 0)
