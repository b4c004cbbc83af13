"""``synergai``: SLO-aware routing on predicted latency, offline profiles + online correction.

Pipeline (filter -> score -> pick):

1. *candidates*: the best available worker of each pool for the model
   (:func:`pool_estimates`, O(pools)); pools whose ``max_batch`` refuses the batch and
   workers unhealthy or ejected after a failure are filtered out.
2. *predict*: ``predicted = rtt + W + c * mean``, ``tail = rtt + W + c * p99`` (ms), ``W``
   from the worker's shadow queue, ``c`` its online correction
   (:mod:`gateway.prediction.model`).
3. *fit* (:func:`fits_slo`): candidates with ``tail <= slo``.
4. *protect* (:func:`protects_tighter`): of those, the ones that keep every tighter class's
   wait budget on that worker; tight SLOs per model are learned from the requests seen
   (``T_m``: drops at once to a tighter SLO, relaxes toward looser ones by ``RELAX`` of the
   gap per request of that model).
5. *score and pick* by EPARA category: ``latency`` takes the earliest predicted completion
   (:func:`predicted_latency`, the safest fit); ``frequency`` takes the best fit on SLO
   headroom ``slo - tail`` (:func:`slo_headroom`) among fits that keep ``MARGIN`` (25 %) of
   the SLO as headroom (else the earliest completion): throughput work that tolerates a slow
   or far pool goes there, the fast, close capacity is kept for the requests that need it,
   and no pool is loaded to the very edge of the SLO, where every prediction error is a
   violation.
   With probability ``explore`` (2 %) the fitting pool whose correction is oldest is taken
   instead, so corrections stay fresh without leaving the SLO.
6. *fallbacks*: fits that break a protection (earliest completion); then no fit: the earliest
   predicted completion is the best effort, and a priority-0 request predicted late there
   even on average (``predicted > slo``) is shed (``worker=None``, ``shed_slo``). Higher
   priorities are never shed.

Stale shared state needs nothing here: the view already routes on its local figures for a
worker whose shared figures are older than ``stale_after_s``.
"""

from __future__ import annotations

import math
import random
from typing import Any

from gateway.routing.filters import fits_slo, protects_tighter
from gateway.routing.framework import Estimate, pick_min
from gateway.routing.predict import pool_estimates
from gateway.routing.scorers import predicted_latency, slo_headroom
from gateway.routing.types import Decision, Request

__all__ = ["EXPLORE", "MARGIN", "RELAX", "SynergAI"]

EXPLORE = 0.02
"""Probability of routing a request that fits several pools to the stalest-corrected one."""
MARGIN = 0.25
"""Best fit only among fits that keep this fraction of the SLO as headroom."""
RELAX = 0.002
"""Per request of a model, the tight SLO moves this fraction of the way to a looser SLO."""


def _last_sample(e: Estimate, model: str) -> float:
    c = e.state.corrections.get(model)
    return -math.inf if c is None or not c.samples else c.t


class SynergAI:
    """The product's default policy; see the module docstring."""

    name = "synergai"

    def __init__(self, explore: float = EXPLORE) -> None:
        self.explore = explore
        self.tight: dict[str, float] = {}

    def _learn(self, model: str, slo: float) -> None:
        t = self.tight.get(model)
        self.tight[model] = slo if t is None or slo < t else t + (slo - t) * RELAX

    def choose(self, req: Request, view: Any, now: float, rng: random.Random) -> Decision:
        """Protected fit by category; best effort or shed when nothing fits."""
        m, slo = req.model, req.slo_ms
        self._learn(m, slo)
        ests = pool_estimates(view, m, req.batch, now)
        if not ests:
            return Decision(None, math.nan, 0.0, "no_worker")
        fits = fits_slo(ests, slo)
        if fits:
            safe = protects_tighter(fits, slo, self.tight, now) if len(fits) > 1 else fits
            if not safe:
                e = pick_min(fits, predicted_latency, rng)
                return Decision(e.state.id, e.predicted_ms, e.service_ms, "fit_unprotected")
            if len(safe) > 1 and rng.random() < self.explore:
                e = min(safe, key=lambda e: _last_sample(e, m))
                return Decision(e.state.id, e.predicted_ms, e.service_ms, "explore")
            roomy = (
                [e for e in safe if slo_headroom(e, slo) >= MARGIN * slo]
                if req.category == "frequency"
                else None
            )
            if roomy:
                e = pick_min(roomy, lambda e: slo_headroom(e, slo), rng)
            else:
                e = pick_min(safe, predicted_latency, rng)
            return Decision(e.state.id, e.predicted_ms, e.service_ms, "fit")
        e = pick_min(ests, predicted_latency, rng)
        if req.priority == 0 and e.predicted_ms > slo:
            return Decision(None, e.predicted_ms, 0.0, "shed_slo")
        return Decision(e.state.id, e.predicted_ms, e.service_ms, "best_effort")
