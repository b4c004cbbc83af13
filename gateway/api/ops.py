"""Ops endpoints: ``/metrics``, the live worker view, and token-guarded changes (drain).

Read-only endpoints are public. Endpoints that change state need ``Authorization: Bearer
<admin_token>`` (constant-time compare); with no token configured they are disabled (403),
never open (DESIGN.md §6, issue 8).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.errors import Forbidden, ModelNotFound, Unauthorized
from gateway.health import HealthMonitor
from gateway.observability.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from gateway.service import InferenceService

__all__ = ["build_ops_router", "check_admin"]


def check_admin(request: Request, token: str | None) -> None:
    """Raise unless the request carries the admin bearer token.

    Raises:
        Forbidden: no admin token is configured (state-changing ops disabled).
        Unauthorized: missing or wrong token.
    """
    if not token:
        raise Forbidden("state-changing ops are disabled: no admin_token configured")
    got = request.headers.get("authorization", "")
    scheme, _, value = got.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise Unauthorized("missing or invalid bearer token")


def build_ops_router(
    service: InferenceService,
    metrics: GatewayMetrics,
    admin_token: str | None,
    health: HealthMonitor | None = None,
) -> APIRouter:
    """Ops routes bound to one app (``health``: readiness and ejection fields per worker)."""
    router = APIRouter()

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/synergai/v1/workers")
    async def workers() -> dict[str, object]:
        now = service.clock.now()
        rows = service.view.rows(now)
        for row in rows:
            wid = row.get("id") or row.get("worker")
            if isinstance(wid, str):
                row.setdefault("drained", service.drained(wid))
                if service.drift is not None:
                    row["drift"] = service.drift.worker_drift(wid, now)
                if health is not None:
                    row["health"] = health.row(wid, now)
        report = getattr(service.policy, "report", None)
        return {
            "policy": service.policy.name,
            "self_check": report(now) if callable(report) else None,
            "panic_pools": [] if health is None else health.panic_pools(),
            "stale": bool(service.view.stale(now)),
            "gateway_id": service.gateway_id,
            "inflight": service.inflight,
            "workers": rows,
        }

    @router.get("/synergai/v1/observed")
    async def observed() -> dict[str, object]:
        """Observed service times per (arch, model, batch) (gateway.prediction.drift)."""
        return {} if service.drift is None else service.drift.observed()

    async def _drain(request: Request, worker: str, drained: bool) -> dict[str, object]:
        check_admin(request, admin_token)
        if service.worker(worker) is None:
            raise ModelNotFound(f"unknown worker '{worker}'")
        service.set_drained(worker, drained)
        return {"worker": worker, "drained": drained}

    @router.post("/synergai/v1/workers/{worker}/drain")
    async def drain(request: Request, worker: str) -> dict[str, object]:
        return await _drain(request, worker, True)

    @router.post("/synergai/v1/workers/{worker}/undrain")
    async def undrain(request: Request, worker: str) -> dict[str, object]:
        return await _drain(request, worker, False)

    return router
