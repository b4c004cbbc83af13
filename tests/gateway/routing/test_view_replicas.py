"""Other replicas' requests in the wait estimate: the shared shadow queue (issue 16).

``apply_shared(..., free_ms)`` hands the view the queue every replica books on (per slot, ms
until free as of ``observed_at``); the wait is the later of it and the local chain
(``FleetView._others_wait``). e0: one slot, rtt 1 ms; c0: two slots, rtt 20 ms.
"""

from __future__ import annotations

import pytest

from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import Request, WorkerInfo
from gateway.routing.view import FleetView


def test_shared_queue_sets_the_wait(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    view = FleetView(fleet, book)
    view.apply_shared("e0", 3, 30.0, observed_at=0.0, free_ms=(30.0,))
    s = view.state("e0")
    assert s.others_ms == pytest.approx(30.0 - 0.5)  # arrives rtt/2 after the send
    assert s.wait == pytest.approx(29.5)
    view.apply_shared("c0", 2, 20.0, observed_at=0.0, free_ms=(30.0,))  # slot 1 never booked
    assert view.state("c0").others_ms == 0.0  # one slot idle: no wait


def test_wait_is_the_min_over_slots(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    view = FleetView(fleet, book)
    view.apply_shared("c0", 4, 80.0, observed_at=1.0, free_ms=(50.0, 30.0))
    assert view.state("c0").others_ms == pytest.approx(30.0 - 10.0)


def test_own_requests_are_not_counted_twice(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    view = FleetView(fleet, book)
    view.start("e0", Request("m", 50.0), 10.0, 0.0)  # local chain: free at 10.5 ms
    view.apply_shared("e0", 1, 10.0, observed_at=0.0, free_ms=(10.5,))  # the same request
    s = view.state("e0")
    assert s.others_ms == pytest.approx(0.0, abs=1e-9) and s.wait == pytest.approx(10.0)


def test_local_starts_book_on_the_shared_copy(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    """Between the store's figures this router's own sends extend the shared queue too."""
    view = FleetView(fleet, book)
    view.apply_shared("e0", 2, 20.0, observed_at=0.0, free_ms=(20.0,))
    view.start("e0", Request("m", 50.0), 10.0, 0.0)  # behind the 20 ms: free at 30
    s = view.state("e0")
    assert s.sfree == pytest.approx([0.030])
    assert s.wait == pytest.approx(29.5)  # local chain alone: 10
    view.apply_shared("e0", 3, 30.0, observed_at=0.005, free_ms=(22.0,))  # a re-anchored read
    assert view.state("e0").wait == pytest.approx(22.0 - 0.5)


def test_later_local_chain_wins(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    """The shared queue re-anchors a release later than the local chain: take the later."""
    view = FleetView(fleet, book)
    view.start("e0", Request("m", 50.0), 10.0, 0.0)
    view.apply_shared("e0", 1, 10.0, observed_at=0.0, free_ms=(2.0,))
    assert view.state("e0").others_ms == 0.0 and view.state("e0").wait == pytest.approx(10.0)


def test_stale_figures_drop_others(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    view = FleetView(fleet, book)
    view.apply_shared("e0", 3, 30.0, observed_at=0.0, free_ms=(5000.0,))
    assert view.state("e0").others_ms > 0.0
    view.refresh(3.0)
    view.start("e0", Request("m", 50.0), 1.0, 3.0)  # any change re-settles
    assert view.state("e0").others_ms == 0.0


def test_counts_alone_add_no_wait(fleet: list[WorkerInfo], book: ProfileBook) -> None:
    """A store that keeps no queue: counts move ``out``/``work_ms`` only."""
    view = FleetView(fleet, book)
    view.apply_shared("e0", 5, 50.0, observed_at=0.0)
    s = view.state("e0")
    assert s.out == 5.0 and s.work_ms == 50.0 and s.others_ms == 0.0
