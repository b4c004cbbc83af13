"""The predictor as policies use it: :class:`~gateway.routing.framework.Estimate` objects.

``predicted = rtt + W + c * mean(b)``, ``tail = rtt + W + c * p99(b)``, all ms, with ``W`` the
worker's expected wait and ``c`` its online correction for the model, decayed to ``now``
(:mod:`gateway.prediction.model` documents both). ``corrected=False`` uses ``c = 1``: the
offline profile alone. :func:`pool_estimates` is the hot path: one call per decision, the
best worker of each pool, O(pools); uncorrected, "best" is the least ``rtt + W``.
"""

from __future__ import annotations

import math

from gateway.prediction.profiles import Profile
from gateway.routing.framework import Estimate
from gateway.routing.state import WorkerState
from gateway.routing.view import FleetView

__all__ = ["estimate", "pool_estimates"]


def _factor(s: WorkerState, model: str, now: float) -> float:
    corr = s.corrections[model].reads()  # Correction.log_factor, inlined
    g = corr.g
    if g == 0.0:
        return 1.0
    dt = now - corr.t
    return math.exp(g * math.exp(-dt / corr.cfg.tau_s)) if dt > 0 else math.exp(g)


def estimate(
    s: WorkerState, profile: Profile, model: str, batch: int, now: float, corrected: bool = True
) -> Estimate:
    """Prediction for a (model, batch) request on worker ``s`` at ``now``."""
    c = _factor(s, model, now) if corrected else 1.0
    mean = c * profile.mean(batch)
    base = s.rtt_ms + s.wait_at(now)
    return Estimate(s, base + mean, base + c * profile.p99(batch), mean, mean / s.instances)


def pool_estimates(
    view: FleetView, model: str, batch: int, now: float, corrected: bool = True
) -> list[Estimate]:
    """Estimates on the best available worker of each pool that serves ``model`` at ``batch``.

    Reads the view as the runner left it (:meth:`FleetView.advance` before the decision).
    """
    out: list[Estimate] = []
    now_ms = now * 1000.0
    for idx in view.indexes(model):
        if batch > idx.max_batch:
            continue
        pos = idx.best_pos(now_ms) if corrected else idx.best_base_pos(now_ms)
        if pos < 0:
            continue
        s = idx.members[pos]
        assert s is not None  # a removed position's key is inf
        for _ in range(len(idx.members)):  # its key's slot is overdue: push it, next best
            if s.due > now:
                break
            view.overdue(s, now)
            pos = idx.best_pos(now_ms) if corrected else idx.best_base_pos(now_ms)
            s = idx.members[pos]
            assert s is not None
        if batch == 1:
            mean, p99 = idx.mean_1, idx.p99_1
        else:
            mean, p99, _ = idx.stats(batch)
        c = _factor(s, model, now) if corrected else 1.0
        base = s.rtt_ms + s.wait_at(now)
        mean *= c
        out.append(Estimate(s, base + mean, base + c * p99, mean, mean / s.instances))
    return out
