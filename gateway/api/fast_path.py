"""A raw ASGI fast path for ``POST /v2/models/{m}[/versions/{v}]/infer``.

Why: profiled with py-spy on the CI VM at concurrency 1, FastAPI's routing, dependency solving
and request/response objects took ~30% of the gateway's CPU per infer request (about 260 of
885 samples), more than the upstream client. Infer is the only hot route, so it is recognised
by one regular expression and the shared handler (:mod:`gateway.api.infer_http`) runs directly
on the ASGI messages; every other request goes on to the FastAPI app. Errors become the same
``{"error": ...}`` answers as elsewhere.

:class:`FastPathApp` (the app ``create_app`` returns) dispatches infer *before* FastAPI's own
``__call__``: as a user middleware (:class:`InferFastPath`, still usable that way) it ran inside
FastAPI's per-request telemetry check (``NativeTelemetry.enabled`` looks up the OpenTelemetry
providers on every request: 4% of the gateway's samples), ``ServerErrorMiddleware``,
``ExceptionTelemetryMiddleware`` and ``AppBodyLimitMiddleware``, ~9% of the gateway's samples
in all (py-spy at concurrency 32, ``SYNERGAI_OVERHEAD_PROFILE=/tmp/p synergai bench
overhead``). The fast path handles its own errors, so it needs none of them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from gateway.api.infer_http import check_infer_request, infer_http
from gateway.core.admission import ByteBudget
from gateway.core.hints import HINT_KEYS
from gateway.errors import GatewayError, PayloadTooLarge, Shed
from gateway.service import InferenceService

__all__ = ["FastPathApp", "InferFastPath"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_WANTED = (
    frozenset(
        {"content-type", "content-length", "content-encoding", "inference-header-content-length"}
    )
    | HINT_KEYS  # the hints, and misspelt hints (refused, not ignored: gateway.core.hints)
)
_JSON = [(b"content-type", b"application/json")]


class _Disconnected(Exception):
    pass


class InferFastPath:
    """ASGI middleware: infer requests handled here, everything else passed to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        service: InferenceService,
        max_body_bytes: int,
        max_inflight_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.bytes = ByteBudget(max_inflight_bytes or 1 << 62)
        """Request-body bytes held by requests in flight (memory bound; 429 beyond)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI call."""
        if scope["type"] == "http" and scope["method"] == "POST":
            m = _INFER.fullmatch(scope["path"])
            if m is not None:
                await self.infer(scope, receive, send, m.group(1), m.group(2))
                return
        await self.app(scope, receive, send)

    async def _read(self, receive: Receive, held: list[int]) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _Disconnected
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"request body over the {self.max_body_bytes}-byte limit")
            if not self.bytes.try_acquire(len(chunk)):
                self.service.metrics.shed.labels("overload_bytes").inc()
                raise Shed("gateway overloaded: request bytes in flight", why="overload")
            held[0] += len(chunk)
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def infer(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> None:
        """Answer one infer request (``model``, ``version`` from its path)."""
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name in _WANTED:
                headers[name] = v.decode("latin-1")
        held = [0]
        try:
            await self._handle(scope, receive, send, model, version, headers, held)
        finally:
            self.bytes.release(held[0])

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        model: str,
        version: str | None,
        headers: dict[str, str],
        held: list[int],
    ) -> None:
        try:
            check_infer_request(
                self.service,
                model,
                headers.get("content-length"),
                self.max_body_bytes,
                headers.get("content-type"),
            )
            body = await self._read(receive, held)
            target = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
            result = await infer_http(self.service, model, version, target, headers, body)
        except _Disconnected:
            return
        except GatewayError as exc:
            extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers().items()]
            await _respond(send, exc.http_status, _JSON + extra, exc.json_body())
            return
        except Exception:
            log.exception("unhandled error on the infer path")
            await _respond(send, 500, _JSON, GatewayError("internal error").json_body())
            return
        resp = result.response
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
        out += [(k.encode(), v.encode("latin-1")) for k, v in result.routing_headers().items()]
        await _respond(send, resp.http_status, out, resp.body)


class FastPathApp(FastAPI):
    """The gateway's FastAPI app with infer dispatched ahead of FastAPI's middleware stack.

    ``fast_path`` is set by ``create_app``; ``None`` sends infer through the FastAPI routes
    too (tests compare both).
    """

    fast_path: InferFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Infer to :attr:`fast_path`; anything else to FastAPI."""
        fp = self.fast_path
        if fp is not None and scope["type"] == "http" and scope["method"] == "POST":
            m = _INFER.fullmatch(scope["path"])
            if m is not None:
                await fp.infer(scope, receive, send, m.group(1), m.group(2))
                return
        await super().__call__(scope, receive, send)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
