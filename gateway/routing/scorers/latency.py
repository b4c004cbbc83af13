"""Scorer: predicted completion."""

from __future__ import annotations

from gateway.routing.framework import Estimate

__all__ = ["predicted_latency"]


def predicted_latency(e: Estimate) -> float:
    """Cost = predicted client latency ``rtt + wait + c * mean service`` (ms)."""
    return e.predicted_ms
