"""REST upstream: a minimal keep-alive HTTP/1.1 client on asyncio protocols and ``httptools``.

Why not aiohttp: py-spy on the gateway at concurrency 32 (``synergai bench overhead`` with
``SYNERGAI_OVERHEAD_PROFILE``) put aiohttp's request path at ~20% of the gateway's CPU, about
half of it building a ``ClientRequest`` (header multidicts, URL objects, timers, tracing hooks)
for what is always the same request shape. Here a request is one pre-built head
(``POST <target> HTTP/1.1``, ``Host``, the forwarded headers, ``Content-Length``) and the body
bytes, written in one ``transport.write``; the answer is parsed by ``httptools`` (the C parser
uvicorn uses), so ``Content-Length``, chunked and read-until-close bodies are all handled.

Per worker (``host:port``) a pool keeps idle connections (most recently used first) and opens
a new one when none is idle, up to ``max_connections_per_worker``; beyond that callers wait for
a free one. A connection goes back to the pool only after a complete answer that allows
keep-alive; one that timed out, broke, was cancelled mid-request or answered
``Connection: close`` is closed. The worker closing an idle connection is noticed by the
protocol (``connection_lost``) and the connection is dropped from the pool.

Errors, as aiohttp's were mapped (:mod:`gateway.upstream.base`):

* connecting failed or timed out (``connect_timeout_s``): the worker never saw the request ->
  :class:`~gateway.errors.UpstreamConnectError` (retry-safe);
* no complete answer within ``timeout_s`` (pool wait and connect included) ->
  :class:`~gateway.errors.UpstreamTimeout`;
* the connection broke or the answer did not parse -> :class:`~gateway.errors.UpstreamError`.

Only ``http://`` worker URLs are handled here; anything else (``https://``) goes through an
:class:`~gateway.upstream.aiohttp_upstream.AiohttpUpstream` created on first use.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools

from gateway.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from gateway.routing.types import WorkerInfo
from gateway.upstream.base import PASS_RESPONSE_HEADERS, Upstream, UpstreamResponse

__all__ = ["Http1Upstream"]

_PASS = {h.encode(): h for h in PASS_RESPONSE_HEADERS}
"""Response header names kept (lower-case bytes -> the name used in ``headers``)."""

_DELIMITING = frozenset({b"content-length", b"transfer-encoding"})
"""Headers that delimit a body; without them it runs until the worker closes."""

_BAD_VALUE = frozenset("\r\n")

_COPY_BODY_BYTES = 64 * 1024
"""Bodies up to this size are copied behind the head (one buffer); larger ones are not."""


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: at most one request in flight; parses the answer."""

    __slots__ = (
        "_body",
        "_delimited",
        "_headers",
        "_parser",
        "_pool",
        "_timer",
        "fut",
        "headers_done",
        "lost",
        "transport",
    )

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self.transport: Any = None
        self.fut: asyncio.Future[UpstreamResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._headers: dict[str, str] = {}
        self._delimited = False
        self.headers_done = False
        self.lost = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.fut is None:  # bytes nobody asked for: the connection is unusable
            self._close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish_error(UpstreamError(f"bad answer from worker: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._pool.forget(self)
        fut = self.fut
        if fut is None or fut.done():
            return
        if self.headers_done and not self._delimited:
            self._complete(keep_alive=False)  # a body delimited by the end of the connection
            return
        self._finish_error(UpstreamError(f"connection lost: {type(exc).__name__}"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        key = _PASS.get(low)
        if key is not None:
            self._headers[key] = value.decode("latin-1")
        elif low in _DELIMITING:
            self._delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self._parser.get_status_code() in (204, 304):
            self._delimited = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete(keep_alive=self._parser.should_keep_alive())

    # -- request / answer --------------------------------------------------------------------

    def send(self, data: list[bytes], deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        """Write one request (head and body); its answer resolves :attr:`fut`."""
        self.fut = loop.create_future()
        self._timer = loop.call_at(deadline, self._timed_out)
        if len(data) == 1:
            self.transport.write(data[0])
        else:
            self.transport.writelines(data)

    def _reset(self) -> UpstreamResponse | None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        body = self._body
        resp = None
        if self.headers_done:
            status = self._parser.get_status_code()
            resp = UpstreamResponse.from_http(
                status=status,
                body=body[0] if len(body) == 1 else b"".join(body),
                headers=self._headers,
            )
        self._body = []
        self._headers = {}
        self._delimited = False
        self.headers_done = False
        return resp

    def _complete(self, keep_alive: bool) -> None:
        fut = self.fut
        self.fut = None
        resp = self._reset()
        if fut is None or resp is None:
            self._close()
            return
        if not fut.done():
            fut.set_result(resp)
        if keep_alive and not self.lost:
            self._pool.put(self)
        else:
            self._close()

    def _finish_error(self, exc: BaseException | None) -> None:
        """Fail the request in flight with ``exc`` (cancel it when None); close."""
        fut = self.fut
        self.fut = None
        self._reset()
        self._close()
        if fut is not None and not fut.done():
            if exc is None:
                fut.cancel()
            else:
                fut.set_exception(exc)

    def _timed_out(self) -> None:
        self._timer = None
        self._finish_error(TimeoutError())

    def abort(self) -> None:
        """The caller gave up mid-request (cancelled): this connection cannot be reused."""
        self._finish_error(None)

    def _close(self) -> None:
        self.lost = True
        self._pool.forget(self)
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Connections to one ``host:port``: idle ones (LIFO), a count, and waiters for a slot."""

    __slots__ = ("_host_header", "busy", "host", "idle", "limit", "port", "waiters")

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def forget(self, conn: _Conn) -> None:
        """Drop a closed connection; wake a waiter, whose slot is now free."""
        if conn in self.busy:
            self.busy.discard(conn)
            self.wake()
        elif conn in self.idle:
            self.idle.remove(conn)

    def put(self, conn: _Conn) -> None:
        """A connection finished its request and may be reused."""
        self.busy.discard(conn)
        self.idle.append(conn)
        self.wake()

    def wake(self) -> None:
        """Let the first live waiter try again."""
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def take(self) -> _Conn | None:
        """An idle connection that is still open, now marked busy."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.lost:
                self.busy.add(conn)
                return conn
        return None

    def full(self) -> bool:
        """No slot left for a new connection."""
        return len(self.busy) + len(self.idle) >= self.limit

    def close(self) -> None:
        """Close every connection and fail the waiters."""
        for conn in [*self.idle, *self.busy]:
            conn.lost = True
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
        self.busy.clear()
        for w in self.waiters:
            if not w.done():
                w.set_exception(UpstreamError("upstream client closed"))
        self.waiters.clear()


class Http1Upstream:
    """Pooled keep-alive HTTP/1.1 to every worker; see the module docstring.

    Args:
        connect_timeout_s: bound on opening one connection.
        max_connections_per_worker: most connections open to one worker at once.
    """

    def __init__(
        self, *, connect_timeout_s: float = 1.0, max_connections_per_worker: int = 256
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._per_host = max_connections_per_worker
        self._pools: dict[str, _Pool] = {}
        self._prefix: dict[str, tuple[_Pool, bytes, str]] = {}
        self._fallback: Upstream | None = None
        self._started = False

    async def start(self) -> None:
        """Nothing to open up front: connections open on a worker's first request."""
        self._started = True

    async def close(self) -> None:
        """Close every connection (requests in flight fail)."""
        self._started = False
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._prefix.clear()
        if self._fallback is not None:
            await self._fallback.close()
            self._fallback = None

    def _route(self, url: str) -> tuple[_Pool, bytes, str] | None:
        """``(pool, "Host: ..." header line, path prefix)`` for a worker URL; None if not http."""
        found = self._prefix.get(url)
        if found is None:
            u = urlsplit(url)
            if u.scheme != "http" or not u.hostname:
                return None
            port = u.port or 80
            key = f"{u.hostname}:{port}"
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(u.hostname, port, self._per_host)
            host = u.netloc.rpartition("@")[2]
            found = (pool, f"Host: {host}\r\n".encode("latin-1"), u.path.rstrip("/"))
            self._prefix[url] = found
        return found

    async def _fallback_call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        if self._fallback is None:
            from gateway.upstream.aiohttp_upstream import AiohttpUpstream

            self._fallback = AiohttpUpstream(
                connect_timeout_s=self._connect_timeout_s,
                max_connections_per_worker=self._per_host,
            )
            await self._fallback.start()
        return await self._fallback.call(worker, target, body, headers, timeout_s)

    async def _connect(
        self, pool: _Pool, worker: WorkerInfo, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> _Conn:
        conn = _Conn(pool)
        pool.busy.add(conn)  # holds the slot while connecting
        left = min(self._connect_timeout_s, deadline - loop.time())
        try:
            async with asyncio.timeout(max(left, 0.0)):
                await loop.create_connection(lambda: conn, pool.host, pool.port)
        except BaseException as exc:
            pool.forget(conn)
            if isinstance(exc, (OSError, TimeoutError)):
                raise UpstreamConnectError(
                    f"worker {worker.id} unreachable: {type(exc).__name__}"
                ) from exc
            raise
        return conn

    async def _acquire(
        self, pool: _Pool, worker: WorkerInfo, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> _Conn:
        while True:
            conn = pool.take()
            if conn is not None:
                return conn
            if not pool.full():
                return await self._connect(pool, worker, deadline, loop)
            waiter: asyncio.Future[None] = loop.create_future()
            pool.waiters.append(waiter)
            woken = False
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
                woken = True
            except TimeoutError:
                raise UpstreamTimeout(
                    f"worker {worker.id}: no free connection within the request's time"
                ) from None
            finally:
                if not woken:
                    if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                        pool.wake()  # woken as we gave up: hand the free slot on
                    elif waiter in pool.waiters:
                        pool.waiters.remove(waiter)

    async def call(
        self,
        worker: WorkerInfo,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> UpstreamResponse:
        """Forward one request; see :class:`gateway.upstream.base.Upstream`."""
        if not self._started:
            raise UpstreamError("upstream client not started")
        route = self._route(worker.url)
        if route is None:
            return await self._fallback_call(worker, target, body, headers, timeout_s)
        pool, host_line, prefix = route
        parts = [b"POST " if body is not None else b"GET ", (prefix + target).encode("latin-1")]
        parts.append(b" HTTP/1.1\r\n")
        parts.append(host_line)
        for k, v in headers.items():
            if _BAD_VALUE.isdisjoint(v):
                parts.append(f"{k}: {v}\r\n".encode("latin-1"))
        if body is not None:
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        else:
            parts.append(b"\r\n")
        if body is None or not body:
            data = [b"".join(parts)]
        elif len(body) <= _COPY_BODY_BYTES:  # one write, one packet
            parts.append(body)
            data = [b"".join(parts)]
        else:  # no copy of a large body: head and body in one writev
            data = [b"".join(parts), body]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        conn = await self._acquire(pool, worker, deadline, loop)
        conn.send(data, deadline, loop)
        fut = conn.fut
        assert fut is not None
        try:
            return await fut
        except TimeoutError as exc:
            raise UpstreamTimeout(f"worker {worker.id} did not answer in {timeout_s:g} s") from exc
        except UpstreamError as exc:
            raise UpstreamError(f"worker {worker.id} unreachable: {exc}") from exc
        except asyncio.CancelledError:
            if not fut.done():
                conn.abort()
            raise
