"""``synergai``: SLO-aware best fit on predicted latency, offline profiles + online correction.

Pipeline (filter -> score -> pick):

1. *candidates*: the best available worker of each pool for the model
   (:meth:`FleetView.pool_candidates`, O(pools)); pools whose ``max_batch`` refuses the batch
   and workers that are unhealthy or ejected after a failure are filtered out.
2. *predict* (:func:`gateway.routing.predict.estimate`): ``predicted = rtt + W + c * mean``,
   ``tail = rtt + W + c * p99`` (ms), ``c`` the worker's online correction.
3. *fit* (:func:`fits_slo`): keep candidates with ``tail <= slo``.
4. *score and pick* among fits, by EPARA category:
   ``latency``: least SLO headroom ``slo - tail`` (:func:`slo_headroom`, best fit: a request
   that tolerates a slow or far pool goes there, the fast close capacity stays free for the
   requests that need it); ``frequency``: least device time ``c * mean / instances``
   (:func:`efficiency_cost`: throughput work goes where it costs the fleet least).
   With probability ``explore`` (default 2 %) the fitting pool whose correction is oldest is
   taken instead, so corrections stay fresh without ever leaving the SLO.
5. *no fit*: the candidate of least ``predicted`` is the best effort; a priority-0 request
   whose best effort is predicted late even on average (``predicted > slo``) is shed
   (``Decision.worker = None``, reason ``shed_slo``); higher priorities are never shed.

Stale shared state needs nothing here: the view already routes on its local figures for a
worker whose shared figures are older than ``stale_after_s``.
"""

from __future__ import annotations

import math
import random
from typing import Any

from gateway.routing.filters import fits_slo
from gateway.routing.framework import Estimate, pick_min
from gateway.routing.predict import pool_estimates
from gateway.routing.scorers import efficiency_cost, predicted_latency, slo_headroom
from gateway.routing.types import Decision, Request

__all__ = ["EXPLORE", "SynergAI"]

EXPLORE = 0.02
"""Probability of routing a request that fits several pools to the stalest-corrected one."""


def _last_sample(e: Estimate, model: str) -> float:
    c = e.state.corrections.get(model)
    return -math.inf if c is None or not c.samples else c.t


class SynergAI:
    """The product's default policy; see the module docstring."""

    name = "synergai"

    def __init__(self, explore: float = EXPLORE) -> None:
        self.explore = explore

    def choose(self, req: Request, view: Any, now: float, rng: random.Random) -> Decision:
        """Best fit on SLO headroom; best effort or shed when nothing fits."""
        m, b, slo = req.model, req.batch, req.slo_ms
        ests = pool_estimates(view, m, b, now)
        if not ests:
            return Decision(None, math.nan, 0.0, "no_worker")
        fits = fits_slo(ests, slo)
        if fits:
            if len(fits) > 1 and rng.random() < self.explore:
                e = min(fits, key=lambda e: _last_sample(e, m))
                return Decision(e.state.id, e.predicted_ms, e.service_ms, "explore")
            if req.category == "frequency":
                e = pick_min(fits, efficiency_cost, rng)
            else:
                e = pick_min(fits, lambda e: slo_headroom(e, slo), rng)
            return Decision(e.state.id, e.predicted_ms, e.service_ms, "fit")
        e = pick_min(ests, predicted_latency, rng)
        if req.priority == 0 and e.predicted_ms > slo:
            return Decision(None, e.predicted_ms, 0.0, "shed_slo")
        return Decision(e.state.id, e.predicted_ms, e.service_ms, "best_effort")
