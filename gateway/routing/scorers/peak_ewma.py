"""Scorer: tower / linkerd peak-EWMA load."""

from __future__ import annotations

from gateway.routing.state import WorkerState

__all__ = ["peak_ewma_cost"]


def peak_ewma_cost(s: WorkerState) -> float:
    """Cost = peak-EWMA client latency (ms) x (outstanding + 1) (ms x requests).

    The estimate jumps to any latency above it and decays toward lower ones with time
    constant ``PEAK_EWMA_TAU_S = 10 s`` (:mod:`gateway.routing.state`); a worker never observed
    starts at ``DEFAULT_RTT_MS = 30 ms``.
    """
    return s.ewma_ms * (s.out + 1.0)
