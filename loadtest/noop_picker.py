"""A no-op ext_proc server: what a Python endpoint picker costs before it picks anything.

``python -m loadtest.noop_picker --port P [--transport h2|grpcio]`` serves
``envoy.service.ext_proc.v3.ExternalProcessor`` on either of the transports ``synergai epp``
runs on (``epp.transport``: our HTTP/2 on the event loop, or ``grpc.aio``) and answers every
message at once without choosing: request headers continue (Envoy balances with its own
``least_request``), response headers and trailers pass. Envoy sends it the same messages as to
the real picker, so the ``envoy+epp`` rows with ``"variant": "noop-picker"`` (and
``noop-picker/grpcio``) of ``synergai bench overhead`` are the floor of any picker on that
transport: Envoy's ext_proc stream per request plus two message round trips; the difference to
the ``envoy+epp`` rows is our routing.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

__all__ = ["NoopPicker", "main"]


def _answers() -> dict[str, Any]:
    from gateway.epp import replies

    return {
        "request_headers": replies.continue_headers(),
        "request_body": replies.continue_body(),
        "response_headers": replies.response_headers(),
        "response_trailers": replies.response_trailers(),
    }


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


async def _serve_h2(port: int) -> None:
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    from gateway.epp.h2 import H2Server, Stream

    answers = {k: v.SerializeToString() for k, v in _answers().items()}
    parse = pb.ProcessingRequest.FromString

    class Noop:
        def __init__(self, stream: Stream) -> None:
            self.stream = stream

        def on_message(self, data: bytes) -> None:
            resp = answers.get(parse(data).WhichOneof("request"))
            if resp is not None:
                self.stream.send(resp)

        def on_half_close(self) -> None:
            self.stream.finish()

        def on_reset(self) -> None:
            pass

    server = H2Server({"/envoy.service.ext_proc.v3.ExternalProcessor/Process": Noop})
    await server.start("127.0.0.1", port)
    await _until_signalled()
    await server.stop(0)


async def _serve(port: int) -> None:
    import grpc
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

    answers = _answers()

    class Noop(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
        async def Process(self, request_iterator: Any, context: Any) -> None:
            read, write, eof = context.read, context.write, grpc.aio.EOF
            while True:
                msg = await read()
                if msg is eof:
                    return
                resp = answers.get(msg.WhichOneof("request"))
                if resp is not None:
                    await write(resp)

    server = grpc.aio.server()
    pb_grpc.add_ExternalProcessorServicer_to_server(Noop(), server)
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    await server.start()
    await _until_signalled()
    await server.stop(0)


class NoopPicker:
    """The no-op picker as a child process on ``127.0.0.1:port``; a context manager."""

    def __init__(self, port: int, transport: str = "h2") -> None:
        self.port = port
        self.transport = transport
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` for Envoy's ext_proc cluster."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = 60.0) -> None:
        """Spawn it and wait for its ``ready`` line."""
        from workers import reaper

        cmd = [sys.executable, "-m", "loadtest.noop_picker", "--port", str(self.port)]
        cmd += ["--transport", self.transport]
        self._proc = proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=reaper.preexec_for_child(),
        )
        reaper.register(proc.pid, "noop picker")
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready or exit; the child has no timeout
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"noop picker did not start (exit {proc.poll()})")

    def stop(self) -> None:
        """SIGTERM, SIGKILL if it lingers; idempotent."""
        from workers import reaper

        proc = self._proc
        if proc is None:
            return
        reaper.kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            reaper.kill_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        reaper.unregister(proc.pid)
        self._proc = None

    def __enter__(self) -> NoopPicker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loadtest.noop_picker --port P``: serve until SIGTERM."""
    p = argparse.ArgumentParser(prog="python -m loadtest.noop_picker", description=__doc__)
    p.add_argument("--port", type=int, required=True, help="ext_proc port on 127.0.0.1")
    p.add_argument(
        "--transport",
        choices=("h2", "grpcio"),
        default="h2",
        help="h2: gateway.epp.h2 on uvloop (synergai epp's default); grpcio: grpc.aio on asyncio",
    )
    args = p.parse_args(argv)
    if args.transport == "h2":
        import uvloop

        uvloop.run(_serve_h2(args.port))
    else:
        asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
