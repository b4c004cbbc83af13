"""Per (pool, model) index of workers by predicted completion, so a decision is O(pools).

Workers of one pool share an architecture, hence a profile: the best worker of a pool for a
model is the one with the smallest key ``rtt + W + c * p50(1)`` (ms; see
:mod:`gateway.prediction.model`), ``inf`` when it is unavailable. Keys live in a flat list
updated in place on every change of a worker (:meth:`PoolIndex.put`, O(1)). Removed workers
leave an ``inf`` hole.

The best position (the *first* least key, as ``keys.index(min(keys))``) is cached and kept
by :meth:`PoolIndex.put` without a scan: a key that drops below the best (or ties it at an
earlier position) becomes the best; only when the best's own key rises is the cache voided,
and the next :meth:`PoolIndex.best_pos` rescans (:func:`_first_least`). A decision's start
raises its worker's key, so about one pool per decision is rescanned (0.94 a request on
fleet-200, 35 keys each) instead of every pool serving the model (DESIGN.md §10).
"""

from __future__ import annotations

import math
from typing import Final

from gateway.prediction.profiles import Profile
from gateway.routing.state import WorkerState

__all__ = ["PoolIndex"]

INF: Final = math.inf
_COMPILED: Final = not __file__.endswith(".py")
"""This module runs compiled (:mod:`gateway.native`): a plain loop beats ``min`` + ``index``."""


def _first_least(keys: list[float]) -> int:
    """``keys.index(min(keys))`` (``keys`` not empty): the first position of the least key.

    Compiled, one pass over C doubles (about 3 ns a key); interpreted, the two C-level
    builtins (a Python loop would cost ten times that). Same answer, NaN and ties included:
    ``min`` keeps its current item unless a later one is strictly less, as the loop does.
    """
    if not _COMPILED:
        return keys.index(min(keys))
    b = 0
    m = keys[0]
    for i in range(1, len(keys)):
        k = keys[i]
        if k < m:
            m = k
            b = i
    return b


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
        mean_1: the profile's batch-1 mean (ms).
    """

    __slots__ = (
        "_best",
        "_best_base",
        "_stats",
        "arch",
        "bases",
        "keys",
        "max_batch",
        "mean_1",
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
        self.mean_1 = profile.mean(1)
        self.keys: list[float] = []
        self.bases: list[float] = []
        self.members: list[WorkerState | None] = []
        self._stats: dict[int, tuple[float, float, float]] = {}
        self._best = -1  # first position of the least key; -1: rescan
        self._best_base = -1  # the same for bases

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
        self.keys.append(INF)  # after every position: the first least key is unchanged
        self.bases.append(INF)
        return len(self.keys) - 1

    def remove(self, pos: int) -> None:
        """Void a worker's position."""
        self.members[pos] = None
        self.put(pos, INF, INF)

    def put(self, pos: int, key: float, base: float) -> None:
        """Set a worker's key and base (ms), keeping the cached best positions."""
        keys = self.keys
        b = self._best
        if b == pos:
            if key > keys[pos]:
                self._best = -1
        elif b >= 0:
            kb = keys[b]
            if key < kb or (key == kb and pos < b):
                self._best = pos
        keys[pos] = key
        bases = self.bases
        b = self._best_base
        if b == pos:
            if base > bases[pos]:
                self._best_base = -1
        elif b >= 0:
            kb = bases[b]
            if base < kb or (base == kb and pos < b):
                self._best_base = pos
        bases[pos] = base

    def best_pos(self) -> int:
        """Position of the first least key, ``-1`` when no key is finite."""
        keys = self.keys
        b = self._best
        if b < 0:
            if not keys:
                return -1
            b = self._best = _first_least(keys)
        return b if keys[b] != INF else -1

    def best_base_pos(self) -> int:
        """Position of the first least base, ``-1`` when no base is finite."""
        bases = self.bases
        b = self._best_base
        if b < 0:
            if not bases:
                return -1
            b = self._best_base = _first_least(bases)
        return b if bases[b] != INF else -1

    def best(self) -> WorkerState | None:
        """The worker with the smallest finite key, or None."""
        b = self.best_pos()
        return None if b < 0 else self.members[b]

    def available(self) -> int:
        """How many workers are available now (a finite key: healthy and not ejected)."""
        return sum(1 for k in self.keys if k != INF)

    def __len__(self) -> int:
        return sum(1 for s in self.members if s is not None)


def finite_or(value: float, default: float) -> float:
    """``value`` if finite else ``default`` (JSON-safe figures)."""
    return value if math.isfinite(value) else default
