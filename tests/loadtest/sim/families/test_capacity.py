from __future__ import annotations

import math

import numpy as np
import pytest

from loadtest.sim.families.capacity import min_max_utilisation

INF = math.inf


@pytest.mark.parametrize(
    ("weights", "cost", "expected"),
    [
        # one stream, two pools: u* = 1 / (1/a1 + 1/a2)
        ([1.0], [[1.0, 3.0]], 0.75),
        # comparative advantage: each stream on the pool it is cheap on
        ([0.5, 0.5], [[1.0, 4.0], [2.0, 1.0]], 0.5),
        # stream 0 only fits pool 0; stream 1 goes to pool 1
        ([0.5, 0.5], [[1.0, INF], [2.0, 1.0]], 0.5),
        # one pool shared by everything
        ([0.25, 0.75], [[2.0], [4.0]], 3.5),
        # a stream without traffic may have nowhere to go
        ([1.0, 0.0], [[1.0, 1.0], [INF, INF]], 0.5),
    ],
)
def test_known_optima(weights: list[float], cost: list[list[float]], expected: float) -> None:
    up, lo = min_max_utilisation(np.array(weights), np.array(cost))
    assert lo <= expected * (1 + 1e-9) and up >= expected * (1 - 1e-9)
    assert up <= expected * 1.02


@pytest.mark.parametrize("seed", range(8))
def test_bounds_bracket_and_are_close(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s, p = int(rng.integers(2, 12)), int(rng.integers(2, 10))
    a = rng.uniform(0.1, 5.0, (s, p))
    a[rng.random((s, p)) < 0.5] = INF
    for i in range(s):
        a[i, rng.integers(p)] = rng.uniform(0.1, 5.0)
    up, lo = min_max_utilisation(rng.dirichlet(np.ones(s)), a)
    assert lo <= up <= 1.05 * lo


def test_traffic_with_nowhere_to_go_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pool"):
        min_max_utilisation(np.array([1.0]), np.array([[INF, INF]]))
