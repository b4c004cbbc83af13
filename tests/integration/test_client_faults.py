"""A client must never take workers out: malformed requests against real Triton, REST and gRPC.

Issue 18.1: a dozen ``tritonclient.grpc`` calls with a wrong input name once marked every
worker of a model unhealthy, so other clients got 503. Here a real pool of two Triton servers
(one instance each, ``m`` at 2 ms and ``slow`` at 300 ms) sits behind a real gateway (REST on
uvicorn, gRPC on grpc.aio, a shared embedded Valkey); each test gets a fresh gateway, so
health state never leaks from one test to the next. ``outlier_max_ejection_percent`` is 100:
nothing but the classification stands between a misclassified client error and an empty pool.

* Client faults, both protocols: for every kind of malformed request (wrong input name, shape,
  datatype, byte size, unknown version or output, missing inputs, unparsable data, a bad
  Triton parameter; over gRPC also a client deadline shorter than the service time and a
  client cancel), a dozen of them leave each worker's health, ejections, view failures, peak
  EWMA, online correction and drift samples exactly as they were; the client gets the error
  in its protocol's form; a valid REST request right after is answered by each worker.
* Worker faults still count, both protocols: ``kill -9`` of a Triton server, a backend error
  (Triton's 500 / ``INTERNAL``), an upstream timeout: the worker is ejected.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from gateway.app import create_app
from gateway.core.net import free_port
from gateway.embedded import EmbeddedValkey
from gateway.server import ServerThread
from gateway.settings import ModelDefaults
from gateway.testing import fleet_settings
from workers.testing import FleetFactory, write_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

N = 12
"""Malformed requests per kind (as in the report)."""
VICTIM = "p-1"
SLOW_MS = 300.0
_prefix = itertools.count()


@dataclass
class Stack:
    fleet: Any
    workers: list[Any]
    profiles: Any
    redis_url: str


@dataclass
class Gateway:
    app: Any
    http: str
    grpc: str


@pytest.fixture(scope="module")
def stack(triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("client_faults")
    path = write_scenario(
        directory,
        pools=[{"name": "p", "arch": "toy", "workers": 2, "instances": 1, "rtt_ms": 0,
                "models": ["m", "slow"]}],
        profiles={("toy", "m"): {1: (2.0, 2.0), 8: (3.0, 3.0)},
                  ("toy", "slow"): {1: (SLOW_MS, SLOW_MS), 8: (SLOW_MS, SLOW_MS)}},
    )  # fmt: skip
    workers = triton_fleet(path, inject_faults=False)
    valkey = EmbeddedValkey()
    url = valkey.start()
    try:
        yield Stack(triton_fleet.last, workers, directory / "profiles", url)
    finally:
        valkey.stop()


@pytest.fixture
def gateway(stack: Stack) -> Iterator[Gateway]:
    settings = fleet_settings(
        stack.workers,
        stack.profiles,
        port=free_port(),
        grpc_port=free_port(),
        policy="round_robin",
        redis_url=stack.redis_url,
        redis_prefix=f"cf{next(_prefix)}",
        models={"m": ModelDefaults(slo_ms=1000), "slow": ModelDefaults(slo_ms=5000)},
        outlier_max_ejection_percent=100.0,
        health_interval_s=30.0,  # probes stay out of the way: request outcomes decide here
        min_timeout_s=0.1,
        timeout_slo_factor=2.0,
    )
    app = create_app(settings)
    with ServerThread(app, host="127.0.0.1", port=settings.port):
        yield Gateway(app, f"http://127.0.0.1:{settings.port}", f"127.0.0.1:{settings.grpc_port}")


# -- what a worker's record is made of ------------------------------------------------------


def _ejections(app: Any, worker: str) -> float:
    total = 0.0
    for family in app.state.metrics.registry.collect():
        for s in family.samples:
            if s.name == "synergai_outlier_ejections_total" and s.labels.get("worker") == worker:
                total += s.value
    return total


def record(app: Any) -> dict[str, Any]:
    """Everything a request outcome can move, per worker (read between requests)."""
    svc = app.state.service
    now = svc.clock.now()
    out: dict[str, Any] = {}
    for w in svc.workers():
        st = svc.view.state(w.id)
        drift = {m: getattr(svc.drift.detector(w.id, m), "total", 0) for m in w.models}
        row = svc.health.row(w.id, now)
        out[w.id] = {
            "routable": st.available(now),
            "healthy": svc.healthy(w.id),
            "ejected": row["ejected"],
            "ejections": _ejections(app, w.id),
            "view_fails": st.fails,
            "peak_ewma": (st.ewma_ms, st.ewma_t),
            "correction": {m: (c.samples, c.g) for m, c in st.corrections.items()},
            "drift_samples": drift,
        }
    return out


def assert_unmoved(before: dict[str, Any], app: Any, what: str) -> None:
    """Every field of :func:`record` is as it was (the differences named when not)."""
    after = record(app)
    moved = [
        f"{w}.{k}: {v} -> {after[w][k]}"
        for w, fields in before.items()
        for k, v in fields.items()
        if after[w][k] != v
    ]
    assert not moved, f"{what} moved a worker's record: {moved}"


def _valid_body() -> bytes:
    return json.dumps(
        {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    ).encode()


def assert_both_workers_answer(gw: Gateway) -> None:
    """Two valid REST requests (round robin): both 200, one from each worker."""
    seen = set()
    with httpx.Client(base_url=gw.http, timeout=30, headers={"x-slo-ms": "10000"}) as c:
        for _ in range(2):  # a generous SLO: the slow cases leave the devices a backlog
            r = c.post("/v2/models/m/infer", content=_valid_body())
            assert r.status_code == 200, r.text
            seen.add(r.headers["x-synergai-worker"])
    assert seen == {"p-0", "p-1"}


# -- REST client faults ---------------------------------------------------------------------


def _json(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _inp(name: str = "INPUT0", shape: Any = (1, 2), dtype: str = "FP32", data: Any = None) -> Any:
    return {"name": name, "shape": list(shape), "datatype": dtype, "data": data or [1.0, 2.0]}


_HDR = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32",
                 "parameters": {"binary_data_size": 4}}]}
).encode()  # fmt: skip

REST_CASES: dict[str, tuple[str, bytes, dict[str, str], int]] = {
    # name: (path, body, headers, status the client must get)
    "wrong_input_name": ("m/infer", _json([_inp("NOPE")]), {}, 400),
    "wrong_shape": ("m/infer", _json([_inp(shape=[2])]), {}, 400),
    "wrong_datatype": ("m/infer", _json([_inp(dtype="INT32", data=[1, 2])]), {}, 400),
    "unparsable_data": ("m/infer", _json([_inp(data=["a", "b"])]), {}, 400),  # Triton: 500
    "bad_triton_parameter": ("m/infer", _json([_inp()], parameters={"priority": "high"}), {}, 400),
    "wrong_byte_size": (
        "m/infer",
        _HDR + b"\0" * 4,
        {"inference-header-content-length": str(len(_HDR))},
        400,
    ),
    "unknown_version": ("m/versions/7/infer", _json([_inp()]), {}, 404),
    "unknown_output": ("m/infer", _json([_inp()], outputs=[{"name": "NOPE"}]), {}, 400),
    "missing_inputs": ("m/infer", _json([]), {}, 400),
    "data_shape_mismatch": ("m/infer", _json([_inp(shape=[1, 3])]), {}, 400),
    "malformed_json": ("m/infer", b"{bad", {}, 400),
}


def test_malformed_rest_requests_never_count_against_a_worker(gateway: Gateway) -> None:
    assert_both_workers_answer(gateway)
    with httpx.Client(base_url=gateway.http, timeout=30) as c:
        for name, (path, body, headers, status) in REST_CASES.items():
            before = record(gateway.app)
            for _ in range(N):
                r = c.post(f"/v2/models/{path}", content=body, headers=headers)
                assert r.status_code == status, f"{name}: {r.status_code} {r.text[:200]}"
                assert isinstance(r.json()["error"], str) and r.json()["error"], name
            assert_unmoved(before, gateway.app, name)
            assert_both_workers_answer(gateway)


# -- gRPC client faults ---------------------------------------------------------------------


def _req(
    model: str = "m",
    name: str = "INPUT0",
    dtype: str = "FP32",
    shape: tuple[int, ...] = (1, 2),
    raw: bytes | None = None,
    version: str = "",
    outputs: tuple[str, ...] = (),
    params: dict[str, str] | None = None,
) -> Any:
    q = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    t = q.inputs.add(name=name, datatype=dtype)
    t.shape.extend(shape)
    q.raw_input_contents.append(raw if raw is not None else np.ones(shape, np.float32).tobytes())
    for o in outputs:
        q.outputs.add(name=o)
    for k, v in (params or {}).items():
        q.parameters[k].string_param = v
    return q


def _no_raw() -> Any:
    q = _req()
    del q.raw_input_contents[:]
    return q


def _call(q: Any, timeout: float = 30.0) -> Callable[[Any], Any]:
    return lambda stub: stub.ModelInfer(q, timeout=timeout)


def _cancelled(stub: Any) -> Any:
    fut = stub.ModelInfer.future(_req("slow"), timeout=30)
    time.sleep(0.1)  # sent and executing on a worker
    fut.cancel()
    return fut.result()


GRPC_CASES: dict[str, tuple[Callable[[Any], Any], grpc.StatusCode]] = {
    "wrong_input_name": (_call(_req(name="NOPE")), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong_shape": (
        _call(_req(shape=(2,), raw=np.ones(2, np.float32).tobytes())),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "wrong_datatype": (_call(_req(dtype="INT32")), grpc.StatusCode.INVALID_ARGUMENT),
    "wrong_byte_size": (_call(_req(raw=b"\0" * 4)), grpc.StatusCode.INVALID_ARGUMENT),
    "unknown_version": (_call(_req(version="7")), grpc.StatusCode.NOT_FOUND),
    "unknown_output": (_call(_req(outputs=("NOPE",))), grpc.StatusCode.INVALID_ARGUMENT),
    "missing_inputs": (
        _call(service_pb2.ModelInferRequest(model_name="m")),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "missing_raw_contents": (_call(_no_raw()), grpc.StatusCode.INVALID_ARGUMENT),
    "bad_triton_parameter": (
        _call(_req(params={"priority": "high"})),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "client_deadline": (_call(_req("slow"), timeout=0.1), grpc.StatusCode.DEADLINE_EXCEEDED),
    "client_cancel": (_cancelled, grpc.StatusCode.CANCELLED),
}


def _settle(gw: Gateway, timeout_s: float = 10.0) -> None:
    """Wait (bounded) until no request is in flight at the gateway (cancelled ones end late)."""
    end = time.monotonic() + timeout_s
    while gw.app.state.service.inflight and time.monotonic() < end:
        time.sleep(0.02)
    assert gw.app.state.service.inflight == 0


def test_malformed_grpc_requests_never_count_against_a_worker(gateway: Gateway) -> None:
    assert_both_workers_answer(gateway)
    channel = grpc.insecure_channel(gateway.grpc)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        for name, (send, code) in GRPC_CASES.items():
            _settle(gateway)
            before = record(gateway.app)
            for _ in range(N):
                with pytest.raises((grpc.RpcError, grpc.FutureCancelledError)) as info:
                    send(stub)
                if isinstance(info.value, grpc.RpcError):
                    assert info.value.code() is code, f"{name}: {info.value}"
                    assert info.value.details(), name
                else:
                    assert code is grpc.StatusCode.CANCELLED
            _settle(gateway)
            assert_unmoved(before, gateway.app, name)
            assert_both_workers_answer(gateway)
    finally:
        channel.close()


# -- worker faults still count --------------------------------------------------------------


@dataclass
class Fault:
    start: Callable[[Any], None]
    end: Callable[[Any], None]
    slo_ms: str
    rest: list[int]
    """Statuses a REST client may see while the fault lasts (the last one it must see)."""
    grpc: list[grpc.StatusCode]


FAULTS = {
    "backend_error": Fault(
        lambda f: f.set_failing(VICTIM, "device lost"),
        lambda f: f.set_failing(VICTIM, ""),
        "1000",
        [200, 500],
        [grpc.StatusCode.OK, grpc.StatusCode.INTERNAL],
    ),
    "kill_9": Fault(  # refused connections are retried on the other worker
        lambda f: f.crash(VICTIM),
        lambda f: f.recover(VICTIM, timeout=60),
        "1000",
        [200],
        [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK],
    ),
    "upstream_timeout": Fault(  # 1.5 s per request against a 0.5 s timeout (SLO 250 ms x 2)
        lambda f: f.set_slowdown(VICTIM, 750.0),
        lambda f: f.set_slowdown(VICTIM, 1.0),
        "250",
        [200, 504],
        [grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED],
    ),
}


def _rest_sender(gw: Gateway, slo_ms: str) -> Iterator[int]:
    with httpx.Client(base_url=gw.http, timeout=30, headers={"x-slo-ms": slo_ms}) as c:
        while True:
            r = c.post("/v2/models/m/infer", content=_valid_body())
            assert r.status_code == 200 or isinstance(r.json()["error"], str)
            yield r.status_code


def _grpc_sender(gw: Gateway, slo_ms: str) -> Iterator[grpc.StatusCode]:
    channel = grpc.insecure_channel(gw.grpc)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        while True:
            try:
                stub.ModelInfer(_req(), timeout=30, metadata=(("x-slo-ms", slo_ms),))
                yield grpc.StatusCode.OK
            except grpc.RpcError as exc:
                assert exc.details()
                yield exc.code()
    finally:
        channel.close()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("kind", list(FAULTS))
def test_worker_faults_still_eject(
    gateway: Gateway, stack: Stack, kind: str, protocol: str
) -> None:
    fault = FAULTS[kind]
    assert_both_workers_answer(gateway)
    send = _rest_sender if protocol == "rest" else _grpc_sender
    allowed: list[Any] = fault.rest if protocol == "rest" else fault.grpc
    seen: list[Any] = []
    fault.start(stack.fleet)
    try:
        answers = send(gateway, fault.slo_ms)
        for answer in itertools.islice(answers, 40):  # bounded: ~3 reach the victim per 6
            seen.append(answer)
            if _ejections(gateway.app, VICTIM) >= 1:
                break
        answers.close()
    finally:
        fault.end(stack.fleet)
    assert _ejections(gateway.app, VICTIM) >= 1, f"{kind} over {protocol} never ejected: {seen}"
    assert set(seen) <= set(allowed), seen
    assert allowed[-1] in seen, f"the fault never reached the client as {allowed[-1]}: {seen}"
