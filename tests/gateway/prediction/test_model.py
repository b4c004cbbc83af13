from __future__ import annotations

import math
import random

import pytest

from gateway.prediction.model import (
    ALPHA,
    CLIP,
    Correction,
    PredictorConfig,
    departure_z,
    shrink,
)


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


def _feed(c: Correction, t: float, actual_ms: float, p50_ms: float = 10.0) -> None:
    """One sample as the view gives it: the reference is ``c0 * p50`` at dispatch."""
    g0 = c.log_factor(t)
    c.observe(t, actual_ms, p50_ms * math.exp(g0), g0)


def test_shrunk_correction_stays_near_one_on_an_exact_profile() -> None:
    """Exact profile (log-normal, sigma 0.4): the EWMA wanders by its own noise, sqrt(V)
    (about sigma / 3); the shrunk estimate is exactly 1 while the EWMA is within that noise
    (about two thirds of the time) and its RMS in ``ln c`` is well below the EWMA's."""
    sigma = 0.4
    c = Correction(PredictorConfig(), noise=sigma)
    rng = random.Random(7)
    used: list[float] = []
    raw: list[float] = []
    for i in range(5000):
        _feed(c, 1.0 + 0.005 * i, 10.0 * math.exp(sigma * rng.gauss(0.0, 1.0)))
        if i >= 100:
            used.append(c.g)
            raw.append(c.raw)
    assert math.sqrt(c.var) == pytest.approx(sigma * math.sqrt(ALPHA / (2 - ALPHA)), rel=0.01)

    def rms(v: list[float]) -> float:
        return math.sqrt(sum(x * x for x in v) / len(v))

    assert rms(raw) == pytest.approx(math.sqrt(c.var), rel=0.15)  # what V says it is
    assert rms(used) < 0.65 * rms(raw)
    assert sum(g == 0.0 for g in used) > 0.6 * len(used)


@pytest.mark.parametrize(("sigma", "late"), [(0.1, 1), (0.25, 1), (0.47, 1), (0.8, 5)])
def test_shrunk_correction_follows_a_slowdown(sigma: float, late: int) -> None:
    """A real 3x slowdown: the shrunk estimate is never more than one standard error of the
    EWMA's noise behind it, and reaches 2.7 at most ``late`` samples after the unshrunk EWMA:
    one up to sigma 0.47 (p99 / p50 = 3, the widest profile shipped or generated)."""
    plain = Correction(PredictorConfig())
    c = Correction(PredictorConfig(), noise=sigma)
    first: dict[str, int] = {}
    for i in range(40):
        t = 1.0 + 0.01 * i
        for name, corr in (("plain", plain), ("shrunk", c)):
            _feed(corr, t, 30.0)
            if corr.factor(t) >= 2.7:
                first.setdefault(name, i)
        assert c.raw == pytest.approx(plain.g)  # the samples' statistic is untouched
        assert 0.0 <= c.raw - c.g <= math.sqrt(c.var) + 1e-12
    assert first["shrunk"] <= first["plain"] + late


def test_shrinking_commutes_with_the_decay() -> None:
    """``g`` decays like ``raw``: shrinking the decayed ``raw`` by its decayed variance."""
    c = Correction(PredictorConfig(), noise=0.4)
    for i in range(3):
        _feed(c, 1.0 + 0.01 * i, 15.0)
    later = 1.0 + PredictorConfig().tau_s
    d = math.exp(-(later - c.t) / PredictorConfig().tau_s)
    assert 0.0 < c.g < c.raw
    assert c.log_factor(later) == pytest.approx(shrink(c.raw * d, c.var * d * d))


def test_no_noise_means_no_shrinkage() -> None:
    """With ``noise`` 0 (a profile without spread) the estimate is the EWMA, bit for bit."""
    c = Correction(PredictorConfig())
    rng = random.Random(3)
    for i in range(200):
        _feed(c, 0.01 * i, 10.0 * math.exp(0.3 * rng.gauss(0.0, 1.0)))
        assert c.g == c.raw


def test_last_is_the_latest_samples_log_ratio_to_the_profile() -> None:
    """``last`` = ``ln(A / p50)`` of the latest sample, clipped as the EWMA reads it, whatever
    the correction used at dispatch; 0 before any sample."""
    c = Correction(PredictorConfig(), noise=0.3)
    assert c.last == 0.0
    c.observe(1.0, 6.0, 2.0, 0.0)  # 3x the profile's median, dispatched at c0 = 1
    assert c.last == pytest.approx(math.log(3.0))
    c.observe(2.0, 6.0, 4.0, math.log(2.0))  # the same service, dispatched at c0 = 2
    assert c.last == pytest.approx(math.log(3.0))
    c.observe(3.0, 100.0, 2.0, 0.0)  # 50x: clipped to CLIP
    assert c.last == pytest.approx(CLIP)


# pooling (module docstring, "Pooling") ---------------------------------------------------------


def _pool(n: int, sigma: float) -> tuple[Correction, list[Correction]]:
    cfg = PredictorConfig()
    pool = Correction(cfg, noise=sigma)
    workers = [Correction(cfg, noise=sigma) for _ in range(n)]
    for w in workers:
        w.join(pool)
    return pool, workers


def _greedy(workers: list[Correction], steps: int, sigma: float, seed: int) -> list[float]:
    """Earliest completion on identical idle workers with an exact profile: each request goes
    to a worker whose estimate reads fastest (ties at random); the factors at the end."""
    rng = random.Random(seed)
    t = 1.0
    for _ in range(steps):
        t += 0.002
        f = [w.factor(t) for w in workers]
        low = min(f)
        w = rng.choice([w for w, x in zip(workers, f, strict=True) if x == low])
        _feed(w, t, 10.0 * math.exp(sigma * rng.gauss(0.0, 1.0)))
    return sorted(w.factor(t) for w in workers)


def test_pooled_estimates_do_not_ratchet_up_under_earliest_completion() -> None:
    """Alone, the workers whose estimate wandered up get no sample to bring it back and stay
    up (the 95th percentile well above the truth, 1.0); pooled, most read the pool's figure
    (a worker that departs by noise beyond ``departure_z`` still freezes up, but rarely)."""
    sigma, n = 0.3, 50
    alone = _greedy([Correction(PredictorConfig(), noise=sigma) for _ in range(n)], 4000, sigma, 5)
    _, workers = _pool(n, sigma)
    pooled = _greedy(workers, 4000, sigma, 5)
    assert alone[int(0.95 * n)] > 1.15
    assert pooled[0] > 0.95 and pooled[int(0.9 * n)] <= 1.05 and pooled[-1] < alone[-1]
    assert sum(w.own for w in workers) <= n // 5  # a few that departed up stay up, unsampled


def test_one_slowed_worker_departs_from_its_pool() -> None:
    """One worker of twenty runs 3x slower: its own estimate takes over, reaches 2.5 at most one
    of its samples after it would alone, and stays within ``departure_z(20)`` standard errors
    of the difference of its own EWMA; its pool-mates stay near 1."""
    sigma, n = 0.3, 20
    _, workers = _pool(n, sigma)
    alone = Correction(PredictorConfig(), noise=sigma)
    rng = random.Random(11)
    first: dict[str, int] = {}
    t = 1.0
    for k in range(30):
        for i, w in enumerate(workers):
            t += 0.001
            a = 10.0 * math.exp(sigma * rng.gauss(0.0, 1.0))
            if i == 0:
                _feed(w, t, 3.0 * a)
                _feed(alone, t, 3.0 * a)  # the same sample, alone
            else:
                _feed(w, t, a)
        for name, c in (("pooled", workers[0]), ("alone", alone)):
            if c.factor(t) >= 2.5:
                first.setdefault(name, k)
        w0 = workers[0]
        if w0.own:
            lim = departure_z(n) * math.sqrt(w0.var + w0.parent.var)  # type: ignore[union-attr]
            assert 0.0 <= w0.raw - w0.g <= lim + 1e-12
    assert workers[0].own
    assert workers[0].raw == pytest.approx(alone.raw)  # the same samples, the same EWMA
    assert first["pooled"] <= first["alone"] + 1
    assert all(0.85 < w.factor(t) < 1.25 for w in workers[1:])


def test_a_worker_without_samples_reads_its_pools_figure() -> None:
    """A whole pool 2x slower than its profile: a worker that has served nothing yet already
    predicts 2x, on data (the pool's prior weight), not on the profile."""
    sigma = 0.3
    pool, workers = _pool(10, sigma)
    rng = random.Random(2)
    t = 1.0
    for _ in range(60):
        for w in workers[1:]:
            t += 0.001
            _feed(w, t, 20.0 * math.exp(sigma * rng.gauss(0.0, 1.0)))
    fresh = workers[0]
    assert fresh.samples == 0
    assert fresh.factor(t) == pytest.approx(2.0, rel=0.15)
    assert fresh.prior_weight(t) <= 0.5
    assert fresh.reads() is pool


def test_departure_z_keeps_the_pools_noise_at_one_workers() -> None:
    """One worker alone leaves the profile beyond one standard error; a pool of W has the
    threshold that noise passes W times less often, so the pool, not each worker, has one
    worker's false departures (Bonferroni)."""
    q1 = math.erfc(1.0 / math.sqrt(2.0))
    assert departure_z(1) == 1.0 and departure_z(0) == 1.0
    for w in (2, 3, 20, 100, 500):
        z = departure_z(w)
        assert math.erfc(z / math.sqrt(2.0)) * w == pytest.approx(q1)
    assert 2.9 < departure_z(100) < 3.0


def test_a_pool_of_one_is_the_worker_alone() -> None:
    """Joined to a pool of its own, a worker's estimate is what it would be alone, bit for bit."""
    pool, (w,) = _pool(1, 0.4)
    alone = Correction(PredictorConfig(), noise=0.4)
    rng = random.Random(9)
    for i in range(300):
        a = 10.0 * math.exp(0.4 * rng.gauss(0.0, 1.0)) * (3.0 if 100 <= i < 200 else 1.0)
        _feed(w, 1.0 + 0.01 * i, a)
        _feed(alone, 1.0 + 0.01 * i, a)
        assert w.log_factor(1.0 + 0.01 * i + 0.5) == alone.log_factor(1.0 + 0.01 * i + 0.5)
        assert w.prior_weight(1.0 + 0.01 * i) == pytest.approx(alone.prior_weight(1.0 + 0.01 * i))
    w.leave()
    assert pool.members == 0 and w.parent is None and w.reads() is w
