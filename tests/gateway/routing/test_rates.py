"""Per-pool rates (``gateway.routing.rates``)."""

from __future__ import annotations

import math

import pytest

from gateway.routing.rates import PoolRates


def test_pool_rate_of_a_steady_stream_is_its_rate() -> None:
    r = PoolRates()
    for i in range(5000):  # 100 req/s for 50 s: far past the 1 s time constant
        r.add("p", "m", i / 100.0)
    assert r.rate("p", "m", 50.0) == pytest.approx(100.0, rel=0.05)
    assert r.rate("p", "other", 50.0) == 0.0 and r.rate("q", "m", 50.0) == 0.0
    assert r.rate("p", "m", 52.0) == pytest.approx(100.0 * math.exp(-2.0), rel=0.05)


def test_a_weighted_rate_is_a_rate_of_work() -> None:
    """Weighted by service time (ms), the rate is ms of work per second: 100 req/s of 5 ms
    keep half a slot busy."""
    r = PoolRates()
    for i in range(5000):
        r.add("p", "", i / 100.0, 5.0)
    assert r.rate("p", "", 50.0) / 1000.0 == pytest.approx(0.5, rel=0.05)
