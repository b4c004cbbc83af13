"""``gateway.epp.h2`` against a real peer: ``grpc.aio`` clients (gRPC's C core), raw sockets for
what a well-behaved client never sends, and the picker's own services on top of it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.epp.h2 import H2Server, Stream
from gateway.epp.server import EXT_PROC_SERVICE, EppServer, HealthStatus
from tests.gateway.epp.test_exchange import fleet, svc  # noqa: F401 (fixtures)

ECHO = "/test.Echo/Echo"  # bidi: every message back, then OK at the client's half-close
FAIL = "/test.Echo/Fail"  # the handler raises


class _Echo:
    def __init__(self, stream: Stream, log: list[str]) -> None:
        self.stream, self.log = stream, log

    def on_message(self, data: bytes) -> None:
        self.stream.send(data)

    def on_half_close(self) -> None:
        self.log.append("half-close")
        self.stream.finish()

    def on_reset(self) -> None:
        self.log.append("reset")


class _Fail(_Echo):
    def on_message(self, data: bytes) -> None:
        raise RuntimeError("boom")


@contextlib.asynccontextmanager
async def _server(log: list[str]) -> AsyncIterator[tuple[H2Server, str]]:
    server = H2Server({ECHO: lambda s: _Echo(s, log), FAIL: lambda s: _Fail(s, log)})
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(1.0)


def _bidi(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.stream_stream(method, request_serializer=None, response_deserializer=None)


async def test_bidi_messages_of_every_size_round_trip() -> None:
    """Frames split at 16 KiB, windows smaller than a message (gRPC's 64 KiB default) both
    ways: 1 byte to 3 MiB come back intact, in order, and the call ends OK."""
    log: list[str] = []
    sizes = [1, 0, 100, 16_379, 16_384, 70_000, 3 * 1024 * 1024]
    async with _server(log) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        call = _bidi(ch, ECHO)(iter([bytes([i % 251]) * n for i, n in enumerate(sizes)]))
        got = [len(m) async for m in call]
        assert got == sizes
        assert await call.code() == grpc.StatusCode.OK
    assert log == ["half-close"]


async def test_many_concurrent_calls_on_one_connection() -> None:
    log: list[str] = []
    async with _server(log) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        echo = _bidi(ch, ECHO)

        async def one(i: int) -> list[bytes]:
            return [m async for m in echo(iter([b"%d-%d" % (i, k) for k in range(5)]))]

        results = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [[b"%d-%d" % (i, k) for k in range(5)] for i in range(50)]
    assert log.count("half-close") == 50


async def test_unknown_method_is_unimplemented_and_a_failing_handler_internal() -> None:
    log: list[str] = []
    async with _server(log) as (_, addr), grpc.aio.insecure_channel(addr) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ch.unary_unary("/no.Such/Method")(b"x")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        call = _bidi(ch, FAIL)(iter([b"x"]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            [m async for m in call]
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "boom" not in (err.value.details() or "")  # no internals to the peer
        # the connection survives both
        assert [m async for m in _bidi(ch, ECHO)(iter([b"ok"]))] == [b"ok"]
    assert log[0] == "reset"  # the failed call was cleaned up


async def _open_echo(ch: grpc.aio.Channel) -> tuple[asyncio.Queue[bytes | None], Any]:
    """An echo call fed from a queue (None: half-close), after one round trip of ``a``."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield item

    call = _bidi(ch, ECHO)(requests())
    await queue.put(b"a")
    assert await call.read() == b"a"
    return queue, call


async def test_a_cancelled_call_is_reset() -> None:
    log: list[str] = []
    async with _server(log) as (server, addr), grpc.aio.insecure_channel(addr) as ch:
        _queue, call = await _open_echo(ch)
        call.cancel()
        deadline = asyncio.get_running_loop().time() + 20
        while not ("reset" in log and server.open_streams() == 0):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    assert log == ["reset"]


async def test_graceful_stop_lets_an_open_call_finish() -> None:
    log: list[str] = []
    server = H2Server({ECHO: lambda s: _Echo(s, log)})
    port = await server.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        queue, call = await _open_echo(ch)
        stopping = asyncio.create_task(server.stop(10.0))
        await asyncio.sleep(0.2)
        assert not stopping.done()  # the open call holds the stop (up to its grace)
        await queue.put(b"b")
        assert await call.read() == b"b"
        await queue.put(None)
        assert await call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, 5)
    assert log == ["half-close"]
    with pytest.raises(OSError):  # no longer listening
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_stop_after_grace_resets_what_is_left() -> None:
    log: list[str] = []
    server = H2Server({ECHO: lambda s: _Echo(s, log)})
    port = await server.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = _bidi(ch, ECHO)(_forever())
        assert await call.read() == b"x"
        await server.stop(0.1)
        assert log == ["reset"]
        with pytest.raises(grpc.aio.AioRpcError):
            while await call.read() is not grpc.aio.EOF:
                pass


async def _forever() -> AsyncIterator[bytes]:
    yield b"x"
    await asyncio.sleep(3600)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))  # + SETTINGS


async def _raw(addr: str, data: bytes) -> bytes:
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    out = b""
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            out += chunk
    writer.close()
    return out


async def test_a_peer_that_is_not_http2_gets_goaway_and_is_closed() -> None:
    async with _server([]) as (_, addr):
        out = await _raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"\x07\x00\x00\x00\x00\x00" in out  # a GOAWAY frame (type 7 on stream 0) ...
    assert out.endswith((1).to_bytes(4, "big"))  # ... with PROTOCOL_ERROR, then the close


async def test_a_frame_above_the_maximum_size_is_a_connection_error() -> None:
    preface = PREFACE
    too_big = (20_000).to_bytes(3, "big") + bytes((0, 0)) + (1).to_bytes(4, "big")
    async with _server([]) as (_, addr):
        out = await _raw(addr, preface + too_big + bytes(20_000))
    assert out.endswith((6).to_bytes(4, "big"))  # FRAME_SIZE_ERROR


async def test_ping_is_answered() -> None:
    preface = PREFACE
    ping = (8).to_bytes(3, "big") + bytes((6, 0)) + bytes(4) + b"12345678"
    goaway = (8).to_bytes(3, "big") + bytes((7, 0)) + bytes(4) + bytes(8)
    async with _server([]) as (_, addr):
        out = await _raw(addr, preface + ping + goaway)
    assert (8).to_bytes(3, "big") + bytes((6, 1)) + bytes(4) + b"12345678" in out  # PING ACK


# -- the picker's services on the h2 transport ----------------------------------------------


async def test_health_check_and_watch_behave_as_grpc_health() -> None:
    health = HealthStatus()
    health.set("liveness", 1)
    server = H2Server(
        {"/grpc.health.v1.Health/Check": health.check, "/grpc.health.v1.Health/Watch": health.watch}
    )
    port = await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = await stub.Check(health_pb2.HealthCheckRequest(service="liveness"))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="readiness"))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            health.set("readiness", 1)
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            other = stub.Watch(health_pb2.HealthCheckRequest(service="liveness"))
            assert (await other.read()).status == health_pb2.HealthCheckResponse.SERVING
            other.cancel()
            health.enter_graceful_shutdown()
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await watch.read() is grpc.aio.EOF  # ... and the watch ends: no drain held
            assert await watch.code() == grpc.StatusCode.OK
            health.set("readiness", 1)  # ignored after shutdown began
            resp = await stub.Check(health_pb2.HealthCheckRequest(service="readiness"))
            assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0.5)
    assert not any(health.watchers.values())


def _request_headers(path: str) -> pb.ProcessingRequest:
    hm = base_pb2.HeaderMap(
        headers=[
            base_pb2.HeaderValue(key=":path", raw_value=path.encode()),
            base_pb2.HeaderValue(key=":method", raw_value=b"POST"),
        ]
    )
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=hm))


@pytest.mark.parametrize("transport", ["h2", "grpcio"])
async def test_the_picker_answers_alike_on_both_transports(svc: Any, transport: str) -> None:  # noqa: F811
    """A ``Process`` stream picks, a cancelled one releases its booking, on either transport."""
    from gateway.epp.exchange import PickerConfig

    server = EppServer(svc, PickerConfig(), host="127.0.0.1", port=0, transport=transport)  # type: ignore[arg-type]
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.ExternalProcessorStub(ch)
            replies = [
                r async for r in stub.Process(iter([_request_headers("/v2/models/m1/infer")]))
            ]
            assert len(replies) == 1
            dest = {
                h.header.key: h.header.raw_value
                for h in replies[0].request_headers.response.header_mutation.set_headers
            }
            assert dest["x-gateway-destination-endpoint"].startswith(b"10.0.0.")
            assert svc.inflight == 0  # the stream ended without an answer: ended as cancelled
            health = health_pb2_grpc.HealthStub(ch)
            resp = await health.Check(health_pb2.HealthCheckRequest(service=EXT_PROC_SERVICE))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(1.0)


def _frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out, pos = [], 0
    while pos + 9 <= len(data):
        n = int.from_bytes(data[pos : pos + 3], "big")
        sid = int.from_bytes(data[pos + 5 : pos + 9], "big")
        out.append((data[pos + 3], data[pos + 4], sid, data[pos + 9 : pos + 9 + n]))
        pos += 9 + n
    return out


async def test_continuation_padding_and_priority_are_understood() -> None:
    """What gRPC's C core never sends but a peer may: a header block split over
    ``CONTINUATION`` frames, with ``PRIORITY`` and padding, and a padded ``DATA``."""
    import hpack

    block = hpack.Encoder().encode(
        [(":method", "POST"), (":scheme", "http"), (":path", ECHO), (":authority", "x"),
         ("content-type", "application/grpc"), ("te", "trailers"), ("x-pad", "v" * 300)]
    )  # fmt: skip
    head, rest = block[:50], block[50:]
    priority = bytes(5)
    headers = bytes((2,)) + priority + head + b"\x00\x00"  # pad length 2, priority, 2 pad bytes
    message = b"\x00" + (5).to_bytes(4, "big") + b"hello"
    data = bytes((3,)) + message + bytes(3)  # pad length 3
    sid = (1).to_bytes(4, "big")
    frames = (
        len(headers).to_bytes(3, "big") + bytes((1, 0x08 | 0x20)) + sid + headers
        + len(rest).to_bytes(3, "big") + bytes((9, 0x04)) + sid + rest
        + len(data).to_bytes(3, "big") + bytes((0, 0x08 | 0x01)) + sid + data
        + (8).to_bytes(3, "big") + bytes((7, 0)) + bytes(4) + (1).to_bytes(4, "big") + bytes(4)
    )  # fmt: skip
    log: list[str] = []
    async with _server(log) as (_, addr):
        out = await _raw(addr, PREFACE + frames)
    on_stream = [(t, f, p) for t, f, s, p in _frames(out) if s == 1]
    assert [t for t, _, _ in on_stream] == [1, 0, 1]  # headers, the echo, trailers
    assert on_stream[1][2] == message
    assert on_stream[2][1] & 0x01  # END_STREAM on the trailers
    assert b"grpc-status" in on_stream[2][2]
    assert log == ["half-close"]


async def test_a_header_block_interrupted_by_another_frame_is_a_connection_error() -> None:
    headers = (3).to_bytes(3, "big") + bytes((1, 0)) + (1).to_bytes(4, "big") + b"\x82\x86\x84"
    ping = (8).to_bytes(3, "big") + bytes((6, 0)) + bytes(4) + bytes(8)
    async with _server([]) as (_, addr):
        out = await _raw(addr, PREFACE + headers + ping)
    assert out.endswith((1).to_bytes(4, "big"))  # GOAWAY with PROTOCOL_ERROR


def test_a_remembered_header_block_is_decoded_again_once_the_table_changed() -> None:
    """The decode cache never answers for a table that changed since (RFC 7541 indices move)."""
    import hpack

    from gateway.epp.h2 import _Connection

    conn = _Connection(H2Server({}))

    def literal(name: bytes, value: bytes) -> bytes:  # with incremental indexing
        return b"\x40" + bytes((len(name),)) + name + bytes((len(value),)) + value

    newest = b"\xbe"  # indexed field 62: the newest dynamic entry
    assert conn._decode(literal(b"a", b"1")) == [(b"a", b"1")]
    assert conn._decode(newest) == [(b"a", b"1")]
    assert conn._decode(newest) == [(b"a", b"1")]  # remembered
    conn._decode(literal(b"b", b"2"))
    assert conn._decode(newest) == [(b"b", b"2")]  # not the remembered answer
    conn._decode(b"\x20")  # a size update to 0 empties the table ...
    conn._decode(b"\x3f\xe1\x1f")  # ... and back to 4096
    conn._decode(literal(b"b", b"2"))  # the same entry again, a new table
    assert conn._decode(newest) == [(b"b", b"2")]
    # against a fresh decoder on a stream of blocks that insert, evict and repeat
    enc, ref = hpack.Encoder(), hpack.Decoder()
    enc.header_table_size = 128
    ref.header_table_size = 128
    conn = _Connection(H2Server({}))
    conn.decoder.header_table_size = 128
    for i in range(300):
        block = enc.encode([(":path", "/p"), ("k", str(i % 7)), ("x-big", "v" * (i % 5) * 9)])
        assert conn._decode(block) == ref.decode(block, raw=True)


async def test_streams_beyond_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gRPC client waits for a free stream by itself; a peer that does not is refused."""
    import hpack

    import gateway.epp.h2 as h2

    monkeypatch.setattr(h2, "MAX_STREAMS", 2)
    enc = hpack.Encoder()
    frames = b""
    for sid in (1, 3, 5):
        block = enc.encode([(":method", "POST"), (":scheme", "http"), (":path", ECHO)])
        frames += len(block).to_bytes(3, "big") + bytes((1, 0x04)) + sid.to_bytes(4, "big") + block
    async with _server([]) as (_, addr):
        host, port = addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(PREFACE + frames)
        out = b""
        with contextlib.suppress(asyncio.TimeoutError):
            while not any(t == 3 for t, _, _, _ in _frames(out)):
                out += await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
    resets = [(s, p) for t, _, s, p in _frames(out) if t == 3]
    assert resets == [(5, (7).to_bytes(4, "big"))]  # RST_STREAM REFUSED_STREAM on the third
