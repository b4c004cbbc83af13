"""Filters: keep capacity that tighter traffic needs (SLO protection), weigh the harm of not.

For a request with SLO ``slo`` and a candidate worker ``w`` (pool ``P``), every model ``m'``
that ``w`` serves whose tightest recent SLO ``T_m'`` is *tighter* than ``slo`` has, on an idle
``w``, the slack ``slack = T_m' - rtt - c_m' * p99_m'(1)`` (ms). After this request, ``w``'s
wait is ``after = W + c * mean / k`` (ms: the request spread over the slots, which under
sustained traffic is where the slots go; the next request's own wait would read "idle" on a
multi-slot server until every slot is taken).

* **Covered** (:func:`_covered`): tight requests of ``m'`` go to the least-loaded worker
  of their pool, so loading ``w`` delays none of them while enough *other* slots of ``P``
  (``w``'s own other slots included) are free within the bound in question: the class's
  offered load ``a = rate_P,m' * c * p50_m' / 1000`` (Erlangs; rates per pool,
  :class:`gateway.routing.rates.PoolRates`) with square-root staffing headroom,
  ``a + 2 * sqrt(a) + 1``. Scaling a fleet and its load k times keeps the answer (the
  headroom share even shrinks: pooling).
* :func:`protects_tighter` (a filter for deviations that cost the request nothing): ``w``
  protects ``m'`` if ``after <= BUDGET_FRACTION * slack`` or ``m'`` is covered within that
  budget. ``BUDGET_FRACTION = 0.5``: half of the slack is left for the tight request's own
  service-time tail and for prediction error. (A variant where one other worker within
  budget was enough protected too little on small pools: b6-like bursts 0.8 % -> 1.9 %.)
* :func:`harms_tighter` (which decides a yield, a real cost): unless ``m'`` is covered
  within its whole slack, every ``m'`` request that reaches ``w`` while ``after`` exceeds the
  slack is late; ``w`` sees the pool's rate of ``m'`` over its available workers, so the
  expected count is ``rate_P,m' / n_P * (after - slack) / 1000`` requests. (Judging ``w``
  alone with the model's fleet-wide rate made every busy worker of a large pool look like
  the tight class's last resort: issue 15. With "one other worker within the slack is
  enough", a pool four times larger always had one, and loose 150 ms jobs were let onto
  every worker a 43 ms class needed: overload-1 of the scale sweep went from 6 % violations
  at k = 1 to 38 % at k = 4; with the headroom, 2.4 / 4.2 / 4.9 % at k = 1 / 4 / 16.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.routing.framework import Estimate
from gateway.routing.index import INF, PoolIndex

__all__ = ["BUDGET_FRACTION", "HEADROOM_Z", "harms_tighter", "protects_tighter"]

BUDGET_FRACTION = 0.5
HEADROOM_Z = 2.0
"""Square-root staffing: a class of offered load ``a`` servers keeps ``a + Z * sqrt(a)`` free
(the busy count is about Poisson; ``Z = 2`` is its 97.7 % quantile)."""

RateOf = Callable[[str, str], float]
"""``(pool, model) -> req/s`` into the pool, at the decision's time."""


def _covered(
    idx: PoolIndex, pos: int, s: Any, m: str, wait_ms: float, rate: float, now: float
) -> bool:
    """Enough *other* slots of the pool are free within ``wait_ms`` for class ``m``'s load.

    Its offered load ``a = rate * c * p50 / 1000`` slots (Erlangs), with square-root staffing
    headroom: ``a + HEADROOM_Z * sqrt(a) + 1`` free slots besides the one this request takes
    (the worker's own other slots count: a 4-slot server with three idle slots covers a light
    tight class by itself).
    """
    need = rate * s.cfac[m] * idx.p50_1 / 1000.0
    want = need + HEADROOM_Z * math.sqrt(need) + 1.0
    thr = s.rtt_ms + wait_ms + now * 1000.0  # against bases (absolute: rtt + begin, ms)
    limit = now + (s.rtt_ms * 0.5 + wait_ms) * 0.001  # against slot free times (s)
    got = -1  # this request takes one of its worker's slots
    members = idx.members
    idle = idx.ibases
    for i, b in enumerate(idx.bases):
        if b <= thr or idle[i] != INF or i == pos:
            w = members[i]
            if w is None:
                continue
            for f in w.free:
                if f <= limit:
                    got += 1
            if got >= want:
                return True
    return False


def protects_tighter(
    ests: Sequence[Estimate],
    slo_ms: float,
    tight: Mapping[str, float],
    now: float,
    fraction: float = BUDGET_FRACTION,
    rate_of: RateOf | None = None,
) -> list[Estimate]:
    """The estimates that leave every tighter class's budget intact in their pool.

    With ``rate_of``, a worker whose pool has enough other workers within the budget for the
    tight class's load (:func:`_covered`) protects it whatever its own wait.
    """
    out = []
    for e in ests:
        s = e.state
        after = e.predicted_ms - s.rtt_ms - e.service_ms + e.cost_ms  # W + this request / k
        ok = True
        for idx, pos, m in s.slots:
            t = tight.get(m)
            if t is None or t >= slo_ms:
                continue
            assert isinstance(idx, PoolIndex)
            budget = fraction * (t - s.rtt_ms - s.cfac[m] * idx.p99_1)
            if 0.0 < budget < after and not (
                rate_of is not None and _covered(idx, pos, s, m, budget, rate_of(idx.pool, m), now)
            ):
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
    now: float,
    marginal: bool = False,
    other_than: str = "",
) -> float:
    """Expected tighter requests made late by queueing this request on ``e``'s worker.

    See the module docstring; the largest over the tighter classes is returned (requests,
    dimensionless). An explicit yield of a lower priority passes only the classes above it
    as ``tight`` (``SynergAI.above``). ``marginal``: only the requests late *because of
    this one*, those arriving while its own share of the wait (``cost_ms``) lies above the
    slack: ``min(after - slack, cost)`` instead of ``after - slack`` (a worker already past
    the slack makes the class late without it). ``other_than``: a model whose classes do
    not count (the request's own).
    """
    s = e.state
    after = e.predicted_ms - s.rtt_ms - e.service_ms + e.cost_ms
    worst = 0.0
    for idx, pos, m in s.slots:
        t = tight.get(m)
        if t is None or t >= slo_ms or m == other_than:
            continue
        assert isinstance(idx, PoolIndex)
        slack = t - s.rtt_ms - s.cfac[m] * idx.p99_1
        if 0.0 < slack < after:
            rate = rate_of(idx.pool, m)
            if _covered(idx, pos, s, m, slack, rate, now):
                continue
            n = idx.available()
            over = after - slack
            if marginal and e.cost_ms < over:
                over = e.cost_ms
            h = rate / (n if n > 0 else 1) * over / 1000.0
            worst = h if h > worst else worst
    return worst
