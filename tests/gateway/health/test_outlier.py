"""Outlier detection: streaks, growing ejections, decay, panic threshold."""

from __future__ import annotations

import pytest

from gateway.health import Outcome, OutlierConfig, OutlierDetector

C, E, T, S, N = Outcome.CONNECT, Outcome.ERROR, Outcome.TIMEOUT, Outcome.SUCCESS, Outcome.NEUTRAL


def _detector(n: int = 4, **cfg: float) -> OutlierDetector:
    d = OutlierDetector(OutlierConfig(**cfg))  # type: ignore[arg-type]
    for i in range(n):
        d.add_worker(f"w{i}", "pool")
    return d


@pytest.mark.parametrize(
    ("outcomes", "ejected"),
    [
        ([C], True),  # a refused connection: at once
        ([E, E], False),
        ([E, E, E], True),
        ([E, T, E], True),  # timeouts count like errors
        ([E, E, S, E, E], False),  # a success clears the streak
        ([E, N, E, N], False),  # a 4xx the request caused counts for nothing
        ([E, N, E, E], True),
    ],
)
def test_streaks(outcomes: list[Outcome], ejected: bool) -> None:
    d = _detector()
    for i, o in enumerate(outcomes):
        d.record("w0", o, float(i))
    assert d.ejected("w0", len(outcomes) - 0.5) is ejected


def test_ejection_grows_with_each_ejection_and_decays() -> None:
    d = _detector(base_ejection_s=1.0, max_ejection_s=2.5, decay_s=10.0)
    v = d.record("w0", C, 0.0)
    assert v is not None and v.ejected and v.until == 1.0
    assert d.expire(0.5) == [] and d.expire(1.0) == ["w0"]
    v = d.record("w0", C, 1.1)  # fails right after returning: twice as long
    assert v is not None and v.until == pytest.approx(3.1)
    d.expire(3.1)
    v = d.record("w0", C, 3.2)
    assert v is not None and v.until == pytest.approx(5.7)  # capped at max_ejection_s
    d.expire(5.7)
    assert d.ejections("w0") == 3
    d.expire(5.7 + 25.0)  # two decay periods without an ejection
    assert d.ejections("w0") == 1
    v = d.record("w0", C, 40.0)  # a third quiet period: forgiven entirely, 1 x base again
    assert v is not None and v.until == pytest.approx(41.0)


def test_late_failures_of_an_ejected_worker_do_not_extend_it() -> None:
    d = _detector()
    d.record("w0", C, 0.0)
    assert d.record("w0", E, 0.5) is None and d.ejected_until("w0") == 1.0


@pytest.mark.parametrize(("n", "ejectable"), [(1, 0), (2, 1), (3, 1), (4, 2), (10, 5)])
def test_panic_threshold_keeps_half_of_a_pool(n: int, ejectable: int) -> None:
    d = _detector(n)
    verdicts = [d.record(f"w{i}", C, 0.0) for i in range(n)]  # a blip hits every worker
    assert sum(1 for v in verdicts if v is not None and v.ejected) == ejectable
    assert d.in_panic("pool")
    assert sum(d.ejected(f"w{i}", 0.0) for i in range(n)) == ejectable


def test_panic_ends_when_the_worker_succeeds() -> None:
    d = _detector(2)
    d.record("w0", C, 0.0)
    v = d.record("w1", C, 0.0)
    assert v is not None and not v.ejected and d.in_panic("pool")
    d.record("w1", S, 0.1)
    assert not d.in_panic("pool")


def test_workers_down_for_other_reasons_count_against_the_threshold() -> None:
    down = {"w1"}
    d = OutlierDetector(OutlierConfig(), down=lambda w: w in down)
    d.add_worker("w0", "p")
    d.add_worker("w1", "p")
    v = d.record("w0", C, 0.0)
    assert v is not None and not v.ejected  # w1 failed its probe: w0 is all that is left
    down.clear()
    v = d.record("w0", C, 0.1)
    assert v is not None and v.ejected


def test_readmit_and_membership() -> None:
    d = _detector(2)
    d.record("w0", C, 0.0)
    assert d.readmit("w0", 0.2) and not d.ejected("w0", 0.2)
    assert not d.readmit("w0", 0.3)
    d.remove_worker("w0")
    assert d.record("w0", C, 1.0) is None and list(d.pools()) == ["pool"]
    d.remove_worker("w1")
    assert list(d.pools()) == []


def test_max_ejection_percent_100_may_eject_everything() -> None:
    d = _detector(2, max_ejection_percent=100.0)
    assert all(d.record(w, C, 0.0).ejected for w in ("w0", "w1"))  # type: ignore[union-attr]
