"""Worker health: active readiness probes plus passive outlier detection, in one verdict.

A worker takes traffic when **its readiness probe passes and it is not ejected** (and an
operator has not drained it, which the fleet tracks apart). The monitor is the only writer
of that verdict: it calls ``fleet.set_healthy(worker, verdict)`` whenever it changes, and the
fleet registry (:mod:`gateway.fleet`) passes "healthy and not drained" to the routing view, so
a policy never sees an unhealthy worker.

* Probes (:mod:`gateway.health.probe`) run every ``probe_interval_s``, all workers
  concurrently (at most ``max_concurrent_probes`` at once). A worker turns unhealthy after
  ``unhealthy_threshold`` failed probes in a row, at once when the connection was refused;
  healthy again after ``healthy_threshold`` passing probes. A probe that recovers also ends an
  outlier ejection (the worker was restarted: "returns on recovery").
* Outcomes of real requests (:meth:`HealthMonitor.observe`, called by the request path) feed
  the :class:`~gateway.health.outlier.OutlierDetector`; an ejection takes effect immediately,
  and :meth:`HealthMonitor.expire` (run every ``expire_interval_s``) ends it on time.

How fast a dead worker stops getting traffic: under load, at its first refused connection
(that request is retried elsewhere: :mod:`gateway.core.retry`); idle, at the next probe.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.core.clock import Clock
from gateway.health.outcome import Outcome
from gateway.health.outlier import OutlierConfig, OutlierDetector
from gateway.health.probe import ProbeResult, probe_worker
from gateway.observability.metrics import GatewayMetrics
from gateway.routing.types import WorkerInfo
from gateway.upstream.base import Upstream

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = ["HealthConfig", "HealthMonitor", "health_config"]

log = logging.getLogger(__name__)


class _FleetLike(Protocol):
    """What the monitor needs of :class:`gateway.fleet.Fleet`."""

    def workers(self) -> Sequence[WorkerInfo]: ...
    def worker(self, worker_id: str) -> WorkerInfo | None: ...
    def set_healthy(self, worker_id: str, healthy: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Probe and outlier-detection settings."""

    probe_interval_s: float = 1.0
    probe_timeout_s: float = 1.0
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1
    probe_models: bool = True
    max_concurrent_probes: int = 32
    expire_interval_s: float = 0.05
    outlier: OutlierConfig = field(default_factory=OutlierConfig)


class _Probe:
    __slots__ = ("at", "detail", "fails", "ok", "passes")

    def __init__(self) -> None:
        self.ok = True
        self.fails = 0
        self.passes = 0
        self.detail = ""
        self.at = -math.inf


class HealthMonitor:
    """Owns each worker's health verdict; see the module docstring.

    Args:
        fleet: the fleet registry (membership; told each verdict with ``set_healthy``).
        upstream: the REST upstream the probes go through.
        clock: time source.
        metrics: app metrics (``synergai_worker_healthy``, ejections, panic), or ``None``.
        config: probe and outlier settings.
    """

    def __init__(
        self,
        fleet: _FleetLike,
        upstream: Upstream,
        clock: Clock,
        metrics: GatewayMetrics | None = None,
        config: HealthConfig | None = None,
    ) -> None:
        self.config = config or HealthConfig()
        self._fleet = fleet
        self._upstream = upstream
        self._clock = clock
        self._metrics = metrics
        self._probes: dict[str, _Probe] = {}
        self._verdict: dict[str, bool] = {}
        self._panic_reported: set[str] = set()
        self.outliers = OutlierDetector(self.config.outlier, self._probe_down)
        self._sem = asyncio.Semaphore(self.config.max_concurrent_probes)
        self.sync()

    # membership -------------------------------------------------------------------------
    def _probe_down(self, worker: str) -> bool:
        p = self._probes.get(worker)
        return p is not None and not p.ok

    def _track(self, info: WorkerInfo) -> None:
        self._probes[info.id] = _Probe()
        self._verdict[info.id] = True
        self.outliers.add_worker(info.id, info.pool)
        if self._metrics is not None:
            self._metrics.worker_healthy.labels(info.id).set(1)

    def sync(self) -> None:
        """Follow the fleet's membership (workers added or removed by discovery)."""
        known = {w.id: w for w in self._fleet.workers()}
        for wid in [w for w in self._probes if w not in known]:
            del self._probes[wid]
            self._verdict.pop(wid, None)
            self.outliers.remove_worker(wid)
        for wid, info in known.items():
            if wid not in self._probes:
                self._track(info)

    # the verdict ------------------------------------------------------------------------
    def healthy(self, worker: str, now: float | None = None) -> bool:
        """Whether health lets ``worker`` take traffic now."""
        p = self._probes.get(worker)
        t = self._clock.now() if now is None else now
        return p is not None and p.ok and not self.outliers.ejected(worker, t)

    def _apply(self, worker: str, now: float) -> None:
        verdict = self.healthy(worker, now)
        if self._verdict.get(worker) is not verdict:
            self._verdict[worker] = verdict
            self._fleet.set_healthy(worker, verdict)
            if self._metrics is not None:
                self._metrics.worker_healthy.labels(worker).set(1 if verdict else 0)

    def _report_panic(self) -> None:
        now_panic = {p for p in self.outliers.pools() if self.outliers.in_panic(p)}
        for pool in now_panic - self._panic_reported:
            log.warning(
                "pool %s at its panic threshold: failing workers are kept in rotation", pool
            )
        for pool in self._panic_reported - now_panic:
            log.info("pool %s out of panic", pool)
        if self._metrics is not None:
            for pool in now_panic ^ self._panic_reported:
                self._metrics.panic.labels(pool).set(1 if pool in now_panic else 0)
        self._panic_reported = now_panic

    # passive ----------------------------------------------------------------------------
    def observe(self, worker: str, outcome: Outcome) -> None:
        """Count the outcome of one request on ``worker`` (the request path calls this)."""
        if worker not in self._probes:
            info = self._fleet.worker(worker)
            if info is None:
                return
            self._track(info)
        now = self._clock.now()
        verdict = self.outliers.record(worker, outcome, now)
        if verdict is None:
            if outcome is Outcome.SUCCESS and self._panic_reported:
                self._report_panic()
            return
        if verdict.ejected:
            log.warning(
                "worker %s ejected for %.1f s (%s)", worker, verdict.until - now, verdict.reason
            )
            if self._metrics is not None:
                self._metrics.ejections.labels(worker, verdict.reason).inc()
            self._apply(worker, now)
        self._report_panic()

    async def expire(self) -> None:
        """End ejections that are due (a :class:`~gateway.state.collectors.Periodic` tick)."""
        now = self._clock.now()
        for worker in self.outliers.expire(now):
            log.info("worker %s back from ejection", worker)
            self._apply(worker, now)

    # active -----------------------------------------------------------------------------
    async def _probe_one(self, info: WorkerInfo) -> None:
        async with self._sem:
            res: ProbeResult = await probe_worker(
                self._upstream, info, self.config.probe_timeout_s, self.config.probe_models
            )
        p = self._probes.get(info.id)
        if p is None:
            return
        now = self._clock.now()
        p.at = now
        p.detail = res.detail
        cfg = self.config
        if res.ok:
            p.fails = 0
            p.passes += 1
            if not p.ok and p.passes >= cfg.healthy_threshold:
                p.ok = True
                log.warning("worker %s is ready again", info.id)
                self.outliers.readmit(info.id, now)
        else:
            p.passes = 0
            p.fails += 1
            if p.ok and (res.refused or p.fails >= cfg.unhealthy_threshold):
                p.ok = False
                log.warning("worker %s is NOT ready: %s", info.id, res.detail)
        self._apply(info.id, now)

    async def probe_all(self) -> None:
        """Probe every worker once, concurrently (a ``Periodic`` tick)."""
        self.sync()
        await asyncio.gather(*(self._probe_one(w) for w in self._fleet.workers()))
        self._report_panic()

    # introspection ------------------------------------------------------------------------
    def row(self, worker: str, now: float) -> dict[str, Any]:
        """Health fields of ``worker`` for ``/synergai/v1/workers`` (JSON-ready)."""
        p = self._probes.get(worker)
        if p is None:
            return {}
        until = self.outliers.ejected_until(worker)
        ejected = until > now
        return {
            "ready": p.ok,
            "probe_detail": p.detail,
            "probe_age_s": None if p.at == -math.inf else round(now - p.at, 3),
            "ejected": ejected,
            "ejected_for_s": round(until - now, 3) if ejected else 0.0,
            "ejections": self.outliers.ejections(worker),
        }

    def panic_pools(self) -> list[str]:
        """Pools at their panic threshold now."""
        return sorted(p for p in self.outliers.pools() if self.outliers.in_panic(p))


def health_config(settings: Settings) -> HealthConfig:
    """The monitor's settings from the gateway's :class:`~gateway.settings.Settings`."""
    return HealthConfig(
        probe_interval_s=settings.health_interval_s,
        probe_timeout_s=min(1.0, settings.health_interval_s),
        unhealthy_threshold=settings.probe_unhealthy_threshold,
        outlier=OutlierConfig(
            consecutive_errors=settings.outlier_consecutive_errors,
            consecutive_connect_errors=settings.outlier_consecutive_connect_errors,
            base_ejection_s=settings.outlier_base_ejection_s,
            max_ejection_s=settings.outlier_max_ejection_s,
            max_ejection_percent=settings.outlier_max_ejection_percent,
        ),
    )
