"""The picker's answers: an answer copied from a kept template is the one built in full."""

from __future__ import annotations

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from gateway.epp import replies
from gateway.epp.protocol import DEST_HEADER, LB_NAMESPACE


def _route_in_full(endpoints: list[str], timeout_ms: int, body_phase: bool) -> bytes:
    value = ",".join(endpoints)
    out = pb.ProcessingResponse()
    phase = out.request_body if body_phase else out.request_headers
    replies._fill(
        phase.response, {DEST_HEADER: value, replies.TIMEOUT_HEADER: str(timeout_ms)}, clear=True
    )
    out.dynamic_metadata.fields[LB_NAMESPACE].struct_value.fields[DEST_HEADER].string_value = value
    data: bytes = out.SerializeToString()
    return data


@pytest.mark.parametrize("body_phase", [False, True])
def test_route_copies_are_the_full_answer(body_phase: bool) -> None:
    for endpoints, timeout_ms in [(["10.0.0.1:8000"], 30), (["10.0.0.1:8000", "b:1"], 1234)] * 2:
        got = replies.route(endpoints, timeout_ms, body_phase=body_phase)
        assert got.SerializeToString() == _route_in_full(endpoints, timeout_ms, body_phase)


@pytest.mark.parametrize("predicted", ["2.345", "nan", "12345.678", ""])
def test_routed_response_headers_is_response_headers(predicted: str) -> None:
    for worker, pool in [("f0", "fast"), ("s0", "slow"), ("f0", "fast")]:
        want = replies.response_headers(replies.routing_headers(worker, pool, predicted, "p"))
        got = replies.routed_response_headers(worker, pool, predicted, "p")
        assert got.SerializeToString() == want.SerializeToString()


def test_a_changed_answer_leaves_the_template_alone() -> None:
    first = replies.routed_response_headers("w", "pool", "1.000", "p")
    first.response_headers.response.header_mutation.set_headers[0].header.raw_value = b"x"
    again = replies.route(["a:1"], 5)
    again.request_headers.response.clear_route_cache = False
    want = replies.response_headers(replies.routing_headers("w", "pool", "2.000", "p"))
    assert replies.routed_response_headers("w", "pool", "2.000", "p") == want
    assert replies.route(["a:1"], 5).SerializeToString() == _route_in_full(["a:1"], 5, False)
