from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.ui.prom import RegistrySource, sample_from_text
from gateway.ui.stats import ANY_PRIORITY, PoolLatency


def registry() -> CollectorRegistry:
    """The DESIGN.md §8 metrics this module reads, with a few observations."""
    reg = CollectorRegistry()
    requests = Counter(
        "synergai_requests_total", "", ["model", "pool", "worker", "policy", "code"], registry=reg
    )
    violations = Counter(
        "synergai_slo_violations_total", "", ["model", "priority", "reason"], registry=reg
    )
    duration = Histogram("synergai_request_duration_seconds", "", ["model", "pool"], registry=reg)
    ratio = Histogram("synergai_prediction_error_ratio", "", ["pool"], registry=reg)
    Counter("unrelated_total", "", registry=reg).inc(7)
    requests.labels("resnet50", "edge", "edge-0", "synergai", "200").inc(3)
    requests.labels("resnet50", "cloud", "cloud-0", "synergai", "200").inc(2)
    requests.labels("resnet50", "cloud", "cloud-0", "synergai", "429").inc(1)
    requests.labels("bert", "cloud", "cloud-0", "synergai", "200").inc(4)
    violations.labels("resnet50", "0", "late").inc(2)
    violations.labels("resnet50", "0", "shed").inc(1)
    violations.labels("bert", "1", "late").inc(1)
    for s in (0.010, 0.030):
        duration.labels(
            "resnet50",
            "edge",
        ).observe(s)
    duration.labels("bert", "cloud").observe(0.005)
    ratio.labels("edge").observe(1.5)
    ratio.labels("edge").observe(0.5)
    return reg


def expected_pools() -> dict[str, PoolLatency]:
    return {"edge": PoolLatency(2.0, 40.0, 2.0, 2.0), "cloud": PoolLatency(1.0, 5.0, 0.0, 0.0)}


def test_sample_from_exposition_text() -> None:
    s = sample_from_text(generate_latest(registry()).decode())
    assert s.requests == {("resnet50", ANY_PRIORITY): 6.0, ("bert", ANY_PRIORITY): 4.0}
    assert s.violations == {("resnet50", "0"): 3.0, ("bert", "1"): 1.0}
    assert set(s.pools) == {"edge", "cloud"}
    for pool, want in expected_pools().items():
        got = s.pools[pool]
        assert got.count == want.count and got.ratio_count == want.ratio_count
        assert got.actual_ms_sum == pytest.approx(want.actual_ms_sum)
        assert got.ratio_sum == pytest.approx(want.ratio_sum)


async def test_registry_source_matches_text() -> None:
    reg = registry()
    assert await RegistrySource(reg).sample() == sample_from_text(generate_latest(reg).decode())


def test_empty_text_gives_empty_sample() -> None:
    s = sample_from_text("")
    assert not s.requests and not s.violations and not s.pools
