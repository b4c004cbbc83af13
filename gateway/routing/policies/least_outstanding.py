"""``least_outstanding``: fewest requests in flight (Envoy / nginx least-conn)."""

from __future__ import annotations

import random

from gateway.routing.filters import available_workers
from gateway.routing.framework import decide, pick_min
from gateway.routing.scorers import queue_depth
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["LeastOutstanding"]


class LeastOutstanding:
    """Filter available workers, score by :func:`queue_depth`, pick the least (random ties)."""

    name = "least_outstanding"

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """The available worker with the fewest outstanding requests."""
        ws = available_workers(req, view, now)
        if not ws:
            return decide(None, "no_worker")
        s = pick_min(ws, queue_depth, rng)
        return decide(s, "least_outstanding", view.service_ms(s, req.model, req.batch, now))
