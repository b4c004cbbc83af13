"""Network round-trip emulation: a TCP relay that delays every byte by ``rtt_ms / 2`` each way.

DESIGN.md §4: the emulated worker spends half of ``rtt_ms`` before taking an instance slot and
half after releasing it; network time does not occupy the device. A delaying relay in front of
each server's HTTP and gRPC ports gives exactly that: a request reaches Triton ``rtt/2`` after
it was sent, waits in Triton's queue for a slot, runs, and its response reaches the client
``rtt/2`` after Triton wrote it. Many requests can be "on the wire" at once for the cost of a few
buffered chunks, and Triton's own queue metrics are untouched.

Why not in the model: a (non-decoupled) python-backend instance holds its rate-limiter slot for
the whole ``execute``; sleeping there would occupy the device, and decoupled models (which could
sleep without holding an instance) cannot serve unary inference in Triton 2.51.

Each direction of a connection is a FIFO of ``(due, chunk)``: a chunk read at ``t`` is written
at ``t + delay`` and never before an earlier chunk, so ordering and half-closes are preserved
(like ``netem delay`` without jitter). The relay runs as its own process
(``python -m workers.netem CONFIG_JSON``), one per fleet, so the load it carries does not
compete for the GIL of the process that started the fleet; it prints ``READY`` once listening.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from workers import reaper

__all__ = ["DelayProxy", "Route", "main", "serve"]

_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Route:
    """Listen on ``listen_port``, relay to ``target_port``, ``delay_s`` one way."""

    listen_port: int
    target_port: int
    delay_s: float


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = asyncio.Event()

    async def receive() -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                queue.append((loop.time() + delay, data))
                ready.set()
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.append((loop.time() + delay, b""))
            ready.set()

    recv_task = asyncio.create_task(receive())
    try:
        while True:
            while not queue:
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        recv_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await recv_task


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _handle(
    route: Route, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
) -> None:
    try:
        u_reader, u_writer = await asyncio.open_connection("127.0.0.1", route.target_port)
    except OSError:
        # Server down (crash fault): the client sees its connection closed.
        c_writer.close()
        return
    _nodelay(c_writer)
    _nodelay(u_writer)
    try:
        await asyncio.gather(
            _pump(c_reader, u_writer, route.delay_s), _pump(u_reader, c_writer, route.delay_s)
        )
    finally:
        for w in (u_writer, c_writer):
            w.close()


async def serve(routes: Sequence[Route], ready_fd: int | None = None) -> None:
    """Serve every route until cancelled; print ``READY`` (to ``ready_fd``) when listening."""
    servers = []
    for route in routes:
        servers.append(
            await asyncio.start_server(
                functools.partial(_handle, route),
                host="127.0.0.1",
                port=route.listen_port,
                reuse_address=True,
                backlog=1024,
            )
        )
    print("READY", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m workers.netem '<routes JSON>'``."""
    args = list(sys.argv[1:] if argv is None else argv)
    routes = [Route(**r) for r in json.loads(args[0])]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(routes))


class DelayProxy:
    """Handle on a relay process serving some routes.

    Args:
        routes: what to relay.
        log_path: where the process's output goes.
    """

    def __init__(self, routes: Sequence[Route], log_path: Path) -> None:
        self.routes = list(routes)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the relay process, or None."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 15.0) -> None:
        """Start the relay and wait for its ``READY`` line.

        Raises:
            RuntimeError: if it exits or does not get ready in time (with its output).
        """
        cmd = [sys.executable, "-m", "workers.netem", json.dumps([asdict(r) for r in self.routes])]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                preexec_fn=reaper.preexec_for_child(),
            )
        reaper.register(self._proc.pid, "netem relay")
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self._proc.stdout], [], [], left)
            if readable:
                line = self._proc.stdout.readline()
                if line.strip() == b"READY" or not line:
                    break
        if line.strip() != b"READY":
            self.stop()
            err = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"netem relay did not start: {err}")
        self._proc.stdout.close()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the relay (SIGTERM, then SIGKILL to its group)."""
        proc = self._proc
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        reaper.kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        if proc.stdout is not None and not proc.stdout.closed:
            proc.stdout.close()
        reaper.unregister(proc.pid)
        self._proc = None


if __name__ == "__main__":
    main()
