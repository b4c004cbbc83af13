"""The endpoint picker's gRPC server: Envoy's ``ExternalProcessor`` plus gRPC health.

One server on one port carries both services, so Envoy's ext_proc cluster and a Kubernetes
``grpc`` probe reach the same process:

* ``envoy.service.ext_proc.v3.ExternalProcessor/Process``: one bidirectional stream per HTTP
  request; each message is answered by :class:`gateway.epp.exchange.Exchange` synchronously
  (no ``await`` between reading the view and booking the worker);
* ``grpc.health.v1.Health`` (``Check`` and ``Watch``): ``liveness`` (the process answers),
  ``readiness`` and ``envoy.service.ext_proc.v3.ExternalProcessor`` (at least one worker
  healthy and the state store connected or failing open), as the Endpoint Picker Protocol
  asks; ``""`` follows readiness.

Two transports carry them (``epp.transport``):

* ``h2`` (default): :mod:`gateway.epp.h2`, our own HTTP/2 framing on the event loop; a message
  is answered inside the read that brought it (see that module for why and the figures);
* ``grpcio``: ``grpc.aio``, the reference implementation, kept to compare against and as a
  fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway.epp.exchange import Exchange, PickerConfig
from gateway.epp.h2 import H2Server, Status

__all__ = ["EXT_PROC_SERVICE", "EppServer", "PickerServicer", "Transport"]

log = logging.getLogger(__name__)

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
PROCESS_METHOD = f"/{EXT_PROC_SERVICE}/Process"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
_parse_request = pb.ProcessingRequest.FromString
Transport = Literal["h2", "grpcio"]


class PickerServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """``Process`` on ``grpc.aio``: read a message, answer it, until Envoy closes the stream."""

    def __init__(self, service: Any, cfg: PickerConfig) -> None:
        self.service = service
        self.cfg = cfg

    async def Process(self, request_iterator: Any, context: Any) -> None:
        """Serve one stream; whatever is still booked when it ends is ended as cancelled."""
        ex = Exchange(self.service, self.cfg)
        read, write, eof = context.read, context.write, grpc.aio.EOF
        try:
            while True:
                msg = await read()
                if msg is eof:
                    return
                resp = ex.handle(msg)
                if resp is not None:
                    await write(resp)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass  # Envoy reset the stream (client gone, timeout): end it below
        finally:
            ex.close()


class _ProcessCall:
    """``Process`` on :mod:`gateway.epp.h2`: the same exchange, driven by the stream's frames."""

    __slots__ = ("ex", "stream")

    def __init__(self, stream: Any, service: Any, cfg: PickerConfig) -> None:
        self.stream = stream
        self.ex = Exchange(service, cfg)

    def on_message(self, data: bytes) -> None:
        resp = self.ex.handle(_parse_request(data))
        if resp is not None:
            self.stream.send(resp.SerializeToString())

    def on_half_close(self) -> None:
        self.ex.close()
        self.stream.finish()

    def on_reset(self) -> None:
        self.ex.close()


class HealthStatus:
    """The health statuses served by the ``h2`` transport, with their ``Watch`` streams.

    Behaves as ``grpc_health``'s servicer: ``Check`` of an unknown service is ``NOT_FOUND``,
    ``Watch`` of one answers ``SERVICE_UNKNOWN`` and waits; after
    :meth:`enter_graceful_shutdown` every service is ``NOT_SERVING`` and stays so.
    """

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.watchers: dict[str, set[Any]] = {}
        self.shutting_down = False

    def set(self, service: str, status: int) -> None:
        """Set ``service``'s status; ``Watch`` streams hear of a change."""
        if self.shutting_down or self.statuses.get(service) == status:
            return
        self.statuses[service] = status
        for stream in list(self.watchers.get(service, ())):
            self._send(stream, status)

    def enter_graceful_shutdown(self) -> None:
        """Every service ``NOT_SERVING``, for good.

        Each ``Watch`` hears it and then ends (OK), so a long-lived watch does not hold the
        server's drain.
        """
        for service in list(self.statuses):
            self.set(service, NOT_SERVING)
        self.shutting_down = True
        watchers, self.watchers = self.watchers, {}
        for streams in watchers.values():
            for stream in streams:
                stream.finish()

    def _send(self, stream: Any, status: int) -> None:
        stream.send(health_pb2.HealthCheckResponse(status=status).SerializeToString())

    def _service(self, data: bytes) -> str:
        return str(health_pb2.HealthCheckRequest.FromString(data).service)

    def check(self, stream: Any) -> Any:
        """A ``Check`` call."""
        health = self

        class _Check:
            def on_message(self, data: bytes) -> None:
                status = health.statuses.get(health._service(data))
                if status is None:
                    stream.finish(Status.NOT_FOUND, "unknown service")
                else:
                    health._send(stream, status)

            def on_half_close(self) -> None:
                stream.finish()

            def on_reset(self) -> None:
                pass

        return _Check()

    def watch(self, stream: Any) -> Any:
        """A ``Watch`` call: the status now, then each change, until the peer leaves."""
        health = self

        class _Watch:
            service: str | None = None

            def on_message(self, data: bytes) -> None:
                self.service = service = health._service(data)
                health.watchers.setdefault(service, set()).add(stream)
                health._send(stream, health.statuses.get(service, SERVICE_UNKNOWN))

            def on_half_close(self) -> None:
                pass  # a server-streaming call: the client's half is done, ours goes on

            def on_reset(self) -> None:
                if self.service is not None:
                    health.watchers.get(self.service, set()).discard(stream)

        return _Watch()


class EppServer:
    """The gRPC server; :meth:`start` binds, :meth:`stop` drains.

    Args:
        service: the request path (``gateway.service.InferenceService``).
        cfg: the picker's configuration.
        host: address to bind.
        port: port to bind (0: any free one; :attr:`port` tells which).
        readiness_interval_s: how often health readiness is re-evaluated.
        transport: ``h2`` or ``grpcio`` (see the module docstring).
    """

    def __init__(
        self,
        service: Any,
        cfg: PickerConfig,
        host: str = "0.0.0.0",
        port: int = 9002,
        readiness_interval_s: float = 1.0,
        transport: Transport = "h2",
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.host = host
        self.port = port
        self.interval_s = readiness_interval_s
        self.transport = transport
        self.health: Any = None
        self._server: Any = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
        if self.transport == "h2":
            await self._start_h2()
        else:
            await self._start_grpcio()
        self._ticker = asyncio.create_task(self._tick(), name="epp-readiness")
        return self.port

    async def _start_h2(self) -> None:

        health = self.health = HealthStatus()
        service, cfg = self.service, self.cfg
        server = H2Server(
            {
                PROCESS_METHOD: lambda stream: _ProcessCall(stream, service, cfg),
                HEALTH_CHECK: health.check,
                HEALTH_WATCH: health.watch,
            }
        )
        health.set("liveness", SERVING)
        await self._update_readiness()
        try:
            self.port = await server.start(self.host, self.port)
        except OSError as exc:
            raise OSError(f"cannot bind the endpoint picker to {self.host}:{self.port}") from exc
        self._server = server

    async def _start_grpcio(self) -> None:
        self.health = HealthServicer()
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        pb_grpc.add_ExternalProcessorServicer_to_server(
            PickerServicer(self.service, self.cfg), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if bound == 0:
            raise OSError(f"cannot bind the endpoint picker to {self.host}:{self.port}")
        self.port = int(bound)
        await self._set("liveness", SERVING)
        await self._update_readiness()
        await server.start()
        self._server = server

    async def _set(self, name: str, status: int) -> None:
        result = self.health.set(name, status)
        if result is not None:  # grpc_health's servicer is async
            await result

    async def _update_readiness(self) -> None:
        ready = bool(self.service.ready())
        status = SERVING if ready else NOT_SERVING
        for name in ("readiness", EXT_PROC_SERVICE, ""):
            await self._set(name, status)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._update_readiness()
            except Exception:  # keep ticking; health must not die of one bad read
                log.exception("readiness update failed")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Report NOT_SERVING, stop accepting, let open streams finish up to ``grace_s``."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            result = self.health.enter_graceful_shutdown()
            if result is not None:
                await result
            await self._server.stop(grace_s)
            self._server = None
