"""``peak_ewma``: the tower / linkerd balancer cost, over every available worker."""

from __future__ import annotations

import random

from gateway.routing.filters import available_workers
from gateway.routing.framework import decide, pick_min
from gateway.routing.scorers import peak_ewma_cost
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["PeakEwma"]


class PeakEwma:
    """Filter available workers, score by :func:`peak_ewma_cost`, pick the least.

    tower and linkerd apply the cost to two random endpoints (p2c); scanning every worker is
    a stronger baseline, which is what we compare against.
    """

    name = "peak_ewma"

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """The available worker of least ``peak-EWMA latency x (outstanding + 1)``."""
        ws = available_workers(req, view, now)
        if not ws:
            return decide(None, "no_worker")
        s = pick_min(ws, peak_ewma_cost, rng)
        return decide(s, "peak_ewma", view.service_ms(s, req.model, req.batch, now))
