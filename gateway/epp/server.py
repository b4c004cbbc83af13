"""The endpoint picker's gRPC server: Envoy's ``ExternalProcessor`` plus gRPC health.

One ``grpc.aio`` server on one port carries both services, so Envoy's ext_proc cluster and a
Kubernetes ``grpc`` probe reach the same process:

* ``envoy.service.ext_proc.v3.ExternalProcessor/Process``: one bidirectional stream per HTTP
  request; each message is answered by :class:`gateway.epp.exchange.Exchange` synchronously
  (no ``await`` between reading the view and booking the worker);
* ``grpc.health.v1.Health``: ``liveness`` (the process answers), ``readiness`` and
  ``envoy.service.ext_proc.v3.ExternalProcessor`` (at least one worker healthy and the state
  store connected or failing open), as the Endpoint Picker Protocol asks; ``""`` follows
  readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway.epp.exchange import Exchange, PickerConfig

__all__ = ["EXT_PROC_SERVICE", "EppServer", "PickerServicer"]

log = logging.getLogger(__name__)

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class PickerServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """``Process``: read a message, answer it, until Envoy closes the stream."""

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


class EppServer:
    """The gRPC server; :meth:`start` binds, :meth:`stop` drains.

    Args:
        service: the request path (``gateway.service.InferenceService``).
        cfg: the picker's configuration.
        host: address to bind.
        port: port to bind (0: any free one; :attr:`port` tells which).
        readiness_interval_s: how often health readiness is re-evaluated.
    """

    def __init__(
        self,
        service: Any,
        cfg: PickerConfig,
        host: str = "0.0.0.0",
        port: int = 9002,
        readiness_interval_s: float = 1.0,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.host = host
        self.port = port
        self.interval_s = readiness_interval_s
        self.health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
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
        await self.health.set("liveness", _SERVING)
        await self._update_readiness()
        await server.start()
        self._server = server
        self._ticker = asyncio.create_task(self._tick(), name="epp-readiness")
        return self.port

    async def _update_readiness(self) -> None:
        ready = bool(self.service.ready())
        status = _SERVING if ready else _NOT_SERVING
        for name in ("readiness", EXT_PROC_SERVICE, ""):
            await self.health.set(name, status)

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
            await self.health.enter_graceful_shutdown()
            await self._server.stop(grace_s)
            self._server = None
