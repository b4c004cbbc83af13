from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from workers.launcher import free_ports
from workers.netem import DelayProxy, Route, serve


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    t = time.perf_counter()
    writer.write(b"ping")
    await writer.drain()
    assert await reader.readexactly(4) == b"ping"
    return time.perf_counter() - t


async def test_relay_delays_each_way_and_keeps_order() -> None:
    listen, target, dead_listen, dead_target = free_ports(4)
    upstream = await asyncio.start_server(_echo, "127.0.0.1", target)
    relay = asyncio.create_task(
        serve([Route(listen, target, 0.02), Route(dead_listen, dead_target, 0.02)])
    )
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", listen)
                break
            except OSError:
                await asyncio.sleep(0.01)
        # the fastest of 3 pings, relayed and direct (same loop, same load): a busy machine
        # only adds time, so the fastest is the least disturbed
        rtt = min([await _ping(reader, writer) for _ in range(3)])
        dr, dw = await asyncio.open_connection("127.0.0.1", target)
        direct = min([await _ping(dr, dw) for _ in range(3)])
        dw.close()
        assert 0.04 <= rtt < 0.12 + 3 * direct  # 20 ms each way, not more (x3 caught)
        # Many chunks in flight at once: order kept, total time ~ one rtt, not one per chunk.
        for i in range(50):
            writer.write(b"%03d" % i)
            await asyncio.sleep(0.001)
        t = time.perf_counter()  # the writes took what the loop allowed: not counted
        got = await reader.readexactly(150)
        assert got == b"".join(b"%03d" % i for i in range(50))
        # the last chunk came one rtt after it was sent; one rtt per chunk would be 2 s
        assert time.perf_counter() - t < max(0.5, 5 * rtt)
        writer.close()
        # Upstream down: the client's connection is closed, nothing hangs.
        r2, w2 = await asyncio.open_connection("127.0.0.1", dead_listen)
        assert await asyncio.wait_for(r2.read(10), 2) == b""
        w2.close()
    finally:
        relay.cancel()
        upstream.close()
        await asyncio.gather(relay, return_exceptions=True)


def test_a_taken_port_fails_the_relay_in_words_the_fleet_retries_on(tmp_path: Path) -> None:
    """``Fleet.start`` starts the relay again on new ports when one was taken meanwhile; it
    recognises that case by the bind error's words, which this pins (a real relay process)."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        (target,) = free_ports(1)
        proxy = DelayProxy([Route(taken.getsockname()[1], target, 0.001)], tmp_path / "n.log")
        with pytest.raises(RuntimeError, match="already in use"):
            proxy.start(timeout=10.0)
    finally:
        taken.close()
