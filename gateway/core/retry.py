"""Retries: which failures may be sent to another worker, and how many retries overload allows.

A request is retried **at most once**, on another worker, and only when that cannot run it
twice:

=====================================  =====================  ==========================
what happened                          model not idempotent   model ``idempotent: true``
=====================================  =====================  ==========================
no connection (refused, connect        retry (``connect``)    retry (``connect``)
timeout): the worker never saw it
the worker answered ``UNAVAILABLE``    retry (``unavailable``) retry (``unavailable``)
(503; Triton: not ready: not run)
reset or another worker fault          no: it may have run    retry (``idempotent``)
(5xx, ``INTERNAL``...) after the
request was written, or no answer
in time
the client's fault (4xx,               no                     no
``INVALID_ARGUMENT``...) or its own
deadline / cancel
=====================================  =====================  ==========================

Which row applies is :func:`gateway.core.calls.outcome_of`'s verdict (the one classification
of :data:`gateway.errors.STATUS_TABLE`), as for health and the routing view.

and only when the SLO still allows it (the service checks that the new worker's predicted
latency fits in what is left of the SLO and of the total timeout) and the
:class:`RetryBudget` has a token. The budget is Finagle's: retries may add at most ``ratio``
of the request rate, plus ``min_per_s`` so a quiet gateway can still retry. Under overload,
when every worker fails, the budget runs dry and retries stop adding load::

    balance <- min(cap, balance + ratio)                   per request
    balance <- min(cap, balance + min_per_s * dt)          as time passes
    a retry needs balance >= 1 and takes 1
"""

from __future__ import annotations

from typing import Literal

from gateway.core.calls import outcome_of
from gateway.core.clock import Clock
from gateway.errors import GatewayError, StatusCode
from gateway.health.outcome import Outcome
from gateway.upstream.base import UpstreamResponse

__all__ = ["RetryBudget", "RetryReason", "retry_reason"]

RetryReason = Literal["connect", "unavailable", "idempotent"]


def retry_reason(outcome: GatewayError | UpstreamResponse, idempotent: bool) -> RetryReason | None:
    """Why a failed attempt may be sent to another worker, or ``None`` if it may not.

    Args:
        outcome: the error the attempt raised, or the worker's (unsuccessful) answer.
        idempotent: the model is marked ``idempotent`` in the gateway config.
    """
    ended = outcome_of(outcome)
    if ended is Outcome.CONNECT:
        return "connect"
    if ended is not Outcome.ERROR and ended is not Outcome.TIMEOUT:
        return None  # a success, or nothing the worker did wrong
    if isinstance(outcome, UpstreamResponse) and outcome.code is StatusCode.UNAVAILABLE:
        return "unavailable"
    return "idempotent" if idempotent else None


class RetryBudget:
    """Token bucket capping retries to ``ratio`` of requests plus ``min_per_s``.

    Args:
        clock: time source (seconds).
        ratio: tokens deposited per request (0.2: retries add at most 20% load).
        min_per_s: tokens added per second regardless of traffic.
        cap: most tokens held (bounds a burst of retries after a quiet spell).
    """

    __slots__ = ("_balance", "_cap", "_clock", "_last", "_min_per_s", "_ratio")

    def __init__(
        self, clock: Clock, ratio: float = 0.2, min_per_s: float = 10.0, cap: float = 100.0
    ) -> None:
        if ratio < 0 or min_per_s < 0 or cap < 1:
            raise ValueError("ratio and min_per_s must be >= 0 and cap >= 1")
        self._clock = clock
        self._ratio = ratio
        self._min_per_s = min_per_s
        self._cap = cap
        self._balance = min(cap, max(1.0, min_per_s))
        self._last = clock.now()

    @property
    def balance(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._balance

    def _refill(self) -> None:
        now = self._clock.now()
        dt = now - self._last
        if dt > 0:
            self._last = now
            self._balance = min(self._cap, self._balance + self._min_per_s * dt)

    def deposit(self) -> None:
        """Count one request (called for every request, retried or not)."""
        b = self._balance + self._ratio
        self._balance = b if b < self._cap else self._cap

    def try_spend(self) -> bool:
        """Take one token for a retry; ``False`` when the budget is exhausted."""
        self._refill()
        if self._balance >= 1.0:
            self._balance -= 1.0
            return True
        return False
