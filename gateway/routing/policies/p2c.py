"""``p2c``: power of two choices on outstanding requests."""

from __future__ import annotations

import random

from gateway.routing.filters import available_workers
from gateway.routing.framework import decide
from gateway.routing.scorers import queue_depth
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["PowerOfTwo"]


class PowerOfTwo:
    """Filter available workers, sample two distinct ones, keep the lower :func:`queue_depth`."""

    name = "p2c"

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """The less loaded of two random available workers."""
        ws = available_workers(req, view, now)
        if not ws:
            return decide(None, "no_worker")
        n = len(ws)
        i = int(rng.random() * n)
        a = ws[i]
        if n > 1:
            j = int(rng.random() * (n - 1))
            b = ws[j + 1 if j >= i else j]
            if queue_depth(b) < queue_depth(a):
                a = b
        return decide(a, "p2c", view.service_ms(a, req.model, req.batch, now))
