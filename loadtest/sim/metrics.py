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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gateway.scenario import Scenario
from loadtest.sim.engine import FAILED, OK, SHED, SimResult
from loadtest.sim.trace import Trace

if TYPE_CHECKING:
    from loadtest.sim.runner import ScenarioRun

__all__ = ["summarize", "timeline", "violation_mask", "violations_over_time"]


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


def timeline(run: ScenarioRun, bin_s: float = 1.0, max_latencies: int = 20_000) -> dict[str, Any]:
    """The ``timeline`` input of :func:`loadtest.report.write_html_report` for a simulation.

    Per policy, per ``bin_s`` bin of arrival time: ``requests`` (arrivals), ``violations``
    (late, shed or failed, by arrival time) and ``pool_load`` (requests sent to each pool);
    ``latencies_ms``: client latency of the answered requests, at most ``max_latencies`` of
    them taken evenly over the run (deterministic).
    """
    sc, trace = run.scenario, run.trace
    nbins = max(1, math.ceil(trace.duration_s / bin_s - 1e-9))
    edges = np.arange(nbins + 1, dtype=np.float64) * bin_s
    b = np.clip(np.searchsorted(edges, trace.t, side="right") - 1, 0, nbins - 1)
    pool_of = np.asarray([pi for pi, p in enumerate(sc.pools) for _ in p.worker_ids()], np.int64)
    pools = [p.name for p in sc.pools]
    requests = np.bincount(b, minlength=nbins)
    out: dict[str, Any] = {}
    for name, res in run.results.items():
        viol = violation_mask(sc, trace, res)
        sent = res.worker >= 0
        pool = pool_of[res.worker[sent]]
        load = np.bincount(pool * nbins + b[sent], minlength=len(pools) * nbins)
        lat = res.latency_ms[res.status == OK]
        if lat.size > max_latencies:
            lat = lat[np.linspace(0, lat.size - 1, max_latencies).astype(np.int64)]
        out[name] = {
            "requests": requests.tolist(),
            "violations": np.bincount(b[viol], minlength=nbins).tolist(),
            "latencies_ms": np.round(lat, 3).tolist(),
            "pool_load": {
                p: load[i * nbins : (i + 1) * nbins].tolist() for i, p in enumerate(pools)
            },
        }
    return {"bin_s": bin_s, "policies": out}
