"""SLO-derived upstream timeouts (gateway.core.timeouts)."""

from __future__ import annotations

import pytest

from gateway.core.timeouts import TimeoutPolicy


@pytest.mark.parametrize(
    ("slo_ms", "want_s"),
    [(50.0, 0.5), (20.0, 0.5), (200.0, 2.0), (1000.0, 10.0), (10_000.0, 30.0)],
)
def test_total_is_ten_slos_between_floor_and_ceiling(slo_ms: float, want_s: float) -> None:
    assert TimeoutPolicy(max_s=30.0, slo_factor=10.0, min_s=0.5).total_s(slo_ms) == want_s


def test_ceiling_wins_over_floor() -> None:
    assert TimeoutPolicy(max_s=0.2, slo_factor=10.0, min_s=0.5).total_s(1.0) == 0.2
