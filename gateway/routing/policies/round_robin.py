"""``round_robin``: each model's available workers in turn, blind to load and hardware."""

from __future__ import annotations

import random

from gateway.routing.filters import available_workers
from gateway.routing.framework import decide
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["RoundRobin"]


class RoundRobin:
    """Filter available workers, pick the next one in a per-model rotation."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """Next available worker for ``req.model``; shed with ``no_worker`` if none."""
        ws = available_workers(req, view, now)
        if not ws:
            return decide(None, "no_worker")
        i = self._next.get(req.model, 0)
        self._next[req.model] = i + 1
        s = ws[i % len(ws)]
        return decide(s, "round_robin", view.service_ms(s, req.model, req.batch, now))
