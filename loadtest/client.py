"""The load generator's one client: KServe v2 infer over REST or gRPC, measured at the client.

:mod:`loadtest.loops` drives it open loop (:func:`~loadtest.loops.replay`, a trace sent on
schedule) or closed loop (:func:`~loadtest.loops.closed_loop`); both give one :class:`Outcome`
per request. Requests carry their hints as ``x-slo-ms``, ``x-priority`` and ``x-category``
headers (gRPC metadata); answers are classified as

* ``ok``: HTTP 200 / gRPC OK,
* ``shed``: HTTP 429 / ``RESOURCE_EXHAUSTED`` (the gateway refused it to protect the SLO),
* ``error``: any other status or a transport error,
* ``lost``: no answer before the client gave up (``timeout_s``).

REST goes over one ``aiohttp`` session (keep-alive, a bounded pool), gRPC over ``grpc.aio``
channels. No ``User-Agent`` or ``Accept-Encoding`` header is sent (as ``tritonclient``; Triton's
gzip answers would only cost the client CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = [
    "Arrival",
    "Outcome",
    "Payloads",
    "Protocol",
    "Reply",
    "Sender",
    "Status",
    "hints",
    "open_sender",
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
        start_s: when it was due (open loop: scheduled; closed loop: sent), client clock, s.
        end_s: when its answer (or failure) arrived, client clock, s.
    """

    status: Status
    latency_ms: float
    lag_ms: float = 0.0
    code: str = ""
    worker: str = ""
    target: int = 0
    predicted_ms: float = math.nan
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass
class Payloads:
    """Request bodies built once per (model, batch), so the hot loop only picks bytes.

    Attributes:
        width: FP32 elements per item (``INPUT0 [batch, width]``; the emulated models take any
            width). 4 by default; ``bench overhead``'s large-tensor rows use 262,144 (1 MiB).
        binary: REST bodies in Triton's binary-tensor extension (as ``tritonclient.http``
            sends them, outputs asked back in binary) instead of JSON numbers; automatic
            above 4,096 elements, where JSON text would cost more than the tensor.
    """

    width: int = _WIDTH
    binary: bool | None = None
    _json: dict[tuple[str, int], tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    _grpc: dict[tuple[str, int], Any] = field(default_factory=dict)

    @property
    def use_binary(self) -> bool:
        """Whether REST bodies use the binary-tensor extension."""
        return self.binary if self.binary is not None else self.width > 4096

    def json_body(self, model: str, batch: int) -> bytes:
        """The REST body: KServe v2 JSON, ``INPUT0`` FP32 ``[batch, width]``."""
        return self.http_request(model, batch)[0]

    def http_request(self, model: str, batch: int) -> tuple[bytes, dict[str, str]]:
        """The REST body and its content headers (JSON, or the binary-tensor extension)."""
        key = (model, batch)
        found = self._json.get(key)
        if found is None:
            n = batch * self.width
            shape = [batch, self.width]
            if self.use_binary:
                import numpy as np

                raw = np.arange(n, dtype="<f4").tobytes()
                head = orjson.dumps({
                    "inputs": [{"name": "INPUT0", "shape": shape, "datatype": "FP32",
                                "parameters": {"binary_data_size": len(raw)}}],
                    "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
                })  # fmt: skip
                headers = {"content-type": "application/octet-stream",
                           "inference-header-content-length": str(len(head))}  # fmt: skip
                found = (head + raw, headers)
            else:
                data = [float(i) for i in range(n)]
                doc = {"inputs": [{"name": "INPUT0", "shape": shape, "datatype": "FP32",
                                   "data": data}]}  # fmt: skip
                found = (orjson.dumps(doc), {"content-type": "application/json"})
            self._json[key] = found
        return found

    def grpc_request(self, model: str, batch: int) -> Any:
        """``inference.ModelInferRequest`` with the same tensor as raw little-endian bytes."""
        key = (model, batch)
        req = self._grpc.get(key)
        if req is None:
            import numpy as np
            from tritonclient.grpc import service_pb2

            arr = np.arange(batch * self.width, dtype="<f4").reshape(batch, self.width)
            req = service_pb2.ModelInferRequest(model_name=model)
            tensor = req.inputs.add()
            tensor.name = "INPUT0"
            tensor.datatype = "FP32"
            tensor.shape.extend([batch, self.width])
            req.raw_input_contents.append(arr.tobytes())
            self._grpc[key] = req
        return req


def hints(a: Arrival) -> tuple[tuple[str, str], ...]:
    """The hint headers (gRPC metadata) an arrival carries: SLO, priority, category."""
    return (
        ("x-slo-ms", f"{a.slo_ms:g}"),
        ("x-priority", str(a.priority)),
        ("x-category", a.category),
    )


Reply = tuple[Status, str, str, float]
"""What a sender makes of one answer: (status, code, worker, predicted ms)."""


class Sender:
    """One protocol's way of sending one request and classifying the answer."""

    async def open(self) -> None:
        """Create connections (inside the running loop)."""

    async def close(self) -> None:
        """Close every connection."""

    async def send(
        self, model: str, batch: int, meta: Sequence[tuple[str, str]], target: int, lane: int
    ) -> Reply:
        """Send one request to ``target`` (on channel ``lane`` where that means anything)."""
        raise NotImplementedError


class _HttpSender(Sender):
    """One ``aiohttp`` session, keep-alive, at most ``conns`` connections over all targets."""

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
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, model: str, batch: int, meta: Sequence[tuple[str, str]], target: int, lane: int
    ) -> Reply:
        import aiohttp

        url = f"{self._urls[target]}/v2/models/{model}/infer"
        body, content = self._payloads.http_request(model, batch)
        headers = {**content, **dict(meta)}
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
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


class _GrpcSender(Sender):
    """``lanes`` ``grpc.aio`` channels per target (one per closed-loop client; one for replay)."""

    def __init__(
        self, targets: Sequence[str], payloads: Payloads, timeout_s: float, lanes: int = 1
    ):
        self._targets = [t.removeprefix("grpc://") for t in targets]
        self._payloads = payloads
        self._timeout_s = timeout_s
        self._lanes = max(1, lanes)
        self._channels: list[Any] = []
        self._stubs: list[list[Any]] = []

    async def open(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        opts = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        for t in self._targets:
            stubs = []
            for _ in range(self._lanes):
                ch = grpc.aio.insecure_channel(t, options=opts)
                self._channels.append(ch)
                stubs.append(service_pb2_grpc.GRPCInferenceServiceStub(ch))
            self._stubs.append(stubs)

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()
        self._channels.clear()
        self._stubs.clear()

    async def send(
        self, model: str, batch: int, meta: Sequence[tuple[str, str]], target: int, lane: int
    ) -> Reply:
        import grpc

        req = self._payloads.grpc_request(model, batch)
        stub = self._stubs[target][lane % self._lanes]
        call = stub.ModelInfer(req, metadata=tuple(meta), timeout=self._timeout_s)
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


def open_sender(
    protocol: Protocol,
    targets: Sequence[str],
    payloads: Payloads,
    timeout_s: float,
    *,
    conns: int,
    lanes: int = 1,
) -> Sender:
    """A sender of ``protocol`` requests to ``targets`` (call ``await open()`` in the loop).

    Args:
        protocol: ``http`` or ``grpc``.
        targets: base URLs (``http://h:p``) for ``http``; ``host:port`` for ``grpc``.
        payloads: the body cache.
        timeout_s: per-request timeout (then ``lost``).
        conns: HTTP connection pool size, over all targets.
        lanes: gRPC channels per target (a request picks one by its ``lane``).
    """
    if not targets:
        raise ValueError("the client needs at least one target")
    if protocol == "http":
        return _HttpSender(targets, payloads, conns, timeout_s)
    if protocol == "grpc":
        return _GrpcSender(targets, payloads, timeout_s, lanes)
    raise ValueError(f"unknown protocol {protocol!r} (http or grpc)")


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
