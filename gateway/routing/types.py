"""The routing vocabulary shared by the gateway, the simulator and the live benchmark.

A policy is a pure, synchronous function of ``(request, view, now, rng)`` (STYLE.md
principle 1): it reads the :class:`~gateway.routing.view.FleetView` of the fleet (which the runner
brings to ``now`` with ``view.advance(now)`` first) and returns a
:class:`Decision`; it never does I/O and never reads the wall clock. Whoever runs it (the
gateway, the simulator) owns the clock, reports starts and finishes back to the view, and feeds
it shared state (Redis) and health. Times are seconds (``now``), latencies milliseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

if TYPE_CHECKING:  # view.py imports this module
    from gateway.routing.view import FleetView

__all__ = [
    "Category",
    "Decision",
    "Policy",
    "Request",
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


class Decision:
    """A policy's answer (immutable by contract: set once, only read afterwards).

    A plain slotted class, not a frozen dataclass: the gateway and the simulator build one
    per request, and a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (about 1 µs in Python); compiled (:mod:`gateway.native`) this one
    is built in C. Equality, hashing and ``repr`` are a frozen dataclass's (by fields).

    Attributes:
        worker: the chosen worker's id, or ``None`` to shed the request.
        predicted_ms: predicted response time at the client (rtt + wait + service), in ms;
            ``nan`` for policies that do not predict.
        service_ms: predicted service time on that worker (what a reservation adds to its
            outstanding work), in ms.
        reason: short machine-readable why (``"fit"``, ``"best_effort"``, ``"shed_slo"``...).
    """

    __slots__ = ("predicted_ms", "reason", "service_ms", "worker")
    __match_args__ = ("worker", "predicted_ms", "service_ms", "reason")

    def __init__(
        self, worker: str | None, predicted_ms: float, service_ms: float, reason: str
    ) -> None:
        self.worker: Final = worker
        self.predicted_ms: Final = predicted_ms
        self.service_ms: Final = service_ms
        self.reason: Final = reason

    def _fields(self) -> tuple[str | None, float, float, str]:
        return (self.worker, self.predicted_ms, self.service_ms, self.reason)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Decision(worker={self.worker!r}, predicted_ms={self.predicted_ms!r}, "
            f"service_ms={self.service_ms!r}, reason={self.reason!r})"
        )


class Policy(Protocol):
    """A routing policy; see the module docstring."""

    name: str

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """Pick a worker for ``req`` (or shed it)."""
