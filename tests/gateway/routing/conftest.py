"""Fixtures: a tiny hand-made profile book and fleet, a fake clock."""

from __future__ import annotations

import random

import pytest

from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView


def prof(arch: str, model: str, p50: float, p99: float, max_batch: int = 8) -> Profile:
    pts = (LatencyPoint(1, p50, p99), LatencyPoint(max_batch, p50 * 2, p99 * 2))
    return Profile(arch, model, max_batch, pts if max_batch > 1 else pts[:1])


@pytest.fixture
def book() -> ProfileBook:
    """edge: close and slow; cloud: far and fast; only edge runs 'tiny'."""
    return ProfileBook(
        {
            ("edge", "m"): prof("edge", "m", 10.0, 12.0, 4),
            ("cloud", "m"): prof("cloud", "m", 2.0, 2.4, 32),
            ("edge", "tiny"): prof("edge", "tiny", 1.0, 1.2),
        },
        {},
    )


@pytest.fixture
def fleet() -> list[WorkerInfo]:
    return [
        WorkerInfo("e0", "edge", "edge", ("m", "tiny"), 1, 1.0),
        WorkerInfo("e1", "edge", "edge", ("m", "tiny"), 1, 1.0),
        WorkerInfo("c0", "cloud", "cloud", ("m",), 2, 20.0),
    ]


@pytest.fixture
def view(fleet: list[WorkerInfo], book: ProfileBook) -> FleetView:
    return FleetView(fleet, book)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(7)
