"""The python-backend model, run outside Triton with a stand-in ``triton_python_backend_utils``."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.repository import MODEL_SOURCE


class _Tensor:
    def __init__(self, name: str, data: np.ndarray) -> None:
        self.name, self.data = name, data

    def as_numpy(self) -> np.ndarray:
        return self.data


class _Response:
    def __init__(self, output_tensors: list[_Tensor] | None = None, error: Any = None) -> None:
        self.outputs = {t.name: t.data for t in output_tensors or []}
        self.error = error


class _Request:
    def __init__(self, **inputs: np.ndarray) -> None:
        self.inputs = inputs


def _fake_pb_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor  # type: ignore[attr-defined]
    mod.InferenceResponse = _Response  # type: ignore[attr-defined]
    mod.TritonError = str  # type: ignore[attr-defined]

    def get(request: _Request, name: str) -> _Tensor | None:
        x = request.inputs.get(name)
        return None if x is None else _Tensor(name, x)

    mod.get_input_tensor_by_name = get  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def model_cls(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location("emulated_model_under_test", MODEL_SOURCE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel


def _make(model_cls: Any, control: Path, speed: list[list[float]], sigma: float = 0.0) -> Any:
    emulation = {
        "model": "m",
        "lognormal": {"1": [math.log(4.0), sigma], "2": [math.log(6.0), sigma]},
        "speed": speed,
        "control_file": str(control),
        "seed": 3,
    }
    m = model_cls()
    m.initialize(
        {
            "model_config": json.dumps(
                {"parameters": {"emulation": {"string_value": json.dumps(emulation)}}}
            ),
            "model_instance_name": "m_0",
        }
    )
    return m


def test_outputs_and_errors(model_cls: Any, tmp_path: Path) -> None:
    m = _make(model_cls, tmp_path / "c.json", [[-1e9, 1.0]])
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    ints = np.array([[3], [-4]], dtype=np.int64)
    strs = np.array([[b"a"], [b"bc"]], dtype=np.object_)
    (ok,) = m.execute([_Request(INPUT0=x, INPUT1=ints, INPUT2=strs)])
    assert ok.error is None
    np.testing.assert_array_equal(ok.outputs["OUTPUT0"], x * 2)
    np.testing.assert_array_equal(ok.outputs["OUTPUT1"], ints * 2)
    assert ok.outputs["OUTPUT2"].tolist() == [[b"aa"], [b"bcbc"]]
    bad, none = m.execute([_Request(INPUT0=x, INPUT1=ints[:1]), _Request()])
    assert "batch" in bad.error and "at least one" in none.error


def test_service_time_speed_schedule_and_slowdown(model_cls: Any, tmp_path: Path) -> None:
    control = tmp_path / "c.json"
    m = _make(model_cls, control, [[0.0, 1.0], [10.0, 3.0]])
    assert m.service_ms(1) == pytest.approx(4.0)  # no control file: t=0, no slowdown
    assert m.service_ms(2) == pytest.approx(6.0)
    assert m.service_ms(9) == pytest.approx(6.0)  # clamped to the table
    control.write_text(json.dumps({"slowdown": 2.0, "origin_epoch": time.time() - 11}))
    assert m.service_ms(1) == pytest.approx(4.0 * 3.0 * 2.0)
    control.write_text(json.dumps({"slowdown": 1.0, "origin_epoch": time.time() - 1}) + " ")
    assert m.service_ms(1) == pytest.approx(4.0)
    control.write_text("not json")
    assert m.service_ms(1) == pytest.approx(4.0)


def test_execute_sleeps_the_service_time(model_cls: Any, tmp_path: Path) -> None:
    m = _make(model_cls, tmp_path / "c.json", [[-1e9, 1.0]])
    x = np.zeros((2, 1), dtype=np.float32)
    took = []
    for _ in range(3):
        t = time.perf_counter()
        m.execute([_Request(INPUT0=x)] * 3)
        took.append(time.perf_counter() - t)
    # 3 x 6 ms, sequential (one device slot): never less; the fastest of three tries (a busy
    # machine only adds time) well under a doubled 36 ms
    assert min(took) >= 0.018 and min(took) < 0.03, took


def test_lognormal_draws_fit_p50(model_cls: Any, tmp_path: Path) -> None:
    m = _make(model_cls, tmp_path / "c.json", [[-1e9, 1.0]], sigma=0.2)
    draws = [m.service_ms(1) for _ in range(4000)]
    assert np.median(draws) == pytest.approx(4.0, rel=0.03)
    assert np.percentile(draws, 99) == pytest.approx(4.0 * math.exp(0.2 * 2.3263), rel=0.08)


def _make_slotted(
    model_cls: Any, tmp_path: Path, instances: int, gap_ms: float = 3.0, catchup_ms: float = 1.0
) -> Any:
    from workers.repository import reset_slots

    slots = tmp_path / "slots.bin"
    reset_slots(slots, instances)
    emulation = {
        "model": "m",
        "server": "srv",
        "lognormal": {"1": [math.log(4.0), 0.0]},
        "speed": [[-1e9, 1.0]],
        "control_file": str(tmp_path / "c.json"),
        "seed": 3,
        "instances": instances,
        "slots_file": str(slots),
        "queue_gap_ms": gap_ms,
        "catchup_ms": catchup_ms,
    }
    m = model_cls()
    m.initialize(
        {
            "model_config": json.dumps(
                {"parameters": {"emulation": {"string_value": json.dumps(emulation)}}}
            ),
            "model_instance_name": "m_0",
        }
    )
    return m


@pytest.mark.parametrize(
    ("released_ago_ms", "ideal_ago_ms", "gap_ms", "catchup_ms", "back_ms"),
    [
        (100.0, 100.2, 3.0, 1.0, 0.0),  # idle server: starts now
        (0.5, 0.7, 3.0, 1.0, 0.7),  # waiting request: starts at the previous deadline
        (0.5, 2.5, 3.0, 1.0, 1.0),  # ... at most catchup_ms back
        (0.5, 0.7, 0.0, 1.0, 0.0),  # anchoring off
    ],
)
def test_anchor_to_previous_deadline(
    model_cls: Any,
    tmp_path: Path,
    released_ago_ms: float,
    ideal_ago_ms: float,
    gap_ms: float,
    catchup_ms: float,
    back_ms: float,
) -> None:
    m = _make_slotted(model_cls, tmp_path, 1, gap_ms, catchup_ms)
    t0 = 1000.0
    m._release_slot(0, t0 - ideal_ago_ms / 1000, t0 - released_ago_ms / 1000)
    slot, anchor = m._take_slot(t0)
    assert slot == 0
    assert (t0 - anchor) * 1000 == pytest.approx(back_ms, abs=1e-6)
    # The slot is busy until released: a second execution finds no free slot.
    assert m._take_slot(t0) == (None, t0)


def test_most_recently_released_slot_is_taken(model_cls: Any, tmp_path: Path) -> None:
    m = _make_slotted(model_cls, tmp_path, 2)
    t0 = 50.0
    m._release_slot(0, t0 - 10.0, t0 - 10.0)  # idle for 10 s
    m._release_slot(1, t0 - 0.0012, t0 - 0.0004)  # just released: the waiting request's slot
    slot, anchor = m._take_slot(t0)
    assert slot == 1 and anchor == pytest.approx(t0 - 0.001)
    slot, anchor = m._take_slot(t0)
    assert slot == 0 and anchor == t0


def test_queue_completes_one_request_per_service_time(
    model_cls: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back to back with a hand-off between executions, deadlines are one service time apart.

    The window is wide so that scheduling noise on a busy machine cannot push a hand-off out of
    it; the trace shows every execution anchored at the previous deadline.
    """
    trace = tmp_path / "trace"
    trace.mkdir()
    monkeypatch.setenv("SYNERGAI_EMULATION_TRACE", str(trace))
    m = _make_slotted(model_cls, tmp_path, 1, gap_ms=200.0, catchup_ms=200.0)
    x = np.zeros((1, 1), dtype=np.float32)
    m.execute([_Request(INPUT0=x)])  # idle start
    for _ in range(5):
        time.sleep(0.002)
        m.execute([_Request(INPUT0=x)])
    m.finalize()
    rows = [json.loads(line) for line in (trace / "srv.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[0]["gap_ms"] > 1e6 and rows[0]["anchor"] == rows[0]["t0"]
    assert all(r["gap_ms"] >= 2.0 for r in rows[1:])
    for prev, row in itertools.pairwise(rows):
        assert row["anchor"] == pytest.approx(prev["deadline"], abs=1e-6)
        assert row["deadline"] - prev["deadline"] == pytest.approx(0.004, abs=1e-6)
        assert row["anchor"] < row["t0"] and row["deadline"] <= row["end"]


def test_device_serves_every_model_by_tensor_suffix(model_cls: Any, tmp_path: Path) -> None:
    """The device model: the suffix of the input names says whose latency to emulate."""
    emulation = {
        "models": [
            {"name": "a", "lognormal": {"1": [math.log(4.0), 0.0]}},
            {"name": "b", "lognormal": {"1": [math.log(9.0), 0.0], "2": [math.log(11.0), 0.0]}},
        ],
        "server": "srv",
        "control_file": str(tmp_path / "c.json"),
        "speed": [[-1e9, 1.0]],
        "seed": 0,
    }
    m = model_cls()
    m.initialize(
        {
            "model_config": json.dumps(
                {"parameters": {"emulation": {"string_value": json.dumps(emulation)}}}
            ),
            "model_instance_name": "d_0",
        }
    )
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    _outputs, batch, model = m._compute(_Request(INPUT0__1=x))
    assert (batch, model) == (2, 1) and m.service_ms(batch, model) == pytest.approx(11.0)
    (ok,) = m.execute([_Request(INPUT0__1=x, INPUT1__1=np.ones((2, 1), dtype=np.int64))])
    assert ok.error is None and set(ok.outputs) == {"OUTPUT0__1", "OUTPUT1__1"}
    np.testing.assert_array_equal(ok.outputs["OUTPUT0__1"], x * 2)
    assert m._compute(_Request(INPUT2__0=np.array([[b"z"]], dtype=np.object_)))[1:] == (1, 0)
    (none,) = m.execute([_Request(INPUT0=x)])  # plain names belong to no model of a device
    assert "at least one" in none.error
