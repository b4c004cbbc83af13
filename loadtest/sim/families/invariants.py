"""Issue 15's invariants, measured: no worse at scale, no harm, light load = earliest completion.

* **No worse at scale** (:func:`scale_rates`, :func:`worse_at_scale`): a policy's violation
  rate on :func:`~.replicate.replicate` ``(sc, k)`` must stay within ``1.2 x r1 + 0.005`` of
  its rate ``r1`` at ``k = 1``. The rate at ``k`` is pooled over ``ceil(k_ref / k)`` trace
  seeds (``sc.seed + i``), so every ``k`` is judged on about as many requests as the
  largest and small fleets are not noisier than big ones.
* **No harm** (:func:`loadtest.sim.families.report.no_harm`): ``synergai`` against
  ``profile_static`` on the same trace.
* **Light load** (:class:`EarliestProbe`): with exact profiles and a low load, each decision
  whose earliest predicted completion fits the SLO (``tail <= slo``) must go to a worker of
  that earliest predicted completion (corrected predictions, the policy's own view); the
  probe wraps the policy and counts the decisions that do not. The reference is the
  per-pool best worker the policies see (:func:`~gateway.routing.predict.pool_estimates`),
  or with ``exact=True`` every available worker's fresh estimate
  (:func:`~gateway.routing.predict.estimate`): that checks the pool index too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.routing.framework import Estimate
from gateway.routing.predict import estimate, pool_estimates
from gateway.routing.types import Decision, Policy, Request
from gateway.routing.view import FleetView
from gateway.scenario import Scenario
from loadtest.sim.engine import simulate
from loadtest.sim.families.replicate import replicate
from loadtest.sim.runner import run_scenario
from loadtest.sim.trace import build_trace

__all__ = ["EarliestProbe", "light_load_deviations", "scale_rates", "worse_at_scale"]


def worse_at_scale(r1: float, rk: float) -> bool:
    """Whether ``rk`` (rate at ``k``) breaks the tolerance ``1.2 x r1 + 0.005``."""
    return rk > 1.2 * r1 + 0.005


def scale_rates(
    sc: Scenario, ks: Sequence[int], policies: Sequence[str], k_ref: int | None = None
) -> dict[str, dict[int, float]]:
    """Violation rate of each policy at each ``k``: ``{policy: {k: rate}}`` (module doc)."""
    k_ref = k_ref or max(ks)
    out: dict[str, dict[int, float]] = {p: {} for p in policies}
    for k in ks:
        big = replicate(sc, k)
        bad = {p: 0 for p in policies}
        total = 0
        for i in range(math.ceil(k_ref / k)):
            run = run_scenario(big, list(policies), sc.seed + i)
            total += len(run.trace)
            for p in policies:
                bad[p] += run.document["policies"][p]["slo_violations"]
        for p in policies:
            out[p][k] = bad[p] / total if total else 0.0
    return out


@dataclass
class EarliestProbe:
    """A policy that counts where ``inner`` leaves the earliest fitting completion.

    Attributes:
        inner: the policy under test (its decisions are returned unchanged).
        exact: compare with every available worker's fresh estimate, not the pools' best.
        corrected: use the online correction (False for ``profile_static``).
        checked: decisions whose earliest predicted completion fits the SLO.
        deviations: of those, decisions sent elsewhere (or shed).
        examples: the first few deviations, ``(now, model, slo, reason, chosen, earliest)``.
        reasons: the deviations counted by the policy's reason.
    """

    inner: Policy
    exact: bool = False
    corrected: bool = True
    checked: int = 0
    deviations: int = 0
    examples: list[tuple[Any, ...]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.inner.name

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """The inner decision; counted against the earliest completion on the same view."""
        d = self.inner.choose(req, view, now, rng)
        ests = self._reference(req, view, now)
        if not ests:
            return d
        best = min(e.predicted_ms for e in ests)
        early = [e for e in ests if e.predicted_ms <= best * (1.0 + 1e-12)]
        if all(e.tail_ms > req.slo_ms for e in early):
            return d
        self.checked += 1
        if d.worker is None or d.predicted_ms > best * (1.0 + 1e-9):
            self.deviations += 1
            self.reasons[d.reason] = self.reasons.get(d.reason, 0) + 1
            if len(self.examples) < 5:
                self.examples.append(
                    (round(now, 4), req.model, req.slo_ms, d.reason, d.worker, early[0].state.id)
                )
        return d

    def _reference(self, req: Request, view: FleetView, now: float) -> list[Estimate]:
        if not self.exact:
            return pool_estimates(view, req.model, req.batch, now, self.corrected)
        return [
            estimate(s, s.profiles[req.model], req.model, req.batch, now, self.corrected)
            for s in view.eligible(req.model, req.batch)
            if s.available(now)
        ]


def light_load_deviations(
    sc: Scenario, policy: Policy, seed: int | None = None, *, exact: bool = False
) -> EarliestProbe:
    """Simulate ``sc`` under ``policy`` wrapped in an :class:`EarliestProbe`; the probe.

    ``profile_static`` is probed on uncorrected predictions (it learns nothing).
    """
    sc = sc.scaled()
    seed = sc.seed if seed is None else seed
    probe = EarliestProbe(policy, exact, corrected=policy.name != "profile_static")
    simulate(sc, build_trace(sc, seed), probe, seed)
    return probe
