"""Upstream timeouts derived from the request's SLO and the config.

A request whose answer comes far past its SLO is worth nothing to its client, and holding it
holds a connection, a reservation and memory. Its total upstream time is therefore bounded by
its SLO as well as by the configured ceiling::

    total_s   = clamp(slo_ms / 1000 * slo_factor, min_s, max_s)
    connect_s = min(connect_timeout_s, total_s)          (the upstream client applies it)

``slo_factor`` (``timeout_slo_factor``, default 10) keeps a merely late answer (a violation,
but an answer) from becoming an error; ``min_s`` keeps a tiny SLO from timing out on a GC
pause; ``max_s`` is ``request_timeout_s``. When it passes the client gets 504 /
``DEADLINE_EXCEEDED``. A retry only gets what is left of the same total.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimeoutPolicy"]


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """How long a request may wait for its worker.

    Attributes:
        max_s: the ceiling (``request_timeout_s``).
        slo_factor: total time allowed as a multiple of the SLO.
        min_s: the floor, whatever the SLO.
    """

    max_s: float = 30.0
    slo_factor: float = 10.0
    min_s: float = 0.5

    def total_s(self, slo_ms: float) -> float:
        """Total seconds a request with ``slo_ms`` may wait for its answer."""
        t = slo_ms * self.slo_factor / 1000.0
        lo = self.min_s if self.min_s < self.max_s else self.max_s
        return self.max_s if t > self.max_s else (lo if t < lo else t)
