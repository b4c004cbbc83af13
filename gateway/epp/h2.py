"""A small HTTP/2 server for the picker's gRPC methods, written on ``asyncio.Protocol``.

Why not ``grpc.aio``: every message through it is a coroutine step plus a hop through gRPC's
completion queue and poller thread. Measured with ``synergai bench overhead`` on a quiet 2-core
machine, a picker that answers every message without picking cost 0.53 ms of CPU per request
at 32 concurrent clients and added 1.1 ms to the p50 at one client: more than the whole budget
the picker has (issue 17: +0.5 ms). Here a message is parsed, answered and the answer queued
inside one ``data_received`` call, with no task switch and no ``await``, and every frame one
read produced is answered with one ``transport.write``.

Scope, and no more: HTTP/2 over cleartext TCP with prior knowledge (what Envoy's ext_proc
cluster, gRPC clients and Kubernetes' ``grpc`` probe speak), gRPC framing without message
compression, unary, server-streaming and bidirectional methods. Flow control both ways,
``SETTINGS``, ``PING``, ``GOAWAY`` (graceful stop: the open streams finish), ``RST_STREAM``
(the call is cancelled) and ``CONTINUATION`` are handled; header blocks are decoded by
``hpack`` (which keeps the peer's dynamic table), the answers' own header blocks are constant
and never indexed, so the encoder needs no state. A peer that breaks the protocol gets a
``GOAWAY`` with the error code of RFC 9113 and its connection is closed; a method nobody
serves answers ``UNIMPLEMENTED``, as gRPC does.

Memory is bounded: at most :data:`MAX_STREAMS` calls per connection (more are refused with
``REFUSED_STREAM``), one message of at most :data:`MAX_MESSAGE` bytes buffered per call, a header
block of at most :data:`MAX_HEADER_BLOCK`, and what the peer's flow-control window lets us queue.

A method is a factory ``(Stream) -> Call``; the call gets the stream's messages
(:meth:`Call.on_message`), its end (:meth:`Call.on_half_close`) or its reset
(:meth:`Call.on_reset`: the peer or the connection is gone) and answers through
:meth:`Stream.send` and :meth:`Stream.finish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import hpack

__all__ = ["Call", "H2Server", "Method", "Status", "Stream"]

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION = 9
# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 6, 7, 8, 9
# settings
S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 3, 4, 5

MAX_FRAME = 16384  # we keep the default SETTINGS_MAX_FRAME_SIZE
STREAM_WINDOW = 1 << 24  # what we let a peer send on one stream before it waits for us
CONN_WINDOW = 1 << 30  # ... and on the whole connection
MAX_MESSAGE = 256 * 1024 * 1024  # one gRPC message (a gRPC body read for its model name)
MAX_HEADER_BLOCK = 1 << 20
MAX_STREAMS = 4096  # concurrent calls on one connection (Envoy opens one per request in flight)


class Status:
    """gRPC status codes used here."""

    OK = 0
    NOT_FOUND = 5
    RESOURCE_EXHAUSTED = 8
    UNIMPLEMENTED = 12
    INTERNAL = 13


_FRAME_HEAD = struct.Struct(">BHBBI")  # length (24 bits: high byte, low 16), type, flags, id
_read_head = _FRAME_HEAD.unpack_from
_read_u32 = struct.Struct(">I").unpack_from


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2).

    No Huffman and no indexing: the encoder keeps no table, so any peer decodes it alike.
    """
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


def _hpack_int(value: int, prefix: int) -> bytes:
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((value,))
    out = bytearray((limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# ``:status: 200`` is index 8 of the static table; content-type is written literally
_RESPONSE_HEADERS = b"\x88" + _literal(b"content-type", b"application/grpc")
_TRAILERS_OK = _literal(b"grpc-status", b"0")


def _trailers(code: int, message: str) -> bytes:
    if code == Status.OK and not message:
        return _TRAILERS_OK
    block = _literal(b"grpc-status", str(code).encode())
    if message:
        block += _literal(b"grpc-message", _percent(message))
    return block


def _percent(message: str) -> bytes:
    """``grpc-message`` is percent-encoded outside printable ASCII (gRPC over HTTP/2 spec)."""
    out = bytearray()
    for b in message.encode():
        out += b"%%%02X" % b if b < 0x20 or b > 0x7E or b == 0x25 else bytes((b,))
    return bytes(out)


class Call(Protocol):
    """One call's handler (see the module docstring)."""

    def on_message(self, data: bytes) -> None:
        """One whole gRPC message from the peer."""

    def on_half_close(self) -> None:
        """The peer will send nothing more."""

    def on_reset(self) -> None:
        """The call is gone (peer reset, connection lost, server stopped): clean up."""


Method = Callable[["Stream"], Call]


_TableState = tuple[int, Any, int]
_DECODED_MAX = 64  # header blocks remembered per connection


def _same_table(a: _TableState, b: _TableState) -> bool:
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


class _ConnectionError(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


class Stream:
    """One HTTP/2 stream, i.e. one gRPC call; its handler answers through it."""

    __slots__ = (
        "call",
        "conn",
        "headers_sent",
        "inbuf",
        "local_closed",
        "pending",
        "recv_unacked",
        "remote_closed",
        "send_win",
        "sid",
        "trailers",
    )

    def __init__(self, conn: _Connection, sid: int) -> None:
        self.conn = conn
        self.sid = sid
        self.call: Call | None = None
        self.inbuf = bytearray()
        self.recv_unacked = 0
        self.send_win = conn.peer_window
        self.pending = bytearray()  # DATA waiting for the peer's flow-control window
        self.trailers: bytes | None = None  # trailers waiting behind ``pending``
        self.headers_sent = False
        self.local_closed = False
        self.remote_closed = False

    def send(self, message: bytes) -> None:
        """Send one gRPC message (the response headers go first, once)."""
        if self.local_closed:
            return
        conn = self.conn
        if not self.headers_sent:
            self.headers_sent = True
            conn.write(_frame(HEADERS, END_HEADERS, self.sid, _RESPONSE_HEADERS))
        data = b"\x00" + len(message).to_bytes(4, "big") + message
        n = len(data)
        if (
            not self.pending
            and n <= self.send_win
            and n <= conn.send_win
            and n <= conn.peer_max_frame
        ):
            self.send_win -= n
            conn.send_win -= n
            conn.write(_frame(DATA, 0, self.sid, data))
        else:
            self.pending += data
            conn.flush(self)

    def finish(self, code: int = Status.OK, message: str = "") -> None:
        """End the call with a gRPC status (trailers; trailers-only if nothing was sent)."""
        if self.local_closed:
            return
        self.local_closed = True
        block = _trailers(code, message)
        if not self.headers_sent:
            self.headers_sent = True
            block = _RESPONSE_HEADERS + block
        self.trailers = block
        self.conn.flush(self)


class _Connection(asyncio.Protocol):
    """One peer's HTTP/2 connection (server side)."""

    def __init__(self, server: H2Server) -> None:
        self.server = server
        self.transport: Any = None
        self.buf = bytearray()
        self.preface = False
        self.streams: dict[int, Stream] = {}
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = MAX_HEADER_BLOCK
        self.out: list[bytes] | None = None  # frames queued while a read is being handled
        self.send_win = 65535  # the connection's window toward the peer
        self.peer_window = 65535  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.peer_max_frame = MAX_FRAME
        self.recv_unacked = 0
        self.last_sid = 0
        self.goaway = False
        self.closed = False
        self._close_after_read = False
        self._hdr_sid = 0  # a header block continued by CONTINUATION frames
        self._hdr_flags = 0
        self._hdr_buf = bytearray()
        self._decoded: dict[bytes, tuple[list[tuple[bytes, bytes]], _TableState]] = {}

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)
        settings = (
            S_MAX_CONCURRENT_STREAMS.to_bytes(2, "big")
            + MAX_STREAMS.to_bytes(4, "big")
            + S_INITIAL_WINDOW_SIZE.to_bytes(2, "big")
            + STREAM_WINDOW.to_bytes(4, "big")
        )
        transport.write(  # type: ignore[attr-defined]
            _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, (CONN_WINDOW - 65535).to_bytes(4, "big"))
        )
        if self.server.stopping:
            self.close_gracefully()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.out = out = []
        try:
            self._read_frames()
        except _ConnectionError as exc:
            log.warning("HTTP/2 peer broke the protocol (%s): closing", exc)
            out.append(
                _frame(GOAWAY, 0, 0, self.last_sid.to_bytes(4, "big") + exc.code.to_bytes(4, "big"))
            )
            self.out = None
            self.transport.write(b"".join(out))
            self.transport.close()
            return
        self.out = None
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._close_after_read:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        streams, self.streams = self.streams, {}
        for st in streams.values():
            st.local_closed = True
            self._reset_call(st)
        self.server.changed()

    # -- writing -----------------------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue a frame for the end of the current read, or write it now outside one."""
        if self.out is not None:
            self.out.append(frame)
        elif not self.closed and self.transport is not None:
            self.transport.write(frame)

    def flush(self, st: Stream) -> None:
        """Send what flow control lets through of ``st``'s pending DATA, then its trailers."""
        while st.pending:
            n = min(len(st.pending), st.send_win, self.send_win, self.peer_max_frame)
            if n <= 0:
                return
            chunk = bytes(st.pending[:n])
            del st.pending[:n]
            st.send_win -= n
            self.send_win -= n
            self.write(_frame(DATA, 0, st.sid, chunk))
        if st.trailers is not None:
            self.write(_frame(HEADERS, END_HEADERS | END_STREAM, st.sid, st.trailers))
            st.trailers = None
            if not st.remote_closed:  # the call ended first: tell the peer to stop sending
                self.write(_frame(RST_STREAM, 0, st.sid, NO_ERROR.to_bytes(4, "big")))
            self._forget(st)

    def close_gracefully(self) -> None:
        """``GOAWAY``: no new stream; the open ones finish; the connection closes after them."""
        if not self.goaway and not self.closed:
            self.goaway = True
            self.write(_frame(GOAWAY, 0, 0, self.last_sid.to_bytes(4, "big") + bytes(4)))
        if not self.streams:
            self._close()

    def _close(self) -> None:
        """Close after what is queued is written (inside a read: at its end)."""
        if self.out is not None:
            self._close_after_read = True
        elif not self.closed and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _forget(self, st: Stream) -> None:
        if self.streams.pop(st.sid, None) is not None and not self.streams:
            if self.goaway:
                self._close()
            self.server.changed()

    # -- reading -----------------------------------------------------------------------------

    def _read_frames(self) -> None:
        buf = self.buf
        pos = 0
        if not self.preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 prior-knowledge preface")
                return
            if bytes(buf[: len(PREFACE)]) != PREFACE:
                raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 prior-knowledge preface")
            self.preface = True
            pos = len(PREFACE)
        end = len(buf)
        try:
            while end - pos >= 9:
                high, low, ftype, flags, sid = _read_head(buf, pos)  # no slices: 0.7 µs a frame
                length = high << 16 | low
                if length > MAX_FRAME:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - pos - 9 < length:
                    break
                sid &= 0x7FFFFFFF
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._on_frame(ftype, flags, sid, payload)
        finally:
            del buf[:pos]

    def _on_frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._hdr_sid and (ftype != CONTINUATION or sid != self._hdr_sid):
            raise _ConnectionError(PROTOCOL_ERROR, "header block interrupted")
        if ftype == DATA:
            self._on_data(flags, sid, payload)
        elif ftype == HEADERS:
            self._on_headers(flags, sid, payload)
        elif ftype == CONTINUATION:
            if sid != self._hdr_sid:
                raise _ConnectionError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self._hdr_buf += payload
            if len(self._hdr_buf) > MAX_HEADER_BLOCK:
                raise _ConnectionError(PROTOCOL_ERROR, "header block too large")
            if flags & END_HEADERS:
                block = bytes(self._hdr_buf)
                self._hdr_sid, self._hdr_buf = 0, bytearray()
                self._on_header_block(self._hdr_flags, sid, block)
        elif ftype == WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif ftype == SETTINGS:
            self._on_settings(flags, sid, payload)
        elif ftype == PING:
            if sid != 0 or len(payload) != 8:
                raise _ConnectionError(PROTOCOL_ERROR, "bad PING")
            if not flags & ACK:
                self.write(_frame(PING, ACK, 0, payload))
        elif ftype == RST_STREAM:
            if sid == 0 or len(payload) != 4:
                raise _ConnectionError(PROTOCOL_ERROR, "bad RST_STREAM")
            st = self.streams.get(sid)
            if st is not None:
                st.local_closed = True
                st.pending.clear()
                st.trailers = None
                self._reset_call(st)
                self._forget(st)
        elif ftype == GOAWAY:
            self.close_gracefully()  # the peer leaves: finish what is open, then close
        elif ftype == PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # PRIORITY and unknown frame types are ignored (RFC 9113 §5.5)

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid != 0 or len(payload) % 6:
            raise _ConnectionError(PROTOCOL_ERROR, "bad SETTINGS")
        if flags & ACK:
            return
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if key == S_INITIAL_WINDOW_SIZE:
                if value > 0x7FFFFFFF:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "window too large")
                delta = value - self.peer_window
                self.peer_window = value
                for st in self.streams.values():
                    st.send_win += delta
            elif key == S_MAX_FRAME_SIZE:
                if not MAX_FRAME <= value <= 0xFFFFFF:
                    raise _ConnectionError(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self.peer_max_frame = value
        self.write(_frame(SETTINGS, ACK, 0))
        for st in list(self.streams.values()):
            if st.pending or st.trailers is not None:
                self.flush(st)

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            self.send_win += inc
            for st in list(self.streams.values()):
                if st.pending or st.trailers is not None:
                    self.flush(st)
        else:
            one = self.streams.get(sid)
            if one is not None:
                one.send_win += inc
                self.flush(one)

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        n = len(payload)
        self.recv_unacked += n
        if self.recv_unacked >= CONN_WINDOW // 2:
            self.write(_frame(WINDOW_UPDATE, 0, 0, self.recv_unacked.to_bytes(4, "big")))
            self.recv_unacked = 0
        if flags & PADDED:
            if not payload or payload[0] >= n:
                raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
            payload = payload[1 : n - payload[0]]
        st = self.streams.get(sid)
        if st is None or st.remote_closed:
            return  # a stream we ended or reset: its bytes still counted for the connection
        if payload:
            st.inbuf += payload
            self._messages(st)
        if flags & END_STREAM:
            st.remote_closed = True
            if st.call is not None and not st.local_closed:
                self._half_close(st, st.call)
            if st.local_closed and st.trailers is None:
                self._forget(st)
            return
        st.recv_unacked += n
        if st.recv_unacked >= STREAM_WINDOW // 2 and not st.local_closed:
            self.write(_frame(WINDOW_UPDATE, 0, sid, st.recv_unacked.to_bytes(4, "big")))
            st.recv_unacked = 0

    def _messages(self, st: Stream) -> None:
        buf = st.inbuf
        while len(buf) >= 5 and not st.local_closed:
            size = _read_u32(buf, 1)[0]
            if size > MAX_MESSAGE:
                self._fail(st, Status.RESOURCE_EXHAUSTED, f"message of {size} bytes")
                return
            if len(buf) < 5 + size:
                return
            if buf[0]:
                self._fail(st, Status.UNIMPLEMENTED, "compressed messages are not supported")
                return
            message = bytes(buf[5 : 5 + size])
            del buf[: 5 + size]
            if st.call is not None:
                try:
                    st.call.on_message(message)
                except Exception:
                    log.exception("gRPC call on stream %d failed", st.sid)
                    self._fail(st, Status.INTERNAL, "internal error")

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0 or not sid & 1:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on a server stream id")
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
            payload = payload[1 : len(payload) - payload[0]]
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        if flags & END_HEADERS:
            self._on_header_block(flags, sid, payload)
        else:
            self._hdr_sid, self._hdr_flags, self._hdr_buf = sid, flags, bytearray(payload)

    def _on_header_block(self, flags: int, sid: int, block: bytes) -> None:
        try:
            headers = self._decode(block)
        except Exception as exc:  # hpack's errors: the shared table is now unusable
            raise _ConnectionError(COMPRESSION_ERROR, f"header block: {exc}") from exc
        if sid in self.streams:  # the peer's trailers: only their END_STREAM matters to gRPC
            if flags & END_STREAM:
                self._on_data(END_STREAM, sid, b"")
            return
        if sid <= self.last_sid:
            return  # a stream that already ended: ignore (we may have reset it)
        self.last_sid = sid
        if self.goaway or len(self.streams) >= MAX_STREAMS:
            self.write(_frame(RST_STREAM, 0, sid, REFUSED_STREAM.to_bytes(4, "big")))
            return
        path = b""
        for name, value in headers:
            if name == b":path":
                path = value
                break
        st = Stream(self, sid)
        self.streams[sid] = st
        method = self.server.methods.get(path.decode("latin-1"))
        if method is None:
            st.finish(Status.UNIMPLEMENTED, f"unknown method {path.decode('latin-1')}")
        else:
            try:
                st.call = method(st)
            except Exception:
                log.exception("gRPC method %s failed to start", path)
                st.finish(Status.INTERNAL, "internal error")
        if flags & END_STREAM:
            self._on_data(END_STREAM, sid, b"")

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """``block`` decoded; a block seen before that left the dynamic table alone is not
        decoded again while the table is as it was then.

        Envoy sends every ext_proc stream the same header block (``:path`` as a Huffman-coded
        literal, the rest indexed), and decoding it was 6 % of the picker's CPU at c=32. The
        table's state is its length, its newest entry (held, so its identity cannot be
        reused) and its size limit: any insertion or resize changes one of them.
        """
        table = self.decoder.header_table
        entries = table.dynamic_entries
        state = (len(entries), entries[0] if entries else None, table.maxsize)
        hit = self._decoded.get(block)
        if hit is not None and _same_table(hit[1], state):
            return hit[0]
        headers: list[tuple[bytes, bytes]] = list(self.decoder.decode(block, raw=True))
        entries = table.dynamic_entries
        after = (len(entries), entries[0] if entries else None, table.maxsize)
        if _same_table(state, after):
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            self._decoded[block] = (headers, state)
        return headers

    # -- calls -------------------------------------------------------------------------------

    def _half_close(self, st: Stream, call: Call) -> None:
        try:
            call.on_half_close()
        except Exception:
            log.exception("gRPC call on stream %d failed", st.sid)
            self._fail(st, Status.INTERNAL, "internal error")

    def _fail(self, st: Stream, code: int, message: str) -> None:
        """End ``st`` with an error status; its handler is told the call is gone."""
        st.finish(code, message)
        self._reset_call(st)

    def _reset_call(self, st: Stream) -> None:
        call, st.call = st.call, None
        if call is not None:
            try:
                call.on_reset()
            except Exception:
                log.exception("gRPC call cleanup on stream %d failed", st.sid)


class H2Server:
    """The listening socket and its connections; :meth:`start`, then :meth:`stop`.

    Args:
        methods: ``"/package.Service/Method"`` -> a factory of :class:`Call`.
    """

    def __init__(self, methods: Mapping[str, Method]) -> None:
        self.methods = dict(methods)
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._idle = asyncio.Event()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    def open_streams(self) -> int:
        """Calls in progress over all connections."""
        return sum(len(c.streams) for c in self.connections)

    def changed(self) -> None:
        """A stream or connection ended (wakes :meth:`stop`)."""
        self._idle.set()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, send ``GOAWAY``, let open calls finish for up to ``grace_s``.

        Whatever is left then is closed, and its calls are reset.
        """
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close_gracefully()
        deadline = time.monotonic() + grace_s
        while self.open_streams() and time.monotonic() < deadline:
            self._idle.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)  # let connection_lost run
        self._server = None
