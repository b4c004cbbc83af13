"""The upstream seam: send request bytes to one worker, get response bytes back.

The gateway never decodes tensors: a front door hands the request body over as bytes (a REST
body, or a serialized ``ModelInferRequest`` for gRPC), an :class:`Upstream` forwards them to
the chosen worker over a pooled connection, and the response bytes come back unchanged.

Implementations: ``http1.Http1Upstream`` (the default for REST: a minimal keep-alive
HTTP/1.1 client; its docstring says why, with the profile), ``aiohttp_upstream.AiohttpUpstream``
(the previous default) and ``httpx_upstream.HttpxUpstream`` (the first version), kept for
comparison; the gRPC front door adds a ``grpc.aio`` one with ``target`` the method name.

Errors: :class:`~gateway.errors.UpstreamTimeout` when the worker does not answer in time,
:class:`~gateway.errors.UpstreamError` when the connection fails. A worker's own error answer
(4xx/5xx) is *not* an exception: it comes back with ``ok=False`` and passes through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.routing.types import WorkerInfo

__all__ = ["PASS_REQUEST_HEADERS", "PASS_RESPONSE_HEADERS", "Upstream", "UpstreamResponse"]

PASS_REQUEST_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")
"""Request headers forwarded to Triton (lower-case); everything else stays at the gateway.

``Accept-Encoding`` is deliberately not forwarded: compressing on loopback costs CPU for no
gain, and Triton 2.51's gzip answers fail to decode in aiohttp ("incorrect header check"), so
a browser- or requests-style client would break. Responses come back uncompressed, which HTTP
allows. A compressed *request* (``Content-Encoding``) is forwarded as is."""

PASS_RESPONSE_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")
"""Response headers passed back to the client."""


@dataclass(slots=True)
class UpstreamResponse:
    """A worker's answer.

    Attributes:
        ok: the worker executed the request successfully (HTTP 2xx, gRPC OK).
        status: the protocol's status (HTTP status code; a gRPC upstream puts the
            ``grpc.StatusCode`` value's integer here).
        body: response bytes, unchanged.
        headers: headers (lower-case names) to pass back (HTTP) or trailing metadata (gRPC).
    """

    ok: bool
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Upstream(Protocol):
    """A pooled client to a set of workers."""

    async def start(self) -> None:
        """Create pools (inside the running event loop)."""

    async def close(self) -> None:
        """Close every connection."""

    async def call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """Send ``body`` to ``target`` on ``worker`` (POST when a body is given, else GET).

        Args:
            worker: where to send it.
            target: HTTP path (``/v2/models/m/infer``) or gRPC method name.
            body: request bytes, forwarded unchanged; ``None`` for a GET.
            headers: request headers / metadata to forward (already filtered).
            timeout_s: total time allowed, connect included.

        Raises:
            UpstreamTimeout: no answer within ``timeout_s``.
            UpstreamError: the connection failed.
        """


def make_http_upstream(
    kind: str, *, connect_timeout_s: float, max_connections_per_worker: int
) -> Upstream:
    """The REST upstream named in settings (``http1``, ``aiohttp`` or ``httpx``)."""
    if kind == "http1":
        from gateway.upstream.http1 import Http1Upstream

        return Http1Upstream(
            connect_timeout_s=connect_timeout_s,
            max_connections_per_worker=max_connections_per_worker,
        )
    if kind == "httpx":
        from gateway.upstream.httpx_upstream import HttpxUpstream

        return HttpxUpstream(
            connect_timeout_s=connect_timeout_s, max_connections=max_connections_per_worker
        )
    from gateway.upstream.aiohttp_upstream import AiohttpUpstream

    return AiohttpUpstream(
        connect_timeout_s=connect_timeout_s, max_connections_per_worker=max_connections_per_worker
    )
