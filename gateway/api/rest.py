"""KServe v2 REST front door (DESIGN.md §6): health, metadata, ready, infer.

Infer requests normally take the raw ASGI fast path (:mod:`gateway.api.fast_path`), which
skips FastAPI's routing and dependency machinery; the routes here serve the same logic
(:mod:`gateway.api.infer_http`) for the OpenAPI schema and any app built without it.

The infer handler reads the body as bytes, peeks at the JSON (header) for the batch size and
``parameters`` (:mod:`gateway.core.kserve`), takes hint headers, and hands everything to the
shared :class:`~gateway.service.InferenceService`. The worker's answer comes back byte for
byte, with its ``Content-Type`` / ``Inference-Header-Content-Length`` and the
``x-synergai-*`` routing headers added.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.infer_http import check_infer_request, infer_http
from gateway.api.openapi_infer import INFER_OPENAPI
from gateway.errors import PayloadTooLarge
from gateway.service import InferenceService
from gateway.upstream.base import PASS_REQUEST_HEADERS, UpstreamResponse

__all__ = ["build_rest_router"]

_EXTENSIONS = ["binary_tensor_data", "parameters"]


def _version() -> str:
    try:
        return version("synergai-gateway")
    except PackageNotFoundError:
        return "0+unknown"


def _forward_headers(request: Request) -> dict[str, str]:
    h = request.headers
    return {k: v for k in PASS_REQUEST_HEADERS if (v := h.get(k)) is not None}


def _passthrough(resp: UpstreamResponse, extra: dict[str, str] | None = None) -> Response:
    headers = dict(resp.headers)
    if extra:
        headers.update(extra)
    return Response(content=resp.body, status_code=resp.http_status, headers=headers)


def build_rest_router(service: InferenceService, max_body_bytes: int) -> APIRouter:
    """The KServe v2 routes bound to one app's service (no globals)."""
    router = APIRouter()
    meta: dict[str, object] = {
        "name": "synergai-gateway",
        "version": _version(),
        "extensions": _EXTENSIONS,
    }

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200 if service.ready() else 503)

    @router.get("/v2")
    async def server_metadata() -> dict[str, object]:
        return meta

    async def _meta(request: Request, model: str) -> Response:
        target = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        resp, worker = await service.forward_meta(model, target, _forward_headers(request))
        return _passthrough(resp, {"x-synergai-worker": worker.id})

    @router.get("/v2/models/{model}")
    async def model_metadata(request: Request, model: str) -> Response:
        return await _meta(request, model)

    @router.get("/v2/models/{model}/versions/{version}")
    async def model_version_metadata(request: Request, model: str, version: str) -> Response:
        return await _meta(request, model)

    @router.get("/v2/models/{model}/ready")
    async def model_ready(request: Request, model: str) -> Response:
        return await _meta(request, model)

    @router.get("/v2/models/{model}/versions/{version}/ready")
    async def model_version_ready(request: Request, model: str, version: str) -> Response:
        return await _meta(request, model)

    @router.get("/v2/models/{model}/config")
    async def model_config(request: Request, model: str) -> Response:
        return await _meta(request, model)

    @router.get("/v2/models/{model}/versions/{version}/config")
    async def model_version_config(request: Request, model: str, version: str) -> Response:
        return await _meta(request, model)

    async def _infer(request: Request, model: str, version: str | None) -> Response:
        h = request.headers
        check_infer_request(
            service, model, h.get("content-length"), max_body_bytes, h.get("content-type")
        )
        body = await request.body()
        if len(body) > max_body_bytes:
            raise PayloadTooLarge(f"request body over the {max_body_bytes}-byte limit")
        target = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        result = await infer_http(service, model, version, target, h, body)
        return _passthrough(result.response, result.routing_headers())

    @router.post("/v2/models/{model}/infer", openapi_extra=INFER_OPENAPI)
    async def infer(request: Request, model: str) -> Response:
        return await _infer(request, model, None)

    @router.post("/v2/models/{model}/versions/{version}/infer", openapi_extra=INFER_OPENAPI)
    async def infer_version(request: Request, model: str, version: str) -> Response:
        return await _infer(request, model, version)

    return router
