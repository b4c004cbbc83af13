"""A minimal pipelining RESP2 client for the hot path (EVALSHA, pipelined reads).

Why not redis-py here: measured on the 2-vCPU CI VM, one ``redis.asyncio`` script call costs
~310 µs of CPU (uvloop) against ~40 µs for a raw PING round trip on an asyncio socket
(2,000 sequential reserve + release calls on an embedded Valkey), and the gateway makes two
per request; see docs/architecture.md.
This client keeps **one connection** and pipelines every concurrent command on it: a call
writes its encoded command and appends a future to a FIFO; replies resolve futures in order.
A caller that times out just stops waiting (FIFO alignment is unaffected); a lost connection
fails every pending call and the next call reconnects.

Writes are coalesced: an urgent command is buffered and written at the end of the current
event-loop iteration (``call_soon``), together with every other command issued in that
iteration, so under load the reservations of many requests leave in one ``write``. Deferred
commands (``defer=True``; the gateway's releases) wait up to ``defer_s`` for
company, or leave earlier with the next urgent command. On the CI VM a loopback ``send`` that
wakes the Redis server was the largest single cost of the Redis path (py-spy: 13% of the
gateway's samples at concurrency 32, all of it in ``transport.write``), so fewer writes is
what pays.

Scope: ``redis://[user:password@]host:port[/db]`` and ``unix://path``; replies of type simple
string, error, integer, bulk string, array and null (RESP2, what our scripts return).
Everything else (TLS, Sentinel, Cluster) goes through redis-py (see ``redis_store``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = ["DEFER_S", "RespClient", "RespError", "encode_bulks", "encode_command", "supports"]

DEFER_S = 0.002
"""How long a deferred command (a release) may wait for company before it is written (s)."""


class RespError(Exception):
    """An error reply from the server (``-ERR ...``, ``-NOSCRIPT ...``)."""


def supports(url: str) -> bool:
    """Whether this client handles ``url`` (plain TCP or unix socket)."""
    return urlparse(url).scheme in ("redis", "unix")


def encode_command(args: Sequence[bytes | str | int | float]) -> bytes:
    """RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + encode_bulks(args)


def encode_bulks(args: Sequence[bytes | str | int | float]) -> bytes:
    """The bulk strings of ``args``: a command without its array header.

    Plain ``str`` and ``int`` arguments, all ASCII (the store's keys, tokens and numbers), are
    joined as text and encoded once: 2.4 against 3.5 µs for a 13-argument ``EVALSHA``.
    """
    parts = []
    for a in args:
        if type(a) is str:
            s = a
        elif type(a) is int:
            s = str(a)
        else:  # bytes, float, bool, a subclass: as they always were
            return _bulks(args)
        parts.append(f"${len(s)}\r\n{s}\r\n")
    text = "".join(parts)
    return text.encode() if text.isascii() else _bulks(args)


def _bulks(args: Sequence[bytes | str | int | float]) -> bytes:
    out = []
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        else:
            b = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One reply from ``buf`` at ``pos``: ``(value, next_pos)``; raises _Incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    nxt = end + 2
    if kind == 0x2B:  # +
        return line, nxt
    if kind == 0x2D:  # -
        return RespError(line.decode(errors="replace")), nxt
    if kind == 0x3A:  # :
        return int(line), nxt
    if kind == 0x24:  # $
        n = int(line)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            raise _Incomplete
        return bytes(buf[nxt : nxt + n]), nxt + n + 2
    if kind == 0x2A:  # *
        n = int(line)
        if n < 0:
            return None, nxt
        items = []
        for _ in range(n):
            if nxt < len(buf) and buf[nxt] == 0x3A:  # an integer (our scripts' replies)
                end = buf.find(b"\r\n", nxt)
                if end < 0:
                    raise _Incomplete
                items.append(int(buf[nxt + 1 : end]))
                nxt = end + 2
                continue
            item, nxt = _parse(buf, nxt)
            items.append(item)
        return items, nxt
    if kind == 0x5F:  # _ (RESP3 null)
        return None, nxt
    raise RespError(f"unsupported reply type {chr(kind)!r}")


def _expire(fut: asyncio.Future[Any]) -> None:
    """A call's deadline passed: its caller stops waiting (the FIFO keeps the future)."""
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.buf = bytearray()
        self.lost: BaseException | None = None
        self.outbuf: list[bytes] = []
        self.flush_handle: asyncio.TimerHandle | None = None
        self.soon_handle: asyncio.Handle | None = None

    def flush(self) -> None:
        """Write every buffered command now (one ``write``)."""
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        self.soon_handle = None
        if self.outbuf and self.transport is not None and self.lost is None:
            data = b"".join(self.outbuf)
            self.outbuf.clear()
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                value, pos = _parse(buf, pos)
                fut = self.waiting.popleft()
                if not fut.done():
                    if isinstance(value, RespError):
                        fut.set_exception(value)
                    else:
                        fut.set_result(value)
        except _Incomplete:
            pass
        except (RespError, ValueError, IndexError) as exc:  # protocol error: drop the link
            self._fail(ConnectionError(f"bad reply: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        del buf[:pos]

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        self.outbuf.clear()
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if self.soon_handle is not None:
            self.soon_handle.cancel()
            self.soon_handle = None
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))


class RespClient:
    """One pipelined connection to a Redis/Valkey server; see the module docstring."""

    def __init__(self, url: str, connect_timeout_s: float = 0.2, defer_s: float = DEFER_S) -> None:
        u = urlparse(url)
        self._unix = u.path if u.scheme == "unix" else None
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or 6379
        self._db = int(u.path.strip("/") or 0) if u.scheme == "redis" else 0
        self._user = unquote(u.username) if u.username else None
        self._password = unquote(u.password) if u.password else None
        self._connect_timeout = connect_timeout_s
        self._defer_s = defer_s
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._unix is not None:
            coro = loop.create_unix_connection(_Protocol, self._unix)
        else:
            coro = loop.create_connection(_Protocol, self._host, self._port)
        async with asyncio.timeout(self._connect_timeout):
            transport, proto = await coro
        sock = transport.get_extra_info("socket")
        if sock is not None and self._unix is None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        setup: list[list[bytes | str | int | float]] = []
        if self._password is not None:
            auth: list[bytes | str | int | float] = ["AUTH"]
            auth += [self._user, self._password] if self._user else [self._password]
            setup.append(auth)
        if self._db:
            setup.append(["SELECT", self._db])
        for cmd in setup:
            await self._send(proto, cmd)
        return proto

    async def _conn(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            proto = await asyncio.shield(connecting)
        except BaseException:
            if self._connecting is connecting:
                self._connecting = None
            raise
        self._proto = proto
        self._connecting = None
        return proto

    def _send(
        self, proto: _Protocol, args: Sequence[bytes | str | int | float], defer: bool = False
    ) -> asyncio.Future[Any]:
        return self._send_encoded(proto, encode_command(args), defer)

    def _send_encoded(
        self, proto: _Protocol, command: bytes, defer: bool = False
    ) -> asyncio.Future[Any]:
        if proto.lost is not None or proto.transport is None:
            raise ConnectionError("connection lost")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        proto.waiting.append(fut)
        proto.outbuf.append(command)
        if defer:
            if proto.flush_handle is None and proto.soon_handle is None:
                proto.flush_handle = loop.call_later(self._defer_s, proto.flush)
        elif proto.soon_handle is None:
            proto.soon_handle = loop.call_soon(proto.flush)
        return fut

    def call(
        self, *args: bytes | str | int | float, defer: bool = False, deadline: float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Send one command and wait for its reply (:meth:`call_encoded` of its encoding)."""
        return self.call_encoded(encode_command(args), defer=defer, deadline=deadline)

    async def call_encoded(
        self, command: bytes, *, defer: bool = False, deadline: float | None = None
    ) -> Any:
        """Send one command, already encoded (:func:`encode_command`), and wait for its reply.

        Args:
            command: the command and its arguments as a RESP array.
            defer: may wait up to ``defer_s`` to share a write with other commands.
            deadline: give up at this ``loop.time()`` with ``TimeoutError``, as
                ``asyncio.timeout_at(deadline)`` around the call would. Connected, the reply's
                future is failed by one timer instead: ``asyncio.timeout`` costs ~4 µs of CPU
                per call (its Python context manager, three ``get_running_loop`` calls) and
                the gateway and the picker make two calls per request.

        Raises:
            RespError: the server answered an error.
            ConnectionError, OSError, TimeoutError: connecting or the connection failed, or
                the deadline passed.
        """
        if deadline is None:
            return await self._send_encoded(await self._conn(), command, defer)
        proto = self._proto
        if proto is None or proto.lost is not None:
            async with asyncio.timeout_at(deadline):
                proto = await self._conn()
        fut = self._send_encoded(proto, command, defer)
        timer = asyncio.get_running_loop().call_at(deadline, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    async def pipeline(self, commands: Sequence[Sequence[bytes | str | int | float]]) -> list[Any]:
        """Send several commands in one write; their replies in order."""
        proto = await self._conn()
        if proto.lost is not None or proto.transport is None:
            raise ConnectionError("connection lost")
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in commands]
        proto.waiting.extend(futs)
        proto.outbuf.extend(encode_command(c) for c in commands)
        proto.flush()
        return list(await asyncio.gather(*futs))

    async def close(self) -> None:
        """Close the connection; pending calls fail."""
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
