"""The simulated fleet: true speed, crash windows and instance slots of each worker.

A server is FIFO with ``instances`` slots shared by all its models (DESIGN.md §4): a request
that reaches it at ``a`` starts at ``max(a, earliest free slot)`` and holds that slot for its
true service time, so no start event is needed (DESIGN.md §10). A crash at ``tc`` (down until
``tr``) fails every request that would still be on the server at ``tc`` and refuses those that
arrive while it is down; the restarted server's slots are free at ``tr``.

:class:`SimTruth` is the simulator's knowledge exposed to the ``oracle`` policy only: the true
completion of the request being routed on any worker. The gateway never has one.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field

from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import Request, WorkerInfo
from gateway.scenario import Scenario

__all__ = ["SimTruth", "SimWorker", "build_fleet"]

_NO_CRASH = (math.inf, math.inf)


@dataclass(slots=True)
class SimWorker:
    """One simulated Triton server (mutable: its slots move as requests are placed).

    ``next_tc``/``next_tr``: start and end (s) of the current or next crash window (``inf``:
    none); the engine calls :meth:`advance` only once ``next_tr`` has passed.
    """

    info: WorkerInfo
    rtt_s: float
    speed_t: list[float]
    speed_f: list[float]
    crashes: list[tuple[float, float]]
    slots: list[float]
    crash_i: int = 0
    group: int = 0
    lognormal: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    next_tc: float = math.inf
    next_tr: float = math.inf
    rtt_half_ms: float = 0.0

    def __post_init__(self) -> None:
        self.rtt_half_ms = self.info.rtt_ms * 0.5
        self._window()

    def _window(self) -> None:
        cr = self.crashes
        self.next_tc, self.next_tr = cr[self.crash_i] if self.crash_i < len(cr) else _NO_CRASH

    def speed(self, t: float) -> float:
        """True slowness factor at ``t`` (s)."""
        return self.speed_f[bisect.bisect_right(self.speed_t, t) - 1]

    def advance(self, a: float) -> tuple[float, float]:
        """Apply the restarts of crashes that ended by ``a``; the next/current crash window."""
        cr = self.crashes
        while self.crash_i < len(cr) and cr[self.crash_i][1] <= a:
            tc, tr = cr[self.crash_i]
            self.slots = [tr if x > tc else x for x in self.slots]
            heapq.heapify(self.slots)
            self.crash_i += 1
        self._window()
        return self.next_tc, self.next_tr

    def service_s(self, model: str, batch: int, z: float, start: float) -> float:
        """True service time (s) of a request with quantile ``z`` starting at ``start``."""
        mu, sigma = self.lognormal[(model, batch)]
        return math.exp(mu + sigma * z) * self.speed(start) / 1000.0


def _speed_steps(sc: Scenario, pool_i: int, worker_i: int) -> tuple[list[float], list[float]]:
    pool = sc.pools[pool_i]
    cuts = {0.0}
    if isinstance(pool.speed, list):
        cuts |= {s.at_s for s in pool.speed}
    slow = [
        f
        for f in sc.faults
        if f.kind == "slowdown" and f.pool == pool.name and f.worker in (None, worker_i)
    ]
    for f in slow:
        cuts |= {f.at_s, f.at_s + (f.for_s or math.inf)}
    ts = sorted(c for c in cuts if math.isfinite(c))
    fs = []
    for t in ts:
        k = pool.speed_at(t)
        for f in slow:
            if f.at_s <= t < f.at_s + (f.for_s or math.inf):
                k *= f.factor or 1.0
        fs.append(k)
    return ts, fs


def build_fleet(sc: Scenario) -> list[SimWorker]:
    """One :class:`SimWorker` per server of a (scaled) scenario, ids ``<pool>-<i>``."""
    out = []
    book = sc.profile_book
    for pi, pool in enumerate(sc.pools):
        for wi, wid in enumerate(pool.worker_ids()):
            info = WorkerInfo(
                wid, pool.name, pool.arch, tuple(pool.models), pool.instances, pool.rtt_ms or 0.0
            )
            st, sf = _speed_steps(sc, pi, wi)
            crashes = sorted(
                (f.at_s, f.at_s + (f.for_s or math.inf))
                for f in sc.faults
                if f.kind == "crash" and f.pool == pool.name and f.worker in (None, wi)
            )
            w = SimWorker(info, info.rtt_ms / 1000.0, st, sf, crashes, [0.0] * pool.instances)
            w.group = pi
            _fill_lognormal(w, book, sc)
            out.append(w)
    return out


def _fill_lognormal(w: SimWorker, book: ProfileBook, sc: Scenario) -> None:
    for wl in sc.workload:
        p = book.get(w.info.arch, wl.model)
        if p is not None and wl.model in w.info.models and p.supports(wl.batch):
            w.lognormal[(wl.model, wl.batch)] = p.lognormal(wl.batch)


class SimTruth:
    """Ground truth for the oracle: true completion (ms at the client) of the current request.

    ``z``, ``oh_s`` (its live-path fixed cost, s, spent like the rtt) and ``dv_s`` (its extra
    time on the slot, s) are the current request's; the engine sets them before each decision.
    """

    def __init__(self, fleet: list[SimWorker]) -> None:
        self.by_id = {w.info.id: w for w in fleet}
        self.z = 0.0
        self.oh_s = 0.0
        self.dv_s = 0.0
        self._serving: dict[tuple[str, int], list[SimWorker]] = {}

    def completion_ms(self, worker: str, req: Request, now: float) -> float:
        """True client latency of ``req`` on ``worker`` sent at ``now`` (inf if it would fail)."""
        w = self.by_id[worker]
        if (req.model, req.batch) not in w.lognormal:
            return math.inf
        half = (w.rtt_s + self.oh_s) / 2.0
        a = now + half
        tc, _ = w.advance(a)
        if tc <= a:
            return math.inf
        start = max(a, w.slots[0])
        end = start + w.service_s(req.model, req.batch, self.z, start) + self.dv_s
        if end > tc:
            return math.inf
        return (end - now) * 1000.0 + w.info.rtt_ms / 2.0 + self.oh_s * 500.0

    def best(self, req: Request, now: float) -> tuple[str | None, float]:
        """The worker that truly answers ``req`` first, and that latency (ms); (None, inf)."""
        key = (req.model, req.batch)
        ws = self._serving.get(key)
        if ws is None:
            ws = self._serving[key] = [w for w in self.by_id.values() if key in w.lognormal]
        best: str | None = None
        best_end = math.inf
        z = self.z
        oh = self.oh_s
        dv = self.dv_s
        for w in ws:
            h = (w.rtt_s + oh) * 0.5
            a = now + h
            tc = w.crashes[w.crash_i][0] if w.crash_i < len(w.crashes) else math.inf
            if tc <= a or (w.crash_i < len(w.crashes) and w.crashes[w.crash_i][1] <= a):
                tc, _ = w.advance(a)
                if tc <= a:
                    continue
            s0 = w.slots[0]
            start = a if a > s0 else s0
            if start + h >= best_end:
                continue
            end = start + w.service_s(req.model, req.batch, z, start) + dv
            if end > tc:
                continue
            end += h
            if end < best_end:
                best, best_end = w.info.id, end
        return best, (best_end - now) * 1000.0 if best is not None else math.inf
