"""The online self-check: p_late, the switch, the twins, and a bad rule switched off."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from gateway.prediction.profiles import LatencyPoint, Profile, ProfileBook
from gateway.routing.framework import Estimate
from gateway.routing.policies.synergai import SynergAI, _decide
from gateway.routing.registry import make_policy
from gateway.routing.selfcheck import (
    ANCHOR_S,
    FLOOR,
    HOLD_S,
    MIN_S,
    SLOW,
    ClassCheck,
    SelfCheck,
    Twin,
    p_late,
    real_pools,
    slow_slots,
)
from gateway.routing.types import Request, WorkerInfo
from gateway.routing.view import FleetView
from gateway.scenario import Scenario
from loadtest.sim.engine import simulate
from loadtest.sim.metrics import violation_mask
from loadtest.sim.trace import build_trace


@pytest.mark.parametrize(
    ("slack", "mean", "p99", "expected"),
    [
        (0.0, 5.0, 8.0, 1.0),  # no slack left: late
        (-3.0, 5.0, 8.0, 1.0),
        (8.0, 5.0, 8.0, 0.01),  # slack at the p99: 1 % late
        (1e6, 5.0, 8.0, 0.0),
        (4.0, 5.0, 5.0, 1.0),  # no spread: late iff the mean exceeds the slack
        (6.0, 5.0, 5.0, 0.0),
    ],
)
def test_p_late(slack: float, mean: float, p99: float, expected: float) -> None:
    assert p_late(slack, mean, p99) == pytest.approx(expected, abs=1e-6)


def test_p_late_is_monotone_in_slack() -> None:
    ps = [p_late(x, 5.0, 9.0) for x in np.linspace(0.5, 20.0, 40)]
    assert all(a >= b for a, b in itertools.pairwise(ps))


def test_equal_sides_never_trip() -> None:
    c = ClassCheck()
    for i in range(20_000):
        p = 0.3 if i % 3 else 0.9
        assert not c.add(p, p, i * 0.001)
    assert c.on(20.0) and c.trips == 0


def test_a_loss_trips_after_the_horizon_and_holds() -> None:
    c = ClassCheck()
    t, tripped = 0.0, None
    while tripped is None and t < 10.0:
        if c.add(1.0, 0.0, t):
            tripped = t
        t += 0.001
    assert tripped is not None and MIN_S <= tripped < MIN_S + 0.01
    assert not c.on(tripped + HOLD_S - 0.01) and c.on(tripped + HOLD_S)
    # a loss again right after switching back on: the hold doubles
    t = tripped + HOLD_S
    while not c.add(1.0, 0.0, t):
        t += 0.001
    assert c.hold == 2 * HOLD_S and c.trips == 2


def test_a_loss_is_remembered_across_the_hold_and_forgiven_as_it_decays() -> None:
    """The sums decay at ``TAU_S`` through a hold; they are not wiped when it ends.

    A rule that keeps losing is switched off again at its first request back (not after a
    new horizon of losses: wild-4-132 lost 5 s of it per cycle), and the hold doubles; a
    loss that has decayed below the bound lets deviations back on.
    """
    c = ClassCheck()
    t = 0.0
    while not c.add(1.0, 0.0, t):  # a big loss: 1,000 late requests in the first second
        t += 0.001
    back = c.off_until
    assert back == pytest.approx(t + HOLD_S)
    assert c.add(1.0, 0.0, back)  # still far beyond the bound after one TAU_S of decay
    assert c.off_until == pytest.approx(back + 2 * HOLD_S) and c.trips == 2
    small = ClassCheck()
    t = 0.0
    while not small.add(1.0, 0.0, t):  # a small loss: 1 late request every 0.1 s
        t += 0.1
    assert small.trips == 1
    assert not small.add(0.0, 0.0, small.off_until)  # e^-1 of it is within the noise bound
    assert small.on(small.off_until + 1.0) and small.trips == 1


def test_a_small_loss_within_noise_and_tolerance_does_not_trip() -> None:
    c = ClassCheck()
    rng = random.Random(1)
    for i in range(50_000):  # 0.2 point worse: under the half-point tolerance
        assert not c.add(float(rng.random() < 0.052), float(rng.random() < 0.05), i * 0.0002)
    assert FLOOR > 0


def _book() -> ProfileBook:
    return ProfileBook(
        {
            ("slow", "m"): Profile("slow", "m", 4, (LatencyPoint(1, 10.0, 14.0),)),
            ("fast", "m"): Profile("fast", "m", 4, (LatencyPoint(1, 2.0, 3.0),)),
        },
        {},
    )


def _view(book: ProfileBook) -> FleetView:
    fleet = [
        WorkerInfo("s0", "near", "slow", ("m",), 1, 1.0),
        WorkerInfo("s1", "near", "slow", ("m",), 1, 1.0),
        WorkerInfo("f0", "far", "fast", ("m",), 2, 6.0),
    ]
    return FleetView(fleet, book)


def _est(view: FleetView, wid: str, svc: float, p99: float) -> Estimate:
    s = view.state(wid)
    return Estimate(s, s.rtt_ms + svc, s.rtt_ms + p99, svc, svc / s.instances)


def test_twins_anchor_on_the_real_queues_and_ec_picks_the_earliest() -> None:
    view = _view(_book())
    view.start("s0", Request("m", 1e6), 10.0, 0.0)  # s0 busy until 10.5 ms
    view.set_healthy("s1", False, 0.0)  # s1 down: its slot is not in the pool
    pools = real_pools(view, 0.0)
    assert sorted(pools["near"]) == [pytest.approx(0.0105)]
    assert sorted(pools["far"]) == [0.0, 0.0]
    tw = Twin()
    tw.anchor(pools)
    near, far = _est(view, "s0", 10.0, 14.0), _est(view, "f0", 2.0, 3.0)
    assert tw.earliest([near, far], 0.0) is far  # 6 + 2 < 1 + 10 + 10
    for _ in range(20):  # queueing on the twin moves EC: load far until near completes first
        tw.place(far, 0.0, 100.0, 0.0)
    assert tw.earliest([near, far], 0.0) is near
    assert len(pools["far"]) == 2 and pools["far"][0] == 0.0  # anchor copied the heaps


def _answers(view: FleetView, wid: str, service_ms: float, n: int, t: float) -> float:
    """``n`` answers of ``wid`` (1 ms away) that took ``service_ms`` each, from ``t``."""
    for _ in range(n):
        r = Request("m", 1e6)
        view.start(wid, r, 10.0, t)
        t += 0.001 * (1.0 + service_ms)
        view.finish(wid, r, 10.0, 1.0 + service_ms, t)
    return t


def test_a_measured_slow_worker_keeps_its_own_speed_in_the_twins() -> None:
    """A twin's pool is one FIFO served at the pool's best speed; a worker measured at least
    ``SLOW`` times slower (calibrated) is served at its own speed instead, and a merely
    uncalibrated one (its correction is the prior) is not singled out."""
    view = _view(_book())
    t = _answers(view, "s0", 10.0, 10, 0.0)  # as profiled
    t = _answers(view, "s1", 30.0, 10, t)  # 3x slower
    assert view.state("s1").cfac["m"] >= SLOW * view.state("s0").cfac["m"]
    assert len(real_pools(view, t)["near"]) == 1
    assert [x[1].id for x in slow_slots(view, t)["near"]] == ["s1"]
    tw = Twin()
    tw.anchor(real_pools(view, t), slow_slots(view, t))
    near = _est(view, "s0", 10.0, 14.0)
    begins = []
    for _ in range(4):
        b, r, x = tw._slot(near, "m", t)
        begins.append((round((b - t) * 1000.0), round(r, 1), x is not None))
        tw.place(near, 0.0, 1000.0, t, "m")
    # s0 ends the first two (~10, ~20 ms); the third ends first on s1 (~25 ms: ~2.5x slower,
    # but free) rather than on s0 (~30 ms); the fourth on s0 again (~30 against ~50 ms)
    assert [x for _, _, x in begins] == [False, False, True, False]
    assert begins[2][1] >= SLOW
    fresh = _view(_book())
    t = _answers(fresh, "s0", 10.0, 10, 0.0)
    t = _answers(fresh, "s1", 30.0, 1, t)  # one slow answer: not calibrated
    assert slow_slots(fresh, t) == {} and len(real_pools(fresh, t)["near"]) == 2


def test_own_deviations_are_scored_on_the_real_view() -> None:
    view = _view(_book())
    chk = SelfCheck(seed=3)
    near, far = _est(view, "s0", 10.0, 14.0), _est(view, "f0", 2.0, 3.0)
    # EC would send to far (8 ms); the policy sent to near (11 ms, 15 ms tail) under a 12 ms SLO
    chk.record("m", near, far, [near, far], 12.0, view, 0.0, own=True)
    c = chk.classes["m"]
    assert c.t == pytest.approx(0.0, abs=1e-6) and 0.2 < c.r < 0.9


def test_record_counts_a_shed_as_late() -> None:
    view = _view(_book())
    chk = SelfCheck(seed=3)
    near, far = _est(view, "s0", 10.0, 14.0), _est(view, "f0", 2.0, 3.0)
    chk.record("m", None, far, [near, far], 50.0, view, 0.0, own=False)
    assert chk.all.r == 1.0 and chk.all.t < 0.01
    assert "m" not in chk.classes  # a shed is judged overall only


def test_the_ec_twin_carries_its_backlog_across_anchors() -> None:
    """Sheds keep the real queues short; at an anchor the EC twin restarts from them plus the
    work it had piled up beyond the mirror (the shed requests EC would have served), so the
    backlog EC would carry is not handed back every ``ANCHOR_S``."""
    view = _view(_book())
    chk = SelfCheck(seed=3)
    near, far = _est(view, "s0", 10.0, 14.0), _est(view, "f0", 2.0, 3.0)
    chk.record("m", far, far, [near, far], 50.0, view, 0.0, own=False)  # first anchor
    for i in range(200):  # 200 sheds in 0.1 s: EC serves them (far's 2 slots, near's 2)
        chk.record("m", None, far, [near, far], 50.0, view, ANCHOR_S - 0.1 + i * 0.0005, own=False)
    t = ANCHOR_S + 0.001
    ec, mine = chk.ec.pending(t), chk.mirror.pending(t)
    held = {p: ec[p] - mine[p] for p in ec}
    assert held["far"] > 0.1 and held["near"] > 0.1 and mine == {"near": 0.0, "far": 0.0}
    chk.record("m", far, far, [near, far], 50.0, view, t, own=False)  # anchors, then places
    # the real queues are empty: the EC twin holds its carry-over plus this one request
    after = chk.ec.pending(t)
    assert all(after[p] >= held[p] - 1e-9 for p in held)
    assert sum(after.values()) - sum(held.values()) < 0.02
    assert 0.0 < chk.mirror.pending(t)["far"] < 0.02


def test_a_negative_carry_takes_work_off_but_not_before_now() -> None:
    tw = Twin()
    tw.anchor({"p": [1.0, 1.0]})
    tw.carry({"p": -5.0}, 0.5)
    assert sorted(tw.pools["p"]) == [0.5, 0.5]
    tw.carry({"p": 1.0}, 0.5)
    assert sorted(tw.pools["p"]) == [1.0, 1.0]
    assert tw.pending(0.5) == {"p": pytest.approx(1.0)}


class _Bad(SynergAI):
    """A deliberately bad rule: every request to the candidate of LATEST predicted completion."""

    def _deviate(self, req, ests, now, rng):  # type: ignore[no-untyped-def]
        e = max(ests, key=lambda e: e.predicted_ms)
        return _decide(e, "bad"), e, min(ests, key=lambda x: x.predicted_ms)


def _scenario() -> Scenario:
    raw = {
        "name": "bad-rule",
        "duration_s": 20.0,
        "pools": [
            {"name": "near", "arch": "slow", "workers": 3, "rtt_ms": 1.0, "models": ["m"]},
            {"name": "far", "arch": "fast", "workers": 2, "instances": 2, "rtt_ms": 6.0,
             "models": ["m"]},
        ],
        "workload": [{"model": "m", "rate_rps": 250, "arrival": "poisson", "slo_ms": 25}],
    }  # fmt: skip
    return Scenario.model_validate(raw).with_profiles(_book())


def test_a_bad_rule_costs_little_with_the_self_check() -> None:
    sc = _scenario()
    trace = build_trace(sc, 5)

    def rate(pol: object) -> float:
        res = simulate(sc, trace, pol, 5)  # type: ignore[arg-type]
        return float(violation_mask(sc, trace, res).mean())

    ec = rate(make_policy("profile_static", sc.profile_book, 5))
    unchecked = rate(_Bad(seed=5, self_check=False))
    checked = _Bad(seed=5)
    got = rate(checked)
    assert checked.check is not None and checked.check.all.trips >= 1
    assert unchecked > 0.25  # the rule alone is a disaster (32 %)...
    assert got < 0.25 * unchecked and got <= ec + 0.1  # ...switched off after its first second
    assert math.isfinite(got)
