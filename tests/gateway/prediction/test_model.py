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


def test_prior_weight_is_the_profiles_share_of_the_estimate() -> None:
    """``g`` = (1 - P) * (the samples' weighted mean) + P * 0: ``P`` is the profile's share."""
    cfg = PredictorConfig()
    c = Correction(cfg)
    assert c.prior_weight(0.0) == 1.0
    for i in range(4):  # the same sample four times: g = (1 - P) * ln 2 exactly
        c.observe(1.0, 20.0, 10.0, 0.0)
        assert c.prior_weight(1.0) == pytest.approx((1 - ALPHA) ** (i + 1))
        assert c.g == pytest.approx((1 - c.prior_weight(1.0)) * math.log(2.0))
    half = c.prior_weight(1.0)
    c.observe(1.0, 20.0, 10.0, 0.0, weight=0.5)  # half the information, half the step
    assert c.prior_weight(1.0) == pytest.approx(half * (1 - ALPHA / 2))
    # the decay hands the profile its share back at the pace g decays: still g = (1 - P) ln 2
    later = 1.0 + cfg.tau_s
    assert c.log_factor(later) == pytest.approx((1 - c.prior_weight(later)) * math.log(2.0))
    assert c.prior_weight(1.0 + 50 * cfg.tau_s) == pytest.approx(1.0)
