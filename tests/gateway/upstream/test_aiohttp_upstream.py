"""The aiohttp upstream (``upstream: aiohttp``, and http1's path to non-``http://`` workers)
against real loopback servers: the same contract as :mod:`tests.gateway.upstream.test_http1`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.core.net import free_port
from gateway.errors import StatusCode, UpstreamConnectError, UpstreamError, UpstreamTimeout
from gateway.routing.types import WorkerInfo
from gateway.upstream.aiohttp_upstream import AiohttpUpstream
from gateway.upstream.base import make_http_upstream
from gateway.upstream.http1 import Http1Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _worker(port: int, scheme: str = "http") -> WorkerInfo:
    url = f"{scheme}://127.0.0.1:{port}"
    return WorkerInfo(id="w0", pool="p", arch="a", url=url, models=("m",))


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


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line, headers, body = await _read_request(reader)
        out = line + b"|" + headers.get(b"content-type", b"-") + b"|" + body
        status = b"400 Bad Request" if body == b"bad" else b"200 OK"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Inference-Header-Content-Length: 7\r\nX-Other: no\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(out) + out
        )  # fmt: skip
        await writer.drain()


def test_settings_pick_it() -> None:
    up = make_http_upstream("aiohttp", connect_timeout_s=1.0, max_connections_per_worker=4)
    assert isinstance(up, AiohttpUpstream)
    with pytest.raises(ValueError, match="known: http1, aiohttp"):
        make_http_upstream("httpx", connect_timeout_s=1.0, max_connections_per_worker=4)


async def test_post_get_and_error_answers_on_one_connection() -> None:
    async with _server(_echo) as (port, conns):
        up = AiohttpUpstream()
        await up.start()
        w = _worker(port)
        r = await up.call(w, "/v2/models/m/infer", b"body", {"content-type": "x/y"}, 2)
        assert r.ok and r.http_status == 200 and r.code is StatusCode.OK
        assert r.body == b"POST /v2/models/m/infer HTTP/1.1|x/y|body"
        assert r.headers == {
            "content-type": "application/json",
            "inference-header-content-length": "7",
        }
        r = await up.call(w, "/v2/models/m", None, {}, 2)
        assert r.ok and r.body == b"GET /v2/models/m HTTP/1.1|-|"
        r = await up.call(w, "/x", b"bad", {}, 2)  # a worker's error answer is not an exception
        assert not r.ok and r.http_status == 400 and r.code is StatusCode.INVALID_ARGUMENT
        assert len(conns) == 1
        await up.close()


async def test_timeout_broken_connection_connect_error_not_started() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    up = AiohttpUpstream(connect_timeout_s=0.5)
    with pytest.raises(UpstreamError, match="not started"):
        await up.call(_worker(1), "/x", b"", {}, 1)
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


async def test_http1_hands_non_http_workers_to_it() -> None:
    """An ``https://`` worker goes through aiohttp (here: a plain server, so TLS fails)."""
    async with _server(_echo) as (port, conns):
        up = Http1Upstream(connect_timeout_s=0.5)
        await up.start()
        with pytest.raises(UpstreamConnectError):
            await up.call(_worker(port, "https"), "/x", b"", {}, 2)
        assert len(conns) == 1
        r = await up.call(_worker(port), "/x", b"", {}, 2)  # plain http: its own pool
        assert r.ok
        await up.close()
