"""``create_app(settings)``: build one gateway app; nothing is shared between apps.

Everything (profiles, view, policy, upstream clients, Redis store, metrics registry,
collectors) is created per call and owned by the app; the lifespan starts and stops what needs
the event loop. Tests inject fakes through :class:`AppDeps`; production passes only settings.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.fast_path import FastPathApp, InferFastPath
from gateway.api.ops import build_ops_router
from gateway.api.rest import build_rest_router
from gateway.core.clock import Clock, MonotonicClock
from gateway.errors import BadRequest, GatewayError
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
from gateway.state.store import NullStore, StateStore
from gateway.upstream.base import Upstream, make_http_upstream

__all__ = ["AppDeps", "create_app"]

log = logging.getLogger(__name__)

_JSON = "application/json"


@dataclass
class AppDeps:
    """Optional replacements for what ``create_app`` would build (tests, benchmarks).

    Attributes:
        clock: time source (default: monotonic).
        store: shared state (default: Redis at ``settings.redis_url``, else embedded Valkey).
        upstreams: upstream per protocol (default: the configured REST client).
        profiles: profile book (default: loaded from ``settings.profiles_dir()``).
        policy: routing policy (default: ``make_policy(settings.policy, ...)``).
        collectors: run the health prober and shared-state refresher (default: yes).
        extra_routers: callables that add routes to the app (the gRPC/UI wiring hooks).
    """

    clock: Clock | None = None
    store: StateStore | None = None
    upstreams: Mapping[str, Upstream] | None = None
    profiles: ProfileBook | None = None
    policy: Policy | None = None
    collectors: bool = True
    extra_routers: list[Callable[[FastAPI, InferenceService], None]] = field(default_factory=list)


def _error(exc: GatewayError) -> Response:
    return Response(exc.json_body(), exc.http_status, exc.headers(), media_type=_JSON)


def _install_error_handlers(app: FastAPI) -> None:
    """Map every failure to ``{"error": ...}`` with the right status: never a stack trace."""

    async def gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return _error(exc)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        err = GatewayError(str(exc.detail))
        return Response(err.json_body(), exc.status_code, exc.headers, media_type=_JSON)

    async def validation_error(_: Request, exc: Exception) -> Response:
        return _error(BadRequest(f"invalid request: {exc}"))

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return _error(GatewayError("internal error"))

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def _log_shutdown(metrics: GatewayMetrics, abandoned: int) -> None:
    """One line at shutdown: requests answered by status code, and any abandoned in flight."""
    codes: dict[str, int] = {}
    for fam in metrics.registry.collect():
        if fam.name == "synergai_requests":
            for smp in fam.samples:
                if smp.name.endswith("_total"):
                    c = smp.labels.get("code", "?")
                    codes[c] = codes.get(c, 0) + int(smp.value)
    log.info("shutdown: requests answered by code %s; %d abandoned in flight", codes, abandoned)


GrpcStop = Callable[[], Awaitable[None]]


async def _start_grpc(service: InferenceService, settings: Settings) -> GrpcStop | None:
    """Open the gRPC front door when ``grpc_port`` is set and ``gateway.api.grpc`` exists.

    Contract for ``gateway.api.grpc``: ``async def serve_grpc(service, settings) -> stop``,
    where ``stop`` is an async callable that closes the server; it registers its ``"grpc"``
    upstream in ``service.upstreams`` itself and calls ``service.infer`` for ModelInfer.
    """
    if settings.grpc_port is None:
        return None
    try:
        from gateway.api import grpc as grpc_door  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        log.info("gRPC front door not available; REST only")
        return None
    stop: GrpcStop = await grpc_door.serve_grpc(service, settings)
    return stop


def create_app(settings: Settings, deps: AppDeps | None = None) -> FastAPI:
    """Build a gateway app from validated settings.

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
    policy = deps.policy or make_policy(settings.policy, profiles, seed=settings.seed)
    metrics = GatewayMetrics()
    upstreams: dict[str, Upstream] = dict(deps.upstreams or {})
    if "http" not in upstreams:
        upstreams["http"] = make_http_upstream(
            settings.upstream,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections_per_worker=settings.max_connections_per_worker,
        )
    service = InferenceService(
        view,
        policy,
        NullStore(),
        upstreams,
        metrics,
        clock,
        random.Random(settings.seed),
        ServiceConfig.from_settings(settings),
    )
    health = HealthMonitor(service, clock, metrics, health_config(settings))
    service.health = health

    metrics.inflight.set_function(lambda: float(service.inflight))

    def self_check() -> dict[str, object] | None:
        report = getattr(service.policy, "report", None)
        return report(clock.now()) if callable(report) else None

    metrics.watch_self_check(self_check)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedded = None
        store = deps.store
        if store is None:
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
        service.store = store
        for up in service.upstreams.values():
            await up.start()
        loops: list[Periodic] = []
        if deps.collectors:
            loops = [
                *state_loops(service, metrics, clock, settings),  # refresh, scrape, discovery
                Periodic("health", health.probe_all, settings.health_interval_s),
                Periodic("outliers", health.expire, health.config.expire_interval_s),
            ]
            for loop in loops:
                loop.start()
        app.state.store = store
        grpc_stop = await _start_grpc(service, settings)
        try:
            yield
        finally:
            if grpc_stop is not None:
                await grpc_stop()
            for loop in loops:
                await loop.stop()
            await service.drain()
            _log_shutdown(metrics, service.inflight)
            for up in service.upstreams.values():
                await up.close()
            await store.close()
            service.store = NullStore()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    app = FastPathApp(
        title="SynergAI Gateway",
        summary="KServe v2 gateway for fleets of NVIDIA Triton servers",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    _install_error_handlers(app)
    app.include_router(build_rest_router(service, settings.max_body_bytes))
    app.fast_path = InferFastPath(  # infer runs ahead of FastAPI's middleware (see its doc)
        app,
        service=service,
        max_body_bytes=settings.max_body_bytes,
        max_inflight_bytes=settings.max_inflight_bytes,
    )
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    app.include_router(build_ops_router(service, metrics, token, health=health))
    from gateway.ui import RegistrySource, ui_router

    app.include_router(ui_router(RegistrySource(metrics.registry)))
    for hook in deps.extra_routers:
        hook(app, service)
    return app
