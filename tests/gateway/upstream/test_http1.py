"""The HTTP/1.1 upstream against real loopback servers (raw asyncio sockets, byte-exact)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.core.net import free_port
from gateway.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from gateway.routing.types import WorkerInfo
from gateway.upstream.http1 import Http1Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _worker(port: int) -> WorkerInfo:
    return WorkerInfo(id="w0", pool="p", arch="a", url=f"http://127.0.0.1:{port}", models=("m",))


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return lines[0], headers, body


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback server; yields its port and a list with one entry per accepted connection."""
    conns: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, conns
    finally:
        server.close()


def _echo_handler(extra: bytes = b"") -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, headers, body = await _read_request(reader)
            out = line + b"|" + headers.get(b"content-type", b"-") + b"|" + body
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Inference-Header-Content-Length: 7\r\nX-Other: no\r\n" + extra
                + b"Content-Length: %d\r\n\r\n" % len(out) + out
            )  # fmt: skip
            await writer.drain()

    return handler


async def test_post_and_get_reuse_one_connection() -> None:
    async with _server(_echo_handler()) as (port, conns):
        up = Http1Upstream()
        await up.start()
        w = _worker(port)
        for i in range(3):
            r = await up.call(w, "/v2/models/m/infer", b"body%d" % i, {"content-type": "x/y"}, 2)
            assert r.ok and r.http_status == 200
            assert r.body == b"POST /v2/models/m/infer HTTP/1.1|x/y|body%d" % i
            assert r.headers == {
                "content-type": "application/json",
                "inference-header-content-length": "7",
            }
        r = await up.call(w, "/v2/models/m", None, {}, 2)
        assert r.body == b"GET /v2/models/m HTTP/1.1|-|"
        assert len(conns) == 1
        await up.close()


async def test_chunked_and_until_close_bodies() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            await writer.drain()

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    up = Http1Upstream()
    await up.start()
    async with _server(chunked) as (port, conns):
        for _ in range(2):
            r = await up.call(_worker(port), "/x", b"", {}, 2)
            assert not r.ok and r.http_status == 400 and r.body == b"hello world"
        assert len(conns) == 1
    async with _server(until_close) as (port, conns):
        for _ in range(2):
            r = await up.call(_worker(port), "/x", b"{}", {}, 2)
            assert r.ok and r.body == b"all of it"
        assert len(conns) == 2  # Connection: close is honoured
    await up.close()


async def test_concurrent_calls_open_connections_up_to_the_limit() -> None:
    gate = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, _, body = await _read_request(reader)
            await gate.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    async with _server(slow) as (port, conns):
        up = Http1Upstream(max_connections_per_worker=2)
        await up.start()
        calls = [
            asyncio.ensure_future(up.call(_worker(port), "/x", b"%d" % i, {}, 5)) for i in range(5)
        ]
        await asyncio.sleep(0.2)
        assert len(conns) == 2
        gate.set()
        results = await asyncio.gather(*calls)
        assert [r.body for r in results] == [b"%d" % i for i in range(5)]
        assert len(conns) == 2
        await up.close()


async def test_timeout_and_broken_connection_and_connect_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    up = Http1Upstream(connect_timeout_s=0.5)
    await up.start()
    async with _server(silent) as (port, _):
        with pytest.raises(UpstreamTimeout, match=r"did not answer in 0\.2 s"):
            await up.call(_worker(port), "/x", b"", {}, 0.2)
    async with _server(hang_up) as (port, _):
        with pytest.raises(UpstreamError) as info:
            await up.call(_worker(port), "/x", b"", {}, 2)
        assert not isinstance(info.value, UpstreamConnectError)
    with pytest.raises(UpstreamConnectError):
        await up.call(_worker(free_port("127.0.0.1")), "/x", b"", {}, 2)
    await up.close()


async def test_cancelled_call_drops_its_connection() -> None:
    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while True:
            await _read_request(reader)
            if first:
                first = False
                await asyncio.sleep(0.3)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with _server(slow_first) as (port, conns):
        up = Http1Upstream()
        await up.start()
        task = asyncio.ensure_future(up.call(_worker(port), "/x", b"a", {}, 5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        r = await up.call(_worker(port), "/x", b"b", {}, 2)
        assert r.ok and r.body == b"ok"
        assert len(conns) == 2  # the cancelled request's connection was not reused
        await up.close()


async def test_worker_closing_an_idle_connection_is_noticed() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # keep-alive was allowed, but the worker closes while idle

    async with _server(once) as (port, conns):
        up = Http1Upstream()
        await up.start()
        assert (await up.call(_worker(port), "/x", b"", {}, 2)).body == b"ok"
        await asyncio.sleep(0.2)
        assert (await up.call(_worker(port), "/x", b"", {}, 2)).body == b"ok"
        assert len(conns) == 2
        await up.close()


async def test_not_started_and_header_injection() -> None:
    up = Http1Upstream()
    with pytest.raises(UpstreamError, match="not started"):
        await up.call(_worker(1), "/x", b"", {}, 1)
    async with _server(_echo_handler()) as (port, _):
        await up.start()
        r = await up.call(_worker(port), "/x", b"", {"content-type": "a\r\nX-Evil: 1"}, 2)
        assert r.body == b"POST /x HTTP/1.1|-|"  # a value with CR/LF is not forwarded
        await up.close()


async def test_large_body_goes_through_whole() -> None:
    async with _server(_echo_handler()) as (port, _):
        up = Http1Upstream()
        await up.start()
        body = bytes(range(256)) * 4096  # 1 MiB: head and body written without a copy
        r = await up.call(_worker(port), "/x", body, {"content-type": "application/json"}, 5)
        assert r.ok and r.body == b"POST /x HTTP/1.1|application/json|" + body
        await up.close()
