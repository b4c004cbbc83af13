"""Parity: ``tritonclient.http`` and ``tritonclient.grpc`` see the gateway as they see Triton.

Every case runs the same call four ways: {HTTP, gRPC} x {gateway, directly on a worker}, and
checks that the gateway's answer equals the worker's: the whole response document (model,
version, id, every output's name/datatype/shape/parameters) and the output arrays, or, for bad
requests, the same error class (HTTP status / gRPC status code). The HTTP and gRPC answers of a
case are also compared with each other.

Real servers only: two emulated Triton workers (launcher), the embedded Valkey (real
``valkey-server``), and the gateway app on uvicorn + grpc.aio on loopback ports.
"""

from __future__ import annotations

import copy
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.core.net import free_port
from gateway.server import ServerThread
from gateway.testing import fleet_settings
from workers.testing import FleetFactory, write_scenario

pytestmark = pytest.mark.integration

MODEL = "m"
MAX_BATCH = 8


@dataclass(frozen=True)
class Endpoints:
    """Where each client talks: the gateway's two doors and one worker's two ports."""

    gateway_http: str
    gateway_grpc: str
    worker_http: str
    worker_grpc: str


@pytest.fixture(scope="module")
def endpoints(
    triton_fleet: FleetFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoints]:
    directory = tmp_path_factory.mktemp("parity")
    path = write_scenario(
        directory,
        pools=[
            {
                "name": "p",
                "arch": "toy",
                "workers": 2,
                "instances": 2,
                "rtt_ms": 0,
                "models": [MODEL],
            },
        ],
        profiles={("toy", MODEL): {1: (2.0, 2.0), MAX_BATCH: (3.0, 3.0)}},
    )
    workers = triton_fleet(path, inject_faults=False)
    settings = fleet_settings(
        workers,
        directory / "profiles",
        port=free_port(),
        grpc_port=free_port(),
        default_slo_ms=5000,
        redis_url=None,  # the embedded Valkey: a real valkey-server
    )
    with ServerThread(create_app(settings), host="127.0.0.1", port=settings.port):
        yield Endpoints(
            gateway_http=f"127.0.0.1:{settings.port}",
            gateway_grpc=f"127.0.0.1:{settings.grpc_port}",
            worker_http=workers[0].http_url.removeprefix("http://"),
            worker_grpc=workers[0].grpc_url,
        )


# -- cases --------------------------------------------------------------------------------------

Tensors = list[tuple[str, np.ndarray, str]]


def _fp32(b: int = 1, n: int = 4) -> np.ndarray:
    return np.arange(b * n, dtype=np.float32).reshape(b, n) / 3


def _int64(b: int = 1, n: int = 4) -> np.ndarray:
    return (np.arange(b * n, dtype=np.int64).reshape(b, n) - 5) * 1_000_000_007


def _bytes(b: int = 1, n: int = 3) -> np.ndarray:
    words = [f"w{i}-\u00e9".encode() for i in range(b * n)]
    return np.array(words, dtype=np.object_).reshape(b, n)


@dataclass(frozen=True)
class Case:
    """One call: tensors, whether HTTP sends them binary, outputs asked for, request id."""

    name: str
    tensors: Tensors
    binary: bool = True
    outputs: tuple[str, ...] = ()
    binary_outputs: bool = True
    model: str = MODEL
    request_id: str = ""


OK_CASES = [
    Case("fp32-json", [("INPUT0", _fp32(), "FP32")], binary=False, binary_outputs=False),
    Case("fp32-binary", [("INPUT0", _fp32(), "FP32")]),
    Case("int64-json", [("INPUT1", _int64(), "INT64")], binary=False, binary_outputs=False),
    Case("int64-binary", [("INPUT1", _int64(), "INT64")]),
    Case("bytes-json", [("INPUT2", _bytes(), "BYTES")], binary=False, binary_outputs=False),
    Case("bytes-binary", [("INPUT2", _bytes(), "BYTES")]),
    Case(
        "all-three-batch4",
        [
            ("INPUT0", _fp32(4), "FP32"),
            ("INPUT1", _int64(4), "INT64"),
            ("INPUT2", _bytes(4), "BYTES"),
        ],
        request_id="req-42",
    ),
    Case("fp32-batch8", [("INPUT0", _fp32(MAX_BATCH, 64), "FP32")]),
    Case(
        "mixed-json-in-binary-out",
        [("INPUT0", _fp32(2), "FP32"), ("INPUT1", _int64(2), "INT64")],
        binary=False,
        outputs=("OUTPUT1",),
    ),
    Case("empty-tensor", [("INPUT0", np.zeros((1, 0), np.float32), "FP32")]),
    Case("large-fp32", [("INPUT0", _fp32(2, 256 * 1024), "FP32")]),
]

BAD_CASES = [
    Case("wrong-dtype", [("INPUT0", _fp32().astype(np.int32), "INT32")]),
    Case("wrong-rank", [("INPUT0", _fp32().reshape(1, 2, 2), "FP32")]),
    Case("batch-over-max", [("INPUT0", _fp32(MAX_BATCH + 1), "FP32")]),
    Case("unknown-input", [("FOO", _fp32(), "FP32")]),
    Case("missing-input", []),
    Case("unknown-model", [("INPUT0", _fp32(), "FP32")], model="nope"),
    Case(
        "inputs-disagree-on-batch", [("INPUT0", _fp32(2), "FP32"), ("INPUT1", _int64(3), "INT64")]
    ),
]


# -- the two clients ----------------------------------------------------------------------------


def _http_call(url: str, case: Case) -> Any:
    client = httpclient.InferenceServerClient(url)
    try:
        inputs = []
        for name, array, dtype in case.tensors:
            tensor = httpclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array, binary_data=case.binary)
            inputs.append(tensor)
        outputs = [
            httpclient.InferRequestedOutput(o, binary_data=case.binary_outputs)
            for o in case.outputs
        ] or None
        if outputs is None and not case.binary_outputs:
            outputs = [
                httpclient.InferRequestedOutput(f"OUTPUT{n[-1]}", binary_data=False)
                for n, _, _ in case.tensors
            ]
        return client.infer(case.model, inputs, outputs=outputs, request_id=case.request_id)
    finally:
        client.close()


def _grpc_call(url: str, case: Case) -> Any:
    client = grpcclient.InferenceServerClient(url)
    try:
        inputs = []
        for name, array, dtype in case.tensors:
            tensor = grpcclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(o) for o in case.outputs] or None
        return client.infer(case.model, inputs, outputs=outputs, request_id=case.request_id)
    finally:
        client.close()


def _http_doc(result: Any) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(result.get_response())
    for out in doc.get("outputs", []):
        out.pop("data", None)  # compared as arrays below
    return doc


def _grpc_doc(result: Any) -> dict[str, Any]:
    doc: dict[str, Any] = result.get_response(as_json=True)
    return doc


def _arrays(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    return {n: result.as_numpy(n) for n in names}


def _as_bytes(array: np.ndarray) -> np.ndarray:
    """BYTES as ``bytes`` elements (tritonclient.http gives ``str`` for JSON-encoded BYTES)."""
    if array.dtype != np.object_:
        return array
    return np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array)


def _assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] is not None and b[name] is not None, name
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(_as_bytes(a[name]), _as_bytes(b[name]))


def _expected_outputs(case: Case) -> list[str]:
    if case.outputs:
        return list(case.outputs)
    return [f"OUTPUT{name[-1]}" for name, _, _ in case.tensors]


ROUTING_KEYS = (
    "x-synergai-worker",
    "x-synergai-pool",
    "x-synergai-predicted-ms",
    "x-synergai-policy",
)

Call = Callable[[str, Case], Any]
Doc = Callable[[Any], dict[str, Any]]
PROTOCOLS: dict[str, tuple[Call, Doc, str, str]] = {
    "http": (_http_call, _http_doc, "gateway_http", "worker_http"),
    "grpc": (_grpc_call, _grpc_doc, "gateway_grpc", "worker_grpc"),
}


# -- inference parity ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", OK_CASES, ids=lambda c: c.name)
def test_same_results_through_gateway_and_direct(endpoints: Endpoints, case: Case) -> None:
    names = _expected_outputs(case)
    arrays = {}
    for protocol, (call, doc, gw, direct) in PROTOCOLS.items():
        via_gateway = call(getattr(endpoints, gw), case)
        via_worker = call(getattr(endpoints, direct), case)
        assert doc(via_gateway) == doc(via_worker), protocol
        arrays[protocol] = _arrays(via_gateway, names)
        _assert_same_arrays(arrays[protocol], _arrays(via_worker, names))
    _assert_same_arrays(arrays["http"], arrays["grpc"])
    # and the model did what it says: x2 for numbers, repeated twice for bytes
    for name, array, _ in case.tensors:
        out = arrays["grpc"][f"OUTPUT{name[-1]}"] if f"OUTPUT{name[-1]}" in names else None
        if out is None:
            continue
        if array.dtype == np.object_:
            assert out.tolist() == [[w * 2 for w in row] for row in array.tolist()]
        else:
            np.testing.assert_array_equal(out, array * 2)


def _error_class(call: Call, url: str, case: Case) -> str:
    with pytest.raises(InferenceServerException) as info:
        call(url, case)
    assert info.value.message(), "an error must say what went wrong"
    return str(info.value.status())


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_same_error_class_through_gateway_and_direct(
    endpoints: Endpoints, case: Case, protocol: str
) -> None:
    call, _, gw, direct = PROTOCOLS[protocol]
    assert _error_class(call, getattr(endpoints, gw), case) == _error_class(
        call, getattr(endpoints, direct), case
    )


# -- metadata parity ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_same_metadata_through_gateway_and_direct(endpoints: Endpoints, protocol: str) -> None:
    mod: Any = httpclient if protocol == "http" else grpcclient
    kw: dict[str, Any] = {} if protocol == "http" else {"as_json": True}
    gw = mod.InferenceServerClient(getattr(endpoints, f"gateway_{protocol}"))
    direct = mod.InferenceServerClient(getattr(endpoints, f"worker_{protocol}"))
    try:
        assert gw.is_server_live() and direct.is_server_live()
        assert gw.is_server_ready() and direct.is_server_ready()
        assert gw.is_model_ready(MODEL) and direct.is_model_ready(MODEL)
        assert gw.is_model_ready(MODEL, "1") == direct.is_model_ready(MODEL, "1")
        assert gw.get_model_metadata(MODEL, **kw) == direct.get_model_metadata(MODEL, **kw)
        assert gw.get_model_metadata(MODEL, "1", **kw) == direct.get_model_metadata(
            MODEL, "1", **kw
        )
        assert gw.get_model_config(MODEL, **kw) == direct.get_model_config(MODEL, **kw)
        # The gateway names itself; what it claims to support, Triton supports too.
        gw_meta = gw.get_server_metadata(**kw)
        direct_meta = direct.get_server_metadata(**kw)
        assert gw_meta["name"] == "synergai-gateway"
        assert set(gw_meta["extensions"]) <= set(direct_meta["extensions"])
        for client in (gw, direct):
            with pytest.raises(InferenceServerException) as info:
                client.get_model_metadata("nope")
        assert "not found" in info.value.message().lower() or "unknown" in info.value.message()
    finally:
        gw.close()
        direct.close()


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_unknown_model_metadata_error_class(endpoints: Endpoints, protocol: str) -> None:
    mod: Any = httpclient if protocol == "http" else grpcclient
    classes = []
    for side in ("gateway", "worker"):
        client = mod.InferenceServerClient(getattr(endpoints, f"{side}_{protocol}"))
        try:
            with pytest.raises(InferenceServerException) as info:
                client.get_model_metadata("nope")
            classes.append(str(info.value.status()))
            assert client.is_model_ready("nope") is False
        finally:
            client.close()
    assert classes[0] == classes[1]


# -- streaming parity ---------------------------------------------------------------------------


def _stream(url: str, cases: list[Case]) -> dict[str, tuple[Any, str | None]]:
    """Send every case on one stream; answers by request id (errors as their message)."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    try:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        for case in cases:
            inputs = []
            for name, array, dtype in case.tensors:
                tensor = grpcclient.InferInput(name, list(array.shape), dtype)
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            client.async_stream_infer(case.model, inputs, request_id=case.request_id)
        got: dict[str, tuple[Any, str | None]] = {}
        errors = 0
        for _ in cases:
            result, error = answers.get(timeout=30)
            if error is not None:
                got[f"error-{errors}"] = (None, error.message())
                errors += 1
            else:
                got[result.get_response().id] = (result, None)
        client.stop_stream()
        return got
    finally:
        client.close()


def test_stream_same_answers_through_gateway_and_direct(endpoints: Endpoints) -> None:
    ok = [Case(f"s{i}", c.tensors, request_id=f"s{i}") for i, c in enumerate(OK_CASES[:8])]
    bad = [Case("bad", BAD_CASES[0].tensors, request_id="bad-0")]
    via_gateway = _stream(endpoints.gateway_grpc, ok + bad)
    via_worker = _stream(endpoints.worker_grpc, ok + bad)
    assert sorted(via_gateway) == sorted(via_worker)
    for key, (result, error) in via_worker.items():
        gw_result, gw_error = via_gateway[key]
        if error is not None:
            assert gw_error == error  # Triton's own refusal passes through word for word
            continue
        case = next(c for c in ok if c.request_id == key)
        names = _expected_outputs(case)
        _assert_same_arrays(_arrays(gw_result, names), _arrays(result, names))
        gw_doc = gw_result.get_response(as_json=True)
        routing = {k: gw_doc["parameters"].pop(k) for k in ROUTING_KEYS}
        assert routing["x-synergai-pool"]["string_param"] == "p"
        assert routing["x-synergai-worker"]["string_param"].startswith("p-")
        assert gw_doc == result.get_response(as_json=True)
