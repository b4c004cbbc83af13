"""Filters: keep capacity that tighter traffic needs (SLO protection), weigh the harm of not.

For a request with SLO ``slo`` and a candidate worker ``w`` (pool ``P``), every model ``m'``
that ``w`` serves whose tightest recent SLO ``T_m'`` is *tighter* than ``slo`` has, on an idle
``w``, the slack ``slack = T_m' - rtt - c_m' * p99_m'(1)`` (ms). After this request, ``w``'s
wait is ``after = W + c * mean / k`` (ms).

* :func:`protects_tighter` (a filter for deviations that cost the request nothing): ``w``
  protects ``m'`` if ``after <= BUDGET_FRACTION * slack``. ``BUDGET_FRACTION = 0.5``: half of
  the slack is left for the tight request's own service-time tail and for prediction error.
  Judged on ``w`` alone, deliberately: a pool-aware variant (another worker of the pool within
  budget is enough) protected too little on small pools (b6-like bursts: 0.8 % -> 1.9 %).
* :func:`harms_tighter` (which decides a yield, a real cost): pool-aware. Tight requests of
  ``m'`` go to the least-loaded worker of their pool, so loading ``w`` makes none of them
  late while *another* available worker of ``P`` is still within the slack; only when none is
  does ``w``'s own wait count. While ``after`` exceeds the whole slack, every ``m'`` request
  that reaches ``w`` is late; ``w`` sees the pool's rate of ``m'`` over its available workers
  (:class:`gateway.routing.rates.PoolRates`), so the expected count is
  ``rate_P,m' / n_P * (after - slack) / 1000`` requests. (Judging ``w`` alone with the
  model's fleet-wide rate made every busy worker of a large pool look like the tight class's
  last resort: issue 15.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gateway.routing.framework import Estimate
from gateway.routing.index import INF, PoolIndex

__all__ = ["BUDGET_FRACTION", "harms_tighter", "protects_tighter"]

BUDGET_FRACTION = 0.5

RateOf = Callable[[str, str], float]
"""``(pool, model) -> req/s`` into the pool, at the decision's time."""


def _other_within(idx: PoolIndex, pos: int, wait_ms: float, rtt_ms: float) -> bool:
    """Another available worker of ``idx``'s pool waits at most ``wait_ms``."""
    thr = rtt_ms + wait_ms
    bases = idx.bases
    n = 0
    for b in bases:
        if b <= thr:
            n += 1
            if n > 1:
                return True
    return n == 1 and bases[pos] > thr


def protects_tighter(
    ests: Sequence[Estimate],
    slo_ms: float,
    tight: Mapping[str, float],
    now: float,
    fraction: float = BUDGET_FRACTION,
) -> list[Estimate]:
    """The estimates that leave every tighter class's budget intact in their pool."""
    out = []
    for e in ests:
        s = e.state
        after = e.predicted_ms - s.rtt_ms - e.service_ms + e.cost_ms  # wait + this request/k
        ok = True
        for idx, _pos, m in s.slots:
            t = tight.get(m)
            if t is None or t >= slo_ms:
                continue
            assert isinstance(idx, PoolIndex)
            budget = fraction * (t - s.rtt_ms - s.cfac[m] * idx.p99_1)
            if 0.0 < budget < after:
                ok = False
                break
        if ok:
            out.append(e)
    return out


def harms_tighter(
    e: Estimate,
    slo_ms: float,
    tight: Mapping[str, float],
    rate_of: RateOf,
    priority: Mapping[str, int] | None = None,
    above: int = -1,
) -> float:
    """Expected tighter requests made late by queueing this request on ``e``'s worker.

    See the module docstring; the largest over the tighter classes is returned (requests,
    dimensionless). With ``priority``, only classes of priority above ``above`` count (an
    explicit yield of a lower priority).
    """
    s = e.state
    after = e.predicted_ms - s.rtt_ms - e.service_ms + e.cost_ms
    worst = 0.0
    for idx, pos, m in s.slots:
        t = tight.get(m)
        if t is None or t >= slo_ms:
            continue
        if priority is not None and priority.get(m, 0) <= above:
            continue
        assert isinstance(idx, PoolIndex)
        slack = t - s.rtt_ms - s.cfac[m] * idx.p99_1
        if 0.0 < slack < after and not _other_within(idx, pos, slack, s.rtt_ms):
            n = sum(1 for k in idx.keys if k != INF)
            h = rate_of(idx.pool, m) / (n if n > 0 else 1) * (after - slack) / 1000.0
            worst = h if h > worst else worst
    return worst
