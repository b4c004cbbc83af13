"""Background collectors that feed the routing view; apart from decisions (STYLE.md §3).

Each collector is a small class with one ``tick()`` doing one round of work, driven by
:class:`Periodic`, so a test calls ``tick()`` directly with a manual clock and no task runs.

- :class:`SharedStateRefresher`: every ``interval_s``, one pipelined round trip reads every
  worker's fleet-wide load from the :class:`StateStore` into the view (``observed_at`` stamped)
  and sets ``synergai_state_staleness_seconds``; every ``repair_every_s`` it also expires dead
  leases (the lease-repair seam issue 7 extends).

The Triton ``/metrics`` scraper is in :mod:`gateway.state.reconcile`, worker discovery in
:mod:`gateway.discovery`, health probes and outlier detection in :mod:`gateway.health`;
:mod:`gateway.state.background` wires them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.core.clock import Clock
from gateway.observability.metrics import GatewayMetrics
from gateway.routing.types import WorkerInfo
from gateway.state.store import StateStore, WorkerLoad

__all__ = ["Periodic", "SharedStateRefresher"]

log = logging.getLogger(__name__)


class _ServiceLike(Protocol):
    """What collectors need of :class:`gateway.service.InferenceService`."""

    def workers(self) -> Sequence[WorkerInfo]: ...
    def apply_shared(self, worker_id: str, load: WorkerLoad, observed_at: float) -> None: ...


class Periodic:
    """Runs ``tick`` every ``interval_s`` in a task until stopped; a failing tick is logged.

    ``on_stop`` (optional) runs once after the loop ended: the collector closes its clients.
    """

    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[None]],
        interval_s: float,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._tick = tick
        self._interval = interval_s
        self._on_stop = on_stop
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop in the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"synergai-{self.name}")

    async def stop(self) -> None:
        """Cancel the loop, wait for it, then run ``on_stop`` (close clients)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            await on_stop()

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("collector %s failed; continuing", self.name)
            await asyncio.sleep(self._interval)


class SharedStateRefresher:
    """Pulls fleet-wide load from the store into the service's view.

    Args:
        service: the :class:`gateway.service.InferenceService` (``workers()``,
            ``apply_shared``, ``view``).
        store: the shared store.
        metrics: app metrics (staleness).
        clock: time source.
        repair_every_s: how often to expire dead leases.
    """

    def __init__(
        self,
        service: _ServiceLike,
        store: StateStore,
        metrics: GatewayMetrics,
        clock: Clock,
        repair_every_s: float = 5.0,
    ) -> None:
        self._service = service
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._repair_every = repair_every_s
        self._last_repair = -1e18
        self.last_ok: float | None = None

    async def tick(self) -> None:
        """One refresh (and, when due, one lease repair)."""
        ids = [w.id for w in self._service.workers()]
        now = self._clock.now()
        if ids and now - self._last_repair >= self._repair_every:
            self._last_repair = now
            await self._store.expire_leases(ids)
        snap = await self._store.snapshot(ids) if ids else {}
        now = self._clock.now()
        if snap is None:
            self._metrics.state_errors.inc()
        else:
            self.last_ok = now
            for wid, load in snap.items():
                self._service.apply_shared(wid, load, now)
        age = 0.0 if self.last_ok is None and not ids else now - (self.last_ok or now)
        self._metrics.staleness.set(age)
