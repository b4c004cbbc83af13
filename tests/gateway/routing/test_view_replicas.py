"""Other replicas' leases in the wait estimate (``FleetView._others_wait``), table-driven.

Release lag 0 so the figures are exact; ``half`` = rtt / 2. See the method's docstring for
``phi``/``psi`` and the water-filling over slots.
"""

from __future__ import annotations

import pytest

from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import Request, WorkerInfo
from gateway.routing.view import FleetView


def _view(fleet: list[WorkerInfo], book: ProfileBook) -> FleetView:
    return FleetView(fleet, book, release_lag_ms=0.0)


CASES = [
    # (worker, outstanding, work_ms, expected others_ms, why)
    ("e0", 1, 10.0, 10.0 * 5.5 / 11.0, "k=1, one lease: half its service, none of its rtt"),
    ("e0", 5, 50.0, 50.0 * 25.5 / 31.0, "k=1, queued leases count almost fully"),
    ("c0", 1, 2.0, 0.0, "k=2, both slots idle here, fewer than one lease ahead: no wait"),
    ("c0", 4, 8.0, 8.0 * 12.5 / 23.5 / 2.0, "k=2, four leases water-filled on two idle slots"),
]


@pytest.mark.parametrize(("worker", "out", "work", "want", "why"), CASES)
def test_others_wait(
    fleet: list[WorkerInfo],
    book: ProfileBook,
    worker: str,
    out: int,
    work: float,
    want: float,
    why: str,
) -> None:
    view = _view(fleet, book)
    view.apply_shared(worker, out, work, observed_at=0.0)
    s = view.state(worker)
    assert s.others_ms == pytest.approx(want), why
    assert s.wait_at(0.0) == pytest.approx(want), why
    assert s.others_ms <= work / s.instances  # never above the old full-service count


def test_own_leases_are_not_others(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    view = _view(fleet, book)
    view.start("e0", Request("m", 50.0), 10.0, 0.0)
    view.apply_shared("e0", 1, 10.0, observed_at=0.0)
    assert view.state("e0").others_ms == 0.0


def test_water_fill_over_own_busy_slot(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    """c0 (k=2, rtt 20): one own 30 ms request holds a slot; others' work fills the idle one."""
    view = _view(fleet, book)
    view.start("c0", Request("m", 50.0), 30.0, 0.0)
    view.apply_shared("c0", 5, 38.0, observed_at=0.0)  # 4 other leases of 2 ms
    s = view.state("c0")
    svc, half = 2.0, 10.0
    w = 0.5 * (8.0 - svc) / 2.0  # own wait 0: one slot idle
    life = 2 * half + w + svc
    ahead = 8.0 * (half + w + svc / 2) / life
    assert s.others_ms == pytest.approx(ahead)  # all of it lands on the idle slot (< 30 ms)


def test_stale_figures_drop_others(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    view = _view(fleet, book)
    view.apply_shared("e0", 3, 30.0, observed_at=0.0)
    assert view.state("e0").others_ms > 0.0
    view.refresh(3.0)
    view.start("e0", Request("m", 50.0), 1.0, 3.0)  # any change re-settles
    assert view.state("e0").others_ms == 0.0
