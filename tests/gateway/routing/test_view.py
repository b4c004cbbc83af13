from __future__ import annotations

import math

import pytest

from gateway.prediction.profiles import ProfileBook
from gateway.routing.predict import pool_estimates
from gateway.routing.types import Request, WorkerInfo
from gateway.routing.view import FleetView


def test_serves_and_eligible(view: FleetView) -> None:
    assert view.serves("m") and view.serves("tiny") and not view.serves("nope")
    assert [s.id for s in view.eligible("m", 1)] == ["e0", "e1", "c0"]
    assert [s.id for s in view.eligible("m", 8)] == ["c0"]  # edge max_batch 4
    assert [s.id for s in view.eligible("tiny")] == ["e0", "e1"]


def test_start_finish_local(view: FleetView) -> None:
    r = Request("m", 50.0)
    view.start("e0", r, 10.0, 0.0)
    s = view.state("e0")
    assert (s.out, s.work_ms, s.local_out) == (1.0, 10.0, 1)
    assert s.wait_at(0.0) == pytest.approx(10.0)  # shadow queue: busy until 0.5 + 10 ms
    assert s.wait_at(0.004) == pytest.approx(6.0)
    view.finish("e0", r, 10.0, 11.0, 0.011)
    assert (s.out, s.work_ms) == (0.0, 0.0)


def test_shared_plus_local_delta_then_stale(view: FleetView) -> None:
    s = view.state("c0")
    view.apply_shared("c0", 5, 50.0, observed_at=1.0)
    assert (s.out, s.work_ms) == (5.0, 50.0)
    r = Request("m", 50.0)
    view.start("c0", r, 10.0, 1.1)
    assert (s.out, s.work_ms) == (6.0, 60.0)
    assert not view.stale(2.0)
    view.refresh(3.5)  # 2.5 s after the observation: stale -> local view only
    assert view.stale(3.5)
    assert (s.out, s.work_ms) == (1.0, 10.0)
    row = next(r for r in view.rows(3.5) if r["id"] == "c0")
    assert row["stale"] and row["staleness_s"] == pytest.approx(2.5)


def _best_per_pool(view: FleetView, model: str, batch: int, now: float) -> dict[str, str]:
    """The best available worker of each pool, as the pools' indexes rank them."""
    view.refresh(now)
    out = {}
    for idx in view.indexes(model):
        s = idx.best(now * 1000.0) if batch <= idx.max_batch else None
        if s is not None:
            out[idx.pool] = s.id
    return out


def test_index_best_per_pool(view: FleetView) -> None:
    view.start("e0", Request("m", 50.0), 10.0, 0.0)
    assert _best_per_pool(view, "m", 1, 0.0) == {"edge": "e1", "cloud": "c0"}
    assert _best_per_pool(view, "m", 8, 0.0) == {"cloud": "c0"}


def _edge_best(view: FleetView, now: float) -> str:
    """The edge pool's candidate for ``m`` at ``now``, as every policy reads it."""
    view.advance(now)
    return next(e.state.id for e in pool_estimates(view, "m", 1, now) if e.state.pool == "edge")


def test_index_takes_the_worker_that_frees_first(view: FleetView) -> None:
    """Keys in absolute time: booked at different times, the earlier booking frees first.

    Keyed as of each worker's last change (before), both read ``rtt + one service`` and the
    first position won: e0, which frees 5 ms later.
    """
    view.start("e1", Request("m", 50.0), 10.0, 0.0)
    view.start("e0", Request("m", 50.0), 10.0, 0.005)
    assert _edge_best(view, 0.008) == "e1"


def test_an_answered_free_worker_comes_before_one_that_may_still_run(view: FleetView) -> None:
    """A slot whose request is unanswered is free only by its p99 end; an answered one now."""
    r = Request("m", 50.0)
    view.start("e1", r, 10.0, 0.0)
    view.finish("e1", r, 10.0, 11.0, 0.0115)
    view.start("e0", Request("m", 50.0), 10.0, 0.002)
    # e0's mean end (12.5 ms) has passed, its p99 end has not, no answer yet
    assert _edge_best(view, 0.0135) == "e1"


def test_an_overdue_worker_is_pushed_back(view: FleetView) -> None:
    """Past its p99 end with no answer, a slot reads busy for one more service from now,
    so a worker whose job overran is not taken as free (the exact key's blind spot)."""
    view.start("e0", Request("m", 50.0), 10.0, 0.0)
    view.start("e1", Request("m", 50.0), 10.0, 0.025)
    s0 = view.state("e0")
    assert s0.due < 0.03  # e0's p99 end has passed without an answer
    assert _edge_best(view, 0.03) == "e1"
    assert s0.due > 0.03


def test_failure_ejects_then_recovers(view: FleetView) -> None:
    r = Request("m", 50.0)
    view.start("e0", r, 10.0, 0.0)
    view.finish("e0", r, 10.0, None, 0.1)
    assert not view.state("e0").available(0.5)
    assert set(_best_per_pool(view, "m", 1, 0.5).values()) == {"e1", "c0"}
    view.start("e1", Request("m", 50.0), 10.0, 0.5)  # e1 now worse than e0 once e0 is back
    assert set(_best_per_pool(view, "m", 1, 1.2).values()) == {"e0", "c0"}


def test_unhealthy_gets_nothing(view: FleetView) -> None:
    view.set_healthy("c0", False, 0.0)
    assert list(_best_per_pool(view, "m", 1, 0.0)) == ["edge"]
    view.set_healthy("c0", True, 1.0)
    assert len(_best_per_pool(view, "m", 1, 1.0)) == 2


def test_correction_learns_a_slow_worker(view: FleetView) -> None:
    t = 0.0
    for _ in range(40):
        r = Request("m", 100.0)
        view.start("e0", r, 10.0, t)
        t += 0.03
        view.finish("e0", r, 10.0, 1.0 + 30.0, t)  # 3x the profile's p50 of 10 ms
    c = view.state("e0").correction("m", t)
    assert 2.5 < c < 3.2
    assert view.state("e0").correction("m", t + 60) < 1.2  # decays: trusted again


def test_workers_of_a_pool_share_its_correction(view: FleetView) -> None:
    """e0 and e1 (pool "edge") join one pool correction per model; while e0's samples agree
    with the pool's, e1, which served nothing, predicts with the pool's figure; a worker that
    leaves stops feeding it (gateway.prediction.model, Pooling)."""
    e0, e1, c0 = (view.state(w) for w in ("e0", "e1", "c0"))
    pool = e0.corrections["m"].parent
    assert pool is not None and pool is e1.corrections["m"].parent
    assert c0.corrections["m"].parent is not pool and pool.members == 2
    t = 0.0
    for _ in range(40):  # the whole pool is 2x slower: e0 is the one that serves
        r = Request("m", 100.0)
        view.start("e0", r, 10.0, t)
        t += 0.03
        view.finish("e0", r, 10.0, 1.0 + 20.0, t)
    assert e1.correction("m", t) == pytest.approx(e0.correction("m", t), rel=0.1)
    assert 1.5 < e1.correction("m", t) <= 2.05
    assert c0.correction("m", t) == 1.0
    view.remove_worker("e1")
    assert pool.members == 1


def test_add_remove_worker(view: FleetView, book: ProfileBook) -> None:
    view.add_worker(WorkerInfo("c1", "cloud", "cloud", ("m",), 1, 20.0))
    assert "c1" in [s.id for s in view.eligible("m")]
    view.remove_worker("c1")
    view.remove_worker("e0")
    view.remove_worker("e1")
    assert not view.serves("tiny")
    assert [w.id for w in view.workers()] == ["c0"]


def test_rows_json_ready(view: FleetView) -> None:
    rows = view.rows(0.0)
    assert {
        "id",
        "pool",
        "arch",
        "healthy",
        "outstanding",
        "work_ms",
        "predicted_wait_ms",
        "correction",
        "staleness_s",
    } <= set(rows[0])
    assert rows[0]["correction"] == {"m": 1.0, "tiny": 1.0}
    assert rows[0]["staleness_s"] is None
    assert not math.isnan(rows[0]["work_ms"])


def test_abandon_moves_only_the_in_flight_accounting(view: FleetView) -> None:
    s = view.state("e0")
    r = Request("m", 50.0)
    view.start("e0", r, 10.0, 0.0)
    view.finish("e0", r, 10.0, 11.0, 0.011)  # one success: there is something to keep
    learned = (s.ewma_ms, s.ewma_t, s.fails, s.corrections["m"].samples, s.corrections["m"].g)
    for i in range(20):  # refused at once (a 4xx) or cancelled: the worker ran nothing
        t = 0.02 + i * 0.001
        r = Request("m", 50.0)
        view.start("e0", r, 10.0, t)
        view.abandon("e0", r, 10.0, t + 0.0005)
    assert (s.ewma_ms, s.ewma_t, s.fails, s.corrections["m"].samples, s.corrections["m"].g) == (
        learned
    )
    assert s.available(0.05) and (s.out, s.local_out, s.work_ms) == (0.0, 0, 0.0)
    assert s.wait_at(0.05) == 0.0  # the slot is handed back: no phantom queue
