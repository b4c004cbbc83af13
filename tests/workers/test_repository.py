from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from gateway.prediction.profiles import LatencyPoint, Profile
from workers.repository import DEVICE_MODEL, EmulatedModel, ServerSpec, write_repository


def _emulation(config: str) -> dict[str, object]:
    m = re.search(r'string_value: "((?:[^"\\]|\\.)*)"', config)
    assert m
    return json.loads(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))


def test_from_profile_uses_the_profile_fit() -> None:
    prof = Profile("a", "m", 4, (LatencyPoint(1, 10.0, 20.0), LatencyPoint(4, 16.0, 30.0)))
    em = EmulatedModel.from_profile(prof)
    assert em.name == "m" and em.max_batch == 4 and sorted(em.lognormal) == [1, 2, 3, 4]
    for b in range(1, 5):
        assert em.lognormal[b] == pytest.approx(prof.lognormal(b))


def test_fixed_model_is_deterministic() -> None:
    em = EmulatedModel.fixed("x", 10.0, max_batch=3, per_item_ms=2.0)
    assert [math.exp(em.lognormal[b][0]) for b in (1, 2, 3)] == pytest.approx([10, 12, 14])
    assert all(s == 0.0 for _, s in em.lognormal.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instances": 0}, "instances"),
        ({"models": []}, "at least one model"),
        ({"models": [EmulatedModel.fixed("a", 1), EmulatedModel.fixed("a", 2)]}, "duplicate"),
    ],
)
def test_server_spec_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "s", "models": [EmulatedModel.fixed("a", 1)]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ServerSpec(**args)  # type: ignore[arg-type]


def test_repository_layout_and_config(tmp_path: Path) -> None:
    spec = ServerSpec(
        "edge-0",
        [EmulatedModel.fixed("m1", 5.0, max_batch=2), EmulatedModel.fixed("m-2", 7.0)],
        instances=3,
        speed=[(0.0, 1.0), (30.0, 2.0)],
        seed=42,
    )
    root = write_repository(spec, tmp_path / "repo", tmp_path / "control.json")
    assert sorted(p.name for p in root.iterdir()) == [DEVICE_MODEL, "m-2", "m1"]
    assert (root / DEVICE_MODEL / "1" / "model.py").read_text().startswith('"""Emulated model')
    # The device: one python model, `instances` stubs, every model's tensors suffixed by index.
    device = (root / DEVICE_MODEL / "config.pbtxt").read_text()
    assert f'name: "{DEVICE_MODEL}"' in device and 'backend: "python"' in device
    assert "max_batch_size: 8" in device and "count: 3" in device
    assert 'rate_limiter { resources [{name: "SLOT", global: true, count: 1}] }' in device
    for k in (0, 1):
        for name in ("INPUT0", "INPUT1", "INPUT2", "OUTPUT0", "OUTPUT1", "OUTPUT2"):
            assert f'name: "{name}__{k}"' in device
    assert "decoupled" not in device  # unary inference must work over HTTP and gRPC
    emu = _emulation(device)
    assert [m["name"] for m in emu["models"]] == ["m1", "m-2"]  # type: ignore[attr-defined]
    assert set(emu["models"][0]["lognormal"]) == {"1", "2"}  # type: ignore[index]
    assert emu["seed"] == 42 and emu["instances"] == 3
    assert emu["speed"] == [[0.0, 1.0], [30.0, 2.0]]
    assert emu["control_file"] == str(tmp_path / "control.json")
    assert emu["slots_file"] == str(tmp_path / "slots.bin")
    assert device.rstrip().endswith('"seed\\": 42}" } }')  # the worker image rewrites it
    # The public models: ensembles with one step on the device.
    config = (root / "m1" / "config.pbtxt").read_text()
    assert 'name: "m1"' in config and 'platform: "ensemble"' in config
    assert "max_batch_size: 2" in config and (root / "m1" / "1").is_dir()
    assert f'model_name: "{DEVICE_MODEL}"' in config
    assert 'input_map { key: "INPUT2__0" value: "INPUT2" }' in config
    assert 'output_map { key: "OUTPUT0__0" value: "OUTPUT0" }' in config
    assert 'key: "INPUT0__1"' in (root / "m-2" / "config.pbtxt").read_text()
    # Rewriting replaces the old content.
    write_repository(ServerSpec("edge-0", [EmulatedModel.fixed("z", 1)]), root, tmp_path / "c")
    assert sorted(p.name for p in root.iterdir()) == [DEVICE_MODEL, "z"]


def test_busy_slots_counts_the_busy_flags(tmp_path: Path) -> None:
    import struct

    from workers.repository import busy_slots, reset_slots

    path = tmp_path / "slots.bin"
    assert busy_slots(path) == 0  # no file: nothing executing
    reset_slots(path, 3)
    assert busy_slots(path) == 0
    raw = bytearray(path.read_bytes())
    raw[24:32] = struct.pack("<d", 1.0)  # slot 1 busy, as the model marks it
    path.write_bytes(bytes(raw))
    assert busy_slots(path) == 1
