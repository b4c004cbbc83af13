"""gRPC transport to Triton workers: one long-lived ``grpc.aio`` channel each, bytes in and out.

:class:`GrpcUpstream` implements the :class:`~gateway.upstream.base.Upstream` seam with
``target`` the RPC name of ``inference.GRPCInferenceService`` (``"ModelInfer"``,
``"ModelMetadata"``...). The gateway never re-encodes a ``ModelInferRequest``: the client's
serialized request goes out unchanged (a unary call with no serializer, so grpc passes the
``bytes`` through) and the worker's serialized response comes back unchanged. One HTTP/2
connection per worker multiplexes every concurrent request, so there is no per-request
connection or client object.

Outcomes (the :class:`~gateway.upstream.base.UpstreamResponse` fields):

* the worker answered ``OK`` -> ``code`` ``OK``, ``body`` the response bytes;
* Triton refused or failed the request (bad shape, wrong dtype, missing input, unknown version:
  ``INVALID_ARGUMENT``, ``NOT_FOUND``...; a backend failure: ``INTERNAL``) -> that code, typed
  (:class:`~gateway.errors.StatusCode`), and ``body`` Triton's message in UTF-8, so the front
  door passes Triton's own answer through; ``http_status`` is the table's equivalent
  (:data:`gateway.errors.STATUS_TABLE`), so ``synergai_requests_total{code}`` means the same for
  both protocols. Whose fault it is follows from the code alone (:func:`gateway.errors.blame`);
* the worker could not be reached or the call broke (``UNAVAILABLE``, ``CANCELLED``) ->
  :class:`~gateway.errors.UpstreamError`;
* the gateway's deadline passed first (``DEADLINE_EXCEEDED``) ->
  :class:`~gateway.errors.UpstreamTimeout`.

Deadline propagation: the request path passes every upstream the same ``timeout_s`` (the
gateway's ``request_timeout_s``). A gRPC client's own deadline is tighter; the front door sets
it with :meth:`GrpcUpstream.deadline` around the request, and :meth:`GrpcUpstream.call` then
uses ``min(timeout_s, deadline - now)`` as the worker call's deadline, and does not send a
request whose deadline has already passed. A call cut short by the *client's* deadline raises
:class:`~gateway.errors.ClientDeadlineExceeded` (``DEADLINE_EXCEEDED`` to the client, 499 in
metrics), not :class:`~gateway.errors.UpstreamTimeout`: the worker did nothing wrong. The scope is a
context variable of this instance, so it follows the request's task and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from grpc import aio

from gateway.errors import (
    ClientDeadlineExceeded,
    StatusCode,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.routing.types import WorkerInfo
from gateway.upstream.base import UpstreamResponse

__all__ = ["SERVICE", "GrpcUpstream", "grpc_target", "to_grpc_code"]

SERVICE = "inference.GRPCInferenceService"
"""Fully qualified KServe v2 service name (Triton's ``grpc_service.proto``)."""

_TRANSPORT_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
"""Codes that mean "the worker did not answer", as opposed to "Triton said no"."""

_TO_GRPC: dict[StatusCode, grpc.StatusCode] = {StatusCode(c.value[0]): c for c in grpc.StatusCode}
_FROM_GRPC: dict[grpc.StatusCode, StatusCode] = {c: s for s, c in _TO_GRPC.items()}

_NO_HEADERS: Mapping[str, str] = {}


def to_grpc_code(code: StatusCode) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of ``code`` (what a gRPC front door aborts with)."""
    return _TO_GRPC[code]


def grpc_target(worker: WorkerInfo) -> str:
    """The ``host:port`` target of ``worker``'s gRPC endpoint.

    Accepts ``host:port`` as configured, and tolerates a ``grpc://`` or ``http://`` prefix.

    Raises:
        UpstreamError: the worker has no gRPC endpoint configured.
    """
    url = worker.grpc_url.strip()
    for scheme in ("grpc://", "http://", "dns:///"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    url = url.rstrip("/")
    if not url:
        raise UpstreamError(f"worker {worker.id} has no gRPC endpoint (grpc_url is empty)")
    return url


class GrpcUpstream:
    """Unary gRPC calls to Triton workers over one persistent channel each.

    Args:
        max_message_bytes: largest request/response message, both directions (the gateway's
            ``max_body_bytes``).
        keepalive_s: HTTP/2 keepalive ping interval while calls are in flight, so a worker that
            vanished without closing its socket is noticed.
        options: extra channel options appended to the defaults.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = 64 * 1024 * 1024,
        keepalive_s: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
            ("grpc.enable_retries", 0),
            *options,
        ]
        self._channels: dict[str, aio.Channel] = {}
        self._calls: dict[tuple[str, str], aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._closed = False
        self._deadline: ContextVar[float | None] = ContextVar(
            f"grpc-upstream-deadline-{id(self):x}", default=None
        )

    @contextlib.contextmanager
    def deadline(self, at: float | None) -> Iterator[None]:
        """Bound every call made in this context (task) by ``at`` (``time.monotonic()`` s).

        ``None`` leaves calls bounded by their ``timeout_s`` only.
        """
        token = self._deadline.set(at)
        try:
            yield
        finally:
            self._deadline.reset(token)

    async def start(self) -> None:
        """Nothing to do up front: channels open lazily on a worker's first call."""
        self._closed = False

    def channel(self, worker: WorkerInfo) -> aio.Channel:
        """The long-lived channel to ``worker`` (created on first use, then reused)."""
        target = grpc_target(worker)
        chan = self._channels.get(target)
        if chan is None:
            if self._closed:
                raise UpstreamError("the gRPC upstream is closed")
            chan = aio.insecure_channel(target, options=self._options)
            self._channels[target] = chan
        return chan

    def _callable(
        self, worker: WorkerInfo, method: str
    ) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
        key = (worker.grpc_url, method)
        call = self._calls.get(key)
        if call is None:
            # No serializers: the request must be bytes and the response comes back as bytes.
            call = self.channel(worker).unary_unary(f"/{SERVICE}/{method}")
            self._calls[key] = call
        return call

    async def call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """Send the serialized request ``body`` to RPC ``target`` of ``worker``; see the module doc.

        Args:
            worker: the worker to call.
            target: the RPC name, e.g. ``"ModelInfer"`` or ``"ModelMetadata"``.
            body: the serialized request message, forwarded unchanged (``None``: empty message).
            headers: invocation metadata to send along (lower-case names).
            timeout_s: the call's gRPC deadline, in seconds from now.

        Returns:
            The worker's answer: response bytes, or Triton's own refusal with its code.

        Raises:
            ClientDeadlineExceeded: the client's deadline (:meth:`deadline`) ran out first
                (nothing is sent when it already had): the client gave up, not the worker's
                fault.
            UpstreamTimeout: ``timeout_s`` (the gateway's own limit) passed first.
            UpstreamError: the worker could not be reached or the call broke.
        """
        at = self._deadline.get()
        client_bound = False
        if at is not None:
            left = at - time.monotonic()
            if left < timeout_s:
                timeout_s, client_bound = left, True
        if timeout_s <= 0:
            if client_bound:
                raise ClientDeadlineExceeded(
                    f"the deadline passed before the call to worker {worker.id}"
                )
            raise UpstreamTimeout(f"no time left to call worker {worker.id}")
        try:
            out = await self._callable(worker, target)(
                body or b"",
                timeout=timeout_s,
                metadata=tuple(headers.items()) if headers else None,
            )
        except aio.AioRpcError as exc:
            code = exc.code()
            details = exc.details() or code.name
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                if client_bound:
                    raise ClientDeadlineExceeded(
                        f"deadline exceeded: worker {worker.id} had not answered when the "
                        f"client's deadline passed ({timeout_s * 1000:.0f} ms after sending)"
                    ) from None
                raise UpstreamTimeout(
                    f"worker {worker.id} did not answer within {timeout_s * 1000:.0f} ms"
                ) from None
            if code is grpc.StatusCode.UNAVAILABLE and "failed to connect" in details.lower():
                # the channel never connected: the worker never saw the call (retry-safe)
                raise UpstreamConnectError(f"worker {worker.id} unreachable: {details}") from None
            if code in _TRANSPORT_FAILURES:
                raise UpstreamError(f"worker {worker.id} unavailable: {details}") from None
            return UpstreamResponse.from_grpc(_FROM_GRPC[code], details.encode())
        return UpstreamResponse(StatusCode.OK, 200, out, _NO_HEADERS)

    async def close(self) -> None:
        """Close every channel (calls still in flight are cancelled)."""
        self._closed = True
        channels = list(self._channels.values())
        self._channels.clear()
        self._calls.clear()
        await asyncio.gather(*(c.close(None) for c in channels), return_exceptions=True)
