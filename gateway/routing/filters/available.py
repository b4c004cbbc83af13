"""Filter: workers that have a profile for the model, accept the batch, and are available."""

from __future__ import annotations

from gateway.routing.state import WorkerState
from gateway.routing.types import Request
from gateway.routing.view import FleetView

__all__ = ["available_workers"]


def available_workers(req: Request, view: FleetView, now: float) -> list[WorkerState]:
    """Eligible (profile, ``batch <= max_batch``), probe-healthy, not-ejected workers.

    A worker without a profile for the model is never eligible, even for profile-free
    policies: the gateway only knows a worker serves a model through its profile.
    """
    return [s for s in view.eligible(req.model, req.batch) if s.available(now)]
