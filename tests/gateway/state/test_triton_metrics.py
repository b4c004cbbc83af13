"""Parsing Triton's /metrics page and deriving queued / running load from two scrapes."""

from __future__ import annotations

import math

import pytest

from gateway.state.triton_metrics import TritonSample, derive, parse_metrics

PAGE = """\
# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="a",version="1"} 3
nv_inference_pending_request_count{model="b",version="1"} 1
nv_inference_exec_count{model="a",version="1"} 100
nv_inference_exec_count{model="b",version="1"} 50
nv_inference_count{model="a",version="1"} 100
nv_inference_count{model="b",version="1"} 50
nv_inference_queue_duration_us{model="a",version="1"} 30000
nv_inference_compute_infer_duration_us{model="a",version="1"} 750000
nv_inference_compute_infer_duration_us{model="b",version="1"} 250000
nv_inference_request_success{model="a",version="1"} 100
nv_cpu_utilization 0.5
nv_inference_count{model="broken"} not-a-number
"""


def test_parse_sums_models_and_skips_the_rest() -> None:
    s = parse_metrics(PAGE, 7.0)
    assert s == TritonSample(7.0, 4.0, 150.0, 150.0, 30000.0, 1_000_000.0)


def test_parse_empty_page() -> None:
    assert parse_metrics("", 1.0) == TritonSample(1.0)


def _s(
    t: float, pending: float, execs: float, compute_us: float, queue_us: float = 0.0
) -> TritonSample:
    return TritonSample(t, pending, execs, execs, queue_us, compute_us)


@pytest.mark.parametrize(
    ("a", "b", "instances", "queued", "running", "compute_ms"),
    [
        # 100 execs of 10 ms in 1 s on 2 instances: one busy on average
        (_s(0, 0, 0, 0), _s(1, 2, 100, 1_000_000), 2, 2.0, 1.0, 10.0),
        # saturated: Little's law capped at the instance count
        (_s(0, 0, 0, 0), _s(1, 5, 400, 4_000_000), 2, 5.0, 2.0, 10.0),
        # nothing finished: only the instantaneous queue is known
        (_s(0, 0, 10, 100), _s(1, 1, 10, 100), 2, 1.0, 0.0, math.nan),
        # no earlier sample
        (None, _s(1, 3, 10, 100), 1, 3.0, 0.0, math.nan),
        # counters went backwards: the server restarted
        (_s(0, 0, 500, 9e6), _s(1, 0, 3, 100), 1, 0.0, 0.0, math.nan),
    ],
)
def test_derive(
    a: TritonSample | None,
    b: TritonSample,
    instances: int,
    queued: float,
    running: float,
    compute_ms: float,
) -> None:
    load = derive(a, b, instances)
    assert load.queued == queued and load.running == pytest.approx(running)
    assert load.in_server == pytest.approx(queued + running)
    if math.isnan(compute_ms):
        assert math.isnan(load.compute_ms)
    else:
        assert load.compute_ms == pytest.approx(compute_ms)
