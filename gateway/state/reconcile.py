"""Reconciliation with Triton: load the gateways did not send is seen, without double counting.

Two signals describe a worker's load:

* **Redis** (primary): ``R``, the requests in flight leased by every gateway replica, exact
  and current, moved on every request.
* **Triton's /metrics** (correction): ``T = queued + running`` (see
  :mod:`gateway.state.triton_metrics`), which includes requests sent *around* the gateways
  (another client, a batch job, a gateway of another deployment) but lags: its counters move
  only as requests complete.

The blend adds to ``R`` only what Triton holds beyond it::

    external = max(0, T - max(R now, R's peak since the previous scrape))
    load     = (R + round(external),  R_work_ms + external * compute_ms)

Comparing with R's peak over the scrape interval keeps a burst that has just drained (still
visible in Triton's interval averages) from reading as foreign load: the estimate is
conservative, it never counts the gateways' own requests twice. An external figure older than
``max_age_s`` is dropped (``observed_at`` stamps both sides). When Redis is down no shared
figure exists, so there is nothing to blend and the view falls back to its local count.

:class:`ReconciledStore` wraps the real :class:`~gateway.state.store.StateStore` and blends every
figure it returns (reserve, release, snapshot), so the request path and the refresher need no
change; :class:`TritonScraper` is the collector (a ``tick()`` driven by
:class:`~gateway.state.collectors.Periodic`): it never runs on the request path.

The scraper sums a worker's models **without its ensembles** (Triton counts a request to an
ensemble on the ensemble and again on its composing models: summing both read twice the load
and invented waits on idle workers; see :mod:`gateway.state.triton_metrics`). It learns which
models are ensembles from ``GET {url}/v2/models/{name}/config`` (``platform: "ensemble"``),
cached per worker: looked up when a model it has not classified appears on the page, again
every ``classify_every_s`` and after the server restarted (its counters went backwards). A
lookup that fails never fails the scrape: the model is left out of the sums until it is
classified (retried after ``classify_retry_s``), so an unknown model can hide load, never
double it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp

from gateway.core.clock import Clock
from gateway.routing.types import WorkerInfo
from gateway.state.store import Ended, Lease, StateStore, WorkerLoad
from gateway.state.triton_metrics import (
    TritonLoad,
    TritonSample,
    derive,
    is_ensemble_config,
    model_names,
    parse_metrics,
)

__all__ = ["External", "ReconciledStore", "Reconciler", "TritonScraper"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class External:
    """Load on a worker that no gateway leased, as of ``observed_at``."""

    outstanding: float
    work_ms: float
    observed_at: float


class Reconciler:
    """Holds the last Redis figure and the external load of each worker; blends them.

    Args:
        clock: the gateway clock (same scale as ``observed_at`` everywhere).
        max_age_s: external figures older than this are ignored.
    """

    def __init__(self, clock: Clock, max_age_s: float = 5.0) -> None:
        self._clock = clock
        self._max_age = max_age_s
        self._shared: dict[str, tuple[int, float]] = {}
        self._peak: dict[str, int] = {}
        self._external: dict[str, External] = {}

    def note_shared(self, worker: str, load: WorkerLoad) -> None:
        """Record a raw fleet-wide figure read from the store."""
        self._shared[worker] = (load.outstanding, self._clock.now())
        if load.outstanding > self._peak.get(worker, 0):
            self._peak[worker] = load.outstanding

    def observe(self, worker: str, triton: TritonLoad) -> External | None:
        """Fold one Triton reading in; the external load it implies (``None``: no Redis figure).

        Without a fresh Redis figure the two cannot be told apart, so nothing is recorded.
        """
        shared = self._shared.get(worker)
        peak = self._peak.pop(worker, 0)
        if shared is None or triton.observed_at - shared[1] > self._max_age:
            self._external.pop(worker, None)
            return None
        ours = max(shared[0], peak)
        extra = max(0.0, triton.in_server - ours)
        svc = triton.compute_ms if math.isfinite(triton.compute_ms) else 0.0
        ext = External(extra, extra * svc, triton.observed_at)
        self._external[worker] = ext
        return ext

    def external(self, worker: str) -> External | None:
        """The worker's current external load, if fresh."""
        ext = self._external.get(worker)
        if ext is None or self._clock.now() - ext.observed_at > self._max_age:
            return None
        return ext

    def forget(self, worker: str) -> None:
        """Drop a worker that left the fleet."""
        self._shared.pop(worker, None)
        self._peak.pop(worker, None)
        self._external.pop(worker, None)

    def blend(self, worker: str, load: WorkerLoad) -> WorkerLoad:
        """``load`` from the store plus the worker's fresh external load (see module docstring)."""
        self.note_shared(worker, load)
        ext = self.external(worker)
        if ext is None or ext.outstanding < 0.5:
            return load
        k = len(load.free_ms)
        extra = ext.work_ms / k if k else 0.0  # queued on the server too: spread over the slots
        return WorkerLoad(
            load.outstanding + round(ext.outstanding),
            load.work_ms + ext.work_ms,
            tuple(f + extra for f in load.free_ms),
            load.booked,
            round(ext.outstanding),
        )


class ReconciledStore:
    """A :class:`StateStore` whose answers include the load Triton sees beyond Redis.

    Every call goes to ``inner`` unchanged (same round trips, same fail-open behaviour); only
    the returned figures are blended by ``reconciler``.
    """

    def __init__(self, inner: StateStore, reconciler: Reconciler) -> None:
        self.inner = inner
        self.reconciler = reconciler

    @property
    def available(self) -> bool:
        """The inner store's availability."""
        return self.inner.available

    async def start(self) -> None:
        """Start the inner store."""
        await self.inner.start()

    async def close(self) -> None:
        """Close the inner store."""
        await self.inner.close()

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        """Reserve on the inner store; the blended post-op load."""
        load = await self.inner.reserve(lease)
        return None if load is None else self.reconciler.blend(lease.worker, load)

    async def release(self, lease: Lease, ended: Ended | None = None) -> WorkerLoad | None:
        """Release on the inner store; the blended post-op load."""
        load = await self.inner.release(lease, ended)
        return None if load is None else self.reconciler.blend(lease.worker, load)

    async def snapshot(self, workers: Sequence[str]) -> dict[str, WorkerLoad] | None:
        """Snapshot of the inner store, blended."""
        snap = await self.inner.snapshot(workers)
        if snap is None:
            return None
        return {w: self.reconciler.blend(w, load) for w, load in snap.items()}

    async def expire_leases(self, workers: Sequence[str]) -> int | None:
        """Lease repair on the inner store."""
        return await self.inner.expire_leases(workers)


@dataclass(slots=True)
class _Kinds:
    """What the scraper knows of one worker's models: ``{name: is_ensemble}``."""

    ensemble: dict[str, bool] = field(default_factory=dict)
    learned_at: float = -math.inf
    retry_at: float = -math.inf

    def skip(self, names: Collection[str]) -> frozenset[str]:
        """Models to leave out of the sums: ensembles and models not classified yet."""
        return frozenset(n for n in names if self.ensemble.get(n, True))


class TritonScraper:
    """Scrapes every worker's ``/metrics`` concurrently and feeds :class:`Reconciler`.

    Args:
        workers: the current fleet (called on every tick, so discovery changes are seen).
        reconciler: where readings go.
        clock: stamps ``observed_at``.
        timeout_s: per-scrape timeout; a slow worker is skipped this round (also the timeout
            of each model-configuration lookup).
        session: an aiohttp session (default: one created on first use and closed by
            :meth:`close`).
        classify_every_s: how often a worker's models are classified again (ensemble or not)
            even when nothing suggests a change (a model reloaded with a new configuration).
        classify_retry_s: after a failed lookup, how long before the next try.
    """

    def __init__(
        self,
        workers: Callable[[], Sequence[WorkerInfo]],
        reconciler: Reconciler,
        clock: Clock,
        *,
        timeout_s: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        classify_every_s: float = 60.0,
        classify_retry_s: float = 5.0,
    ) -> None:
        self._workers = workers
        self._reconciler = reconciler
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None
        self._classify_every = classify_every_s
        self._classify_retry = classify_retry_s
        self._last: dict[str, TritonSample] = {}
        self._kinds: dict[str, _Kinds] = {}
        self.loads: dict[str, TritonLoad] = {}
        """The latest derived reading per worker (introspection, tests)."""
        self.failures = 0
        """Scrapes that failed since start."""
        self.lookup_failures = 0
        """Model-configuration lookups that failed since start (the scrape went on)."""

    def kinds(self, worker: str) -> dict[str, bool]:
        """What the scraper learned of a worker's models: ``{name: is_ensemble}`` (a copy)."""
        kinds = self._kinds.get(worker)
        return dict(kinds.ensemble) if kinds is not None else {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _get(self, url: str) -> str:
        async with self._client().get(url, timeout=self._timeout) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def _is_ensemble(self, info: WorkerInfo, model: str) -> bool | None:
        """The model's kind from its configuration; ``None`` when the lookup failed."""
        url = f"{info.url.rstrip('/')}/v2/models/{quote(model, safe='')}/config"
        try:
            async with self._client().get(url, timeout=self._timeout) as resp:
                resp.raise_for_status()
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.debug("config of %s on %s: %r", model, info.id, exc)
            return None
        if not isinstance(doc, dict):
            return None
        return is_ensemble_config(doc)

    async def _classify(self, info: WorkerInfo, kinds: _Kinds, names: Collection[str]) -> None:
        """Look the kinds of ``names`` up; a failed lookup keeps what was known."""
        got = await asyncio.gather(*(self._is_ensemble(info, n) for n in names))
        now = self._clock.now()
        failed = False
        for name, kind in zip(names, got, strict=True):
            if kind is None:
                failed = True
            else:
                kinds.ensemble[name] = kind
        if failed:
            self.lookup_failures += 1
            kinds.retry_at = now + self._classify_retry
        else:
            kinds.learned_at = now

    async def _scrape(self, info: WorkerInfo) -> None:
        try:
            text = await self._get(info.metrics_url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.failures += 1
            log.debug("scrape of %s failed: %r", info.id, exc)
            return
        now = self._clock.now()
        names = model_names(text)
        kinds = self._kinds.setdefault(info.id, _Kinds())
        prev = self._last.get(info.id)
        skip = kinds.skip(names)
        sample = parse_metrics(text, now, exclude=skip)
        restarted = (
            prev is not None
            and prev.models == sample.models
            and sample.exec_count < prev.exec_count
        )
        unknown = sorted(n for n in names if n not in kinds.ensemble)
        due = restarted or now - kinds.learned_at >= self._classify_every
        if info.url and (unknown or due) and (restarted or now >= kinds.retry_at):
            await self._classify(info, kinds, sorted(names) if due else unknown)
            if kinds.skip(names) != skip:
                sample = parse_metrics(text, now, exclude=kinds.skip(names))
        load = derive(prev, sample, info.instances)
        self._last[info.id] = sample
        self.loads[info.id] = load
        self._reconciler.observe(info.id, load)

    async def tick(self) -> None:
        """One scrape of every worker that has a ``metrics_url``."""
        fleet = self._workers()
        known = {w.id for w in fleet}
        for gone in [w for w in self._last if w not in known]:
            self._last.pop(gone, None)
            self.loads.pop(gone, None)
            self._reconciler.forget(gone)
        for gone in [w for w in self._kinds if w not in known]:
            del self._kinds[gone]
        await asyncio.gather(*(self._scrape(w) for w in fleet if w.metrics_url))

    async def close(self) -> None:
        """Close the session if this scraper created it."""
        session, self._session = self._session, None
        if session is not None and self._own_session:
            await session.close()
