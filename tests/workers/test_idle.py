"""``wait_idle``: what counts as idle, for how long, and how a wait that fails is reported."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from workers.idle import Idle, wait_idle


class Script:
    """A fake fleet and clock: each poll returns the next backlog; sleeping advances time."""

    def __init__(self, backlogs: list[Mapping[str, int]], inflight: list[int] | None = None):
        self._backlogs: Iterator[Mapping[str, int]] = iter(backlogs)
        self._inflight = iter(inflight or [])
        self.now = 0.0
        self.polls = 0
        self.last: Mapping[str, int] = {}

    def backlog(self) -> Mapping[str, int]:
        self.polls += 1
        self.last = next(self._backlogs, self.last)
        return self.last

    def inflight(self) -> int:
        return next(self._inflight, 0)

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def _wait(s: Script, timeout_s: float = 10.0, **kw: object) -> Idle:
    return wait_idle(
        s.backlog, timeout_s, inflight=s.inflight, poll_s=0.5, clock=s.clock, sleep=s.sleep, **kw
    )  # type: ignore[arg-type]


def test_waits_until_every_worker_is_empty_twice_in_a_row() -> None:
    s = Script([{"pi-0": 5, "orin-0": 0}, {"pi-0": 2, "orin-0": 0}, {"pi-0": 0, "orin-0": 1},
                {"pi-0": 0, "orin-0": 0}, {"pi-0": 0, "orin-0": 0}])  # fmt: skip
    idle = _wait(s)
    assert idle.idle and s.polls == 5 and idle.waited_s == 2.0
    assert "fleet idle after 2.0 s" in idle.describe()


def test_gateway_inflight_counts_too() -> None:
    s = Script([{"w": 0}], inflight=[3, 1, 0, 0])
    idle = _wait(s)
    assert idle.idle and s.polls == 4


def test_a_single_empty_poll_between_busy_ones_is_not_enough() -> None:
    s = Script([{"w": 1}, {"w": 0}, {"w": 1}, {"w": 0}, {"w": 0}])
    assert _wait(s).idle and s.polls == 5


def test_the_bound_reports_what_is_still_busy() -> None:
    s = Script([{"pi-0": 7, "orin-0": 0}], inflight=[2] * 100)
    idle = _wait(s, timeout_s=2.0)
    assert not idle.idle and idle.waited_s == 2.0
    assert dict(idle.busy) == {"pi-0": 7} and idle.inflight == 2
    assert "not idle after 2.0 s" in idle.describe() and "pi-0 7" in idle.describe()


def test_a_down_worker_holds_no_queue_and_is_reported() -> None:
    s = Script([{"pi-0": -1, "orin-0": 0}])
    idle = _wait(s)
    assert idle.idle and idle.down == ("pi-0",) and "down: pi-0" in idle.describe()


def test_cancelled_ends_the_wait_at_once() -> None:
    s = Script([{"w": 4}])
    idle = _wait(s, cancelled=lambda: True)
    assert not idle.idle and s.polls == 1
