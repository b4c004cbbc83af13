"""What phase one of a request hands to phase two (:class:`~gateway.service.InferenceService`).

:meth:`~gateway.service.InferenceService.begin` admits and routes a request and books it on
its worker (view, store, in-flight count); the caller then sends it however it sends (the
gateway's own upstream, or Envoy after the endpoint picker answered) and calls
:meth:`~gateway.service.InferenceService.end` exactly once with how the attempt ended.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.routing.types import Decision, Request, WorkerInfo
from gateway.state.store import Lease, WorkerLoad

__all__ = ["Ticket"]


@dataclass(slots=True, eq=False)
class Ticket:
    """One request booked on a worker, between ``begin`` and ``end``.

    Attributes:
        req: what routing knew of the request (``arrival`` is when ``begin`` ran).
        decision: the policy's decision (``decision.worker == worker.id``).
        worker: the chosen worker.
        policy: the name of the policy that decided.
        timeout_s: how long the attempt may take (SLO-derived, :mod:`gateway.core.timeouts`).
        service_ms: the predicted service time booked on the worker (0 when not predicted).
        lease: the store reservation (released by ``end``).
        reserve: the reserve call in flight (``end`` releases after it).
        wait0_ms: the worker's predicted wait at the start (drift detection).
        ended: ``end`` already ran (a second call is a no-op).
    """

    req: Request
    decision: Decision
    worker: WorkerInfo
    policy: str
    timeout_s: float
    service_ms: float
    lease: Lease
    reserve: asyncio.Future[WorkerLoad | None]
    wait0_ms: float
    ended: bool = False
