"""The python-backend model, run outside Triton with a stand-in ``triton_python_backend_utils``."""

from __future__ import annotations

import importlib.util
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
    t = time.perf_counter()
    m.execute([_Request(INPUT0=x)] * 3)
    assert 0.018 <= time.perf_counter() - t < 0.06  # 3 x 6 ms, sequential (one device slot)


def test_lognormal_draws_fit_p50(model_cls: Any, tmp_path: Path) -> None:
    m = _make(model_cls, tmp_path / "c.json", [[-1e9, 1.0]], sigma=0.2)
    draws = [m.service_ms(1) for _ in range(4000)]
    assert np.median(draws) == pytest.approx(4.0, rel=0.03)
    assert np.percentile(draws, 99) == pytest.approx(4.0 * math.exp(0.2 * 2.3263), rel=0.08)
