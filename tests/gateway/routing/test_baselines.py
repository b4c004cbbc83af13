from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.prediction.profiles import ProfileBook
from gateway.routing.registry import make_policy, policy_names
from gateway.routing.types import Request
from gateway.routing.view import FleetView


def test_registry_names(book: ProfileBook) -> None:
    assert "oracle" not in policy_names()
    assert set(policy_names()) <= set(policy_names(include_sim_only=True))
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("nope", book)


@pytest.mark.parametrize(
    ("name", "loads", "expected"),
    [
        ("least_outstanding", {"e0": 2, "e1": 0, "c0": 1}, {"e1"}),
        ("least_outstanding", {"e0": 1, "e1": 1, "c0": 0}, {"c0"}),
        ("peak_ewma", {"e0": 0, "e1": 0, "c0": 0}, {"e0", "e1", "c0"}),
        ("peak_ewma", {"e0": 3, "e1": 0, "c0": 0}, {"e1", "c0"}),
    ],
)
def test_load_aware_baselines(
    view: FleetView, rng: random.Random, name: str, loads: dict[str, int], expected: set[str]
) -> None:
    for w, n in loads.items():
        for _ in range(n):
            view.start(w, Request("m", 50.0), 10.0, 0.0)
    pol = make_policy(name, view.book)
    got = {pol.choose(Request("m", 50.0), view, 0.0, rng).worker for _ in range(50)}
    assert got == expected


def test_round_robin_cycles_and_skips_unhealthy(view: FleetView, rng: random.Random) -> None:
    pol = make_policy("round_robin", view.book)
    seq = [pol.choose(Request("m", 50.0), view, 0.0, rng).worker for _ in range(6)]
    assert seq == ["e0", "e1", "c0", "e0", "e1", "c0"]
    view.set_healthy("e1", False, 0.0)
    assert {pol.choose(Request("m", 50.0), view, 0.0, rng).worker for _ in range(4)} == {"e0", "c0"}


def test_random_and_p2c_spread(view: FleetView, rng: random.Random) -> None:
    for name in ("random", "p2c"):
        pol = make_policy(name, view.book)
        c = Counter(pol.choose(Request("m", 50.0), view, 0.0, rng).worker for _ in range(300))
        assert set(c) == {"e0", "e1", "c0"}


def test_p2c_prefers_lighter(view: FleetView, rng: random.Random) -> None:
    for _ in range(5):
        view.start("e0", Request("m", 50.0), 10.0, 0.0)
    pol = make_policy("p2c", view.book)
    c = Counter(pol.choose(Request("m", 50.0), view, 0.0, rng).worker for _ in range(300))
    assert c["e0"] < 60  # only when both draws... never: two distinct draws, e0 always loses
    assert c["e0"] == 0


def test_no_worker(view: FleetView, rng: random.Random) -> None:
    for w in ("e0", "e1"):
        view.set_healthy(w, False, 0.0)
    for name in policy_names():
        d = make_policy(name, view.book).choose(Request("tiny", 50.0), view, 0.0, rng)
        assert d.worker is None
