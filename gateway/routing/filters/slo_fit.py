"""Filter: estimates whose tail bound meets the request's SLO."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.routing.framework import Estimate

__all__ = ["fits_slo"]


def fits_slo(ests: Sequence[Estimate], slo_ms: float) -> list[Estimate]:
    """Estimates with ``tail_ms <= slo_ms`` (``tail_ms = rtt + wait + c * p99``, ms)."""
    return [e for e in ests if e.tail_ms <= slo_ms]
