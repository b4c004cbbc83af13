"""Per (pool, model) index of workers by predicted completion, so a decision is O(pools).

Workers of one pool share an architecture, hence a profile: the best worker of a pool for a
model is the one with the smallest key ``rtt + W + c * p50(1)`` (ms; see
:mod:`gateway.prediction.model`). A lazy-deletion binary heap keeps it at the top: every
change of a worker pushes a fresh entry and voids the old one, voided and unavailable
entries are dropped when they surface. Updates cost ``O(log n)`` per model of the worker, a
query ``O(1)`` amortised (DESIGN.md §10).
"""

from __future__ import annotations

import heapq
import itertools
import math

from gateway.prediction.profiles import Profile
from gateway.routing.state import WorkerState

__all__ = ["PoolIndex"]


class PoolIndex:
    """Workers of one pool (one arch) that serve one model, ordered by predicted completion.

    Attributes:
        pool: pool name.
        arch: the pool's architecture.
        model: the model.
        profile: the arch's profile for the model.
    """

    __slots__ = ("_heap", "_seq", "arch", "members", "model", "pool", "profile")

    def __init__(self, pool: str, arch: str, model: str, profile: Profile) -> None:
        self.pool = pool
        self.arch = arch
        self.model = model
        self.profile = profile
        self.members: dict[str, WorkerState] = {}
        self._heap: list[list[object]] = []
        self._seq = itertools.count()

    def key(self, s: WorkerState, now: float) -> float:
        """Predicted completion (ms) of a batch-1 request of this model on ``s``."""
        return s.rtt_ms + s.wait_ms() + s.correction(self.model, now) * self.profile.p50(1)

    def update(self, s: WorkerState, now: float) -> None:
        """Re-key ``s`` (void its old entry; push a new one if it is available)."""
        old = s.entries.get(self.model)
        if old is not None:
            old[2] = None
        if s.available(now) and s.id in self.members:
            entry: list[object] = [self.key(s, now), next(self._seq), s]
            s.entries[self.model] = entry
            heapq.heappush(self._heap, entry)
            if len(self._heap) > 4 * len(self.members) + 64:
                self._compact()
        else:
            s.entries.pop(self.model, None)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2] is not None]
        heapq.heapify(self._heap)

    def best(self, now: float) -> WorkerState | None:
        """The available worker with the smallest key, or None."""
        heap = self._heap
        while heap:
            top = heap[0]
            s = top[2]
            if s is not None:
                assert isinstance(s, WorkerState)
                if s.available(now):
                    return s
                top[2] = None
                s.entries.pop(self.model, None)
            heapq.heappop(heap)
        return None

    def add(self, s: WorkerState, now: float) -> None:
        """Add a worker to the index."""
        self.members[s.id] = s
        self.update(s, now)

    def remove(self, s: WorkerState) -> None:
        """Drop a worker from the index."""
        self.members.pop(s.id, None)
        old = s.entries.pop(self.model, None)
        if old is not None:
            old[2] = None

    def __len__(self) -> int:
        return len(self.members)


def finite_or(value: float, default: float) -> float:
    """``value`` if finite else ``default`` (JSON-safe figures)."""
    return value if math.isfinite(value) else default
