"""``oracle`` (simulator only): greedy earliest true completion.

It reads the simulator's ground truth through ``view.truth``
(:class:`gateway.routing.view.Truth`): each request's true service time on every worker,
every worker's true speed, queue and faults. A priority-0 request that no worker can
answer within its SLO is shed, as ``synergai`` would. The gateway never sets ``view.truth``,
so this policy cannot run there.
"""

from __future__ import annotations

import random

from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = ["Oracle"]


class Oracle:
    """Score every eligible worker by true completion (ms), pick the least."""

    name = "oracle"

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """The worker that truly answers first; shed a hopeless priority-0 request."""
        truth = view.truth
        if truth is None:
            raise RuntimeError("the oracle policy needs the simulator's truth (view.truth)")
        best, best_ms = truth.best(req, now)
        if best is None or (req.priority == 0 and best_ms > req.slo_ms):
            return Decision(None, best_ms, 0.0, "shed_slo" if best is not None else "no_worker")
        svc = view.service_ms(view.state(best), req.model, req.batch, now)
        return Decision(best, best_ms, svc, "oracle")
