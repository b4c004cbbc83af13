"""``build_gateway(settings, deps)``: every part of one gateway, built once, in one place.

Order (each part gets what it needs at construction; nothing is replaced afterwards)::

    profiles -> FleetView -> Fleet (membership, health, drain: gateway.fleet)
    upstreams: "http" (settings.upstream) and, with a gRPC port, "grpc"
    store: the shared state, a ConnectedStore opened in the lifespan (Redis at redis_url,
           else an embedded Valkey), wrapped in a ReconciledStore when scraping is on
    HealthMonitor(fleet, upstreams["http"]) -> InferenceService(view, policy, store, ...)

:class:`Gateway` holds the parts (a frozen dataclass); :meth:`Gateway.start` and
:meth:`Gateway.stop` are the lifespan: connect the store, start the upstream clients and the
collectors (shared-state refresh, Triton scrape, discovery, health probes, outlier expiry),
and undo it all. ``create_app`` (:mod:`gateway.app`) puts the HTTP routes around it.
Tests and benchmarks replace parts through :class:`AppDeps`; production passes only settings.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.core.clock import Clock, MonotonicClock
from gateway.fleet import Fleet
from gateway.health import HealthMonitor, health_config
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.model import PredictorConfig
from gateway.prediction.profiles import ProfileBook, load_profiles
from gateway.routing.registry import make_policy
from gateway.routing.types import Policy
from gateway.routing.view import FleetView
from gateway.service import InferenceService, ServiceConfig
from gateway.settings import Settings
from gateway.state.background import state_loops
from gateway.state.collectors import Periodic
from gateway.state.connected import ConnectedStore
from gateway.state.reconcile import ReconciledStore, Reconciler
from gateway.state.store import StateStore
from gateway.upstream.base import Upstream, make_http_upstream

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["AppDeps", "Gateway", "build_gateway"]

log = logging.getLogger(__name__)


@dataclass
class AppDeps:
    """Optional replacements for what :func:`build_gateway` would build (tests, benchmarks).

    Attributes:
        clock: time source (default: monotonic).
        store: shared state (default: Redis at ``settings.redis_url``, else embedded Valkey).
        upstreams: upstream per protocol (default: the configured REST client, and the gRPC
            client when ``grpc_port`` is set); a missing one is built as by default.
        profiles: profile book (default: loaded from ``settings.profiles_dir()``).
        policy: routing policy (default: ``make_policy(settings.policy, ...)``).
        collectors: run the health probes and the shared-state loops (default: yes).
        extra_routers: callables that add routes to the app (the gRPC/UI wiring hooks).
    """

    clock: Clock | None = None
    store: StateStore | None = None
    upstreams: Mapping[str, Upstream] | None = None
    profiles: ProfileBook | None = None
    policy: Policy | None = None
    collectors: bool = True
    extra_routers: list[Callable[[FastAPI, InferenceService], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Gateway:
    """The parts of one gateway; see the module docstring.

    Attributes:
        settings: the validated settings it was built from.
        clock: the routing clock.
        profiles: the offline profiles.
        view: the routing view.
        fleet: membership, health and drain.
        metrics: this gateway's metrics (own registry).
        store: the shared state as the request path uses it.
        connection: the store's connection when ``build_gateway`` opened it (else ``None``:
            the store came from :class:`AppDeps`).
        reconciler: blends Triton's ``/metrics`` into the store's figures (scraping on).
        health: probes and outlier detection.
        service: the request path.
        collectors: whether :meth:`start` runs the background loops.
    """

    settings: Settings
    clock: Clock
    profiles: ProfileBook
    view: FleetView
    fleet: Fleet
    metrics: GatewayMetrics
    store: StateStore
    connection: ConnectedStore | None
    reconciler: Reconciler | None
    health: HealthMonitor
    service: InferenceService
    collectors: bool
    _loops: list[Periodic] = field(default_factory=list, repr=False)

    async def start(self) -> None:
        """Connect the store, start the upstream clients, then the background loops."""
        await self.store.start()
        for up in self.service.upstreams.values():
            await up.start()
        if not self.collectors:
            return
        s = self.settings
        self._loops[:] = [
            *state_loops(self.service, self.store, self.reconciler, self.metrics, self.clock, s),
            Periodic("health", self.health.probe_all, s.health_interval_s),
            Periodic("outliers", self.health.expire, self.health.config.expire_interval_s),
        ]
        for loop in self._loops:
            loop.start()

    async def stop(self) -> None:
        """Stop the loops, wait for background releases, close the clients and the store."""
        for loop in self._loops:
            await loop.stop()
        self._loops.clear()
        await self.service.drain()
        for up in self.service.upstreams.values():
            await up.close()
        await self.store.close()


def _connection(settings: Settings, clock: Clock) -> ConnectedStore:
    """Redis at ``settings.redis_url``, else an embedded Valkey, opened in the lifespan."""
    embedded = None

    async def opener() -> StateStore:
        nonlocal embedded
        from gateway.state.redis_store import RedisStore

        url = settings.redis_url
        if url is None:
            from gateway.embedded import EmbeddedValkey

            embedded = EmbeddedValkey()
            url = await asyncio.to_thread(embedded.start)
        store = RedisStore(
            url,
            clock,
            prefix=settings.redis_prefix,
            timeout_s=settings.redis_timeout_s,
            lease_ttl_s=settings.lease_ttl_s,
            backoff_max_s=settings.redis_backoff_max_s,
            max_connections=settings.redis_max_connections,
        )
        await store.start()
        return store

    async def after_close() -> None:
        nonlocal embedded
        if embedded is not None:
            running, embedded = embedded, None
            await asyncio.to_thread(running.stop)

    return ConnectedStore(opener, after_close)


def _upstreams(settings: Settings, given: Mapping[str, Upstream] | None) -> dict[str, Upstream]:
    """The given upstreams, plus the configured REST one and (gRPC port set) the gRPC one."""
    upstreams: dict[str, Upstream] = dict(given or {})
    if "http" not in upstreams:
        upstreams["http"] = make_http_upstream(
            settings.upstream,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections_per_worker=settings.max_connections_per_worker,
        )
    if settings.grpc_port is not None and "grpc" not in upstreams:
        try:
            from gateway.upstream.grpc_client import GrpcUpstream
        except ImportError:
            log.info("gRPC client not available; REST only")
        else:
            upstreams["grpc"] = GrpcUpstream(max_message_bytes=settings.max_body_bytes)
    return upstreams


def build_gateway(settings: Settings, deps: AppDeps | None = None) -> Gateway:
    """Build every part of one gateway from validated settings (no I/O, no event loop).

    Args:
        settings: the gateway's settings.
        deps: optional replacements (tests); see :class:`AppDeps`.

    Raises:
        FormatError: the profiles directory is invalid.
        ValueError: unknown policy name.
    """
    deps = deps or AppDeps()
    clock = deps.clock or MonotonicClock()
    profiles = deps.profiles or load_profiles(settings.profiles_dir())
    # eject_s=0: ejection belongs to the health monitor (outlier detection, panic threshold)
    view = FleetView(
        settings.worker_infos(),
        profiles,
        stale_after_s=settings.stale_after_s,
        eject_s=0.0,
        predictor=PredictorConfig(overhead_ms=settings.overhead_ms),
    )
    fleet = Fleet(view, clock)
    policy = deps.policy or make_policy(settings.policy, profiles, seed=settings.seed)
    metrics = GatewayMetrics()
    upstreams = _upstreams(settings, deps.upstreams)
    connection: ConnectedStore | None = None
    store: StateStore
    if deps.store is None:
        store = connection = _connection(settings, clock)
    else:
        store = deps.store
    reconciler = None
    if settings.scrape_interval_s is not None:
        reconciler = Reconciler(
            clock, max_age_s=max(3.0 * settings.scrape_interval_s, settings.stale_after_s)
        )
        store = ReconciledStore(store, reconciler)
    health = HealthMonitor(fleet, upstreams["http"], clock, metrics, health_config(settings))
    service = InferenceService(
        view,
        policy,
        store,
        upstreams,
        metrics,
        clock,
        random.Random(settings.seed),
        ServiceConfig.from_settings(settings),
        fleet=fleet,
        health=health,
    )
    metrics.inflight.set_function(lambda: float(service.inflight))

    def self_check() -> dict[str, object] | None:
        report = getattr(service.policy, "report", None)
        return report(clock.now()) if callable(report) else None

    metrics.watch_self_check(self_check)
    return Gateway(
        settings=settings,
        clock=clock,
        profiles=profiles,
        view=view,
        fleet=fleet,
        metrics=metrics,
        store=store,
        connection=connection,
        reconciler=reconciler,
        health=health,
        service=service,
        collectors=deps.collectors,
    )
