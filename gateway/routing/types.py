"""The routing vocabulary shared by the gateway, the simulator and the live benchmark.

A policy is a pure, synchronous function of ``(request, view, now, rng)`` (STYLE.md
principle 1): it reads a :class:`FleetView`-like view of the fleet and returns a
:class:`Decision`; it never does I/O and never reads the wall clock. Whoever runs it (the
gateway, the simulator) owns the clock, reports starts and finishes back to the view, and feeds
it shared state (Redis) and health. Times are seconds (``now``), latencies milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "Category",
    "Decision",
    "Policy",
    "Request",
    "RoutingView",
    "WorkerInfo",
]

Category = Literal["latency", "frequency"]
"""EPARA's task categories: latency-sensitive vs frequency (throughput)-sensitive."""


@dataclass(slots=True)
class Request:
    """What routing knows of one inference request.

    Attributes:
        model: the model name.
        slo_ms: latency objective measured at the client, in ms.
        batch: items in the request (first dimension).
        priority: higher is more important; 0 is sheddable.
        category: ``"latency"`` or ``"frequency"`` (EPARA).
        arrival: when the gateway received it (seconds, the router's clock).
    """

    model: str
    slo_ms: float
    batch: int = 1
    priority: int = 0
    category: Category = "latency"
    arrival: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """Static facts of one Triton worker (from config, discovery or a scenario)."""

    id: str
    pool: str
    arch: str
    models: tuple[str, ...]
    instances: int = 1
    rtt_ms: float = 0.0
    url: str = ""
    grpc_url: str = ""
    metrics_url: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer.

    Attributes:
        worker: the chosen worker's id, or ``None`` to shed the request.
        predicted_ms: predicted response time at the client (rtt + wait + service), in ms;
            ``nan`` for policies that do not predict.
        service_ms: predicted service time on that worker (what a reservation adds to its
            outstanding work), in ms.
        reason: short machine-readable why (``"fit"``, ``"best_effort"``, ``"shed_slo"``...).
    """

    worker: str | None
    predicted_ms: float
    service_ms: float
    reason: str


class RoutingView(Protocol):
    """What the runner (gateway or simulator) tells the view, and what policies read.

    The concrete class is ``gateway.routing.view.FleetView``.
    """

    def start(self, worker: str, req: Request, service_ms: float, now: float) -> None:
        """A request was sent to ``worker`` (local in-flight + 1, work + service_ms)."""

    def finish(
        self, worker: str, req: Request, service_ms: float, latency_ms: float | None, now: float
    ) -> None:
        """It ended: ``latency_ms`` measured (client view, incl. rtt) or ``None`` if failed."""

    def apply_shared(
        self, worker: str, outstanding: int, work_ms: float, observed_at: float
    ) -> None:
        """Fleet-wide outstanding requests and work (ms) for ``worker`` from the shared store."""

    def set_healthy(self, worker: str, healthy: bool, now: float) -> None:
        """Health from probes or outlier detection; unhealthy workers get no traffic."""

    def workers(self) -> Sequence[WorkerInfo]:
        """Every worker known to the view."""

    def rows(self, now: float) -> list[dict[str, Any]]:
        """Per-worker live state for ``/synergai/v1/workers`` (JSON-ready)."""


class Policy(Protocol):
    """A routing policy; see the module docstring."""

    name: str

    def choose(self, req: Request, view: Any, now: float, rng: random.Random) -> Decision:
        """Pick a worker for ``req`` (or shed it)."""
