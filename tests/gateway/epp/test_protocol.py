"""Reading the Endpoint Picker Protocol and KServe v2 out of ext_proc messages."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from gateway.epp.protocol import (
    SERVED_KEY,
    SUBSET_KEY,
    SUBSET_NAMESPACE,
    Target,
    classify,
    header_map,
    served_endpoint,
    subset_hint,
)

GRPC = "application/grpc"


@pytest.mark.parametrize(
    ("path", "ctype", "extra", "want"),
    [
        ("/v2/models/resnet50/infer", "application/json", {}, Target("infer", "resnet50")),
        ("/v2/models/m/versions/3/infer", "", {}, Target("infer", "m", "3")),
        ("/v2/models/m/infer?x=1", "", {}, Target("infer", "m")),
        ("/v2/models/m", "", {}, Target("meta", "m")),
        ("/v2/models/m/ready", "", {}, Target("meta", "m")),
        ("/v2/models/m/versions/2/ready", "", {}, Target("meta", "m", "2")),
        ("/v2/health/ready", "", {}, Target("other")),
        ("/v2", "", {}, Target("other")),
        ("/v2/models//infer", "", {}, Target("other")),
        ("/v2/models/m/stats", "", {}, Target("other")),
        ("/inference.GRPCInferenceService/ModelInfer", GRPC, {}, Target("infer", grpc=True)),
        ("/inference.GRPCInferenceService/ModelInfer", "application/grpc+proto",
         {"x-synergai-model": "m"}, Target("infer", "m", grpc=True)),
        ("/inference.GRPCInferenceService/ModelReady", GRPC, {}, Target("meta", grpc=True)),
        ("/inference.GRPCInferenceService/ServerLive", GRPC, {}, Target("other", grpc=True)),
        ("/grpc.health.v1.Health/Check", GRPC, {}, Target("other", grpc=True)),
    ],
)  # fmt: skip
def test_classify(path: str, ctype: str, extra: dict[str, str], want: Target) -> None:
    headers = {":path": path, "content-type": ctype, **extra}
    assert classify(headers) == want


def test_classify_custom_model_header() -> None:
    headers = {":path": "/inference.GRPCInferenceService/ModelInfer", "content-type": GRPC,
               "x-model": "m"}  # fmt: skip
    assert classify(headers, "x-model").model == "m"


def test_header_map_prefers_raw_value_and_first_repeat() -> None:
    hm = base_pb2.HeaderMap(
        headers=[
            base_pb2.HeaderValue(key=":path", raw_value=b"/v2"),
            base_pb2.HeaderValue(key="x-slo-ms", value="50"),
            base_pb2.HeaderValue(key="x-slo-ms", value="70"),
        ]
    )
    assert header_map(hm.headers) == {":path": "/v2", "x-slo-ms": "50"}


def _with_metadata(namespace: str, key: str, value: object) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest()
    ns = msg.metadata_context.filter_metadata[namespace]
    ns.update({key: value})
    return msg


def test_subset_hint_list_and_string() -> None:
    assert subset_hint(pb.ProcessingRequest()) is None
    lst = _with_metadata(SUBSET_NAMESPACE, SUBSET_KEY, ["10.0.0.1:8000", "10.0.0.2:8000"])
    assert subset_hint(lst) == {"10.0.0.1:8000", "10.0.0.2:8000"}
    csv = _with_metadata(SUBSET_NAMESPACE, SUBSET_KEY, "10.0.0.1:8000, 10.0.0.3:8000")
    assert subset_hint(csv) == {"10.0.0.1:8000", "10.0.0.3:8000"}
    empty = _with_metadata(SUBSET_NAMESPACE, SUBSET_KEY, [])
    assert subset_hint(empty) == frozenset()
    other = _with_metadata(SUBSET_NAMESPACE, "something-else", ["x"])
    assert subset_hint(other) is None


def test_served_endpoint() -> None:
    assert served_endpoint(pb.ProcessingRequest()) is None
    msg = _with_metadata("envoy.lb", SERVED_KEY, "127.0.0.1:8001")
    assert served_endpoint(msg) == "127.0.0.1:8001"
