"""Priority admission and the byte budget (gateway.core.admission)."""

from __future__ import annotations

import pytest

from gateway.core.admission import Admission, ByteBudget


@pytest.mark.parametrize(
    ("inflight", "priority", "admitted"),
    [
        (0, 0, True),
        (79, 0, True),
        (80, 0, False),  # low priorities get 80 of 100 slots
        (80, 1, True),
        (99, 5, True),
        (100, 5, False),
        (50, -3, True),
        (80, -3, False),
    ],
)
def test_low_priorities_are_refused_first(inflight: int, priority: int, admitted: bool) -> None:
    adm = Admission(100, low_share=0.8, high_priority=1)
    assert adm.admits(inflight, priority) is admitted


def test_small_limits_keep_one_slot_for_everyone() -> None:
    adm = Admission(1, low_share=0.5)
    assert adm.limit(0) == 1 and adm.limit(1) == 1
    assert Admission(0).limit(5) == 0


def test_byte_budget() -> None:
    b = ByteBudget(100)
    assert b.try_acquire(60) and not b.try_acquire(41) and b.held == 60
    assert b.try_acquire(40) and b.held == 100
    b.release(100)
    assert b.held == 0 and b.try_acquire(0)
    with pytest.raises(ValueError):
        b.try_acquire(-1)
