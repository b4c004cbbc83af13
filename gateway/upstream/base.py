"""The upstream seam: send request bytes to one worker, get response bytes back.

The gateway never decodes tensors: a front door hands the request body over as bytes (a REST
body, or a serialized ``ModelInferRequest`` for gRPC), an :class:`Upstream` forwards them to
the chosen worker over a pooled connection, and the response bytes come back unchanged.

Implementations: ``http1.Http1Upstream`` (the default for REST: a minimal keep-alive
HTTP/1.1 client; its docstring says why, with the profile), ``aiohttp_upstream.AiohttpUpstream``
(the previous default; ``Http1Upstream`` also hands it the workers whose URL is not plain
``http://``, e.g. ``https://``); the gRPC front door adds a ``grpc.aio`` one with ``target``
the method name.

Errors: :class:`~gateway.errors.UpstreamTimeout` when the worker does not answer in time,
:class:`~gateway.errors.UpstreamError` when the connection fails. A worker's own error answer
(4xx/5xx, a gRPC error status) is *not* an exception: it comes back with ``ok`` false and its
typed :class:`~gateway.errors.StatusCode`, and passes through.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gateway.errors import Blame, StatusCode, blame, code_for_http, http_status
from gateway.routing.types import WorkerInfo

__all__ = [
    "PASS_REQUEST_HEADERS",
    "PASS_RESPONSE_HEADERS",
    "DeadlineUpstream",
    "Upstream",
    "UpstreamResponse",
]

PASS_REQUEST_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")
"""Request headers forwarded to Triton (lower-case); everything else stays at the gateway.

``Accept-Encoding`` is deliberately not forwarded: compressing on loopback costs CPU for no
gain, and Triton 2.51's gzip answers fail to decode in aiohttp ("incorrect header check"), so
a browser- or requests-style client would break. Responses come back uncompressed, which HTTP
allows. A compressed *request* (``Content-Encoding``) is forwarded as is."""

PASS_RESPONSE_HEADERS = ("content-type", "inference-header-content-length", "content-encoding")
"""Response headers passed back to the client."""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A worker's answer, the same for both protocols.

    Build it with :meth:`from_http` or :meth:`from_grpc`; both fill ``code`` and
    ``http_status`` from the one table (:data:`gateway.errors.STATUS_TABLE`).

    Attributes:
        code: how it ended (``OK``, ``INVALID_ARGUMENT``, ``INTERNAL``...): what the request
            path classifies by (:func:`gateway.core.calls.outcome_of`) and the gRPC door answers.
        http_status: the HTTP status the REST door answers with and metrics count: the
            worker's own for HTTP, the table's equivalent of ``code`` for gRPC.
        body: response bytes, unchanged (for a gRPC error, Triton's message in UTF-8).
        headers: headers (lower-case names) to pass back (HTTP) or trailing metadata (gRPC).
    """

    code: StatusCode
    http_status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_http(
        cls, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """A worker's HTTP answer with ``status``."""
        return cls(code_for_http(status), status, body, {} if headers is None else headers)

    @classmethod
    def from_grpc(
        cls, code: StatusCode, body: bytes, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """A worker's gRPC answer with ``code``."""
        return cls(code, http_status(code), body, {} if headers is None else headers)

    @property
    def ok(self) -> bool:
        """The worker executed the request successfully (HTTP 2xx, gRPC ``OK``)."""
        return self.code is StatusCode.OK

    @property
    def blame(self) -> Blame:
        """Whose fault the answer is (:func:`gateway.errors.blame`)."""
        return blame(self.code)


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


@runtime_checkable
class DeadlineUpstream(Upstream, Protocol):
    """An upstream whose calls a context can bound by a deadline (the gRPC door's).

    :class:`~gateway.upstream.grpc_client.GrpcUpstream` is the real one.
    """

    def deadline(self, at: float | None) -> AbstractContextManager[None]:
        """Bound every call made in this context by ``at`` (``time.monotonic()`` s)."""


def make_http_upstream(
    kind: str, *, connect_timeout_s: float, max_connections_per_worker: int
) -> Upstream:
    """The REST upstream named in settings (``http1`` or ``aiohttp``)."""
    if kind == "http1":
        from gateway.upstream.http1 import Http1Upstream

        return Http1Upstream(
            connect_timeout_s=connect_timeout_s,
            max_connections_per_worker=max_connections_per_worker,
        )
    if kind != "aiohttp":
        raise ValueError(f"unknown upstream {kind!r}; known: http1, aiohttp")
    from gateway.upstream.aiohttp_upstream import AiohttpUpstream

    return AiohttpUpstream(
        connect_timeout_s=connect_timeout_s, max_connections_per_worker=max_connections_per_worker
    )
