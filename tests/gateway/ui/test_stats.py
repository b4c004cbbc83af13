from __future__ import annotations

import pytest

from gateway.ui.stats import ANY_PRIORITY, CounterSample, PoolLatency, StatsHistory


def sample(n: float, reset: bool = False) -> CounterSample:
    k = 1.0 if reset else n
    return CounterSample(
        requests={("m", ANY_PRIORITY): 10.0 * k},
        violations={("m", "0"): 1.0 * k, ("m", "1"): 0.5 * k},
        pools={"edge": PoolLatency(10.0 * k, 200.0 * k, 10.0 * k, 12.5 * k)},
    )


def test_fewer_than_two_samples_give_empty_series() -> None:
    h = StatsHistory()
    out = h.to_json(0.0)
    assert out["available"] and out["t"] == [] and out["requests_rps"] == {}
    h.add(0.0, sample(1))
    assert h.to_json(0.0)["t"] == []


def test_rates_per_interval_and_labels() -> None:
    h = StatsHistory()
    for i in range(4):
        h.add(2.0 * i, sample(i))
    out = h.to_json(6.0)
    assert out["t"] == [-4.0, -2.0, 0.0]
    assert out["requests_rps"] == {"m": [5.0, 5.0, 5.0]}
    assert out["violations_rps"] == {"m p0": [0.5] * 3, "m p1": [0.25] * 3}
    # 20 ms mean actual, mean ratio actual/predicted 1.25 -> predicted 16 ms.
    assert out["pool_series"]["edge"] == {"actual_ms": [20.0] * 3, "predicted_ms": [16.0] * 3}
    assert out["pools"]["edge"] == {
        "actual_ms": 20.0,
        "predicted_ms": 16.0,
        "ratio": 1.25,
        "count": 30.0,
    }


def test_recent_rows_divide_violations_by_model_rate_when_priority_unknown() -> None:
    h = StatsHistory()
    for i in range(4):
        h.add(2.0 * i, sample(i))
    rows = {(r["model"], r["priority"]): r for r in h.to_json(6.0)["recent"]["rows"]}
    assert rows[("m", ANY_PRIORITY)] == {
        "model": "m",
        "priority": ANY_PRIORITY,
        "rps": 5.0,
        "violations_rps": 0.75,  # all priorities of the model
        "violation_rate": 0.15,
    }
    assert rows[("m", "0")]["violation_rate"] == pytest.approx(0.1)
    assert rows[("m", "1")]["violation_rate"] == pytest.approx(0.05)
    assert rows[("m", "0")]["rps"] is None


def test_recent_window_uses_samples_within_recent_s() -> None:
    h = StatsHistory(window_s=600.0)
    h.add(0.0, sample(0))
    h.add(100.0, sample(100))  # 10 req/s over the first 100 s
    h.add(101.0, sample(150))  # then a burst: 500 req/s
    out = h.to_json(101.0, recent_s=60.0)
    assert out["recent"]["seconds"] == 1.0
    assert out["recent"]["rows"][0]["rps"] == 500.0
    out = h.to_json(101.0, recent_s=200.0)
    assert out["recent"]["seconds"] == 101.0


@pytest.mark.parametrize(
    ("times", "kept"),
    [([0.0, 0.5, 1.0, 1.2, 2.5], [True, False, True, False, True])],
)
def test_min_interval_drops_samples(times: list[float], kept: list[bool]) -> None:
    h = StatsHistory(min_interval_s=1.0)
    assert [h.add(t, sample(t)) for t in times] == kept


def test_window_evicts_old_samples() -> None:
    h = StatsHistory(window_s=10.0)
    for t in range(0, 30, 2):
        h.add(float(t), sample(t))
    assert len(h) == 6  # 18..28


def test_counter_reset_is_a_restart_not_a_negative_rate() -> None:
    h = StatsHistory()
    h.add(0.0, sample(5))
    h.add(1.0, sample(0, reset=True))
    assert h.to_json(1.0)["requests_rps"]["m"] == [10.0]


def test_series_appearing_later_are_padded_with_null() -> None:
    h = StatsHistory()
    h.add(0.0, CounterSample())
    h.add(1.0, CounterSample(requests={("a", ANY_PRIORITY): 1.0}))
    h.add(2.0, CounterSample(requests={("a", ANY_PRIORITY): 2.0, ("b", ANY_PRIORITY): 4.0}))
    out = h.to_json(2.0)
    assert out["requests_rps"] == {"a": [1.0, 1.0], "b": [None, 4.0]}


def test_pool_without_traffic_has_null_means() -> None:
    h = StatsHistory()
    h.add(0.0, CounterSample(pools={"p": PoolLatency(5, 50, 5, 5)}))
    h.add(1.0, CounterSample(pools={"p": PoolLatency(5, 50, 5, 5)}))
    pool = h.to_json(1.0)["pools"]["p"]
    assert pool["actual_ms"] is None and pool["predicted_ms"] is None and pool["count"] == 0
