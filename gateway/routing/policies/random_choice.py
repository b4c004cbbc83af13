"""``random``: a uniformly random available worker."""

from __future__ import annotations

import random

from gateway.routing.filters import available_workers
from gateway.routing.framework import decide
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["RandomChoice"]


class RandomChoice:
    """Filter available workers, pick one uniformly with the injected RNG."""

    name = "random"

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """A random available worker; shed with ``no_worker`` if none."""
        ws = available_workers(req, view, now)
        if not ws:
            return decide(None, "no_worker")
        s = ws[int(rng.random() * len(ws))]
        return decide(s, "random", view.service_ms(s, req.model, req.batch, now))
