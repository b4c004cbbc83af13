from __future__ import annotations

import math

import pytest

from gateway.prediction.model import ALPHA, CLIP, Correction, PredictorConfig


@pytest.mark.parametrize(
    ("actual", "weight", "expected_g"),
    [
        (20.0, 1.0, ALPHA * math.log(2.0)),  # twice the reference: one full step toward ln 2
        (20.0, 0.5, 0.5 * ALPHA * math.log(2.0)),  # half the information, half the step
        (20.0, 0.0, 0.0),  # no information: unchanged
        (-5.0, 1.0, -ALPHA * CLIP),  # impossible estimates are clipped, never -inf
    ],
)
def test_observe_weighs_by_information(actual: float, weight: float, expected_g: float) -> None:
    c = Correction(PredictorConfig())
    c.observe(1.0, actual, 10.0, 0.0, weight)
    assert c.g == pytest.approx(expected_g)
    assert c.samples == 1


def test_correction_decays_back_to_the_profile() -> None:
    c = Correction(PredictorConfig())
    for i in range(50):  # a worker 3x slower than profiled (p50 10 ms)
        g0 = c.log_factor(i * 0.01)
        c.observe(i * 0.01, 30.0, 10.0 * math.exp(g0), g0)
    assert c.factor(0.5) == pytest.approx(3.0, rel=0.05)
    assert c.factor(0.5 + 5 * PredictorConfig().tau_s) < 1.05
