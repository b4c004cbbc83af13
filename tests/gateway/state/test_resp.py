import asyncio

import pytest

from gateway.core.net import free_port
from gateway.embedded import EmbeddedValkey
from gateway.state.resp import RespClient, RespError, _Incomplete, _parse, encode_command, supports


def test_encode() -> None:
    assert (
        encode_command(["SET", b"k", 5, 1.5])
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$3\r\n1.5\r\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["EVALSHA", "ab", 3, "k:{w}", "", -1, 2**70],  # plain str and int: joined as text
        ["SET", "clé", 1],  # not ASCII: lengths in bytes
        ["SET", True, 1.5, b"\xff"],  # bool, float, bytes
    ],
)
def test_encode_any_argument_as_utf8_bulk_strings(args: list[object]) -> None:
    bulks = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    want = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(b), b) for b in bulks)
    assert encode_command(args) == want  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"+OK\r\n", b"OK"),
        (b":-3\r\n", -3),
        (b"$3\r\nabc\r\n", b"abc"),
        (b"$-1\r\n", None),
        (b"_\r\n", None),
        (b"*2\r\n$1\r\n7\r\n$-1\r\n", [b"7", None]),
        (b"*2\r\n*1\r\n:1\r\n+x\r\n", [[1], b"x"]),
        (b"*4\r\n:-1\r\n$1\r\nx\r\n:70\r\n$-1\r\n", [-1, b"x", 70, None]),
    ],
)
def test_parse(raw: bytes, value: object) -> None:
    assert _parse(bytearray(raw), 0) == (value, len(raw))
    for cut in range(1, len(raw)):  # every prefix is incomplete, never wrong
        with pytest.raises(_Incomplete):
            _parse(bytearray(raw[:cut]), 0)


def test_error_reply() -> None:
    err, _ = _parse(bytearray(b"-NOSCRIPT No matching script\r\n"), 0)
    assert isinstance(err, RespError) and str(err).startswith("NOSCRIPT")


def test_supports() -> None:
    assert supports("redis://h:1/0") and supports("unix:///tmp/s")
    assert not supports("rediss://h:1")


@pytest.mark.integration
async def test_pipelined_calls_against_valkey() -> None:
    with EmbeddedValkey() as v:
        c = RespClient(v.url)
        replies = await asyncio.gather(*(c.call("INCR", "n") for _ in range(500)))
        assert sorted(replies) == list(range(1, 501))
        assert await c.pipeline([["GET", "n"], ["PING"]]) == [b"500", b"PONG"]
        with pytest.raises(RespError):
            await c.call("NOSUCHCOMMAND")
        assert await c.call("PING") == b"PONG"  # the link survives an error reply
        await c.close()


@pytest.mark.integration
async def test_connection_failures_raise_and_recover() -> None:
    c = RespClient(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(OSError):
        await c.call("PING")
    with EmbeddedValkey() as v:
        c2 = RespClient(v.url)
        assert await c2.call("PING") == b"PONG"
        await c2.close()
        assert await c2.call("PING") == b"PONG"  # reconnects
        await c2.close()


@pytest.mark.integration
async def test_deferred_commands_keep_order_and_share_a_write() -> None:
    with EmbeddedValkey() as v:
        c = RespClient(v.url, defer_s=0.5)
        deferred = asyncio.ensure_future(c.call("SET", "k", "1", defer=True))
        await asyncio.sleep(0)
        assert not deferred.done()
        assert await c.call("GET", "k") == b"1"  # the urgent command carried the deferred one
        assert await deferred == b"OK"
        lone = asyncio.ensure_future(c.call("INCR", "n", defer=True))
        assert await asyncio.wait_for(lone, 2) == 1  # the timer flushes it
        await c.close()


@pytest.mark.integration
async def test_a_deadline_times_out_as_asyncio_timeout_and_keeps_the_fifo() -> None:
    with EmbeddedValkey() as v:
        c = RespClient(v.url)
        loop = asyncio.get_running_loop()
        assert await c.call("PING", deadline=loop.time() + 1.0) == b"PONG"  # connects too
        with pytest.raises(TimeoutError):  # BLPOP answers (nil) after 0.3 s: too late
            await c.call("BLPOP", "nothing", "0.3", deadline=loop.time() + 0.05)
        assert await c.call("INCR", "n", deadline=loop.time() + 2.0) == 1  # its own reply
        await c.close()
        with pytest.raises(TimeoutError):  # a deadline already passed, while reconnecting
            await c.call("PING", deadline=loop.time())
        await c.close()
