"""One rule for hints wherever they come from: every source x {valid, malformed, out of range,
wrong type}, through the real front doors (issue 18.2).

Sources: a REST header, a REST JSON ``parameters`` entry (the real app, fast path included), gRPC
invocation metadata and a gRPC ``ModelInferRequest.parameters`` entry (the real grpc.aio door).
A valid hint reaches the policy with its value; anything else is a 400 / ``INVALID_ARGUMENT``
naming the hint, and nothing is sent to a worker. Header and metadata values are text, so a
"wrong type" there is the value's text (``true``, ``3``), refused as malformed.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest
from fastapi.testclient import TestClient
from grpc import aio
from tritonclient.grpc import service_pb2, service_pb2_grpc

from gateway.api.grpc import start_grpc_server
from gateway.app import AppDeps, create_app
from gateway.core.clock import MonotonicClock
from gateway.errors import StatusCode
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView
from gateway.service import InferenceService, ServiceConfig
from gateway.settings import ModelDefaults, Settings
from gateway.state.memory_store import MemoryStore
from gateway.testing import FakeUpstream, FixedPolicy
from gateway.upstream.base import UpstreamResponse

DEFAULTS = Request("m1", 50.0, 1, 1, "latency", 0.0)
"""The model's defaults in these tests (slo 50 ms, priority 1, latency)."""

CASES: list[tuple[str, str, Any, Any]] = [
    # (hint, kind, value as the client means it, resolved value or None for a refusal)
    ("x-slo-ms", "valid", 25, 25.0),
    ("x-slo-ms", "valid_text", "12.5", 12.5),
    ("x-slo-ms", "malformed", "soon", None),
    ("x-slo-ms", "out_of_range", -5, None),
    ("x-slo-ms", "wrong_type", True, None),
    ("x-priority", "valid", 3, 3),
    ("x-priority", "valid_text", "-2", -2),
    ("x-priority", "malformed", "high", None),
    ("x-priority", "out_of_range", 5000, None),
    ("x-priority", "wrong_type", 1.5, None),
    ("x-category", "valid", "frequency", "frequency"),
    ("x-category", "malformed", "fast!", None),
    ("x-category", "out_of_range", "bulk", None),
    ("x-category", "wrong_type", 3, None),
    ("slo_ms", "misspelt_name", 25, None),
    ("x_priority", "misspelt_name", 3, None),
]
SOURCES = ["rest_header", "rest_parameter", "grpc_metadata", "grpc_parameter"]
_FIELD = {"x-slo-ms": "slo_ms", "x-priority": "priority", "x-category": "category"}
_MEANT = {"slo_ms": "x-slo-ms", "x_priority": "x-priority"}


def _text(value: Any) -> str:
    """A value as a header or metadata carries it."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _resolved(req: Request, hint: str) -> Any:
    return getattr(req, _FIELD[hint])


# -- REST: the real app ---------------------------------------------------------------------


@dataclass
class RestRig:
    client: TestClient
    policy: FixedPolicy
    upstream: FakeUpstream


@pytest.fixture
def rest(settings: Settings, book: ProfileBook) -> Iterator[RestRig]:
    clock = MonotonicClock()
    policy = FixedPolicy(Decision("f0", 3.0, 2.0, "fit"))
    up = FakeUpstream()
    deps = AppDeps(
        clock=clock, store=MemoryStore(clock), profiles=book, collectors=False,
        policy=policy, upstreams={"http": up},
    )  # fmt: skip
    with TestClient(create_app(settings, deps), raise_server_exceptions=False) as client:
        yield RestRig(client, policy, up)


def _rest_send(rig: RestRig, source: str, name: str, value: Any) -> tuple[int, str]:
    doc: dict[str, Any] = {
        "inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]
    }
    headers = {}
    if source == "rest_header":
        headers[name] = _text(value)
    else:
        doc["parameters"] = {name: value}
    r = rig.client.post("/v2/models/m1/infer", content=orjson.dumps(doc), headers=headers)
    return r.status_code, r.json().get("error", "") if r.status_code != 200 else ""


# -- gRPC: the real door on grpc.aio --------------------------------------------------------


@dataclass
class GrpcRig:
    stub: Any
    policy: FixedPolicy
    upstream: FakeUpstream


_ANSWER = bytes(service_pb2.ModelInferResponse(model_name="m1").SerializeToString())


@pytest.fixture
async def grpc_rig(settings: Settings, book: ProfileBook) -> AsyncIterator[GrpcRig]:
    clock = MonotonicClock()
    policy = FixedPolicy(Decision("f0", 3.0, 2.0, "fit"))
    # what the real gRPC upstream returns for Triton's OK: the code, and the response bytes
    up = FakeUpstream(respond=lambda w, t, b: UpstreamResponse.from_grpc(StatusCode.OK, _ANSWER))
    service = InferenceService(
        FleetView([w.info() for w in settings.workers], book),
        policy,
        MemoryStore(clock),
        {"grpc": up},
        GatewayMetrics(),
        clock,
        random.Random(1),
        ServiceConfig(models={"m1": ModelDefaults(slo_ms=50, priority=1)}),
    )
    server = await start_grpc_server(service, host="127.0.0.1", port=0, max_message_bytes=1 << 20)
    assert server is not None
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield GrpcRig(service_pb2_grpc.GRPCInferenceServiceStub(channel), policy, up)
    finally:
        await channel.close()
        await server.stop(0)
        await service.drain()


def _param(req: Any, name: str, value: Any) -> None:
    p = req.parameters[name]
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = value


async def _grpc_send(rig: GrpcRig, source: str, name: str, value: Any) -> tuple[Any, str]:
    req = service_pb2.ModelInferRequest(model_name="m1", id="r")
    tensor = req.inputs.add(name="INPUT0", datatype="FP32")
    tensor.shape.extend([1, 2])
    req.raw_input_contents.append(b"\0" * 8)
    metadata: tuple[tuple[str, str], ...] = ()
    if source == "grpc_metadata":
        metadata = ((name, _text(value)),)
    else:
        _param(req, name, value)
    try:
        await rig.stub.ModelInfer(req, metadata=metadata, timeout=5)
    except aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# -- the table --------------------------------------------------------------------------------


def _check(rig: Any, source: str, hint: str, kind: str, value: Any, want: Any, ok: bool,
           message: str) -> None:  # fmt: skip
    if want is None:
        assert not ok, f"{source} {hint}={value!r} ({kind}) was accepted"
        assert _MEANT.get(hint, hint) in message, message
        assert not rig.upstream.sent, "a refused request reached a worker"
    else:
        assert ok, message
        assert _resolved(rig.policy.seen[-1], hint) == want
        assert len(rig.upstream.sent) == 1


@pytest.mark.parametrize("source", ["rest_header", "rest_parameter"])
@pytest.mark.parametrize(("hint", "kind", "value", "want"), CASES, ids=str)
def test_one_rule_rest(
    rest: RestRig, source: str, hint: str, kind: str, value: Any, want: Any
) -> None:
    status, message = _rest_send(rest, source, hint, value)
    assert status in (200, 400), (status, message)
    _check(rest, source, hint, kind, value, want, status == 200, message)


@pytest.mark.parametrize("source", ["grpc_metadata", "grpc_parameter"])
@pytest.mark.parametrize(("hint", "kind", "value", "want"), CASES, ids=str)
async def test_one_rule_grpc(
    grpc_rig: GrpcRig, source: str, hint: str, kind: str, value: Any, want: Any
) -> None:
    code, message = await _grpc_send(grpc_rig, source, hint, value)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, message)
    _check(grpc_rig, source, hint, kind, value, want, code is grpc.StatusCode.OK, message)


def test_a_rest_parameter_overridden_by_a_header_is_still_validated(rest: RestRig) -> None:
    doc = {
        "inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
        "parameters": {"x-slo-ms": "soon"},
    }
    r = rest.client.post(
        "/v2/models/m1/infer", content=orjson.dumps(doc), headers={"x-slo-ms": "20"}
    )
    assert r.status_code == 400 and "x-slo-ms (parameter)" in r.json()["error"]
    assert not rest.upstream.sent


async def test_a_grpc_parameter_overridden_by_metadata_is_still_validated(
    grpc_rig: GrpcRig,
) -> None:
    req = service_pb2.ModelInferRequest(model_name="m1")
    req.inputs.add(name="INPUT0", datatype="FP32").shape.extend([1, 2])
    req.raw_input_contents.append(b"\0" * 8)
    req.parameters["x-slo-ms"].string_param = "soon"
    with pytest.raises(aio.AioRpcError) as info:
        await grpc_rig.stub.ModelInfer(req, metadata=(("x-slo-ms", "20"),), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "x-slo-ms (parameter)" in (info.value.details() or "")
    assert not grpc_rig.upstream.sent


def test_names_are_case_insensitive_in_parameters(rest: RestRig) -> None:
    status, _ = _rest_send(rest, "rest_parameter", "X-SLO-MS", 30)
    assert status == 200 and rest.policy.seen[-1].slo_ms == 30.0


def test_triton_priority_parameter_is_not_a_hint(rest: RestRig) -> None:
    status, _ = _rest_send(rest, "rest_parameter", "priority", 7)  # Triton's own: passed on
    assert status == 200 and rest.policy.seen[-1].priority == DEFAULTS.priority
    assert b'"priority":7' in (rest.upstream.sent[-1].body or b"")
