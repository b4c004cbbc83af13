"""``create_app(settings)``: build one gateway app; nothing is shared between apps.

Every part (profiles, view, fleet, policy, upstream clients, store, metrics registry, health,
collectors) is built once by :func:`gateway.assembly.build_gateway` and owned by the app; the
lifespan is :meth:`Gateway.start` / :meth:`Gateway.stop` plus the gRPC door. Tests inject
fakes through :class:`AppDeps`; production passes only settings.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.fast_path import FastPathApp, InferFastPath
from gateway.api.ops import build_ops_router
from gateway.api.rest import build_rest_router
from gateway.assembly import AppDeps, build_gateway
from gateway.errors import BadRequest, GatewayError
from gateway.observability.metrics import GatewayMetrics
from gateway.service import InferenceService
from gateway.settings import Settings

__all__ = ["AppDeps", "create_app"]

log = logging.getLogger(__name__)

_JSON = "application/json"


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
    where ``stop`` is an async callable that closes the server; it forwards through the
    service's ``"grpc"`` upstream (built with the gateway) and calls ``service.infer``.
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
    """Build a gateway app from validated settings: :func:`build_gateway` plus the routes.

    Args:
        settings: the gateway's settings.
        deps: optional replacements (tests); see :class:`AppDeps`.

    Raises:
        FormatError: the profiles directory is invalid.
        ValueError: unknown policy name.
    """
    deps = deps or AppDeps()
    gw = build_gateway(settings, deps)
    service, metrics = gw.service, gw.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        grpc_stop = None
        try:
            grpc_stop = await _start_grpc(service, settings)
            yield
        finally:
            if grpc_stop is not None:
                await grpc_stop()
            _log_shutdown(metrics, service.inflight)
            await gw.stop()

    app = FastPathApp(
        title="SynergAI Gateway",
        summary="KServe v2 gateway for fleets of NVIDIA Triton servers",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.gateway = gw
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
    app.include_router(build_ops_router(service, metrics, token, health=gw.health))
    from gateway.ui import RegistrySource, ui_router

    app.include_router(ui_router(RegistrySource(metrics.registry)))
    for hook in deps.extra_routers:
        hook(app, service)
    return app
