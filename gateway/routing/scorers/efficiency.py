"""Scorer: device time consumed (EPARA's frequency-sensitive tasks)."""

from __future__ import annotations

from gateway.routing.framework import Estimate

__all__ = ["efficiency_cost"]


def efficiency_cost(e: Estimate) -> float:
    """Cost = ``c * mean service / instances`` (ms of one slot's time per request).

    Throughput-bound (frequency-sensitive) work goes where it uses the fleet's capacity most
    efficiently, among workers that meet its SLO.
    """
    return e.cost_ms
