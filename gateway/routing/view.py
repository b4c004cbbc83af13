"""The fleet as routing sees it: local in-flight state combined with the shared (Redis) view.

Who calls what (the runner is the gateway or the simulator; policies only read):

* ``start(worker, req, service_ms, now)`` when a request is sent; ``finish(...)`` when it
  ends with the latency measured at the client (rtt included) or ``None`` if it failed. Pass
  the same :class:`Request` object to both: the view remembers what it predicted at dispatch
  and folds the outcome into the online correction (:mod:`gateway.prediction.model`).
  ``abandon(...)`` instead when the end says nothing about the worker (the worker refused a
  malformed request, the client gave up: :func:`gateway.core.calls.outcome_of`): only the
  in-flight accounting moves, never health, latency or correction.
* ``apply_shared(worker, outstanding, work_ms, observed_at, free_ms)``: fleet-wide figures
  (every gateway's requests, this one's included). From then on the worker's load is
  ``shared + (local starts - local finishes since that call)``. ``free_ms`` is the shared
  shadow queue (per slot, ms until it frees, as of ``observed_at``): the one queue all
  replicas book on (:mod:`gateway.state.redis_store`); local starts since the call are booked
  on this router's copy too, and the wait is the later of the shared and the local queue's.
  When the figures are older than ``stale_after_s`` the worker falls back to this router's
  local view (its own in-flight); :meth:`FleetView.stale` and ``rows()`` say so.
* ``advance(now)`` before each decision: time-driven changes (ejections ending, shared figures
  going stale) are applied every ``REFRESH_S``.
* ``set_healthy(worker, healthy, now)`` from health probes. A failed request also ejects the
  worker for ``eject_s`` seconds (outlier detection); the next success clears the count.

Queries for policies: :meth:`FleetView.eligible` (every worker that can serve a model at a
batch size) and :meth:`FleetView.indexes` (per pool, a :class:`gateway.routing.index.PoolIndex`
whose best worker is O(1): :func:`gateway.routing.predict.pool_estimates`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, Protocol

from gateway.prediction.model import Correction, PredictorConfig, shadow_wait_ms
from gateway.prediction.profiles import Profile, ProfileBook
from gateway.routing.index import PoolIndex, finite_or
from gateway.routing.state import WorkerState
from gateway.routing.types import Request, WorkerInfo

__all__ = ["FleetView", "Truth", "WorkerState"]

Memo = tuple[float, float, float, int, float, float]
"""What :meth:`FleetView.start_state` remembers of a request for its finish: ``(ln c0, predicted
wait ms, c0 * p50 ms, slot, predicted end - slot shift s, sent s)``."""

# Final: compiled (gateway.native), module constants are C statics, not dictionary lookups;
# math.exp/isinf/isnan are called on the module so that mypyc emits the C functions.
_INF: Final = math.inf
_NEG_INF: Final = -math.inf

REFRESH_S: Final = 0.25
"""How often (router seconds) time-driven changes are re-checked: ejections ending, shared
figures going stale."""
_EPS_MS: Final = 0.005
"""A shared wait beyond the local one by less than this (ms) is the store's rounding (integer µs
on both ends of a slot), not other routers' work."""
_MISATTRIBUTED: Final = 0.25
"""A chain estimate of the service below this fraction of the reference (what the clip would
read as "4x faster") is taken as a slot misattribution, not as speed: on a multi-instance
server the real FIFO may have run the request on another slot than its shadow chain. The
sample then falls back to ``residence - predicted wait`` with weight ``ref / (ref + wait)``
(the share of the residence that is service: its information about speed)."""


class Truth(Protocol):
    """What only a simulator knows (for the ``oracle`` policy); the gateway never has one."""

    def completion_ms(self, worker: str, req: Request, now: float) -> float:
        """True client latency (ms) ``req`` would see on ``worker`` if sent at ``now``."""

    def best(self, req: Request, now: float) -> tuple[str | None, float]:
        """The worker that truly answers ``req`` first and its latency (ms), or (None, inf)."""


_NO_SPREAD: Final[dict[int, float]] = {}


def _answered(s: WorkerState, i: int, end: float) -> None:
    """A request predicted to end at ``end`` (s) on slot ``i`` was answered: if it was the
    last of the slot's queue, nothing on the slot is unanswered any more (index keys).
    """
    if s.free[i] - end < 1e-9:
        s.tail[i] = 0.0


class FleetView:
    """The fleet as routing sees it; see the module docstring."""

    def __init__(
        self,
        workers: Sequence[WorkerInfo],
        profiles: ProfileBook,
        *,
        stale_after_s: float = 2.0,
        eject_s: float = 1.0,
        predictor: PredictorConfig | None = None,
        release_lag_ms: float = 1.0,
    ) -> None:
        self.book = profiles
        self.release_lag_ms = release_lag_ms
        self.stale_after_s = stale_after_s
        self.eject_s = eject_s
        self.cfg = predictor or PredictorConfig()
        self.truth: Truth | None = None
        self._states: dict[str, WorkerState] = {}
        self._order: list[WorkerState] = []
        self._indexes: dict[str, dict[tuple[str, str], PoolIndex]] = {}
        self._eligible: dict[tuple[str, int], tuple[WorkerState, ...]] = {}
        self._index_lists: dict[str, tuple[PoolIndex, ...]] = {}
        self._inflight: dict[int, Memo] = {}
        self._ejected: list[WorkerState] = []
        self._newest_shared = -math.inf
        self._next_refresh = -math.inf
        self._next_idx = 0
        self._pool_corr: dict[tuple[str, str, str], Correction] = {}
        """Per (pool, architecture, model): the pool's online correction (its workers join it)."""
        for info in workers:
            self.add_worker(info)

    def reset(self) -> None:
        """A fresh view of the same workers and settings: nothing learned, nothing booked.

        Every worker comes back healthy (its owner re-applies health:
        :meth:`gateway.fleet.Fleet.sync_view`). Call it only with nothing in flight.
        """
        truth = self.truth
        FleetView.__init__(
            self,
            self.workers(),
            self.book,
            stale_after_s=self.stale_after_s,
            eject_s=self.eject_s,
            predictor=self.cfg,
            release_lag_ms=self.release_lag_ms,
        )
        self.truth = truth

    # discovery -----------------------------------------------------------------------------
    def add_worker(self, info: WorkerInfo) -> None:
        """Add (or replace) a worker; models without a profile on its arch are ignored."""
        if info.id in self._states:
            self.remove_worker(info.id)
        profs: dict[str, Profile] = {}
        for m in info.models:
            p = self.book.get(info.arch, m)
            if p is not None:
                profs[m] = p
        s = WorkerState(self._next_idx, info, profs, self.cfg)
        self._next_idx += 1
        for m, c in s.corrections.items():  # gateway.prediction.model, "Pooling"
            pk = (info.pool, info.arch, m)
            pc = self._pool_corr.get(pk)
            if pc is None:
                pc = self._pool_corr[pk] = Correction(self.cfg, profs[m].lognormal(1)[1])
            c.join(pc)
        self._states[info.id] = s
        self._order.append(s)
        for m, p in profs.items():
            by_pool = self._indexes.setdefault(m, {})
            key = (info.pool, info.arch)
            idx = by_pool.get(key)
            if idx is None:
                idx = by_pool[key] = PoolIndex(info.pool, info.arch, m, p)
            s.slots.append((idx, idx.add(s), m))
        self._eligible.clear()
        self._index_lists.clear()
        self._settle(s, -math.inf)

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker (its in-flight requests are dropped from the books)."""
        s = self._states.pop(worker_id, None)
        if s is None:
            return
        self._order.remove(s)
        for c in s.corrections.values():
            c.leave()
        for idx, pos, m in s.slots:
            idx.remove(pos)
            by_pool = self._indexes.get(m, {})
            if not len(idx):
                by_pool.pop((idx.pool, idx.arch), None)
            if not by_pool:
                self._indexes.pop(m, None)
        s.slots = []
        self._eligible.clear()
        self._index_lists.clear()

    # queries ---------------------------------------------------------------------------
    def workers(self) -> Sequence[WorkerInfo]:
        """Every worker known to the view."""
        return [s.info for s in self._order]

    def states(self) -> Sequence[WorkerState]:
        """Every worker's live state, in insertion order."""
        return self._order

    def state(self, worker_id: str) -> WorkerState:
        """The live state of one worker (KeyError if unknown)."""
        return self._states[worker_id]

    def serves(self, model: str) -> bool:
        """Whether some worker has a profile for ``model``."""
        return model in self._indexes

    def eligible(self, model: str, batch: int = 1) -> tuple[WorkerState, ...]:
        """Workers with a profile for ``model`` that accepts ``batch`` (health not checked)."""
        key = (model, batch)
        hit = self._eligible.get(key)
        if hit is None:
            hit = tuple(
                s for s in self._order if (p := s.profiles.get(model)) and p.supports(batch)
            )
            self._eligible[key] = hit
        return hit

    def indexes(self, model: str) -> tuple[PoolIndex, ...]:
        """The per-pool indexes of ``model`` (empty if no worker serves it)."""
        hit = self._index_lists.get(model)
        if hit is None:
            by_pool = self._indexes.get(model)
            hit = () if by_pool is None else tuple(by_pool.values())
            self._index_lists[model] = hit
        return hit

    def stale(self, now: float) -> bool:
        """Shared figures were seen once but none is fresher than ``stale_after_s``."""
        return self._newest_shared > -math.inf and now - self._newest_shared > self.stale_after_s

    def service_ms(self, s: WorkerState, model: str, batch: int, now: float) -> float:
        """Corrected mean service time (ms) of ``model`` at ``batch`` on ``s`` (nan if none)."""
        p = s.profiles.get(model)
        return math.nan if p is None else s.correction(model, now) * p.mean(batch)

    # runner events -------------------------------------------------------------------
    def start(self, worker: str, req: Request, service_ms: float, now: float) -> None:
        """A request was sent to ``worker``."""
        s = self._states.get(worker)
        if s is None:
            return
        memo = self.start_state(s, req.model, req.batch, service_ms, now)
        if memo is not None:
            self._inflight[id(req)] = memo

    def start_state(
        self, s: WorkerState, model: str, batch: int, service_ms: float, now: float
    ) -> Memo | None:
        """:meth:`start` for a runner that holds the worker's state and keeps the memo itself.

        The simulator's fast path: no id lookup, no per-request dictionary entry. Returns what
        :meth:`finish_state` needs to fold the outcome into the correction (None when the
        worker has no profile for ``model``).
        """
        if math.isinf(service_ms) or math.isnan(service_ms):
            service_ms = self.service_ms(s, model, batch, now)
            service_ms = 0.0 if service_ms != service_ms else service_ms
        free = s.free
        i = 0 if len(free) == 1 else free.index(min(free))
        arrive = now + s.rtt_ms / 2000.0
        begin = arrive if arrive > free[i] else free[i]
        end = begin + service_ms / 1000.0
        free[i] = end
        spread = s.spread.get(model, _NO_SPREAD).get(batch)
        if spread is None:
            spread = self._spread(s, model, batch)
        s.tail[i] = service_ms * spread / 1000.0  # its p99 end beyond its mean end (s)
        s.hold[i] = service_ms / 1000.0
        p50 = s.p50_1.get(model)
        memo = None
        if p50 is not None:
            if batch != 1:
                p50 = s.profiles[model].p50(batch)
            g0 = s.corrections[model].log_factor(now)
            svc = math.exp(g0) * p50
            wait = (begin - arrive) * 1000.0 + s.others_ms
            memo = (g0, wait, svc, i, end - s.shift[i], now)
        sf = s.sfree
        if sf:  # the shared queue: book it here too until the store's next figures
            j = 0 if len(sf) == 1 else sf.index(min(sf))
            sb = arrive if arrive > sf[j] else sf[j]
            sf[j] = sb + service_ms / 1000.0
        s.local_out += 1
        s.local_work_ms += service_ms
        s.d_out += 1
        s.d_work += service_ms
        self._settle(s, now)
        return memo

    def _spread(self, s: WorkerState, model: str, batch: int) -> float:
        """``p99 / mean - 1`` of ``model`` at ``batch`` on ``s`` (0 without a profile),
        cached on the state: a request's p99 end lies ``spread * service`` past its mean end.
        """
        prof = s.profiles.get(model)
        mean = 0.0 if prof is None else prof.mean(batch)
        spread = prof.p99(batch) / mean - 1.0 if prof is not None and mean > 0.0 else 0.0
        spread = spread if spread > 0.0 else 0.0
        by_batch = s.spread.setdefault(model, {}) if model in s.profiles else {}
        if len(by_batch) < 256:  # bounded: a profile's batch sizes
            by_batch[batch] = spread
        return spread

    def finish(
        self, worker: str, req: Request, service_ms: float, latency_ms: float | None, now: float
    ) -> None:
        """A request sent to ``worker`` ended (``latency_ms`` None: it failed)."""
        memo = self._inflight.pop(id(req), None)
        s = self._states.get(worker)
        if s is None:
            return
        self.finish_state(s, req.model, memo, service_ms, latency_ms, now)

    def abandon(self, worker: str, req: Request, service_ms: float, now: float) -> None:
        """A request sent to ``worker`` ended without news of the worker (its 4xx, a cancel).

        Its in-flight work is taken off; health, peak EWMA and the online correction stay as
        they are. A request still last on its slot's shadow queue hands the slot back from
        when it would have begun (the worker did not run it).
        """
        memo = self._inflight.pop(id(req), None)
        s = self._states.get(worker)
        if s is None:
            return
        self.finish_state(s, req.model, memo, service_ms, None, now, learn=False)

    def finish_state(
        self,
        s: WorkerState,
        model: str,
        memo: Memo | None,
        service_ms: float,
        latency_ms: float | None,
        now: float,
        learn: bool = True,
    ) -> None:
        """:meth:`finish` with the state and the memo :meth:`start_state` returned.

        ``learn`` false is :meth:`abandon`.
        """
        if math.isinf(service_ms) or math.isnan(service_ms):
            service_ms = 0.0
        out = s.local_out - 1
        s.local_out = out = out if out > 0 else 0
        if out:
            work = s.local_work_ms - service_ms
            s.local_work_ms = work if work > 0.0 else 0.0
        else:
            s.local_work_ms = 0.0
        s.d_out -= 1
        s.d_work -= service_ms
        if not learn:
            if memo is not None and memo[3] < len(s.free):
                i = memo[3]
                end = memo[4] + s.shift[i]
                if abs(s.free[i] - end) < 1e-9:  # still the last of its slot's queue
                    begin = end - service_ms / 1000.0
                    s.free[i] = begin if begin > now else now
                    s.tail[i] = 0.0
        elif latency_ms is None:
            if memo is not None and memo[3] < len(s.free):
                _answered(s, memo[3], memo[4] + s.shift[memo[3]])
            s.fails += 1
            s.ejected_until = now + self.eject_s
            self._ejected.append(s)
            self._next_refresh = min(self._next_refresh, s.ejected_until)
        else:
            s.fails = 0
            s.observe_latency(latency_ms, now)
            corr = s.corrections.get(model)
            if memo is not None and corr is not None:
                g0, wait0, ref, i, p_end, sent = memo
                true_end = sent + (latency_ms - s.rtt_ms * 0.5) / 1000.0
                resid = latency_ms - s.rtt_ms  # time on the server: wait + service
                actual = -1.0
                free = s.free
                if i < len(free):
                    p_end += s.shift[i]  # its predicted end, after earlier re-anchorings
                    if free[i] >= p_end:  # still its chain: move the chain by its error
                        _answered(s, i, p_end)
                        err = true_end - p_end
                        actual = service_ms + err * 1000.0
                        actual = actual if actual < resid else resid  # service <= residence
                        f = free[i] + err
                        f = f if f > true_end else true_end
                        s.shift[i] += f - free[i]
                        free[i] = f
                weight = 1.0
                if actual < ref * _MISATTRIBUTED:  # no chain, or another slot's error
                    actual = resid - wait0
                    weight = ref / (ref + (wait0 if wait0 > 0.0 else 0.0))
                corr.observe(now, actual, ref, g0, weight)
                s.cfac[model] = math.exp(corr.g)
        self._settle(s, now)

    def apply_shared(
        self,
        worker: str,
        outstanding: int,
        work_ms: float,
        observed_at: float,
        free_ms: Sequence[float] = (),
    ) -> None:
        """Fleet-wide figures for ``worker`` as of ``observed_at`` (this router's included).

        ``free_ms``: the shared shadow queue, per slot the time (ms) until it frees as of
        ``observed_at`` (relative: no other clock meets this router's); empty: none.
        """
        s = self._states.get(worker)
        if s is None or observed_at < s.shared_at:
            return
        if free_ms:  # a snapshot lists only the slots ever booked: the others are free
            sf = [observed_at + f / 1000.0 for f in free_ms[: s.instances]]
            s.sfree = sf + [observed_at] * (s.instances - len(sf))
        s.shared_out = float(outstanding)
        s.shared_work = float(work_ms)
        s.shared_at = observed_at
        s.d_out = 0.0
        s.d_work = 0.0
        self._newest_shared = max(self._newest_shared, observed_at)
        self._settle(s, observed_at)

    def set_healthy(self, worker: str, healthy: bool, now: float) -> None:
        """Health from probes; an unhealthy worker gets no traffic."""
        s = self._states.get(worker)
        if s is None:
            return
        s.probe_healthy = healthy
        if healthy:
            s.ejected_until = -math.inf
            s.fails = 0
        self._settle(s, now)

    def advance(self, now: float) -> None:
        """Bring the view to ``now`` before a decision: :meth:`refresh` when one is due.

        The runner (gateway, simulator) calls it; policies only read the view.
        """
        if now >= self._next_refresh:
            self.refresh(now)

    def refresh(self, now: float) -> None:
        """Apply time-driven changes: ejections that ended, shared figures gone stale."""
        self._next_refresh = now + REFRESH_S
        if self._ejected:
            still = []
            for s in self._ejected:
                if s.ejected_until <= now:
                    self._settle(s, now)
                else:
                    still.append(s)
            self._ejected = still
        if self._newest_shared > -math.inf:
            for s in self._order:
                stale = s.shared_at > -math.inf and now - s.shared_at > self.stale_after_s
                if stale and s.out != s.local_out:
                    self._settle(s, now)

    def _settle(self, s: WorkerState, now: float) -> None:
        """Recompute the load used for routing and re-key the worker in its indexes."""
        half = s.rtt_ms * 0.5
        wait = shadow_wait_ms(s.free, now, s.rtt_ms)
        shared_at = s.shared_at
        if shared_at != _NEG_INF and now - shared_at <= self.stale_after_s:
            out = s.shared_out + s.d_out
            s.out = out if out > s.local_out else float(s.local_out)
            work = s.shared_work + s.d_work
            s.work_ms = work if work > s.local_work_ms else s.local_work_ms
            s.others_ms = self._others_wait(s, wait, half, now) if s.sfree else 0.0
        else:
            s.out = float(s.local_out)
            s.work_ms = s.local_work_ms
            s.others_ms = 0.0
        wait += s.others_ms
        s.wait = wait
        if s.probe_healthy and s.ejected_until <= now:
            # absolute keys (ms): when a request sent now could begin on the slot that is
            # free first with 99 % probability, the time base the index compares across
            # workers settled at different times
            free, tail = s.free, s.tail
            f = _INF
            due = _INF
            idle = False
            for k in range(len(free)):
                t = tail[k]
                if t > 0.0:  # its last request unanswered: free by its p99 end
                    x = free[k] + t
                    if x < f:
                        f = due = x
                elif free[k] > now:
                    if free[k] < f:
                        f = free[k]
                        due = _INF
                else:  # answered and free now
                    idle = True
                    break
            cfac = s.cfac
            rtt = s.rtt_ms
            if idle and s.others_ms <= 0.0:  # clockless: its wait is 0 whenever it is read
                s.due = _INF
                for idx, pos, m in s.slots:
                    idx.put(pos, rtt + cfac[m] * idx.p50_1, rtt, True)
            else:
                s.due = _INF if idle else due
                b = f * 1000.0 - half  # the index reads a begin before now as now
                if s.others_ms > 0.0:  # relative to now: from the begin now at the earliest
                    t0 = now * 1000.0
                    b = (t0 if idle or b < t0 else b) + s.others_ms
                base = rtt + b
                for idx, pos, m in s.slots:
                    idx.put(pos, base + cfac[m] * idx.p50_1, base)
        else:
            for idx, pos, _ in s.slots:
                idx.put(pos, _INF, _INF)

    def overdue(self, s: WorkerState, now: float) -> None:
        """Push the key of a worker whose slot that keys it is overdue: its last request is
        unanswered past its p99 end. The slot reads busy for one more of that request's
        mean service from ``now`` (the chain itself is untouched: a completion re-anchors it).
        """
        free, tail, hold = s.free, s.tail, s.hold
        for k in range(len(free)):
            if tail[k] > 0.0 and free[k] + tail[k] <= now:
                h = hold[k]
                tail[k] = now + h - free[k] if h > 0.0 else 0.0  # no service: read it free
        self._settle(s, now)

    def _others_wait(self, s: WorkerState, wait: float, half: float, now: float) -> float:
        """Extra wait (ms) the shared shadow queue shows beyond this router's own (>= 0).

        The shared queue (``s.sfree``) is what a single router would hold: every replica's
        requests booked on the slot that frees first and re-anchored on their true ends by the
        release script, plus this router's starts since the store's last figures. Its wait for
        a request sent now is ``min(sfree) - (now + rtt/2)``; the local chain (``wait``) holds
        only this router's requests but re-anchors them at once, while the shared one does so
        a release later, so the later of the two is taken. It replaces the φ/ψ approximation
        from lease counts, which could not know which leases were still ahead.
        """
        sf = s.sfree
        shared = ((sf[0] if len(sf) == 1 else min(sf)) - now) * 1000.0 - half
        extra = shared - wait
        return extra if extra > _EPS_MS else 0.0

    # introspection ---------------------------------------------------------------------
    def rows(self, now: float) -> list[dict[str, Any]]:
        """Per-worker live state for ``/synergai/v1/workers`` (JSON-ready)."""
        out = []
        for s in self._order:
            staleness = now - s.shared_at if s.shared_at > -math.inf else None
            out.append(
                {
                    "id": s.id,
                    "pool": s.pool,
                    "arch": s.info.arch,
                    "healthy": s.available(now),
                    "probe_healthy": s.probe_healthy,
                    "outstanding": s.out,
                    "local_outstanding": s.local_out,
                    "work_ms": round(s.work_ms, 3),
                    "predicted_wait_ms": round(s.wait_at(now), 3),
                    "correction": {m: round(s.correction(m, now), 4) for m in s.profiles},
                    "peak_ewma_ms": round(finite_or(s.ewma_ms, 0.0), 3),
                    "staleness_s": None if staleness is None else round(staleness, 3),
                    "stale": staleness is not None and staleness > self.stale_after_s,
                }
            )
        return out
