from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.fleet import Fault, FaultInjector, Fleet, WorkerSpec, write_gateway_config
from workers.testing import write_scenario


def _scenario(tmp_path: Path, **extra: Any) -> Path:
    return write_scenario(
        tmp_path,
        pools=[
            {
                "name": "edge",
                "arch": "a",
                "workers": 2,
                "instances": 1,
                "rtt_ms": 2,
                "models": ["m"],
                "speed": [{"at_s": 0, "factor": 1.0}, {"at_s": 10, "factor": 2.0}],
            },
            {
                "name": "cloud",
                "arch": "b",
                "workers": 1,
                "instances": 4,
                "rtt_ms": 40,
                "models": ["m", "n"],
                "speed": 1.5,
            },
        ],
        profiles={
            ("a", "m"): {1: (5.0, 8.0)},
            ("b", "m"): {1: (1.0, 2.0), 8: (4.0, 6.0)},
            ("b", "n"): {1: (3.0, 3.0)},
        },
        faults=[
            {"at_s": 5, "pool": "edge", "kind": "slowdown", "factor": 2.0, "for_s": 3},
            {"at_s": 6, "pool": "cloud", "worker": 0, "kind": "crash", "for_s": 2},
        ],
        **extra,
    )


def test_server_specs_and_faults_from_scenario(tmp_path: Path) -> None:
    fleet = Fleet(_scenario(tmp_path), workdir=tmp_path / "w")
    plan = fleet.server_specs()
    assert [s.name for _, _, s in plan] == ["edge-0", "edge-1", "cloud-0"]
    edge = plan[0][2]
    assert edge.instances == 1 and edge.model_names == ["m"]
    assert list(edge.speed) == [(0.0, 1.0), (10.0, 2.0)]
    cloud = plan[2][2]
    assert cloud.instances == 4 and cloud.model_names == ["m", "n"]
    assert cloud.speed[0][1] == 1.5 and cloud.speed[0][0] < 0  # constant: applies always
    assert cloud.models[0].max_batch == 8
    assert len({s.seed for _, _, s in plan}) == 3
    faults = fleet.faults()
    assert Fault(5.0, "edge-0", "slowdown", 3.0, 2.0) in faults
    assert Fault(5.0, "edge-1", "slowdown", 3.0, 2.0) in faults
    assert Fault(6.0, "cloud-0", "crash", 2.0, 1.0) in faults


def test_time_scale_override_scales_rtt_speed_steps_and_faults(tmp_path: Path) -> None:
    fleet = Fleet(_scenario(tmp_path), time_scale=3.0, workdir=tmp_path / "w")
    assert fleet.scenario.pool("cloud").rtt_ms == pytest.approx(120.0)
    assert list(fleet.server_specs()[0][2].speed) == [(0.0, 1.0), (30.0, 2.0)]
    assert fleet.faults()[0].at_s == pytest.approx(15.0)
    em = fleet.server_specs()[0][2].models[0]
    assert em.lognormal[1][0] == pytest.approx(__import__("math").log(15.0))


def test_gateway_config(tmp_path: Path) -> None:
    w = WorkerSpec(
        "p-0",
        "p",
        "arch",
        0,
        2,
        1.5,
        ("m",),
        "http://127.0.0.1:1",
        "127.0.0.1:2",
        "http://127.0.0.1:3/metrics",
        "http://127.0.0.1:4",
        "127.0.0.1:5",
    )
    path = write_gateway_config([w], tmp_path / "sub" / "gw.yaml")
    doc = yaml.safe_load(path.read_text())
    assert doc == {
        "workers": [
            {
                "id": "p-0",
                "pool": "p",
                "arch": "arch",
                "url": "http://127.0.0.1:1",
                "grpc_url": "127.0.0.1:2",
                "metrics_url": "http://127.0.0.1:3/metrics",
                "instances": 2,
                "rtt_ms": 1.5,
                "models": ["m"],
            }
        ]
    }


@dataclass
class _FakeServer:
    name: str
    log: list[tuple[float, str, object]] = field(default_factory=list)

    def kill(self) -> None:
        self.log.append((time.monotonic(), "kill", None))

    def restart(self, timeout: float) -> None:
        time.sleep(0.05)  # restarts take time; must not delay other faults
        self.log.append((time.monotonic(), "restart", None))

    def set_control(self, *, slowdown: float | None = None) -> None:
        self.log.append((time.monotonic(), "slowdown", slowdown))


class _FakeFleet:
    def __init__(self) -> None:
        self.servers = {n: _FakeServer(n) for n in ("a", "b")}

    def server(self, name: str) -> _FakeServer:
        return self.servers[name]


def test_fault_injector_schedule() -> None:
    fleet = _FakeFleet()
    faults = [
        Fault(0.05, "a", "slowdown", 0.2, 2.0),
        Fault(0.10, "a", "slowdown", 0.05, 3.0),  # overlaps: factors multiply
        Fault(0.05, "b", "crash", 0.05),
        Fault(0.06, "a", "slowdown", None, 1.5),  # no end
    ]
    inj = FaultInjector(fleet, faults)  # type: ignore[arg-type]
    t0 = time.monotonic()
    inj.start(t0)
    deadline = t0 + 10.0  # all 7 applied: a loaded machine's thread may wake late
    while len(inj.applied) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    inj.stop()
    a = [(round(t - t0, 2), k, v) for t, k, v in fleet.servers["a"].log]
    assert [v for _, _, v in a] == [2.0, 3.0, 9.0, 3.0, 1.5]
    # on the fleet clock: never early; late only by what a busy machine's scheduler adds
    # (a bound for a stuck schedule, not a latency figure)
    for (t, _, _), due in zip(a, [0.05, 0.06, 0.10, 0.15, 0.25], strict=True):
        assert due <= t < due + 0.5
    b = fleet.servers["b"].log
    assert [k for _, k, _ in b] == ["kill", "restart"]
    assert 0.10 <= b[1][0] - t0 < 0.10 + 0.5
    assert len(inj.applied) == 7


def test_fault_injector_stop_cancels_pending() -> None:
    fleet = _FakeFleet()
    inj = FaultInjector(fleet, [Fault(5.0, "a", "slowdown", 1.0, 2.0)])  # type: ignore[arg-type]
    inj.start(time.monotonic())
    t = time.monotonic()
    inj.stop()
    assert time.monotonic() - t < 1.0 and fleet.servers["a"].log == []
