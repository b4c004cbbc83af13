"""Per-policy results of a live replay, in the JSON shape of DESIGN.md §3.

A request is an SLO violation when it was not answered successfully within its ``slo_ms``
measured at the client: late, shed, failed or lost all count, so shedding never wins by itself.
Goodput is requests answered within their SLO per second of trace. Latency percentiles are over
the successful answers (shed and failed requests have no response time to speak of).

Fields beyond the contract (kept, documented here): ``lost`` (part of ``errors``: no answer
before the client's timeout), ``client_lag_p99_ms`` (how late the client itself sent, p99; a
large value means the load generator, not the system, was the bottleneck), and ``workers``
(requests answered per worker, from the ``x-synergai-worker`` header).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from loadtest.client import Arrival, Outcome

__all__ = ["percentile", "summarize", "summarize_group"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation), ``None`` when empty."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def _r(x: float | None, nd: int = 3) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd)


def summarize_group(
    trace: Sequence[Arrival], outcomes: Sequence[Outcome], duration_s: float
) -> dict[str, Any]:
    """Counts, violation rate, goodput and latency percentiles of one group of requests.

    Args:
        trace: the arrivals of the group.
        outcomes: their outcomes, same order.
        duration_s: seconds of trace the group spans (goodput's denominator).
    """
    n = len(trace)
    ok_lat: list[float] = []
    good = shed = errors = lost = 0
    for a, o in zip(trace, outcomes, strict=True):
        if o.status == "ok":
            ok_lat.append(o.latency_ms)
            if o.latency_ms <= a.slo_ms:
                good += 1
        elif o.status == "shed":
            shed += 1
        elif o.status == "lost":
            lost += 1
            errors += 1
        else:
            errors += 1
    violations = n - good
    return {
        "requests": n,
        "ok": len(ok_lat),
        "slo_violations": violations,
        "violation_rate": _r(violations / n if n else 0.0, 4),
        "shed": shed,
        "errors": errors,
        "lost": lost,
        "goodput_rps": _r(good / duration_s if duration_s > 0 else 0.0, 2),
        "p50_ms": _r(percentile(ok_lat, 50)),
        "p99_ms": _r(percentile(ok_lat, 99)),
    }


def summarize(
    trace: Sequence[Arrival],
    outcomes: Sequence[Outcome],
    duration_s: float,
    decision_us_p50: float | None = None,
) -> dict[str, Any]:
    """One policy's entry of ``policies`` in the DESIGN.md §3 JSON.

    Args:
        trace: every arrival replayed.
        outcomes: one per arrival, same order.
        duration_s: the trace's length in seconds.
        decision_us_p50: median routing decision time reported by the gateway, if known.
    """
    if len(trace) != len(outcomes):
        raise ValueError(f"{len(trace)} arrivals but {len(outcomes)} outcomes")
    out = summarize_group(trace, outcomes, duration_s)
    by_prio: dict[int, list[int]] = {}
    for i, a in enumerate(trace):
        by_prio.setdefault(a.priority, []).append(i)
    out["per_priority"] = {
        str(p): summarize_group([trace[i] for i in idx], [outcomes[i] for i in idx], duration_s)
        for p, idx in sorted(by_prio.items())
    }
    out["decision_us_p50"] = _r(decision_us_p50, 2)
    out["client_lag_p99_ms"] = _r(percentile([o.lag_ms for o in outcomes], 99))
    workers = Counter(o.worker for o in outcomes if o.status == "ok" and o.worker)
    out["workers"] = dict(sorted(workers.items()))
    return out
