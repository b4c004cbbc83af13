"""Filter: keep capacity that tighter traffic needs (SLO protection).

For a request with SLO ``slo`` and a candidate worker ``w``, every model ``m'`` that ``w``
serves and whose tightest recent SLO ``T_m'`` is *tighter* than ``slo`` is protected: after
this request is queued, ``w``'s wait must stay within ``BUDGET_FRACTION`` of the slack the
tight traffic has on an idle ``w``::

    W + c * mean / k <= BUDGET_FRACTION * (T_m' - rtt - c_m' * p99_m'(1))    (ms)

(only for ``m'`` whose tight requests fit an idle ``w`` at all: positive slack). Loose work
may thus use a fast, close worker only while that worker stays fast for the requests that
have no other choice. ``BUDGET_FRACTION = 0.5``: half of the slack is left for the tight
request's own service-time tail and for prediction error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.routing.framework import Estimate

__all__ = ["BUDGET_FRACTION", "harms_tighter", "protects_tighter"]

BUDGET_FRACTION = 0.5


def protects_tighter(
    ests: Sequence[Estimate],
    slo_ms: float,
    tight: Mapping[str, float],
    now: float,
    fraction: float = BUDGET_FRACTION,
) -> list[Estimate]:
    """The estimates that leave every tighter class's budget intact on their worker."""
    out = []
    for e in ests:
        s = e.state
        after = e.predicted_ms - s.rtt_ms - e.service_ms + e.cost_ms  # wait + this request/k
        ok = True
        for idx, _, m in s.slots:
            t = tight.get(m)
            if t is None or t >= slo_ms:
                continue
            slack = t - s.rtt_ms - s.cfac[m] * idx.p99_1  # type: ignore[attr-defined]
            if slack > 0.0 and after > fraction * slack:
                ok = False
                break
        if ok:
            out.append(e)
    return out


def harms_tighter(
    e: Estimate, slo_ms: float, tight: Mapping[str, float], rates: Mapping[str, float]
) -> float:
    """Expected tighter requests made late by queueing this request on ``e``'s worker.

    For each tighter class ``m'`` served by the worker, the wait after this request exceeds
    the class's whole idle slack by ``x = W + c * mean / k - slack`` (ms); while it does, every
    ``m'`` request routed there is late. The worker is its pool's best, where the next ``m'``
    request goes, so the expected count is ``rate_m' * x / 1000`` (``rate`` in req/s); the
    largest over the tighter classes is returned (requests, dimensionless).
    """
    s = e.state
    after = e.predicted_ms - s.rtt_ms - e.service_ms + e.cost_ms
    worst = 0.0
    for idx, _, m in s.slots:
        t = tight.get(m)
        if t is None or t >= slo_ms:
            continue
        slack = t - s.rtt_ms - s.cfac[m] * idx.p99_1  # type: ignore[attr-defined]
        if slack > 0.0 and after > slack:
            h = rates.get(m, 0.0) * (after - slack) / 1000.0
            worst = h if h > worst else worst
    return worst
