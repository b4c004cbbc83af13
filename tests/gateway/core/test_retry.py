"""Retry safety rules and the retry budget (gateway.core.retry)."""

from __future__ import annotations

import pytest

from gateway.core.clock import ManualClock
from gateway.core.retry import RetryBudget, retry_reason
from gateway.errors import (
    BadRequest,
    GatewayError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.upstream.base import UpstreamResponse


def _resp(status: int) -> UpstreamResponse:
    return UpstreamResponse.from_http(status, b"")


@pytest.mark.parametrize(
    ("outcome", "idempotent", "want"),
    [
        (UpstreamConnectError("refused"), False, "connect"),
        (UpstreamConnectError("refused"), True, "connect"),
        (_resp(503), False, "unavailable"),
        (UpstreamError("reset after write"), False, None),
        (UpstreamError("reset after write"), True, "idempotent"),
        (UpstreamTimeout("slow"), False, None),
        (UpstreamTimeout("slow"), True, "idempotent"),
        (_resp(500), False, None),
        (_resp(500), True, "idempotent"),
        (_resp(400), True, None),
        (_resp(404), False, None),
        (_resp(200), True, None),
        (BadRequest("x"), True, None),
    ],
)
def test_retry_reason(
    outcome: GatewayError | UpstreamResponse, idempotent: bool, want: str | None
) -> None:
    assert retry_reason(outcome, idempotent) == want


def test_budget_caps_retries_to_a_share_of_requests() -> None:
    clock = ManualClock(0.0)
    budget = RetryBudget(clock, ratio=0.1, min_per_s=0.0, cap=100.0)
    assert budget.try_spend()  # the initial token
    spent = 0
    for _ in range(1000):  # every request fails: the budget allows ~10% retries, no more
        budget.deposit()
        spent += budget.try_spend()
    assert 95 <= spent <= 101


def test_budget_refills_with_time_for_a_quiet_gateway() -> None:
    clock = ManualClock(0.0)
    budget = RetryBudget(clock, ratio=0.0, min_per_s=2.0, cap=4.0)
    while budget.try_spend():
        pass
    assert not budget.try_spend()
    clock.advance(0.5)
    assert budget.try_spend() and not budget.try_spend()
    clock.advance(60.0)  # capped: at most `cap` retries in a burst
    assert sum(budget.try_spend() for _ in range(10)) == 4


def test_budget_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryBudget(ManualClock(), ratio=-1.0)
