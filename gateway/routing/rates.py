"""Per-pool arrival rates: the traffic each pool, and so each of its workers, actually sees.

A harm on one worker must be weighed with the rate at which requests reach *that worker*,
not with a model's fleet-wide rate: a class of 1,600 req/s routed to a pool of 80 workers puts
20 req/s on each. Weighing one worker's queue against the fleet-wide rate made every close
worker look harmful at thousands of requests per second (issue 15: 22.5 % violations against
0.00 % for earliest completion on a 200-worker fleet).

Each (pool, model) keeps an exponentially decayed count of the requests this router sent there
*or shed from there* (a shed request came for that pool and found no room; counted only where
requests went, every shed made a tight class look rarer and invited more loose work onto its
pool), ``r <- r * exp(-dt / tau) + 1 / tau`` (req/s), read decayed to ``now``; a worker's share
is the pool's rate over its available workers. Measured per pool rather than per worker: under
a light load earliest completion sends a class to the first idle worker of a pool every time,
which says nothing about what that worker is *needed* for. Replicating a fleet and its load k
times leaves every per-worker share unchanged (scale invariance).
"""

from __future__ import annotations

import math

__all__ = ["RATE_TAU_S", "PoolRates"]

RATE_TAU_S = 1.0
"""Time constant (s) of each rate estimate."""

_exp = math.exp


class PoolRates:
    """Decayed per-(pool, model) request rates (req/s); see the module docstring."""

    __slots__ = ("_r", "tau_s")

    def __init__(self, tau_s: float = RATE_TAU_S) -> None:
        self.tau_s = tau_s
        self._r: dict[tuple[str, str], tuple[float, float]] = {}

    def add(self, pool: str, model: str, now: float, weight: float = 1.0) -> None:
        """One request of ``model`` sent to ``pool`` at ``now`` (``weight``: what it counts
        for, e.g. its service time, making the rate one of work).
        """
        key = (pool, model)
        rt = self._r.get(key)
        inc = weight / self.tau_s
        if rt is None:
            self._r[key] = (inc, now)
        else:
            dt = now - rt[1]
            self._r[key] = ((rt[0] * _exp(-dt / self.tau_s) if dt > 0.0 else rt[0]) + inc, now)

    def rate(self, pool: str, model: str, now: float) -> float:
        """The rate (req/s) of ``model`` into ``pool``, decayed to ``now``."""
        rt = self._r.get((pool, model))
        if rt is None:
            return 0.0
        r, t = rt
        return r * _exp(-(now - t) / self.tau_s) if now > t else r
