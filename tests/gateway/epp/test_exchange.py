"""The ext_proc state machine on the real request path (in-process service, manual clock)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from tritonclient.grpc import service_pb2

from gateway.core.clock import ManualClock
from gateway.epp.endpoints import endpoint_of
from gateway.epp.exchange import Exchange, PickerConfig
from gateway.epp.protocol import SERVED_KEY, SUBSET_KEY, SUBSET_NAMESPACE
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.registry import make_policy
from gateway.routing.types import Decision, WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferenceService, ServiceConfig
from gateway.settings import ModelDefaults, WorkerSpec
from gateway.state.memory_store import MemoryStore
from gateway.testing import FixedPolicy

DEST = "x-gateway-destination-endpoint"


@pytest.fixture
def fleet() -> list[WorkerInfo]:
    specs = [
        WorkerSpec(id="f0", pool="fast", arch="fast", url="http://10.0.0.1:8000",
                   grpc_url="10.0.0.1:8001", models=["m1"]),
        WorkerSpec(id="f1", pool="fast", arch="fast", url="http://10.0.0.2:8000",
                   grpc_url="10.0.0.2:8001", models=["m1"]),
        WorkerSpec(id="s0", pool="slow", arch="slow", url="http://10.0.0.3:8000",
                   grpc_url="10.0.0.3:8001", models=["m1", "m2"]),
    ]  # fmt: skip
    return [s.info() for s in specs]


@pytest.fixture
def svc(fleet: list[WorkerInfo], book: ProfileBook) -> InferenceService:
    clock = ManualClock(100.0)
    return InferenceService(
        FleetView(fleet, book),
        make_policy("synergai", book),
        MemoryStore(clock),
        {},
        GatewayMetrics(),
        clock,
        random.Random(1),
        ServiceConfig(models={"m1": ModelDefaults(slo_ms=50, priority=1)}),
    )


def _headers(**values: str) -> pb.ProcessingRequest:
    hm = base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
    )
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=hm))


def _infer(model: str = "m1", **extra: str) -> pb.ProcessingRequest:
    return _headers(**{":path": f"/v2/models/{model}/infer", ":method": "POST", **extra})


def _resp(status: int = 200, served: str | None = None, upstream: bool = True,
          **extra: str) -> pb.ProcessingRequest:  # fmt: skip
    values = {":status": str(status), **extra}
    if upstream:
        values["x-envoy-upstream-service-time"] = "3"
    msg = _headers(**values)
    msg.response_headers.CopyFrom(msg.request_headers)
    msg.ClearField("request_headers")
    if served is not None:
        msg.metadata_context.filter_metadata["envoy.lb"].update({SERVED_KEY: served})
    return msg


def _picked(resp: pb.ProcessingResponse, phase: str = "request_headers") -> list[str]:
    common = getattr(resp, phase).response
    headers = {
        h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers
    }
    meta = resp.dynamic_metadata.fields["envoy.lb"].struct_value.fields[DEST].string_value
    assert headers[DEST] == meta  # protocol 004: header and metadata agree
    assert common.clear_route_cache
    return meta.split(",")


def _sample(svc: InferenceService, name: str, labels: dict[str, str]) -> float:
    v = svc.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_pick_books_and_the_answer_ends(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig(fallbacks=1))
    resp = ex.handle(_infer(**{"x-slo-ms": "40"}))
    assert resp is not None
    picked = _picked(resp)
    assert len(picked) == 2 and picked[0] != picked[1]
    assert ex.ticket is not None and picked[0] == endpoint_of(ex.ticket.worker, False)
    assert svc.inflight == 1
    timeout = {h.header.key: h.header.raw_value for h in
               resp.request_headers.response.header_mutation.set_headers}  # fmt: skip
    assert int(timeout["x-envoy-upstream-rq-timeout-ms"]) > 0
    svc.clock.advance(0.004)  # type: ignore[attr-defined]
    answer = ex.handle(_resp(200, served=picked[0]))
    assert answer is not None
    added = {h.header.key: h.header.raw_value.decode()
             for h in answer.response_headers.response.header_mutation.set_headers}  # fmt: skip
    assert added["x-synergai-worker"] == ex.ticket.worker.id
    assert added["x-synergai-policy"] == "synergai"
    assert svc.inflight == 0 and ex.ticket.ended
    labels = {"model": "m1", "pool": ex.ticket.worker.pool, "worker": ex.ticket.worker.id,
              "policy": "synergai", "code": "200"}  # fmt: skip
    assert _sample(svc, "synergai_requests_total", labels) == 1
    assert _sample(svc, "synergai_request_duration_seconds_count",
                   {"model": "m1", "pool": ex.ticket.worker.pool}) == 1  # fmt: skip
    ex.close()  # already ended: nothing more
    assert _sample(svc, "synergai_requests_total", {**labels, "code": "499"}) == 0


async def test_fallbacks_by_predicted_completion_without_asking_the_policy(
    svc: InferenceService,
) -> None:
    """The policy decides once per request: a second, hypothetical choose per request would
    count every arrival twice in its pool rates and self-check."""
    calls = []
    inner = svc.policy

    class Counted:  # a wrapper, not a monkeypatch: the compiled policy's methods are read-only
        name = inner.name

        def choose(self, *args: Any) -> Decision:
            calls.append(args)
            return inner.choose(*args)

    svc.switch_policy(Counted())  # type: ignore[arg-type]
    resp = Exchange(svc, PickerConfig(fallbacks=2)).handle(_infer())
    assert resp is not None
    picked = _picked(resp)
    assert len(calls) == 1
    assert len(picked) == 3 and len(set(picked)) == 3
    assert picked[2] == "10.0.0.3:8000"  # the slow pool's worker is predicted to finish last
    assert all(svc.view.state(w).available(svc.clock.now()) for w in ("f0", "f1", "s0"))


async def test_empty_subset_is_503_in_kserve_form_and_unavailable_for_grpc(
    svc: InferenceService,
) -> None:
    msg = _infer()
    msg.metadata_context.filter_metadata[SUBSET_NAMESPACE].update({SUBSET_KEY: ["10.9.9.9:1"]})
    imm = Exchange(svc, PickerConfig()).handle(msg).immediate_response  # type: ignore[union-attr]
    assert imm.status.code == 503 and "error" in json.loads(imm.body)
    headers = {h.header.key: h.header.raw_value for h in imm.headers.set_headers}
    assert headers["content-type"] == b"application/json"
    grpc = {":path": "/inference.GRPCInferenceService/ModelInfer",
            "content-type": "application/grpc", "x-synergai-model": "m1"}  # fmt: skip
    grpc_msg = _headers(**grpc)
    grpc_msg.metadata_context.filter_metadata[SUBSET_NAMESPACE].update({SUBSET_KEY: []})
    g = Exchange(svc, PickerConfig()).handle(grpc_msg).immediate_response  # type: ignore[union-attr]
    assert g.grpc_status.status == 14  # UNAVAILABLE, as the gateway's gRPC door answers
    assert svc.inflight == 0


async def test_subset_hint_restricts_the_choice(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig(fallbacks=2))
    msg = _infer()
    msg.metadata_context.filter_metadata[SUBSET_NAMESPACE].update({SUBSET_KEY: ["10.0.0.3:8000"]})
    resp = ex.handle(msg)
    assert resp is not None and _picked(resp) == ["10.0.0.3:8000"]
    assert all(svc.view.state(w).available(svc.clock.now()) for w in ("f0", "f1"))  # restored


async def test_empty_subset_is_503(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig())
    msg = _infer()
    msg.metadata_context.filter_metadata[SUBSET_NAMESPACE].update({SUBSET_KEY: ["10.9.9.9:1"]})
    resp = ex.handle(msg)
    assert resp is not None and resp.immediate_response.status.code == 503
    assert svc.inflight == 0


async def test_shed_is_429_with_retry_after(svc: InferenceService) -> None:
    # synergai sheds only on a calibrated prediction: a policy that sheds stands in for it
    svc.switch_policy(FixedPolicy(Decision(None, 5.0, 0.0, "shed_slo")))
    resp = Exchange(svc, PickerConfig()).handle(_infer(**{"x-slo-ms": "0.01", "x-priority": "0"}))
    assert resp is not None
    imm = resp.immediate_response
    assert imm.status.code == 429 and b"cannot be met" in imm.body
    headers = {h.header.key: h.header.raw_value for h in imm.headers.set_headers}
    assert headers["Retry-After"] == b"1" and headers["content-type"] == b"application/json"


async def test_unknown_model_and_bad_hint(svc: InferenceService) -> None:
    nf = Exchange(svc, PickerConfig()).handle(_infer("nope"))
    assert nf is not None and nf.immediate_response.status.code == 404
    bad = Exchange(svc, PickerConfig()).handle(_infer(**{"x-priority": "x"}))
    assert bad is not None and bad.immediate_response.status.code == 400


async def test_other_paths_are_not_picked_and_client_picks_removed(svc: InferenceService) -> None:
    resp = Exchange(svc, PickerConfig()).handle(_headers(**{":path": "/v2/health/ready"}))
    assert resp is not None
    assert list(resp.request_headers.response.header_mutation.remove_headers) == [DEST]
    assert not resp.HasField("dynamic_metadata")


async def test_meta_routes_to_a_serving_worker_unbooked(svc: InferenceService) -> None:
    resp = Exchange(svc, PickerConfig()).handle(_headers(**{":path": "/v2/models/m2/ready"}))
    assert resp is not None and _picked(resp) == ["10.0.0.3:8000"]
    assert svc.inflight == 0


async def test_retried_onto_a_fallback_counts_a_connect_failure(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig(fallbacks=1))
    resp = ex.handle(_infer())
    assert resp is not None
    _first, second = _picked(resp)
    assert ex.ticket is not None
    ex.handle(_resp(200, served=second))
    labels = {"model": "m1", "pool": ex.ticket.worker.pool, "worker": ex.ticket.worker.id,
              "policy": "synergai", "code": "503"}  # fmt: skip
    assert _sample(svc, "synergai_requests_total", labels) == 1


async def test_envoy_local_timeout_and_cancel(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig())
    ex.handle(_infer())
    ex.handle(_resp(504, upstream=False))
    assert ex.ticket is not None
    labels = {"model": "m1", "pool": ex.ticket.worker.pool, "worker": ex.ticket.worker.id,
              "policy": "synergai", "code": "504"}  # fmt: skip
    assert _sample(svc, "synergai_requests_total", labels) == 1
    gone = Exchange(svc, PickerConfig())
    gone.handle(_infer())
    assert svc.inflight == 1
    gone.close()
    assert svc.inflight == 0


def _grpc_body(model: str) -> bytes:
    req = service_pb2.ModelInferRequest(model_name=model)
    inp = req.inputs.add(name="INPUT0", datatype="FP32", shape=[4, 1])
    inp.parameters["x"].string_param = "y"
    req.parameters["x-slo-ms"].string_param = "0.01"
    raw = req.SerializeToString()
    return b"\x00" + len(raw).to_bytes(4, "big") + raw


def _grpc_headers(**extra: str) -> pb.ProcessingRequest:
    return _headers(**{":path": "/inference.GRPCInferenceService/ModelInfer",
                       "content-type": "application/grpc", **extra})  # fmt: skip


async def test_grpc_model_in_body_is_read_once(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig())
    ask = ex.handle(_grpc_headers(**{"x-slo-ms": "40"}))
    assert ask is not None
    assert ask.mode_override.request_body_mode == ask.mode_override.BUFFERED
    body = pb.ProcessingRequest(request_body=pb.HttpBody(body=_grpc_body("m1"), end_of_stream=True))
    resp = ex.handle(body)
    assert resp is not None
    picked = _picked(resp, "request_body")
    assert picked[0].endswith(":8001")  # the gRPC port
    assert ex.ticket is not None and ex.ticket.req.batch == 4  # first input's first dimension
    assert ex.ticket.req.slo_ms == 40  # metadata wins over the body's parameters


async def test_grpc_ends_on_trailers_with_trailing_metadata(svc: InferenceService) -> None:
    ex = Exchange(svc, PickerConfig())
    resp = ex.handle(_grpc_headers(**{"x-synergai-model": "m1"}))
    assert resp is not None and _picked(resp)[0].endswith(":8001")
    ex.handle(_resp(200, **{"content-type": "application/grpc"}))
    assert ex.ticket is not None and not ex.ticket.ended
    trailers = pb.ProcessingRequest(
        response_trailers=pb.HttpTrailers(
            trailers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key="grpc-status", raw_value=b"0")]
            )
        )
    )
    answer: Any = ex.handle(trailers)
    keys = {h.header.key for h in answer.response_trailers.header_mutation.set_headers}
    assert "x-synergai-worker" in keys and ex.ticket.ended


async def test_grpc_shed_is_resource_exhausted(svc: InferenceService) -> None:
    svc.switch_policy(FixedPolicy(Decision(None, 5.0, 0.0, "shed_slo")))
    resp = Exchange(svc, PickerConfig()).handle(
        _grpc_headers(**{"x-synergai-model": "m1", "x-slo-ms": "0.01", "x-priority": "0"})
    )
    assert resp is not None and resp.immediate_response.grpc_status.status == 8


async def test_objective_and_gie_slo_headers(svc: InferenceService) -> None:
    cfg = PickerConfig(objectives={"premium": {"x-priority": "3", "x-slo-ms": "45"}})
    ex = Exchange(svc, cfg)
    ex.handle(_infer(**{"x-gateway-inference-objective": "premium", "x-slo-ttft-ms": "30"}))
    assert ex.ticket is not None
    assert ex.ticket.req.priority == 3
    assert ex.ticket.req.slo_ms == 30  # the request's own SLO beats the objective's


@pytest.mark.parametrize(
    ("body", "outcome_code", "client_status", "ejects"),
    [
        (b"{\"error\":\"Unable to parse 'data': attempt to access JSON non-number as double\"}",
         "400", 400, False),  # Triton's 500 for a body it cannot parse: the request's fault
        (b"{\"error\":\"in ensemble 'm', device lost\"}", "500", None, True),  # the backend's
    ],
)  # fmt: skip
async def test_a_rest_500_is_classified_by_tritons_message(
    svc: InferenceService, body: bytes, outcome_code: str, client_status: int | None, ejects: bool
) -> None:
    ex = Exchange(svc, PickerConfig())
    picked = _picked(ex.handle(_infer()))  # type: ignore[arg-type]
    ticket = ex.ticket
    assert ticket is not None
    ask = ex.handle(_resp(500, served=picked[0]))
    assert ask is not None and ask.mode_override.response_body_mode == ask.mode_override.BUFFERED
    assert not ticket.ended  # not before the body says whose fault it is
    answer = ex.handle(
        pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=True))
    )
    assert answer is not None and ticket.ended
    status = {h.header.key: h.header.raw_value.decode()
              for h in answer.response_body.response.header_mutation.set_headers}  # fmt: skip
    assert status.get(":status") == (None if client_status is None else str(client_status))
    labels = {"model": "m1", "pool": ticket.worker.pool, "worker": ticket.worker.id,
              "policy": "synergai", "code": outcome_code}  # fmt: skip
    assert _sample(svc, "synergai_requests_total", labels) == 1
    assert svc.view.state(ticket.worker.id).fails == int(ejects)


@pytest.mark.parametrize(
    ("grpc_status", "fails", "code"),
    [(b"3", 0, "400"), (b"5", 0, "404"), (b"13", 1, "500"), (b"14", 1, "503"), (b"x", 1, "500")],
)
async def test_grpc_answers_are_classified_by_the_one_table(
    svc: InferenceService, grpc_status: bytes, fails: int, code: str
) -> None:
    ex = Exchange(svc, PickerConfig())
    ex.handle(_grpc_headers(**{"x-synergai-model": "m1"}))
    ticket = ex.ticket
    assert ticket is not None
    ex.handle(_resp(200, **{"content-type": "application/grpc"}))
    trailers = pb.ProcessingRequest(
        response_trailers=pb.HttpTrailers(
            trailers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key="grpc-status", raw_value=grpc_status)]
            )
        )
    )
    ex.handle(trailers)
    assert ticket.ended and svc.view.state(ticket.worker.id).fails == fails
    labels = {"model": "m1", "pool": ticket.worker.pool, "worker": ticket.worker.id,
              "policy": "synergai", "code": code}  # fmt: skip
    assert _sample(svc, "synergai_requests_total", labels) == 1
