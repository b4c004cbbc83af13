"""Per (pool, model) index of workers by predicted completion, so a decision is O(pools).

Workers of one pool share an architecture, hence a profile: the best worker of a pool for a
model is the one with the smallest key ``rtt + W + c * p50(1)`` (ms; see
:mod:`gateway.prediction.model`), ``inf`` when it is unavailable. Keys live in a flat list
updated in place on every change of a worker (O(1)); the best is found with the C-level
``min`` and ``list.index`` (two passes over a list of floats: about 1 µs per 100 workers),
which beats a heap's per-update Python work for pools up to thousands of workers
(DESIGN.md §10). Removed workers leave an ``inf`` hole.
"""

from __future__ import annotations

import math

from gateway.prediction.profiles import Profile
from gateway.routing.state import WorkerState

__all__ = ["PoolIndex"]

INF = math.inf


class PoolIndex:
    """Workers of one pool (one arch) that serve one model, keyed by predicted completion.

    Attributes:
        pool: pool name.
        arch: the pool's architecture.
        model: the model.
        profile: the arch's profile for the model.
        max_batch: the profile's ``max_batch``.
        p50_1: the profile's batch-1 median (ms), the service part of the key.
        p99_1: the profile's batch-1 p99 (ms).
        keys: one key per slot of ``members`` (ms; ``inf``: unavailable or removed).
        bases: ``rtt + W`` per slot (ms; ``inf`` likewise): the key without the service part,
            for policies that must not use the online correction.
        members: the workers (``None``: removed).
    """

    __slots__ = (
        "_stats",
        "arch",
        "bases",
        "keys",
        "max_batch",
        "members",
        "model",
        "p50_1",
        "p99_1",
        "pool",
        "profile",
    )

    def __init__(self, pool: str, arch: str, model: str, profile: Profile) -> None:
        self.pool = pool
        self.arch = arch
        self.model = model
        self.profile = profile
        self.max_batch = profile.max_batch
        self.p50_1 = profile.p50(1)
        self.p99_1 = profile.p99(1)
        self.keys: list[float] = []
        self.bases: list[float] = []
        self.members: list[WorkerState | None] = []
        self._stats: dict[int, tuple[float, float, float]] = {}

    def stats(self, batch: int) -> tuple[float, float, float]:
        """``(mean, p99, p50)`` service ms of the profile at ``batch`` (cached)."""
        hit = self._stats.get(batch)
        if hit is None:
            p = self.profile
            hit = self._stats[batch] = (p.mean(batch), p.p99(batch), p.p50(batch))
        return hit

    def add(self, s: WorkerState) -> int:
        """Add a worker (key ``inf`` until it is settled); its position."""
        self.members.append(s)
        self.keys.append(INF)
        self.bases.append(INF)
        return len(self.keys) - 1

    def remove(self, pos: int) -> None:
        """Void a worker's position."""
        self.members[pos] = None
        self.keys[pos] = INF
        self.bases[pos] = INF

    def best(self) -> WorkerState | None:
        """The worker with the smallest finite key, or None."""
        keys = self.keys
        m = min(keys, default=INF)
        if m == INF:
            return None
        return self.members[keys.index(m)]

    def __len__(self) -> int:
        return sum(1 for s in self.members if s is not None)


def finite_or(value: float, default: float) -> float:
    """``value`` if finite else ``default`` (JSON-safe figures)."""
    return value if math.isfinite(value) else default
