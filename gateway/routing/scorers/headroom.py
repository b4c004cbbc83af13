"""Scorer: best fit on SLO headroom (the Kubernetes inference gateway's SLO-aware picker)."""

from __future__ import annotations

from gateway.routing.framework import Estimate

__all__ = ["slo_headroom"]


def slo_headroom(e: Estimate, slo_ms: float) -> float:
    """Cost = headroom ``slo - tail`` (ms), ``tail = rtt + wait + c * p99 service``.

    Among workers that fit, the one with the *least* headroom is cheapest (best fit): a
    request that tolerates a slow or far worker goes there, and the fast, close capacity is
    kept for requests whose SLO needs it.
    """
    return slo_ms - e.tail_ms
