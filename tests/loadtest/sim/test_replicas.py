"""Several routers sharing per-worker load (``loadtest.sim.replicas``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.routing.registry import make_policy
from gateway.routing.types import Decision, Request
from gateway.scenario import Scenario
from loadtest.sim.engine import simulate
from loadtest.sim.replicas import SharedConfig, simulate_replicas
from loadtest.sim.runner import run_scenario
from loadtest.sim.trace import build_trace
from tests.loadtest.sim.test_pinned import _scenario


def _same(a: Any, b: Any) -> None:
    assert np.array_equal(a.status, b.status)
    assert np.array_equal(a.worker, b.worker)
    assert np.allclose(a.latency_ms, b.latency_ms, equal_nan=True)


def test_one_router_with_exact_shared_state_is_the_engine() -> None:
    """One replica, exact store (no lag, no Redis round trip), no refresh: the one-router engine.

    (A refresh re-keys every worker at its time, so keys are fresher than the engine's.)
    """
    sc = _scenario()
    trace = build_trace(sc, 7)
    one = simulate(sc, trace, make_policy("synergai", sc.profile_book, 7), 7)
    rep = simulate_replicas(
        sc,
        trace,
        [make_policy("synergai", sc.profile_book, 7)],
        7,
        shared=SharedConfig(refresh_s=0.0, release_lag_s=0.0, redis_rtt_s=0.0),
    )
    _same(one, rep)


class _Spy:
    """Least outstanding on the fleet-wide figure; records which router saw what."""

    name = "spy"

    def __init__(self, log: list[tuple[int, float]], me: int) -> None:
        self.log, self.me = log, me

    def choose(self, req: Request, view: Any, now: float, rng: Any) -> Decision:
        s = min(view.eligible(req.model, req.batch), key=lambda s: (s.out, s.idx))
        self.log.append((self.me, sum(x.out - x.local_out for x in view.states())))
        return Decision(s.id, float("nan"), view.service_ms(s, req.model, 1, now), "spy")


def test_round_robin_and_others_seen() -> None:
    sc: Scenario = _scenario()
    trace = build_trace(sc, 7)
    log: list[tuple[int, float]] = []
    res = simulate_replicas(sc, trace, [_Spy(log, 0), _Spy(log, 1)], 7)
    assert [r for r, _ in log[:6]] == [0, 1, 0, 1, 0, 1]
    assert len(res.status) == len(trace)
    # each router sees the other's requests through the shared figures
    assert all(any(o > 0 for r, o in log if r == me) for me in (0, 1))
    none = simulate_replicas(
        sc, trace, [_Spy([], 0), _Spy([], 1)], 7, shared=SharedConfig(refresh_s=0.0)
    )
    assert len(none.status) == len(trace)


def test_run_scenario_routers_document() -> None:
    run = run_scenario(_scenario(), ["synergai"], 7, routers=2)
    assert run.document["routers"] == 2
    assert 0.0 <= run.document["policies"]["synergai"]["violation_rate"] <= 1.0
    assert "routers" not in run_scenario(_scenario(), ["round_robin"], 7).document


def test_replicas_confirm_on_the_shared_queue() -> None:
    """With two routers every decided request awaits a conditional reserve (issue 16.2);
    without re-deciding none does; one router never does."""
    from loadtest.sim import replicas

    sc = _scenario()
    trace = build_trace(sc, 7)

    def counts(nr: int, shared: SharedConfig | None) -> dict[str, int]:
        before = dict(replicas.COUNTS)
        pols = [make_policy("synergai", sc.profile_book, 7) for _ in range(nr)]
        res = simulate_replicas(sc, trace, pols, 7, shared=shared)
        assert len(res.status) == len(trace)
        return {k: v - before[k] for k, v in replicas.COUNTS.items()}

    two = counts(2, None)
    assert two["awaited"] > 0.5 * len(trace) and two["redecided"] >= two["moved"]
    assert counts(2, SharedConfig(redecide_ms=None))["awaited"] == 0
    assert counts(1, None)["awaited"] == 0
