"""Locust load shapes: pure functions of time, bounded by the run time."""

from __future__ import annotations

import os

# Importing locust monkey-patches the whole process with gevent (sockets, ssl, threads), which
# breaks every asyncio test collected after this one; the shapes need no patching.
os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")

import pytest

from loadtest.shapes import (
    SHAPES,
    BurstShape,
    ConstantShape,
    DiurnalShape,
    StepShape,
    make_shape,
)


@pytest.mark.parametrize(("t", "users"), [(0.0, 4), (9.9, 4), (10.0, 8), (25.0, 12), (100.0, 16)])
def test_steps(t: float, users: int) -> None:
    assert StepShape(step_users=4, step_s=10, max_users=16).users_at(t) == users


@pytest.mark.parametrize(("t", "users"), [(0.0, 12), (4.9, 12), (5.0, 3), (14.9, 3), (15.0, 12)])
def test_bursts(t: float, users: int) -> None:
    assert BurstShape(base=3, factor=4, on_s=5, off_s=10).users_at(t) == users


def test_diurnal_wave() -> None:
    s = DiurnalShape(base=10, amplitude=0.5, period_s=40)
    assert [s.users_at(t) for t in (0, 10, 20, 30)] == [10, 15, 10, 5]


def test_tick_stops_after_run_time() -> None:
    s = ConstantShape(users=3, run_time_s=10, spawn_rate=2)
    s.start_time -= 5
    assert s.tick() == (3, 2)
    s.start_time -= 6
    assert s.tick() is None


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_make_shape(name: str) -> None:
    s = make_shape(name, users=16, run_time_s=40)
    assert isinstance(s, SHAPES[name])
    peak = max(s.users_at(t / 2) for t in range(80))
    assert 1 <= min(s.users_at(t / 2) for t in range(80)) <= peak <= 48
    unbounded = make_shape(name, users=16, run_time_s=float("inf"))
    assert unbounded.tick() is not None


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        make_shape("sawtooth", 4, 10)
    with pytest.raises(ValueError):
        StepShape(step_s=0)
