"""``profile_static``: earliest predicted completion from the offline profiles alone."""

from __future__ import annotations

import random

from gateway.routing.framework import pick_min
from gateway.routing.predict import pool_estimates
from gateway.routing.scorers import predicted_latency
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["ProfileStatic"]


class ProfileStatic:
    """Best worker per pool by ``rtt + W``, score :func:`predicted_latency` with ``c = 1``, pick.

    The classic profile-driven router: it knows each architecture's offline profile and the
    queue it has built, but learns nothing from what workers actually deliver, and is not
    SLO-aware (no best fit, no shedding).
    """

    name = "profile_static"

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """The available worker of least predicted completion."""
        ests = pool_estimates(view, req.model, req.batch, now, corrected=False)
        if not ests:
            return Decision(None, float("nan"), 0.0, "no_worker")
        e = pick_min(ests, predicted_latency, rng)
        return Decision(e.state.id, e.predicted_ms, e.service_ms, "min_predicted")
