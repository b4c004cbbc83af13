"""Open-loop replay of an arrival trace against KServe v2 endpoints, measured at the client.

Open loop means an arrival never waits for an earlier response: request ``i`` is sent at
``t0 + trace[i].t_s`` whatever happened before, so a slow policy cannot slow its own load down
(no coordinated omission). Latency is measured from the *scheduled* send time to the end of the
response, so time lost waiting for a free connection or for the client's own event loop counts
against the request, as a real client would see it; :attr:`Outcome.lag_ms` (actual send minus
scheduled send) shows how much of that was the client itself.

One asyncio loop drives everything: an ``aiohttp`` session (``TCPConnector(limit=N)``, keep-alive)
for REST, or one ``grpc.aio`` channel per target for gRPC. Requests are spread over the targets
(gateway replicas) round robin in trace order, so each replica sees the same share of every
stream. Each request carries its hints as ``x-slo-ms``, ``x-priority`` and ``x-category`` headers
(gRPC metadata); answers are classified as

* ``ok``: HTTP 200 / gRPC OK,
* ``shed``: HTTP 429 / ``RESOURCE_EXHAUSTED`` (the gateway refused it to protect the SLO),
* ``error``: any other status or a transport error,
* ``lost``: no answer before the client gave up (``timeout_s``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = [
    "Arrival",
    "ClosedLoopResult",
    "Outcome",
    "Payloads",
    "Protocol",
    "Status",
    "closed_loop",
    "connections_for",
    "replay",
]

Protocol = Literal["http", "grpc"]
Status = Literal["ok", "shed", "error", "lost"]

_WIDTH = 4
"""Elements per item of the FP32 input the emulated models double (``INPUT0 [B, 4]``)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request of a trace, in real (already time-scaled) units.

    Attributes:
        t_s: send time, seconds after the start of the replay.
        model: model name.
        slo_ms: latency objective at the client, ms.
        priority: higher is more important.
        category: ``"latency"`` or ``"frequency"``.
        batch: items in the request.
    """

    t_s: float
    model: str
    slo_ms: float
    priority: int = 0
    category: str = "latency"
    batch: int = 1


@dataclass(slots=True)
class Outcome:
    """What the client saw of one request.

    Attributes:
        status: ``ok``, ``shed``, ``error`` or ``lost``.
        latency_ms: scheduled send to end of response, ms (also for failures: when it failed).
        lag_ms: actual send minus scheduled send, ms (the client's own delay).
        code: HTTP status or gRPC status name; ``""`` for a transport error or a timeout.
        worker: the ``x-synergai-worker`` response header, when the gateway sent one.
        target: index of the target (gateway replica) it was sent to.
        predicted_ms: the gateway's ``x-synergai-predicted-ms`` for it (``nan`` if none).
    """

    status: Status
    latency_ms: float
    lag_ms: float = 0.0
    code: str = ""
    worker: str = ""
    target: int = 0
    predicted_ms: float = math.nan


@dataclass
class Payloads:
    """Request bodies built once per (model, batch), so the hot loop only picks bytes."""

    _json: dict[tuple[str, int], bytes] = field(default_factory=dict)
    _grpc: dict[tuple[str, int], Any] = field(default_factory=dict)

    def json_body(self, model: str, batch: int) -> bytes:
        """KServe v2 JSON body: ``INPUT0`` FP32 ``[batch, 4]``."""
        key = (model, batch)
        body = self._json.get(key)
        if body is None:
            data = [float(i) for i in range(batch * _WIDTH)]
            doc = {
                "inputs": [
                    {"name": "INPUT0", "shape": [batch, _WIDTH], "datatype": "FP32", "data": data}
                ]
            }
            body = self._json[key] = orjson.dumps(doc)
        return body

    def grpc_request(self, model: str, batch: int) -> Any:
        """``inference.ModelInferRequest`` with the same tensor as raw little-endian bytes."""
        key = (model, batch)
        req = self._grpc.get(key)
        if req is None:
            import numpy as np
            from tritonclient.grpc import service_pb2

            arr = np.arange(batch * _WIDTH, dtype="<f4").reshape(batch, _WIDTH)
            req = service_pb2.ModelInferRequest(model_name=model)
            tensor = req.inputs.add()
            tensor.name = "INPUT0"
            tensor.datatype = "FP32"
            tensor.shape.extend([batch, _WIDTH])
            req.raw_input_contents.append(arr.tobytes())
            self._grpc[key] = req
        return req


def connections_for(trace: Sequence[Arrival], timeout_s: float, cap: int = 2048) -> int:
    """Connections enough for the trace even when the system under test stalls.

    ``N = clamp(peak_rps x timeout_s + 16, 16, cap)``, where ``peak_rps`` is the largest number
    of arrivals in any one-second window: the most requests that can be in flight at once
    before the client gives up on them. A smaller pool would make the *client* a shared queue:
    when one overloaded worker holds every connection, requests for healthy workers would wait
    for a connection, and a bad policy would look worse than it is (head-of-line blocking the
    simulator does not have).

    Args:
        trace: the arrivals.
        timeout_s: the client's per-request timeout.
        cap: the largest pool (file descriptors).
    """
    if not trace:
        return 16
    times = sorted(a.t_s for a in trace)
    peak, j = 1, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    n = math.ceil(peak * timeout_s) + 16
    return max(16, min(cap, n))


def _headers(a: Arrival) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-slo-ms": f"{a.slo_ms:g}",
        "x-priority": str(a.priority),
        "x-category": a.category,
    }


class _Sender:
    """One protocol's way of sending one request and classifying the answer."""

    async def open(self) -> None:
        """Create connections (inside the running loop)."""

    async def close(self) -> None:
        """Close every connection."""

    async def send(self, a: Arrival, target: int) -> tuple[Status, str, str, float]:
        """Send ``a`` to ``target``; return (status, code, worker, predicted ms)."""
        raise NotImplementedError


class _HttpSender(_Sender):
    def __init__(self, urls: Sequence[str], payloads: Payloads, conns: int, timeout_s: float):
        self._urls = [u.rstrip("/") for u in urls]
        self._payloads = payloads
        self._conns = conns
        self._timeout_s = timeout_s
        self._session: Any = None

    async def open(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._conns, limit_per_host=0, ttl_dns_cache=None, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, a: Arrival, target: int) -> tuple[Status, str, str, float]:
        import aiohttp

        url = f"{self._urls[target]}/v2/models/{a.model}/infer"
        body = self._payloads.json_body(a.model, a.batch)
        try:
            async with self._session.post(url, data=body, headers=_headers(a)) as resp:
                await resp.read()
                code = resp.status
                worker = resp.headers.get("x-synergai-worker", "")
                predicted = _float(resp.headers.get("x-synergai-predicted-ms"))
        except TimeoutError:
            return "lost", "", "", math.nan
        except (aiohttp.ClientError, OSError):
            return "error", "", "", math.nan
        if code == 200:
            return "ok", "200", worker, predicted
        if code == 429:
            return "shed", "429", worker, predicted
        return "error", str(code), worker, predicted


class _GrpcSender(_Sender):
    def __init__(self, targets: Sequence[str], payloads: Payloads, timeout_s: float):
        self._targets = [t.removeprefix("grpc://") for t in targets]
        self._payloads = payloads
        self._timeout_s = timeout_s
        self._channels: list[Any] = []
        self._stubs: list[Any] = []

    async def open(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        for t in self._targets:
            ch = grpc.aio.insecure_channel(t, options=opts)
            self._channels.append(ch)
            self._stubs.append(service_pb2_grpc.GRPCInferenceServiceStub(ch))

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()
        self._channels.clear()
        self._stubs.clear()

    async def send(self, a: Arrival, target: int) -> tuple[Status, str, str, float]:
        import grpc

        req = self._payloads.grpc_request(a.model, a.batch)
        md = (
            ("x-slo-ms", f"{a.slo_ms:g}"),
            ("x-priority", str(a.priority)),
            ("x-category", a.category),
        )
        call = self._stubs[target].ModelInfer(req, metadata=md, timeout=self._timeout_s)
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            worker = _md_get(exc.trailing_metadata()) or _md_get(exc.initial_metadata())
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return "shed", code.name, worker, math.nan
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and exc.details() == "Deadline Exceeded":
                return "lost", code.name, worker, math.nan
            return "error", code.name, worker, math.nan
        initial, trailing = await call.initial_metadata(), await call.trailing_metadata()
        worker = _md_get(initial) or _md_get(trailing)
        predicted = _float(
            _md_get(initial, "x-synergai-predicted-ms")
            or _md_get(trailing, "x-synergai-predicted-ms")
        )
        return "ok", "OK", worker, predicted


def _float(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def _md_get(md: Any, key: str = "x-synergai-worker") -> str:
    if not md:
        return ""
    for k, v in md:
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


async def replay(
    trace: Sequence[Arrival],
    targets: Sequence[str],
    protocol: Protocol = "http",
    *,
    connections: int | None = None,
    timeout_s: float = 10.0,
    payloads: Payloads | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Outcome]:
    """Send every arrival at its time, open loop, and return one outcome per arrival.

    Args:
        trace: arrivals sorted by ``t_s`` (real seconds after the start).
        targets: base URLs (``http://h:p``) for ``http``; ``host:port`` for ``grpc``.
        protocol: ``http`` or ``grpc``.
        connections: HTTP connection pool size (default :func:`connections_for`).
        timeout_s: a request not answered after this long is ``lost``.
        payloads: body cache to reuse between replays.
        on_progress: called as ``(done, total)`` roughly every 2% of the trace.
        on_start: called once, just before the first send, with the ``time.time()`` epoch
            of the trace's t=0 (so a fleet can start its fault clock on the same origin).
        clock: monotonic seconds (injected for tests).

    Returns:
        Outcomes in trace order.
    """
    if not targets:
        raise ValueError("replay needs at least one target")
    payloads = payloads or Payloads()
    sender: _Sender
    if protocol == "http":
        conns = connections or connections_for(trace, timeout_s)
        sender = _HttpSender(targets, payloads, conns, timeout_s)
    elif protocol == "grpc":
        sender = _GrpcSender(targets, payloads, timeout_s)
    else:
        raise ValueError(f"unknown protocol {protocol!r} (http or grpc)")
    for a in trace:  # build bodies before the clock starts
        if protocol == "http":
            payloads.json_body(a.model, a.batch)
        else:
            payloads.grpc_request(a.model, a.batch)

    total = len(trace)
    outcomes: list[Outcome | None] = [None] * total
    done = 0
    step = max(1, total // 50)
    n_targets = len(targets)

    async def one(i: int, a: Arrival, due: float) -> None:
        nonlocal done
        sent = clock()
        target = i % n_targets
        try:
            status, code, worker, predicted = await sender.send(a, target)
        except Exception as exc:
            status, code, worker, predicted = "error", type(exc).__name__, "", math.nan
        end = clock()
        outcomes[i] = Outcome(
            status=status,
            latency_ms=(end - due) * 1000.0,
            lag_ms=max(0.0, (sent - due) * 1000.0),
            code=code,
            worker=worker,
            target=target,
            predicted_ms=predicted,
        )
        done += 1
        if on_progress is not None and (done % step == 0 or done == total):
            on_progress(done, total)

    await sender.open()
    tasks: list[asyncio.Task[None]] = []
    try:
        t0 = clock() + 0.05
        if on_start is not None:
            on_start(time.time() + (t0 - clock()))
        for i, a in enumerate(trace):
            due = t0 + a.t_s
            delay = due - clock()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, a, due)))
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s + 5.0)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()
    return [
        o if o is not None else Outcome(status="lost", latency_ms=timeout_s * 1000.0)
        for o in outcomes
    ]


@dataclass(frozen=True, slots=True)
class ClosedLoopResult:
    """What a closed-loop run measured.

    Attributes:
        concurrency: clients, each sending its next request when the last one answered.
        seconds: measured wall time (after warm-up).
        latencies_ms: latency of every successful request in the measured window.
        errors: failed requests in the measured window.
    """

    concurrency: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0


async def closed_loop(
    target: str,
    protocol: Protocol,
    concurrency: int,
    duration_s: float,
    *,
    model: str,
    warmup_s: float = 0.5,
    headers: dict[str, str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ClosedLoopResult:
    """``concurrency`` clients in a loop against one target for ``warmup_s + duration_s``.

    Requests that *start* during warm-up are not counted; the measured window is
    ``duration_s`` long. One keep-alive connection (HTTP) or one channel (gRPC) per client.

    Args:
        target: ``http://h:p`` or ``h:p`` (gRPC).
        protocol: ``http`` or ``grpc``.
        concurrency: number of clients.
        duration_s: measured seconds.
        model: model to call (batch 1, the same tiny tensor as :class:`Payloads`).
        warmup_s: unmeasured seconds first.
        headers: extra headers / metadata (hints).
        clock: monotonic seconds.
    """
    payloads = Payloads()
    lat: list[float] = []
    errors = 0
    t_start = clock()
    t_measure = t_start + warmup_s
    t_end = t_measure + duration_s
    hdrs = {"content-type": "application/json", **(headers or {})}

    if protocol == "http":
        import aiohttp

        body = payloads.json_body(model, 1)
        url = f"{target.rstrip('/')}/v2/models/{model}/infer"
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=30),
            skip_auto_headers=("User-Agent",),
        ) as session:

            async def client() -> None:
                nonlocal errors
                while True:
                    t = clock()
                    if t >= t_end:
                        return
                    try:
                        async with session.post(url, data=body, headers=hdrs) as resp:
                            await resp.read()
                            good = resp.status == 200
                    except (aiohttp.ClientError, OSError, TimeoutError):
                        good = False
                    if t >= t_measure:
                        if good:
                            lat.append((clock() - t) * 1000.0)
                        else:
                            errors += 1

            await asyncio.gather(*(client() for _ in range(concurrency)))
    else:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        req = payloads.grpc_request(model, 1)
        md = tuple((k, v) for k, v in hdrs.items() if k != "content-type")
        channels = [
            grpc.aio.insecure_channel(target.removeprefix("grpc://")) for _ in range(concurrency)
        ]
        try:

            async def gclient(ch: Any) -> None:
                nonlocal errors
                stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
                while True:
                    t = clock()
                    if t >= t_end:
                        return
                    try:
                        await stub.ModelInfer(req, metadata=md, timeout=30)
                        good = True
                    except grpc.aio.AioRpcError:
                        good = False
                    if t >= t_measure:
                        if good:
                            lat.append((clock() - t) * 1000.0)
                        else:
                            errors += 1

            await asyncio.gather(*(gclient(ch) for ch in channels))
        finally:
            for ch in channels:
                await ch.close()
    return ClosedLoopResult(concurrency, max(1e-9, min(clock(), t_end) - t_measure), lat, errors)
