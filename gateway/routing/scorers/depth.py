"""Scorer: queue depth."""

from __future__ import annotations

from gateway.routing.state import WorkerState

__all__ = ["queue_depth"]


def queue_depth(s: WorkerState) -> float:
    """Cost = outstanding requests on the worker (requests; shared view when fresh)."""
    return s.out
