"""Shared fixtures for the gateway's unit tests: a tiny fleet, its profiles, the fakes."""

from __future__ import annotations

import pytest

from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook
from gateway.routing.types import WorkerInfo
from gateway.settings import ModelDefaults, Settings, WorkerSpec


@pytest.fixture
def book() -> ProfileBook:
    def prof(arch: str, model: str, ms: float) -> Profile:
        return Profile(
            arch, model, 8, (LatencyPoint(1, ms, ms * 1.2), LatencyPoint(8, ms * 4, ms * 5))
        )

    profiles = {
        ("fast", "m1"): prof("fast", "m1", 2.0),
        ("slow", "m1"): prof("slow", "m1", 20.0),
        ("slow", "m2"): prof("slow", "m2", 5.0),
    }
    return ProfileBook(profiles, {})


@pytest.fixture
def worker_specs() -> list[WorkerSpec]:
    return [
        WorkerSpec(id="f0", pool="fast", arch="fast", url="http://f0:1", models=["m1"]),
        WorkerSpec(id="s0", pool="slow", arch="slow", url="http://s0:1", models=["m1", "m2"]),
    ]


@pytest.fixture
def infos(worker_specs: list[WorkerSpec]) -> list[WorkerInfo]:
    return [w.info() for w in worker_specs]


@pytest.fixture
def settings(worker_specs: list[WorkerSpec]) -> Settings:
    return Settings(
        workers=worker_specs,
        models={"m1": ModelDefaults(slo_ms=50, priority=1)},
        policy="round_robin",
        host="127.0.0.1",
        port=0,
        grpc_port=None,
        redis_url="redis://unused:1/0",
        seed=1,
    )
