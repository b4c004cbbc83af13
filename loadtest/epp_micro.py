"""The picker's CPU per request with no network: ``python -m loadtest.epp_micro``.

Envoy-like HTTP/2 bytes go straight into the ``h2`` transport's connection object, and what
it writes back goes into a hash. Each request is one ext_proc ``Process`` stream:

* a read with its ``HEADERS`` (the HPACK block Envoy sends every stream after the first) and
  the ``request_headers`` message of a REST infer request;
* a read with the ``response_headers`` message (200) and ``END_STREAM``.

The picker's own ``EppServer`` methods answer them: the real ``Exchange``, the ``synergai``
policy on a three-worker fleet (two fast, one slow), ``InferenceService`` and its metrics.
Nothing is mocked but the socket, so the figure is the picker's Python work per request and
none of the system calls, Envoy's or the kernel's.

The store is either in memory, on a manual clock that moves 0.5 ms before each request and 2 ms
before its answer (the default), or a real Valkey on uvloop (``--valkey``), which adds the Redis
client's share. With the in-memory store the run is deterministic, so the SHA-256 of every byte
written back shows whether a change kept the answers byte-identical. With ``--valkey`` the
shared figures arrive on their own time and the hash differs from run to run.

Output: CPU µs per request (process time) for each repetition, and the hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main", "measure"]


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload
    )


def _grpc(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _messages() -> tuple[bytes, bytes]:
    """The serialized ``request_headers`` and ``response_headers`` ProcessingRequests."""
    from envoy.config.core.v3 import base_pb2
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    def headers(values: dict[str, str]) -> Any:
        return base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
        )

    request = {
        ":path": "/v2/models/m1/infer",
        ":method": "POST",
        ":authority": "127.0.0.1:10000",
        ":scheme": "http",
        "content-type": "application/json",
        "content-length": "80",
        "user-agent": "python-httpx/0.27",
        "accept": "*/*",
        "x-forwarded-proto": "http",
        "x-request-id": "0f1d2c3b-aaaa-bbbb-cccc-1234567890ab",
        "x-envoy-expected-rq-timeout-ms": "30000",
    }
    response = {
        ":status": "200",
        "content-type": "application/json",
        "content-length": "120",
        "x-envoy-upstream-service-time": "1",
    }
    req = pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=headers(request)))
    resp = pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=headers(response)))
    return req.SerializeToString(), resp.SerializeToString()


class _Sink:
    """The transport: every write goes into a SHA-256."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.writes += 1

    def get_extra_info(self, name: str) -> Any:
        return None

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _service(store_url: str | None) -> tuple[Any, Any, Any]:
    """``(service, manual clock, store)`` on the three-worker fleet."""
    from gateway.core.clock import ManualClock, MonotonicClock
    from gateway.observability.metrics import GatewayMetrics
    from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook
    from gateway.routing.registry import make_policy
    from gateway.routing.view import FleetView
    from gateway.service import InferenceService, ServiceConfig
    from gateway.settings import ModelDefaults, WorkerSpec
    from gateway.state.memory_store import MemoryStore
    from gateway.state.redis_store import RedisStore

    def profile(arch: str, ms: float) -> Profile:
        points = (LatencyPoint(1, ms, ms * 1.2), LatencyPoint(8, ms * 4, ms * 5))
        return Profile(arch, "m1", 8, points)

    book = ProfileBook(
        {("fast", "m1"): profile("fast", 2.0), ("slow", "m1"): profile("slow", 20.0)}, {}
    )
    specs = [
        WorkerSpec(id=f"f{i}", pool="fast", arch="fast", url=f"http://10.0.0.{i + 1}:8000",
                   grpc_url=f"10.0.0.{i + 1}:8001", models=["m1"])
        for i in range(2)
    ] + [WorkerSpec(id="s0", pool="slow", arch="slow", url="http://10.0.1.1:8000",
                    grpc_url="10.0.1.1:8001", models=["m1"])]  # fmt: skip
    clock = ManualClock(1000.0)
    store: Any = (
        MemoryStore(clock)
        if store_url is None
        else RedisStore(store_url, MonotonicClock(), prefix="epp-micro", timeout_s=0.5)
    )
    service = InferenceService(
        FleetView([s.info() for s in specs], book),
        make_policy("synergai", book),
        store,
        {},
        GatewayMetrics(),
        clock,
        random.Random(1),
        ServiceConfig(models={"m1": ModelDefaults(slo_ms=50, priority=1)}),
    )
    return service, clock, store


async def measure(
    requests: int, warmup: int = 2000, store_url: str | None = None
) -> dict[str, Any]:
    """Feed ``warmup`` then ``requests`` streams; CPU µs per measured request and the hash."""
    import hpack

    from gateway.epp import h2
    from gateway.epp.exchange import PickerConfig
    from gateway.epp.server import EppServer

    service, clock, store = _service(store_url)
    if store_url is not None:
        await store.start()
    server = EppServer(service, PickerConfig(), host="127.0.0.1", port=0)
    await server.start()
    conn = h2._Connection(server._server)
    sink = _Sink()
    conn.connection_made(sink)  # type: ignore[arg-type]
    window = (1 << 28).to_bytes(4, "big")  # Envoy's large windows: nothing waits on them
    conn.data_received(
        h2.PREFACE
        + _frame(h2.SETTINGS, 0, 0, h2.S_INITIAL_WINDOW_SIZE.to_bytes(2, "big") + window)
        + _frame(h2.WINDOW_UPDATE, 0, 0, ((1 << 28) - 65535).to_bytes(4, "big"))
    )
    encoder = hpack.Encoder()
    fields = [
        (":method", "POST"), (":scheme", "http"),
        (":path", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"),
        (":authority", "epp"), ("content-type", "application/grpc"), ("te", "trailers"),
        ("grpc-timeout", "200m"), ("x-envoy-internal", "true"),
    ]  # fmt: skip
    blocks = [encoder.encode(fields), encoder.encode(fields)]  # the first one fills the table
    req, resp = (_grpc(m) for m in _messages())
    sid = 1

    def one() -> None:
        nonlocal sid
        if sid % 512 == 1:  # Envoy's connection window update
            conn.data_received(_frame(h2.WINDOW_UPDATE, 0, 0, (1 << 20).to_bytes(4, "big")))
        clock.advance(0.0005)
        conn.data_received(
            _frame(h2.HEADERS, h2.END_HEADERS, sid, blocks[sid > 1]) + _frame(h2.DATA, 0, sid, req)
        )
        clock.advance(0.002)
        conn.data_received(_frame(h2.DATA, h2.END_STREAM, sid, resp))
        sid += 2

    async def run(n: int, between: Callable[[], Any]) -> float:
        start = time.process_time()
        for i in range(n):
            one()
            if i % 16 == 15:  # let the store's tasks run, as the event loop would
                await between()
        return time.process_time() - start

    pause = (lambda: asyncio.sleep(0)) if store_url is None else (lambda: asyncio.sleep(0.0005))
    await run(warmup, pause)
    cpu = await run(requests, pause)
    await service.drain(5.0)
    await server.stop(0.1)
    if store_url is not None:
        await store.close()
    return {
        "requests": requests,
        "cpu_us_per_request": 1e6 * cpu / requests,
        "writes": sink.writes,
        "sha256": sink.digest.hexdigest(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.epp_micro``: see the module docstring."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m loadtest.epp_micro", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--requests", type=int, default=20_000, help="measured requests (20,000)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions, one process (3)")
    p.add_argument("--valkey", action="store_true", help="a real embedded Valkey, on uvloop")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args(argv)
    if args.requests < 1 or args.repeat < 1:
        p.error("--requests and --repeat must be >= 1")
    runs: list[dict[str, Any]] = []
    if args.valkey:
        import uvloop

        from gateway.embedded import EmbeddedValkey

        with EmbeddedValkey() as valkey:
            for _ in range(args.repeat):
                runs.append(uvloop.run(measure(args.requests, store_url=valkey.url)))
    else:
        for _ in range(args.repeat):
            runs.append(asyncio.run(measure(args.requests)))
    for r in runs:
        line = f"{r['cpu_us_per_request']:7.1f} µs CPU per request  sha256 {r['sha256'][:16]}"
        print(line, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"store": "valkey" if args.valkey else "memory", "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
