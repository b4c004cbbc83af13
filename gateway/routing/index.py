"""Per (pool, model) index of workers by predicted completion, so a decision is O(pools).

Workers of one pool share an architecture, hence a profile: the best worker of a pool for a
model is the one whose next request would complete first, ``rtt + W + c * p50(1)`` (ms; see
:mod:`gateway.prediction.model`) read *at the decision*. A key is stored when a worker
changes (:meth:`PoolIndex.put`, O(1)) and must stay comparable while time passes without
events, so it is kept in one of two forms (``inf`` in the other; ``inf`` in both when the
worker is unavailable; removed workers leave an ``inf`` hole):

* *busy* (``keys``/``bases``): ``rtt + B + c * p50(1)`` with ``B`` the absolute time (ms, the
  router's clock) at which a request sent now could begin on the worker's slot that frees
  first, counting a slot whose latest request is unanswered as busy until that request's
  *99th-percentile* end (``FleetView._settle``). The index reads a ``B`` already past as
  now (:meth:`PoolIndex.best_pos`);
* *idle* (``ikeys``/``ibases``): ``rtt + c * p50(1)``, no clock, for a worker with a slot
  free and its last answer back: its wait is 0 whenever it is read. At a decision, the best
  idle key plus now is compared with the best busy one; an idle worker wins a tie.

Why not the wait as of each worker's last change (the keys before 2026-12-07, sixth stop):
two workers booked 5 ms apart both read ``rtt + one service`` until their answers come back,
so a worker about to free ranked with one just booked, and a worker with 12 ms left was taken
where five of its pool were free (scale-100006: 1,058 late of 15,338 batch-4 requests against
0 for the oracle; 0 now). Why the 99th percentile and not the mean end: a job that overran its
mean would read free while it still runs (on a pool with a 130 ms median and a 324 ms p99
that took the scale sweep's overload member from 1.9 to 8.2 % at k = 4). A slot past even its
99th-percentile end with no answer is *overdue*: :func:`gateway.routing.predict.pool_estimates`
pushes such a best worker back by one more mean service from now (``FleetView.overdue``)
before reading the next best, so a job that overran is never read as free.

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


def _update(keys: list[float], b: int, pos: int, key: float) -> int:
    """Set ``keys[pos] = key``; the cached first least position ``b`` after it (-1: rescan)."""
    if b == pos:
        if key > keys[pos]:
            b = -1
    elif b >= 0:
        kb = keys[b]
        if key < kb or (key == kb and pos < b):
            b = pos
    keys[pos] = key
    return b


def _best(keys: list[float], b: int) -> int:
    """The cached first least position ``b``, rescanned when void (-1 when empty)."""
    if b < 0:
        if not keys:
            return -1
        return _first_least(keys)
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
        "_ibest",
        "_ibest_base",
        "_stats",
        "arch",
        "bases",
        "ibases",
        "ikeys",
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
        self.ikeys: list[float] = []
        self.ibases: list[float] = []
        self._best = -1  # first position of the least key; -1: rescan
        self._best_base = -1  # the same for bases
        self._ibest = -1  # the same for the idle keys
        self._ibest_base = -1  # the same for the idle bases

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
        self.ikeys.append(INF)
        self.ibases.append(INF)
        return len(self.keys) - 1

    def remove(self, pos: int) -> None:
        """Void a worker's position."""
        self.members[pos] = None
        self.put(pos, INF, INF)

    def put(self, pos: int, key: float, base: float, idle: bool = False) -> None:
        """Set a worker's key and base (ms), keeping the cached best positions.

        ``idle``: the key is clockless (``rtt + c * p50``: a slot free and answered, so the
        wait is 0 whenever it is read) and goes to the idle arrays; else it is absolute
        (``rtt + begin + c * p50``, ``begin`` in ms of the router's clock). The other
        arrays get ``inf`` at ``pos``.
        """
        if idle:
            self._best = _update(self.keys, self._best, pos, INF)
            self._best_base = _update(self.bases, self._best_base, pos, INF)
            self._ibest = _update(self.ikeys, self._ibest, pos, key)
            self._ibest_base = _update(self.ibases, self._ibest_base, pos, base)
        else:
            self._ibest = _update(self.ikeys, self._ibest, pos, INF)
            self._ibest_base = _update(self.ibases, self._ibest_base, pos, INF)
            self._best = _update(self.keys, self._best, pos, key)
            self._best_base = _update(self.bases, self._best_base, pos, base)

    def best_pos(self, now_ms: float = 0.0) -> int:
        """Position of the least key at ``now_ms``, ``-1`` when no key is finite.

        An idle key reads ``key + now_ms``; the best busy key reads with its begin no
        earlier than ``now_ms``; an idle worker wins a tie.
        """
        p = _best(self.keys, self._best)
        self._best = p
        i = _best(self.ikeys, self._ibest)
        self._ibest = i
        return self._pick(p, i, self.keys, self.ikeys, now_ms)

    def best_base_pos(self, now_ms: float = 0.0) -> int:
        """:meth:`best_pos` for the bases."""
        p = _best(self.bases, self._best_base)
        self._best_base = p
        i = _best(self.ibases, self._ibest_base)
        self._ibest_base = i
        return self._pick(p, i, self.bases, self.ibases, now_ms)

    def _pick(self, p: int, i: int, keys: list[float], ikeys: list[float], now_ms: float) -> int:
        pk = INF if p < 0 else keys[p]
        ik = INF if i < 0 else ikeys[i]
        if ik == INF:
            return -1 if pk == INF else p
        if pk == INF:
            return i
        s = self.members[p]
        lo = now_ms if s is None else s.rtt_ms + now_ms  # a begin no earlier than now
        base = self.bases[p]
        if base < lo:
            pk += lo - base
        return i if ik + now_ms <= pk else p

    def best(self, now_ms: float = 0.0) -> WorkerState | None:
        """The worker with the smallest finite key at ``now_ms``, or None."""
        b = self.best_pos(now_ms)
        return None if b < 0 else self.members[b]

    def available(self) -> int:
        """How many workers are available now (a finite key: healthy and not ejected)."""
        ik = self.ikeys
        return sum(1 for i, k in enumerate(self.keys) if k != INF or ik[i] != INF)

    def __len__(self) -> int:
        return sum(1 for s in self.members if s is not None)


def finite_or(value: float, default: float) -> float:
    """``value`` if finite else ``default`` (JSON-safe figures)."""
    return value if math.isfinite(value) else default
