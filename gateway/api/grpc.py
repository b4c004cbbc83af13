"""KServe v2 gRPC front door: ``inference.GRPCInferenceService`` on ``grpc.aio`` (DESIGN.md §6).

``tritonclient.grpc`` works against the gateway as against Triton. Inference takes the same
path as REST (:meth:`gateway.service.InferenceService.infer`); only the decoding differs:

* ``ModelInfer`` receives the request as **bytes** (no deserializer), reads its head with
  :func:`~gateway.api.grpc_wire.parse_infer_head` (model, version, first input's shape,
  ``parameters``; never ``raw_input_contents``), and forwards the original bytes over the
  ``"grpc"`` upstream (:class:`~gateway.upstream.grpc_client.GrpcUpstream`, one channel per
  worker). The worker's response bytes are returned unchanged, with ``x-synergai-worker``,
  ``-pool``, ``-predicted-ms`` and ``-policy`` as trailing metadata.
* ``ModelStreamInfer`` routes every message of the stream on its own (up to ``stream_window``
  in flight per stream, answered as they complete, like Triton). Each answer is the worker's
  ``ModelInferResponse`` wrapped without re-encoding, with the routing facts added as string
  ``parameters`` of the response (a stream has no per-message metadata) beside
  ``triton_final_response: true`` (which Triton's own stream sets); a failed message is
  a ``ModelStreamInferResponse.error_message`` carrying the request's ``id``, as Triton does.
* ``ServerLive`` / ``ServerReady`` / ``ServerMetadata`` answer from the gateway (same name,
  version and extensions as ``GET /v2``); ``ModelReady``, ``ModelMetadata`` and ``ModelConfig``
  are forwarded to a healthy, undrained worker serving the model (round robin, chosen as for
  REST by :meth:`~gateway.service.InferenceService.forward_meta`), bytes in and out.

Hints ``x-slo-ms``, ``x-priority``, ``x-category`` come from invocation metadata or from the
request's ``parameters`` (metadata wins), validated by :mod:`gateway.core.hints`.

Errors: a :class:`~gateway.errors.GatewayError` becomes its ``code`` with its message
(``retry-after`` in trailing metadata when shed); Triton's own refusals pass through with
Triton's code (the answer's typed ``code``) and message.

Deadlines: with a client deadline, ``left = deadline - now`` bounds the request. It is not sent
when ``left <= 0``; when ``left`` is under the request's SLO the policy routes with
``slo_ms = left`` (a worker predicted to miss the deadline is not chosen; if none can meet it
the answer is ``DEADLINE_EXCEEDED`` at once, nothing sent); the worker call itself carries the
remaining deadline, so Triton stops waiting when the client does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc
from grpc import aio
from tritonclient.grpc import service_pb2

from gateway.api.grpc_wire import (
    append_parameters,
    parse_infer_head,
    stream_error,
    stream_infer_response,
)
from gateway.core.hints import HINT_KEYS
from gateway.errors import (
    BadRequest,
    ClientDeadlineExceeded,
    GatewayError,
    ModelNotFound,
    NoHealthyWorker,
    Shed,
)
from gateway.routing.types import WorkerInfo
from gateway.service import InferCall, InferenceService, InferResult
from gateway.settings import Settings
from gateway.upstream.base import DeadlineUpstream, UpstreamResponse
from gateway.upstream.grpc_client import SERVICE, to_grpc_code

__all__ = ["GRPC_EXTENSIONS", "GrpcFrontDoor", "GrpcServer", "serve_grpc", "start_grpc_server"]

log = logging.getLogger(__name__)

GRPC_EXTENSIONS = ("binary_tensor_data", "parameters")
"""Extensions the gateway reports in ``ServerMetadata`` (as ``GET /v2`` does)."""

_META_TIMEOUT_S = 10.0
"""Upper bound of a forwarded metadata / ready call."""

_NOT_READY: bytes = service_pb2.ModelReadyResponse(ready=False).SerializeToString()
_LIVE: bytes = service_pb2.ServerLiveResponse(live=True).SerializeToString()
_SERVER_READY: dict[bool, bytes] = {
    r: service_pb2.ServerReadyResponse(ready=r).SerializeToString() for r in (False, True)
}


def _version() -> str:
    try:
        return version("synergai-gateway")
    except PackageNotFoundError:
        return "0+unknown"


def _param_value(param: Any) -> Any:
    """The set value of an ``InferParameter`` (``None`` when none is set)."""
    kind = param.WhichOneof("parameter_choice")
    return None if kind is None else getattr(param, kind)


def _metadata_hints(metadata: Sequence[tuple[str, str | bytes]] | None) -> dict[str, Any]:
    """Hint values sent as invocation metadata (names are lower-case on the wire)."""
    hints: dict[str, Any] = {}
    for key, value in metadata or ():
        if key in HINT_KEYS:  # the hints and misspelt ones (refused: gateway.core.hints)
            hints[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return hints


def _grpc_code(exc: GatewayError) -> grpc.StatusCode:
    return to_grpc_code(exc.code)


def _error_trailers(exc: GatewayError) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower(), v) for k, v in exc.headers().items())


@dataclass(frozen=True, slots=True)
class _Call:
    """One decoded inference message: what goes to the service, and what the answer needs."""

    call: InferCall
    request_id: str
    deadline_capped: bool
    left_ms: float


class GrpcFrontDoor:
    """The RPC handlers, bound to one app's :class:`InferenceService` (no globals).

    Args:
        service: the shared request path; its ``"grpc"`` upstream (a
            :class:`~gateway.upstream.base.DeadlineUpstream`: the :class:`GrpcUpstream` built
            with the gateway) carries every call.
        stream_window: most messages of one ``ModelStreamInfer`` stream in flight at once
            (reading the stream pauses beyond it: back-pressure to the client).
        meta_timeout_s: upper bound of forwarded metadata / ready calls.
    """

    def __init__(
        self,
        service: InferenceService,
        *,
        stream_window: int = 64,
        meta_timeout_s: float = _META_TIMEOUT_S,
    ) -> None:
        upstream = service.upstreams.get("grpc")
        if not isinstance(upstream, DeadlineUpstream):
            raise ValueError("the service has no 'grpc' upstream: build it with a GrpcUpstream")
        self.service = service
        self.upstream = upstream
        self.stream_window = stream_window
        self.meta_timeout_s = meta_timeout_s
        self._server_metadata: bytes = service_pb2.ServerMetadataResponse(
            name="synergai-gateway", version=_version(), extensions=list(GRPC_EXTENSIONS)
        ).SerializeToString()

    # -- wiring ----------------------------------------------------------------------------------

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Method handlers of ``inference.GRPCInferenceService``, bytes in and bytes out."""
        unary = grpc.unary_unary_rpc_method_handler
        return {
            "ServerLive": unary(self.server_live),
            "ServerReady": unary(self.server_ready),
            "ServerMetadata": unary(self.server_metadata),
            "ModelReady": unary(self.model_ready),
            "ModelMetadata": unary(self.model_metadata),
            "ModelConfig": unary(self.model_config),
            "ModelInfer": unary(self.model_infer),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self.model_stream_infer),
        }

    # -- server-level calls ----------------------------------------------------------------------

    async def server_live(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """Live as long as the process serves."""
        return _LIVE

    async def server_ready(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """Ready when at least one worker is healthy."""
        return _SERVER_READY[self.service.ready()]

    async def server_metadata(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """The gateway's name, version and extensions."""
        return self._server_metadata

    # -- model-level metadata, forwarded -------------------------------------------------------

    async def _meta(
        self,
        method: str,
        body: bytes,
        parse: Callable[[bytes], Any],
        context: aio.ServicerContext[Any, Any],
    ) -> tuple[UpstreamResponse, WorkerInfo]:
        """Forward a metadata call to a healthy worker serving the model it names.

        The worker is chosen as for REST (:meth:`InferenceService.forward_meta`): healthy and
        not drained.

        Raises:
            BadRequest: the request does not parse.
            ModelNotFound, NoHealthyWorker: nobody (healthy) serves the model.
            UpstreamTimeout, UpstreamError: the worker did not answer.
        """
        try:
            name = parse(body).name
        except Exception:  # DecodeError: not worth an import
            raise BadRequest(f"malformed {method}Request") from None
        timeout = self.meta_timeout_s
        left = context.time_remaining()
        if left is not None:
            timeout = min(timeout, left)
        return await self.service.forward_meta(
            name, method, {}, protocol="grpc", body=body, timeout_s=timeout
        )

    async def _answer_meta(
        self,
        method: str,
        body: bytes,
        parse: Callable[[bytes], Any],
        context: aio.ServicerContext[Any, Any],
    ) -> bytes:
        try:
            resp, worker = await self._meta(method, body, parse, context)
        except GatewayError as exc:
            await context.abort(_grpc_code(exc), exc.message, _error_trailers(exc))
            raise AssertionError("unreachable") from None  # abort raises
        trailers = (("x-synergai-worker", worker.id),)
        if not resp.ok:
            await context.abort(
                to_grpc_code(resp.code), resp.body.decode("utf-8", "replace"), trailers
            )
        context.set_trailing_metadata(trailers)
        return resp.body

    async def model_ready(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """Ask a healthy worker serving the model; ``ready=false`` when none does (as Triton)."""
        try:
            resp, worker = await self._meta(
                "ModelReady", body, service_pb2.ModelReadyRequest.FromString, context
            )
        except (ModelNotFound, NoHealthyWorker):
            return _NOT_READY
        except GatewayError as exc:
            await context.abort(_grpc_code(exc), exc.message, _error_trailers(exc))
            raise AssertionError("unreachable") from None  # abort raises
        if not resp.ok:
            await context.abort(to_grpc_code(resp.code), resp.body.decode("utf-8", "replace"))
        context.set_trailing_metadata((("x-synergai-worker", worker.id),))
        return resp.body

    async def model_metadata(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """The model's metadata from a worker serving it."""
        return await self._answer_meta(
            "ModelMetadata", body, service_pb2.ModelMetadataRequest.FromString, context
        )

    async def model_config(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """The model's configuration from a worker serving it."""
        return await self._answer_meta(
            "ModelConfig", body, service_pb2.ModelConfigRequest.FromString, context
        )

    # -- inference -------------------------------------------------------------------------------

    def _decode(
        self, body: bytes, hints: Mapping[str, Any], deadline: float | None, now: float
    ) -> _Call:
        """Read what routing needs from one ``ModelInferRequest`` (see the module doc)."""
        head = parse_infer_head(body)
        params: dict[str, Any] = {}
        if head.parameters:  # the hints and misspelt ones, validated by gateway.core.hints
            for name, param in head.parameters.items():
                if name.lower() in HINT_KEYS:
                    params[name] = _param_value(param)
        batch = 1
        if head.inputs:
            shape = head.inputs[0].shape
            if shape and shape[0] >= 1:
                batch = int(shape[0])
        call = InferCall(
            model=head.model_name,
            version=head.model_version or None,
            target="ModelInfer",
            body=body,
            headers={},
            hints=hints,
            parameters=params,
            batch=batch,
            protocol="grpc",
        )
        capped = False
        left_ms = float("inf")
        if deadline is not None:
            left_ms = (deadline - now) * 1000.0
            if left_ms <= 0:
                raise ClientDeadlineExceeded(
                    "the deadline passed before the request could be routed"
                )
            if self.service.serves(call.model) and left_ms < self.service.resolve(call).slo_ms:
                call.hints = {**hints, "x-slo-ms": left_ms}
                capped = True
        return _Call(call, head.id, capped, left_ms)

    async def _route(self, decoded: _Call, deadline: float | None) -> InferResult:
        if deadline is None:  # the upstream's deadline scope defaults to None: nothing to set
            return await self.service.infer(decoded.call)
        with self.upstream.deadline(deadline):
            try:
                return await self.service.infer(decoded.call)
            except Shed as exc:
                if decoded.deadline_capped:
                    raise ClientDeadlineExceeded(
                        f"deadline cannot be met: {decoded.left_ms:.1f} ms left "
                        f"({exc.message}); not sent"
                    ) from None
                raise

    async def model_infer(self, body: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        """Route one ``ModelInferRequest`` and return the worker's response bytes."""
        now = time.monotonic()
        left = context.time_remaining()
        deadline = None if left is None else now + left
        try:
            decoded = self._decode(
                body, _metadata_hints(context.invocation_metadata()), deadline, now
            )
            result = await self._route(decoded, deadline)
        except GatewayError as exc:
            await context.abort(_grpc_code(exc), exc.message, _error_trailers(exc))
            raise AssertionError("unreachable") from None  # abort raises
        trailers = tuple(result.routing_headers().items())
        resp = result.response
        if not resp.ok:
            await context.abort(
                to_grpc_code(resp.code), resp.body.decode("utf-8", "replace"), trailers
            )
        context.set_trailing_metadata(trailers)
        return resp.body

    async def _stream_one(
        self, body: bytes, hints: Mapping[str, Any], deadline: float | None
    ) -> bytes:
        """Answer one message of a stream (never raises a :class:`GatewayError`)."""
        request_id = ""
        try:
            decoded = self._decode(body, hints, deadline, time.monotonic())
            request_id = decoded.request_id
            result = await self._route(decoded, deadline)
        except GatewayError as exc:
            return stream_error(f"{exc.code.name}: {exc.message}", request_id)
        resp = result.response
        if not resp.ok:
            return stream_error(resp.body.decode("utf-8", "replace"), request_id)
        params: dict[str, str | bool] = {"triton_final_response": True}
        params.update(result.routing_headers())
        return stream_infer_response(append_parameters(resp.body, params))

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]
    ) -> None:
        """Route each message of a bidirectional stream on its own; answer as each completes."""
        left = context.time_remaining()
        deadline = None if left is None else time.monotonic() + left
        hints = _metadata_hints(context.invocation_metadata())
        answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        window = asyncio.Semaphore(self.stream_window)
        tasks: set[asyncio.Task[None]] = set()

        async def one(body: bytes) -> None:
            try:
                answers.put_nowait(await self._stream_one(body, hints, deadline))
            finally:
                window.release()

        async def read() -> None:
            try:
                async for body in requests:
                    await window.acquire()
                    task = asyncio.create_task(one(body))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                await context.write(answer)
            await reader
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()
            pending = [reader, *tasks]
            await asyncio.gather(*pending, return_exceptions=True)


class GrpcServer:
    """A ``grpc.aio`` server serving one :class:`GrpcFrontDoor`; start and stop in the app's loop.

    Args:
        front: the handlers.
        host: address to bind (``0.0.0.0`` for every interface).
        port: port to bind; 0 picks a free one (see :attr:`port` after :meth:`start`).
        max_message_bytes: largest message accepted or sent (the gateway's ``max_body_bytes``).
    """

    def __init__(
        self, front: GrpcFrontDoor, host: str, port: int, *, max_message_bytes: int
    ) -> None:
        self.front = front
        self.host = host
        self.port = port
        self._max = max_message_bytes
        self._server: aio.Server | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port.

        Raises:
            RuntimeError: the port could not be bound.
        """
        server = aio.server(
            options=[
                ("grpc.max_send_message_length", self._max),
                ("grpc.max_receive_message_length", self._max),
            ]
        )
        handlers = self.front.handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)
        address = (
            f"[::]:{self.port}"
            if self.host in ("0.0.0.0", "::", "")
            else f"{self.host}:{self.port}"
        )
        try:
            bound: int = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise RuntimeError(f"gRPC: cannot bind {address}: {exc}") from None
        if bound == 0:
            raise RuntimeError(f"gRPC: cannot bind {address}")
        await server.start()
        self._server = server
        self.port = bound
        return bound

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting calls, let those in flight finish within ``grace_s``.

        The upstream's channels belong to the service (closed with the gateway).
        """
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)


async def start_grpc_server(
    service: InferenceService,
    *,
    host: str,
    port: int | None,
    max_message_bytes: int,
) -> GrpcServer | None:
    """Build and start the gRPC front door of an app (``None`` when ``port`` is ``None``).

    Creates the handlers and the server over the service's ``"grpc"`` upstream (started with
    the gateway). Call inside the app's event loop (its lifespan) and ``await server.stop()``
    on shutdown.

    Args:
        service: the app's request path (with a ``"grpc"`` :class:`GrpcUpstream`).
        host: bind address (``settings.host``).
        port: ``settings.grpc_port``; 0 picks a free port, ``None`` disables gRPC.
        max_message_bytes: ``settings.max_body_bytes``.
    """
    if port is None:
        return None
    server = GrpcServer(GrpcFrontDoor(service), host, port, max_message_bytes=max_message_bytes)
    await server.start()
    log.info("gRPC front door on %s:%d", host, server.port)
    return server


async def serve_grpc(
    service: InferenceService, settings: Settings
) -> Callable[[], Awaitable[None]]:
    """The app's gRPC hook (``gateway.app``): start on ``settings.grpc_port``, return ``stop``.

    The port is bound with ``SO_REUSEPORT`` (grpc's default), so the ``--workers N`` processes
    of ``synergai serve`` share it as they share the REST socket.
    """
    server = await start_grpc_server(
        service,
        host=settings.host,
        port=settings.grpc_port,
        max_message_bytes=settings.max_body_bytes,
    )
    if server is None:
        return _nothing_to_stop
    return server.stop


async def _nothing_to_stop() -> None:
    """``stop`` when gRPC is disabled."""
