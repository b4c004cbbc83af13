"""Filter -> score -> pick: the small pieces every policy is assembled from.

A *filter* narrows the workers a request may go to (``gateway.routing.filters``), a *scorer*
gives each survivor a cost (lower is better, ``gateway.routing.scorers``) and a *pick* takes
the cheapest, breaking ties at random with the injected RNG. Predictions are carried as
:class:`Estimate` objects so a scorer reads fields, not methods, on the hot path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from gateway.routing.state import WorkerState
from gateway.routing.types import Decision

__all__ = ["Estimate", "decide", "pick_min"]

T = TypeVar("T")


class Estimate:
    """A prediction for one request on one worker (all ms, measured at the client).

    A plain slotted class rather than a ``NamedTuple``: compiled (:mod:`gateway.native`) it is
    built and read in C; fields are set once and only read afterwards.

    Attributes:
        state: the worker.
        predicted_ms: ``rtt + wait + c * mean service``.
        tail_ms: ``rtt + wait + c * p99 service``: the bound tested against the SLO.
        service_ms: ``c * mean service``: what the request adds to the worker's work.
        cost_ms: ``c * mean service / instances``: device time the request consumes, per slot.
    """

    __slots__ = ("cost_ms", "predicted_ms", "service_ms", "state", "tail_ms")

    def __init__(
        self,
        state: WorkerState,
        predicted_ms: float,
        tail_ms: float,
        service_ms: float,
        cost_ms: float,
    ) -> None:
        self.state = state
        self.predicted_ms = predicted_ms
        self.tail_ms = tail_ms
        self.service_ms = service_ms
        self.cost_ms = cost_ms

    def __repr__(self) -> str:
        return (
            f"Estimate({self.state.id}, predicted_ms={self.predicted_ms:.3f}, "
            f"tail_ms={self.tail_ms:.3f}, service_ms={self.service_ms:.3f}, "
            f"cost_ms={self.cost_ms:.3f})"
        )


def pick_min(items: Sequence[T], cost: Callable[[T], float], rng: random.Random) -> T:
    """The item of least ``cost``; ties broken uniformly at random (reservoir of one)."""
    best = items[0]
    best_cost = cost(best)
    ties = 1
    for it in items[1:]:
        c = cost(it)
        if c < best_cost:
            best, best_cost, ties = it, c, 1
        elif c == best_cost:
            ties += 1
            if rng.random() * ties < 1.0:
                best = it
    return best


def decide(s: WorkerState | None, reason: str, service_ms: float = math.nan) -> Decision:
    """A decision for a policy that does not predict latency."""
    if s is None:
        return Decision(None, math.nan, 0.0, reason)
    return Decision(s.id, math.nan, service_ms, reason)
