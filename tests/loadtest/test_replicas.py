"""Unit tests of :mod:`loadtest.replicas`: the truth Redis is held to, and a sampler that stops."""

from __future__ import annotations

import asyncio
import time

import pytest

from loadtest.client import Outcome
from loadtest.replicas import RedisSampler, excess_over_truth


def _ok(worker: str, start: float, end: float) -> Outcome:
    return Outcome("ok", (end - start) * 1000.0, worker=worker, start_s=start, end_s=end)


# one client, back to back on w: A [0, 1.0], B [1.0001, 2.0]; Redis read at [1.0005, 1.0006]
BACK_TO_BACK = [_ok("w", 0.0, 1.0), _ok("w", 1.0001, 2.0)]


@pytest.mark.parametrize(
    ("outcomes", "sample", "lag_s", "bad"),
    [
        # A's release lands just after B's reservation: 2 is explained by a 1 ms lag...
        (BACK_TO_BACK, (1.0005, 1.0006, {"w": 2}), 0.001, False),
        # ...and by no lag at all: the client never had both open
        (BACK_TO_BACK, (1.0005, 1.0006, {"w": 2}), 0.0, True),
        # one request counted twice for its whole life: no small lag explains it
        (BACK_TO_BACK, (1.5, 1.5001, {"w": 2}), 0.01, True),
        ([_ok("w", 0.0, 1.0)], (0.5, 0.5001, {"w": 1}), 0.0, False),
        # a read spans an instant where both were open
        ([_ok("w", 0.0, 1.0), _ok("w", 0.9, 2.0)], (0.8, 0.95, {"w": 2}), 0.0, False),
        # another worker's request is no excuse
        ([_ok("w", 0.0, 1.0), _ok("v", 0.0, 1.0)], (0.5, 0.5001, {"w": 2}), 0.1, True),
        ([], (0.5, 0.5001, {"w": 0}), 0.0, False),
    ],
)
def test_excess_over_truth_extends_each_request_by_the_lag(
    outcomes: list[Outcome], sample: tuple[float, float, dict[str, int]], lag_s: float, bad: bool
) -> None:
    assert bool(excess_over_truth([sample], outcomes, lag_s)) is bad


async def test_sampler_stops_even_when_a_read_swallows_the_cancel() -> None:
    """The issue-16 hang: a cancel turned into ``ConnectionError`` inside the read."""

    class Swallowing(RedisSampler):
        async def read(self) -> dict[str, int]:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                raise ConnectionError("cancel swallowed, as redis-py may on 3.11") from None
            return {"w": 0}

    s = Swallowing("redis://127.0.0.1:1/0", ["w"], period_s=0.001, stop_timeout_s=1.0)
    s.start()
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await s.stop()
    assert time.monotonic() - t0 < 1.0
    assert s.samples


async def test_sampler_stops_by_itself_after_max_s() -> None:
    class Quiet(RedisSampler):
        async def read(self) -> dict[str, int]:
            return {"w": 0}

    s = Quiet("redis://127.0.0.1:1/0", ["w"], period_s=0.005, max_s=0.05)
    s.start()
    await asyncio.sleep(0.2)
    n = len(s.samples)
    await asyncio.sleep(0.05)
    assert len(s.samples) == n > 0
    await s.stop()
