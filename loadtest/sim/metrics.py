"""Turn per-request outcomes into the policy results of DESIGN.md §3.

Definitions (per policy; ``requests`` = arrivals in the trace):

* ``ok``: answered successfully (in time or late); ``shed``: refused by the policy;
  ``errors``: failed (crash, refused by a down server).
* ``slo_violations``: not answered successfully within ``slo_ms`` = late + shed + errors;
  ``violation_rate`` = violations / requests.
* ``goodput_rps``: requests answered within SLO per second of the scenario.
* ``p50_ms``, ``p99_ms``: client latency of the successful answers.
* ``per_priority``: the same counts per request priority.
* ``decision_us_p50``: median wall time of one ``policy.choose`` call (sampled), in µs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.scenario import Scenario
from loadtest.sim.engine import FAILED, OK, SHED, SimResult
from loadtest.sim.trace import Trace

__all__ = ["summarize", "violation_mask", "violations_over_time"]


def _r(x: float, nd: int = 3) -> float | None:
    return round(float(x), nd) if math.isfinite(x) else None


def violation_mask(scenario: Scenario, trace: Trace, res: SimResult) -> npt.NDArray[np.bool_]:
    """True where a request violated its SLO."""
    slo = np.asarray([w.slo_ms for w in scenario.workload])[trace.stream]
    bad: npt.NDArray[np.bool_] = (res.status != OK) | ~(res.latency_ms <= slo)
    return bad


def _counts(
    mask: npt.NDArray[np.bool_], res: SimResult, viol: npt.NDArray[np.bool_], dur: float
) -> dict[str, Any]:
    n = int(mask.sum())
    lat = res.latency_ms[mask & (res.status == OK)]
    v = int(viol[mask].sum())
    return {
        "requests": n,
        "ok": int((res.status[mask] == OK).sum()),
        "slo_violations": v,
        "violation_rate": round(v / n, 5) if n else 0.0,
        "shed": int((res.status[mask] == SHED).sum()),
        "errors": int((res.status[mask] == FAILED).sum()),
        "goodput_rps": round((n - v) / dur, 3),
        "p50_ms": _r(float(np.percentile(lat, 50))) if lat.size else None,
        "p99_ms": _r(float(np.percentile(lat, 99))) if lat.size else None,
    }


def summarize(scenario: Scenario, trace: Trace, res: SimResult) -> dict[str, Any]:
    """One policy's entry of the ``policies`` object (DESIGN.md §3)."""
    viol = violation_mask(scenario, trace, res)
    everything = np.ones(len(trace), dtype=bool)
    out = _counts(everything, res, viol, trace.duration_s)
    prio = np.asarray([w.priority for w in scenario.workload])[trace.stream]
    out["per_priority"] = {
        str(p): _counts(prio == p, res, viol, trace.duration_s) for p in sorted(set(prio.tolist()))
    }
    d = res.decision_ns
    out["decision_us_p50"] = _r(float(np.median(d)) / 1000.0, 2) if d.size else None
    return out


def violations_over_time(
    scenario: Scenario, trace: Trace, res: SimResult, bins: int = 60
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Violation rate per time bin: ``(bin starts in s, rates)``."""
    viol = violation_mask(scenario, trace, res)
    edges = np.linspace(0.0, trace.duration_s, bins + 1)
    total, _ = np.histogram(trace.t, edges)
    bad, _ = np.histogram(trace.t[viol], edges)
    return edges[:-1], np.divide(bad, np.maximum(total, 1)).astype(np.float64)
