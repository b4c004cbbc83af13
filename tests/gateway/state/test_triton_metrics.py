"""Parsing Triton's /metrics page and deriving queued / running load from two scrapes."""

from __future__ import annotations

import math

import pytest

from gateway.state.triton_metrics import (
    TritonSample,
    derive,
    is_ensemble_config,
    model_names,
    parse_metrics,
)

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


# A real Triton 2.51 page (wanted series and a few others, verbatim) of an emulated worker:
# ensembles "m" and "n", each one step on the python model "_emulated_device", after 17
# requests (9 to m, 8 to n), then 5 more queued on the device. Triton counts every request on
# its ensemble and again on the composing model.
ENSEMBLE_PAGE = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 9
nv_inference_request_success{model="n",version="1"} 8
nv_inference_request_success{model="_emulated_device",version="1"} 17
nv_inference_request_failure{model="m",reason="OTHER",version="1"} 0
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} 9
nv_inference_count{model="n",version="1"} 8
nv_inference_count{model="_emulated_device",version="1"} 17
# HELP nv_inference_exec_count Number of model executions performed (does not include cached \
requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="m",version="1"} 9
nv_inference_exec_count{model="n",version="1"} 8
nv_inference_exec_count{model="_emulated_device",version="1"} 17
nv_inference_request_duration_us{model="m",version="1"} 1384261
nv_inference_request_duration_us{model="n",version="1"} 1683353
nv_inference_request_duration_us{model="_emulated_device",version="1"} 3066639
nv_inference_queue_duration_us{model="m",version="1"} 51
nv_inference_queue_duration_us{model="n",version="1"} 36
nv_inference_queue_duration_us{model="_emulated_device",version="1"} 1280203
nv_inference_compute_infer_duration_us{model="m",version="1"} 980688
nv_inference_compute_infer_duration_us{model="n",version="1"} 800960
nv_inference_compute_infer_duration_us{model="_emulated_device",version="1"} 1781648
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting \
execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="m",version="1"} 0
nv_inference_pending_request_count{model="n",version="1"} 0
nv_inference_pending_request_count{model="_emulated_device",version="1"} 5
nv_cpu_utilization 0.25
"""


def test_parse_sums_models_and_skips_the_rest() -> None:
    s = parse_metrics(PAGE, 7.0)
    assert s == TritonSample(7.0, 4.0, 150.0, 150.0, 30000.0, 1_000_000.0, frozenset({"a", "b"}))


def test_parse_empty_page() -> None:
    assert parse_metrics("", 1.0) == TritonSample(1.0)
    assert model_names("") == frozenset()


def test_ensembles_left_out_count_every_request_once() -> None:
    assert model_names(ENSEMBLE_PAGE) == {"m", "n", "_emulated_device"}
    s = parse_metrics(ENSEMBLE_PAGE, 2.0, exclude={"m", "n"})
    assert s == TritonSample(
        2.0, 5.0, 17.0, 17.0, 1280203.0, 1781648.0, frozenset({"_emulated_device"})
    )
    # summed with the ensembles, every counter Little's law uses doubles (the old bug)
    both = parse_metrics(ENSEMBLE_PAGE, 2.0)
    assert (both.exec_count, both.inference_count, both.compute_us) == (34.0, 34.0, 3563296.0)
    assert both.pending == 5.0  # an ensemble's pending count is 0: only the device queues


def test_derive_over_the_device_model_reads_the_true_load() -> None:
    """17 requests of ~105 ms in 1 s on 2 instances: ~1.8 running, not ~3.6."""
    a = TritonSample(1.0, models=frozenset({"_emulated_device"}))  # the server at rest
    b = parse_metrics(ENSEMBLE_PAGE, 2.0, exclude={"m", "n"})
    load = derive(a, b, 2)
    assert load.compute_ms == pytest.approx(1781.648 / 17)
    assert load.running == pytest.approx(17 * 1781.648 / 17 / 1000)
    assert load.in_server == pytest.approx(5 + 1.781648)


@pytest.mark.parametrize(
    ("line", "model"),
    [
        ('nv_inference_count{model="a",version="1"} 2', "a"),
        ('nv_inference_count{version="1",model="a b"} 2', "a b"),
        ('nv_inference_count{gpu_uuid="x",model="q\\"uote"} 2', 'q"uote'),
        ('nv_inference_count{submodel="x",model="y"} 2', "y"),
        ("nv_inference_count 2", ""),
    ],
)
def test_model_label(line: str, model: str) -> None:
    assert model_names(line) == {model}
    assert parse_metrics(line, 0.0).inference_count == 2.0


def test_is_ensemble_config() -> None:
    # shapes of Triton 2.51's GET /v2/models/{name}/config (trimmed)
    ensemble = {"name": "m", "platform": "ensemble", "backend": "", "max_batch_size": 8,
                "ensemble_scheduling": {"step": [{"model_name": "_emulated_device"}]}}  # fmt: skip
    python = {"name": "_emulated_device", "platform": "", "backend": "python",
              "instance_group": [{"count": 2, "kind": "KIND_CPU"}]}  # fmt: skip
    assert is_ensemble_config(ensemble)
    assert is_ensemble_config({"ensemble_scheduling": {"step": [{"model_name": "x"}]}})
    assert not is_ensemble_config(python)
    assert not is_ensemble_config({"platform": "onnxruntime_onnx", "ensemble_scheduling": {}})
    assert not is_ensemble_config({})


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
        # summed over other models (one loaded or classified since): no delta
        (
            _s(0, 0, 0, 0),
            TritonSample(1, 2, 100, 100, 0, 1e6, frozenset({"x"})),
            2,
            2.0,
            0.0,
            math.nan,
        ),
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
