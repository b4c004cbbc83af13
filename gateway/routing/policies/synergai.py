"""``synergai``: SLO-aware routing on predicted latency, offline profiles + online correction.

Pipeline (filter -> score -> pick), O(pools) per decision:

1. *candidates*: the best available worker of each pool for the model
   (:func:`pool_estimates`); pools whose ``max_batch`` refuses the batch and workers
   unhealthy or ejected after a failure are filtered out.
2. *predict*: ``predicted = rtt + W + c * mean``, ``tail = rtt + W + c * p99`` (ms), ``W``
   from the worker's shadow queue, ``c`` its online correction
   (:mod:`gateway.prediction.model`).
3. *fit* (:func:`fits_slo`): candidates with ``tail <= slo``. The default is ``e0``, the fit
   of earliest predicted completion: with exact profiles and a light load nothing beats it,
   so every other step may only *deviate* from it, and only to a candidate that is safe:
4. *deviate, safely*: an alternative to ``e0`` must fit with margin (``tail <= (1 - MARGIN)
   * slo``) and keep every tighter class's wait budget on its worker
   (:func:`protects_tighter`, half the tight class's idle slack; tight SLOs per model are
   learned from the requests seen: ``T_m`` drops at once to a tighter SLO and relaxes by
   ``RELAX`` of the gap per request of that model). Among ``e0`` and those alternatives, the
   protected one of earliest predicted completion is taken. So loose work leaves the fast,
   close capacity to tight traffic only when a safe alternative exists, and is never moved
   to the edge of its own SLO.
5. *yield*: when no such candidate exists, each candidate's harm is the expected number of
   tighter requests its queueing would make late (:func:`harms_tighter`: the tight class's
   arrival rate times how long the worker's wait stays above that class's whole slack;
   rates are learned per model, an exponentially decayed count with ``RATE_TAU_S`` = 1 s).
   A fit doing less than one request of harm is taken (earliest first: the request itself
   is one request at stake); if every fit does more, the request yields: it goes to the
   earliest candidate doing less than one (a priority-0 request predicted late there is
   shed instead). Under overload this keeps the tight requests flowing instead of letting
   every class queue on the fastest pool until all are late; a rare tight class never
   blocks a frequent loose one. If every candidate harms, ``e0`` is taken.
6. *explore*: with probability ``explore`` (2 %), among the safe alternatives (step 4) whose
   correction has not been sampled for ``stale_s`` (``TAU_S``: by then the correction has
   decayed most of the way back to the profile), the stalest is taken, so corrections are
   refreshed without leaving the SLO margin.
7. *no fit*: the earliest predicted completion is the best effort; a priority-0 request
   predicted late there even on average (``predicted > slo``) is shed (``worker=None``,
   ``shed_slo``). Higher priorities are never shed.

EPARA categories: both ``latency`` and ``frequency`` work take the earliest safe completion.
A best fit on SLO headroom for ``frequency`` work (send it to the slowest pool that still
fits) was dropped: on random fleets it moved work to pools where it costs several times the
device time and starved the classes that only fit there (docs/routing.md).

Stale shared state needs nothing here: the view already routes on its local figures for a
worker whose shared figures are older than ``stale_after_s``.
"""

from __future__ import annotations

import math
import random
from typing import Any

from gateway.prediction.model import TAU_S
from gateway.routing.filters import fits_slo, harms_tighter, protects_tighter
from gateway.routing.framework import Estimate, pick_min
from gateway.routing.predict import pool_estimates
from gateway.routing.scorers import predicted_latency
from gateway.routing.types import Decision, Request

__all__ = ["EXPLORE", "MARGIN", "RATE_TAU_S", "RELAX", "SynergAI"]

EXPLORE = 0.02
"""Probability of refreshing a stale correction on a safe alternative."""
MARGIN = 0.25
"""An alternative to the earliest fit must keep this fraction of the SLO as headroom."""
RELAX = 0.002
"""Per request of a model, the tight SLO moves this fraction of the way to a looser SLO."""
RATE_TAU_S = 1.0
"""Time constant (s) of each model's arrival-rate estimate (exponentially decayed count)."""

_exp = math.exp


def _last_sample(e: Estimate, model: str) -> float:
    c = e.state.corrections.get(model)
    return -math.inf if c is None or not c.samples else c.t


def _decide(e: Estimate, reason: str) -> Decision:
    return Decision(e.state.id, e.predicted_ms, e.service_ms, reason)


class SynergAI:
    """The product's default policy; see the module docstring."""

    name = "synergai"

    def __init__(self, explore: float = EXPLORE, stale_s: float = TAU_S) -> None:
        self.explore = explore
        self.stale_s = stale_s
        self.tight: dict[str, float] = {}
        self._rate: dict[str, tuple[float, float]] = {}

    def _learn(self, model: str, slo: float, now: float) -> None:
        t = self.tight.get(model)
        self.tight[model] = slo if t is None or slo < t else t + (slo - t) * RELAX
        rt = self._rate.get(model)
        if rt is None:
            self._rate[model] = (1.0 / RATE_TAU_S, now)
        else:
            dt = now - rt[1]
            r = rt[0] * _exp(-dt / RATE_TAU_S) if dt > 0.0 else rt[0]
            self._rate[model] = (r + 1.0 / RATE_TAU_S, now)

    def rates(self, now: float) -> dict[str, float]:
        """Each model's arrival rate (req/s) decayed to ``now``."""
        return {
            m: r * _exp(-(now - t) / RATE_TAU_S) if now > t else r
            for m, (r, t) in self._rate.items()
        }

    def choose(self, req: Request, view: Any, now: float, rng: random.Random) -> Decision:
        """Earliest fit, safe deviations, yield, best effort or shed; see the module docstring."""
        m, slo = req.model, req.slo_ms
        self._learn(m, slo, now)
        ests = pool_estimates(view, m, req.batch, now)
        if not ests:
            return Decision(None, math.nan, 0.0, "no_worker")
        fits = fits_slo(ests, slo)
        if not fits:
            e = pick_min(ests, predicted_latency, rng)
            if req.priority == 0 and e.predicted_ms > slo:
                return Decision(None, e.predicted_ms, 0.0, "shed_slo")
            return _decide(e, "best_effort")
        e0 = pick_min(fits, predicted_latency, rng)
        if len(ests) == 1:  # no alternative to deviate or yield to
            return _decide(e0, "fit")
        tight = self.tight
        lim = (1.0 - MARGIN) * slo
        roomy = [e for e in fits if e is e0 or e.tail_ms <= lim]
        safe = protects_tighter(roomy, slo, tight, now)
        if not safe:
            rates = self.rates(now)
            keep = [e for e in fits if harms_tighter(e, slo, tight, rates) < 1.0]
            if keep:
                return _decide(pick_min(keep, predicted_latency, rng), "fit_tight")
            other = [e for e in ests if harms_tighter(e, slo, tight, rates) < 1.0]
            if not other:
                return _decide(e0, "fit_unprotected")
            e = pick_min(other, predicted_latency, rng)
            if req.priority == 0 and e.predicted_ms > slo:
                return Decision(None, e.predicted_ms, 0.0, "shed_yield")
            return _decide(e, "yield")
        if len(safe) > 1 and self.explore and rng.random() < self.explore:
            cut = now - self.stale_s
            old = [e for e in safe if e is not e0 and _last_sample(e, m) < cut]
            if old:
                return _decide(min(old, key=lambda e: _last_sample(e, m)), "explore")
        return _decide(pick_min(safe, predicted_latency, rng), "fit")
