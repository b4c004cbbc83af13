"""The gRPC front door against real servers: routing facts, hints, errors, deadlines, streams.

One module fleet: pool ``p``, one Triton worker serving ``m`` (2 ms), ``slow`` (300 ms) and
``glacial`` (2 s: far past the deadlines that test giving up, so a loaded machine has room),
two instances; the embedded Valkey; the gateway app on uvicorn + grpc.aio. A second gateway
whose only worker is a closed port checks the unreachable-worker answer.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.core.net import free_port
from gateway.server import ServerThread
from gateway.settings import ModelDefaults, Settings, WorkerSpec
from gateway.testing import fleet_settings
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

SLOW_MS = 300.0
GLACIAL_MS = 2000.0
ADMIN_TOKEN = "grpc-test-token"


@dataclass
class Gateway:
    grpc: str
    http: str
    worker_grpc: str
    app: Any


@pytest.fixture(scope="module")
def gateway(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("grpc")
    path = write_scenario(
        directory,
        pools=[
            {"name": "p", "arch": "toy", "workers": 1, "instances": 2, "rtt_ms": 0,
             "models": ["m", "slow", "glacial"]},
        ],
        profiles={
            ("toy", "m"): {1: (2.0, 2.0), 8: (3.0, 3.0)},
            ("toy", "slow"): {1: (SLOW_MS, SLOW_MS), 8: (SLOW_MS, SLOW_MS)},
            ("toy", "glacial"): {1: (GLACIAL_MS, GLACIAL_MS), 8: (GLACIAL_MS, GLACIAL_MS)},
        },
    )  # fmt: skip
    workers = triton_fleet(path, inject_faults=False)
    settings = fleet_settings(
        workers,
        directory / "profiles",
        port=free_port(),
        grpc_port=free_port(),
        models={
            "m": ModelDefaults(slo_ms=1000),
            "slow": ModelDefaults(slo_ms=5000),
            "glacial": ModelDefaults(slo_ms=10000),
        },
        redis_url=None,
        max_body_bytes=32 * 1024 * 1024,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings)
    with ServerThread(app, host="127.0.0.1", port=settings.port):
        yield Gateway(
            grpc=f"127.0.0.1:{settings.grpc_port}",
            http=f"127.0.0.1:{settings.port}",
            worker_grpc=workers[0].grpc_url,
            app=app,
        )


def _request(model: str = "m", batch: int = 1, items: int = 4, **params: Any) -> bytes:
    req = service_pb2.ModelInferRequest(model_name=model, id="r1")
    tensor = req.inputs.add(name="INPUT0", datatype="FP32")
    tensor.shape.extend([batch, items])
    req.raw_input_contents.append(np.ones((batch, items), np.float32).tobytes())
    for key, value in params.items():
        if isinstance(value, str):
            req.parameters[key].string_param = value
        elif isinstance(value, float):
            req.parameters[key].double_param = value
        else:
            req.parameters[key].int64_param = value
    return bytes(req.SerializeToString())


@pytest.fixture
def stub(gateway: Gateway) -> Iterator[Any]:
    channel = grpc.insecure_channel(
        gateway.grpc, options=[("grpc.max_receive_message_length", 64 << 20),
                               ("grpc.max_send_message_length", 64 << 20)]
    )  # fmt: skip
    try:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    finally:
        channel.close()


def _infer(stub: Any, body: bytes, **kw: Any) -> tuple[Any, dict[str, str]]:
    msg = service_pb2.ModelInferRequest.FromString(body)
    resp, call = stub.ModelInfer.with_call(msg, **kw)
    return resp, dict(call.trailing_metadata())


def _worker_count(gateway: Gateway, model: str) -> int:
    client = grpcclient.InferenceServerClient(gateway.worker_grpc)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        return int(stats["inference_stats"]["success"].get("count", 0)) + int(
            stats["inference_stats"]["fail"].get("count", 0)
        )
    finally:
        client.close()


def _queued_s(gateway: Gateway) -> float:
    """Seconds requests have waited in the worker's own queue so far, all models."""
    client = grpcclient.InferenceServerClient(gateway.worker_grpc)
    try:
        stats = client.get_inference_statistics("", as_json=True)["model_stats"]
        return sum(int(m["inference_stats"]["queue"].get("ns", 0)) for m in stats) / 1e9
    finally:
        client.close()


def test_routing_facts_as_trailing_metadata(stub: Any) -> None:
    resp, trailers = _infer(stub, _request(batch=2))
    assert resp.id == "r1"
    out = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 4)
    np.testing.assert_array_equal(out, np.full((2, 4), 2.0, np.float32))
    assert trailers["x-synergai-worker"] == "p-0"
    assert trailers["x-synergai-pool"] == "p"
    assert trailers["x-synergai-policy"] == "synergai"
    assert float(trailers["x-synergai-predicted-ms"]) > 0


@pytest.mark.parametrize(
    ("metadata", "params", "needle"),
    [
        ((("x-slo-ms", "abc"),), {}, "x-slo-ms"),
        ((), {"x-slo-ms": "soon"}, "x-slo-ms"),
        ((("x-priority", "high"),), {}, "x-priority"),
        ((), {"x-category": "bulk"}, "x-category"),
        ((), {"slo_ms": "soon"}, "x-slo-ms"),  # a misspelt hint is refused, not ignored
        ((("x_priority", "1"),), {}, "x-priority"),
    ],
)
def test_bad_hints_are_invalid_argument(
    stub: Any, metadata: tuple[tuple[str, str], ...], params: dict[str, Any], needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, _request(**params), metadata=metadata)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert needle in info.value.details()


def test_metadata_hint_wins_over_parameter(stub: Any) -> None:
    # The parameter alone would shed (0.01 ms); the metadata's generous SLO wins.
    _infer(stub, _request(**{"x-slo-ms": 0.01}), metadata=(("x-slo-ms", "1000"),))
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, _request(**{"x-slo-ms": 0.01}))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_shed_is_resource_exhausted_with_retry_after(stub: Any, gateway: Gateway) -> None:
    before = _worker_count(gateway, "slow")
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, _request("slow"), metadata=(("x-slo-ms", "10"), ("x-priority", "0")))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "SLO 10 ms cannot be met" in info.value.details()
    assert dict(info.value.trailing_metadata())["retry-after"] == "1"
    assert _worker_count(gateway, "slow") == before  # never sent


def _drain(gateway: Gateway, worker: str, drained: bool) -> None:
    verb = "drain" if drained else "undrain"
    r = requests.post(
        f"http://{gateway.http}/synergai/v1/workers/{worker}/{verb}",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=5,
    )
    assert r.status_code == 200, r.text


def test_drained_worker_gets_nothing_over_grpc_or_rest(stub: Any, gateway: Gateway) -> None:
    """Drain is honoured by every path that picks a worker, metadata included, on both doors."""
    meta = service_pb2.ModelMetadataRequest(name="m")
    _, call = stub.ModelMetadata.with_call(meta)
    assert dict(call.trailing_metadata())["x-synergai-worker"] == "p-0"
    _drain(gateway, "p-0", True)  # the only worker
    try:
        for rpc, msg in (
            (stub.ModelMetadata, meta),
            (stub.ModelConfig, service_pb2.ModelConfigRequest(name="m")),
            (stub.ModelInfer, service_pb2.ModelInferRequest.FromString(_request())),
        ):
            with pytest.raises(grpc.RpcError) as info:
                rpc(msg)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE, rpc
        assert not stub.ModelReady(service_pb2.ModelReadyRequest(name="m")).ready
        assert not stub.ServerReady(service_pb2.ServerReadyRequest()).ready
        for path in ("/v2/models/m", "/v2/models/m/config", "/v2/health/ready"):
            assert requests.get(f"http://{gateway.http}{path}", timeout=5).status_code == 503
    finally:
        _drain(gateway, "p-0", False)
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="m")).ready
    assert stub.ModelMetadata(meta).name == "m"


def test_unknown_model_and_malformed_request(gateway: Gateway) -> None:
    channel = grpc.insecure_channel(gateway.grpc)
    try:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\x0a\x05ab")
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed ModelInferRequest" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            raw(_request("nope"))
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
        assert "nope" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex")(b"")
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()


def test_deadline_that_cannot_be_met_is_not_sent(stub: Any, gateway: Gateway) -> None:
    before = _worker_count(gateway, "glacial")
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, _request("glacial"), timeout=1.0)  # a 2 s model
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # the gateway's own answer (the client's timer would say "Deadline Exceeded"): refused
    # before the deadline, not at it; 1 s gives a loaded machine room to answer first
    assert "not sent" in info.value.details()
    assert _worker_count(gateway, "glacial") == before


def test_deadline_propagates_to_the_worker_call(stub: Any, gateway: Gateway) -> None:
    # Priority 1 is never shed: it is sent best effort, and the worker call carries the
    # client's remaining deadline, so the gateway gives up with the client, not after the
    # worker's 2 s (the bounds below leave a loaded machine 1.5 s of room before that)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, _request("glacial"), timeout=0.2, metadata=(("x-priority", "1"),))
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    service = gateway.app.state.service
    while service.inflight and time.monotonic() < t0 + GLACIAL_MS / 1000 - 0.3:
        time.sleep(0.01)
    assert service.inflight == 0  # gave up before the worker answered
    # the worker still runs it to the end, and the gateway's view keeps its slot busy until
    # then (rightly): wait for an idle view, so the next tests are not shed on that wait
    deadline = time.monotonic() + 20
    while True:
        (row,) = requests.get(f"http://{gateway.http}/synergai/v1/workers", timeout=5).json()[
            "workers"
        ]
        if row["outstanding"] == 0 and row["predicted_wait_ms"] == 0:
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def test_generous_deadline_is_served(stub: Any) -> None:
    resp, trailers = _infer(stub, _request("slow"), timeout=5)
    assert resp.model_name == "slow" and trailers["x-synergai-worker"] == "p-0"


def test_messages_over_grpc_default_limit_pass_through(stub: Any) -> None:
    items = 3 * 1024 * 1024  # 12 MiB in, 12 MiB out: over grpc's 4 MiB default
    resp, _ = _infer(stub, _request(items=items))
    out = np.frombuffer(resp.raw_output_contents[0], np.float32)
    assert out.size == items and float(out[0]) == 2.0 and float(out[-1]) == 2.0


def test_stream_routes_each_message_and_reports_errors_by_id(gateway: Gateway) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(gateway.grpc)
    try:
        client.start_stream(
            callback=lambda result, error: answers.put((result, error)),
            headers={"x-slo-ms": "2000"},
        )
        x = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        queued = _queued_s(gateway)
        for i in range(6):  # 6 x 300 ms on 2 instances: 4 of them wait in Triton's queue
            client.async_stream_infer("slow", [x], request_id=f"s{i}")
        client.async_stream_infer("nope", [x], request_id="bad")
        ids, errors = set(), []
        for _ in range(7):
            result, error = answers.get(timeout=10)
            if error is not None:
                errors.append(error.message())
            else:
                resp = result.get_response()
                ids.add(resp.id)
                assert resp.parameters["x-synergai-worker"].string_param == "p-0"
                assert resp.parameters["triton_final_response"].bool_param
        client.stop_stream()
    finally:
        client.close()
    assert ids == {f"s{i}" for i in range(6)}
    assert errors == ["NOT_FOUND: unknown model 'nope'"]
    # routed concurrently: the worker had them all at once, so 4 waited for its 2 slots
    # (0.3 + 0.3 + 0.6 + 0.6 = 1.8 s in all); one at a time, none would wait (a count, not
    # a wall time: a loaded machine only adds to it)
    assert _queued_s(gateway) - queued > 0.9, "stream messages must be routed concurrently"


def test_stream_error_carries_request_id(stub: Any) -> None:
    bad = service_pb2.ModelInferRequest.FromString(_request("nope"))
    (answer,) = list(stub.ModelStreamInfer(iter([bad])))
    assert answer.error_message.startswith("NOT_FOUND")
    assert answer.infer_response.id == "r1"


def test_grpc_requests_are_counted_like_rest(stub: Any, gateway: Gateway) -> None:
    _infer(stub, _request())
    text = gateway.app.state.metrics.registry
    from prometheus_client import generate_latest

    exposition = generate_latest(text).decode()
    assert (
        'synergai_requests_total{code="200",model="m",policy="synergai",pool="p",worker="p-0"}'
        in exposition
    )


def test_unreachable_worker_is_unavailable(tmp_path: Any) -> None:
    dead = WorkerSpec(
        id="dead-0", pool="d", arch="toy", url=f"http://127.0.0.1:{free_port()}",
        grpc_url=f"127.0.0.1:{free_port()}", models=["m"],
    )  # fmt: skip
    profiles = tmp_path / "profiles" / "toy"
    profiles.mkdir(parents=True)
    (profiles / "m.yaml").write_text(
        "arch: toy\nmodel: m\nengine: x\nsource: test\nmax_batch: 8\n"
        "latency_ms:\n  1: {p50: 2, p99: 2}\n",
        encoding="utf-8",
    )
    settings = Settings(
        workers=[dead], profiles=tmp_path / "profiles", host="127.0.0.1", port=free_port(),
        grpc_port=free_port(), redis_url=None, health_interval_s=60,
    )  # fmt: skip
    with ServerThread(create_app(settings), host="127.0.0.1", port=settings.port):
        channel = grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}")
        try:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                _infer(stub, _request(), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "dead-0" in info.value.details() or "no healthy worker" in info.value.details()
        finally:
            channel.close()


def test_tritonclient_error_classes(gateway: Gateway) -> None:
    client = grpcclient.InferenceServerClient(gateway.grpc)
    try:
        x = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer("slow", [x], headers={"x-slo-ms": "5"})
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        with pytest.raises(InferenceServerException) as info:
            client.infer("slow", [x], client_timeout=0.05)
        assert info.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    finally:
        client.close()


def test_demo_sample_runs_as_printed(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.api.grpc_example import grpc_sample

    text = grpc_sample(gateway.grpc, "m", 500)
    code = "\n".join(line[4:] for line in text.splitlines() if line.startswith("    "))
    exec(compile(code, "<demo sample>", "exec"), {})
    out = capsys.readouterr().out
    assert "[[0. 2. 4. 6.]]" in out
    assert "'x-synergai-worker': 'p-0'" in out
