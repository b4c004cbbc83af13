"""The fleet registry: membership, health and drain in one place; the view follows it."""

from __future__ import annotations

import pytest

from gateway.core.clock import ManualClock
from gateway.errors import ModelNotFound, NoHealthyWorker
from gateway.fleet import Fleet
from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView


def _fleet(infos: list[WorkerInfo], book: ProfileBook) -> tuple[Fleet, FleetView]:
    view = FleetView(infos, book)
    return Fleet(view, ManualClock(5.0)), view


def test_routable_is_healthy_and_not_drained_and_the_view_agrees(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    fleet, view = _fleet(infos, book)
    cases = [  # (healthy, drained) -> routable
        (True, False, True), (False, False, False), (True, True, False), (False, True, False),
    ]  # fmt: skip
    for healthy, drained, routable in cases:
        fleet.set_healthy("f0", healthy)
        fleet.set_drained("f0", drained)
        assert fleet.routable("f0") is routable
        assert view.state("f0").available(5.0) is routable  # what the policy reads
        assert fleet.healthy("f0") is healthy and fleet.drained("f0") is drained
    fleet.set_healthy("f0", True)
    fleet.set_drained("f0", False)
    assert fleet.ready()


def test_meta_worker_round_robins_over_routable_members(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    fleet, _ = _fleet(infos, book)
    assert {fleet.meta_worker("m1").id for _ in range(4)} == {"f0", "s0"}
    fleet.set_drained("s0", True)
    assert {fleet.meta_worker("m1").id for _ in range(4)} == {"f0"}
    with pytest.raises(NoHealthyWorker):
        fleet.meta_worker("m2")  # only s0 serves it, drained
    with pytest.raises(ModelNotFound):
        fleet.meta_worker("nope")
    assert not fleet.any_routable("m2") and fleet.any_routable("m1")
    fleet.set_healthy("f0", False)
    assert not fleet.ready()


def test_membership_changes_reach_the_view_and_a_drain_survives_a_flap(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    fleet, view = _fleet(infos, book)
    fleet.set_drained("s0", True)
    s0 = fleet.worker("s0")
    assert s0 is not None
    fleet.remove_worker("s0")
    assert [w.id for w in fleet.workers()] == ["f0"] and [w.id for w in view.workers()] == ["f0"]
    fleet.set_healthy("s0", False)  # a verdict for a non-member is ignored
    fleet.add_worker(s0)  # discovery brings it back: still drained
    assert fleet.drained("s0") and not view.state("s0").available(5.0)
    assert fleet.healthy("s0")


def test_sync_view_reapplies_after_a_reset(infos: list[WorkerInfo], book: ProfileBook) -> None:
    fleet, view = _fleet(infos, book)
    fleet.set_healthy("f0", False)
    view.reset()
    assert view.state("f0").available(5.0)  # a fresh view forgot it
    fleet.sync_view()
    assert not view.state("f0").available(5.0) and view.state("s0").available(5.0)
