"""Random scenarios: fleets, profiles, rates and SLOs nobody tuned for.

``python -m loadtest.sim.randomgen --count 20 --seed 1`` generates scenarios, simulates each
under every policy, and prints violation rates and the geometric-mean ratios of ``synergai``
against the best standard baseline and the oracle (``--json`` for one JSON document).

A scenario draws (all uniformly unless said): 3-6 architectures, each edge (rtt 0.3-3 ms,
speed factor 1-20x slower) or cloud (rtt 5-40 ms, 0.3-3x); 3-6 models with a batch-1 base
latency log-uniform in 0.3-30 ms; each (arch, model) exists with probability 0.8, its p50 =
base x arch factor x log-normal(0, 0.5) noise (so no arch is fastest for everything) and
p99 / p50 in 1.1-2.5; one pool per arch with 1-6 workers of 1-4 instances. Each model gets a
an SLO of 1.3-4x the best idle tail latency (rtt + p99) any pool offers it, and a rate of
``util`` (30-90 %) times its fair share of the pools where it fits when idle (each such pool's
slots / mean service, divided among the models that fit there).
Arrivals, priorities (0/1) and categories are drawn per stream; half the scenarios get a
slowdown or a pool drift, a third a crash.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import numpy as np

from gateway.prediction.profiles import ArchInfo, LatencyPoint, Profile, ProfileBook
from gateway.scenario import Scenario
from loadtest.sim.runner import run_scenario

__all__ = ["BASELINES", "geomean_ratio", "random_scenario"]

BASELINES = ("round_robin", "least_outstanding", "p2c", "peak_ewma", "profile_static")


def _profiles(rng: np.random.Generator) -> tuple[ProfileBook, list[str], list[str]]:
    n_arch, n_model = int(rng.integers(3, 7)), int(rng.integers(3, 7))
    archs, info = [], {}
    kinds = ["edge", "cloud"] + [str(rng.choice(["edge", "cloud"])) for _ in range(n_arch - 2)]
    for i, kind in enumerate(kinds):
        name = f"{kind}{i}"
        rtt = float(rng.uniform(0.3, 3.0) if kind == "edge" else rng.uniform(5.0, 40.0))
        info[name] = ArchInfo("edge" if kind == "edge" else "cloud", round(rtt, 2))
        archs.append(name)
    factor = {
        a: float(rng.uniform(1.0, 20.0) if info[a].kind == "edge" else rng.uniform(0.3, 3.0))
        for a in archs
    }
    models = [f"m{j}" for j in range(n_model)]
    base = {m: float(math.exp(rng.uniform(math.log(0.3), math.log(30.0)))) for m in models}
    profs = {}
    for a in archs:
        for m in models:
            if rng.random() > 0.8:
                continue
            p50 = base[m] * factor[a] * float(math.exp(rng.normal(0.0, 0.5)))
            ratio = float(rng.uniform(1.1, 2.5))
            pts = (LatencyPoint(1, p50, p50 * ratio), LatencyPoint(8, 4 * p50, 4 * p50 * ratio))
            profs[(a, m)] = Profile(a, m, 8, pts)
    return ProfileBook(profs, info), archs, models


def _prof(book: ProfileBook, arch: str, model: str) -> Profile:
    p = book.get(arch, model)
    assert p is not None
    return p


def random_scenario(
    seed: int,
    duration_s: float = 10.0,
    max_requests: int = 40000,
    *,
    util: float | None = None,
    slo_range: tuple[float, float] = (1.3, 4.0),
    faults: str | None = None,
) -> Scenario:
    """A random, valid scenario with its own in-memory profiles (see the module docstring).

    The duration is shortened (not below 2 s) so that about ``max_requests`` arrive at most.

    Args:
        seed: seeds every draw.
        duration_s: wanted duration (s) before the ``max_requests`` cap.
        max_requests: cap on the expected number of arrivals.
        util: load level (fraction of the fair-share capacity); None draws 0.3-0.9.
        slo_range: SLO as a multiple of the best idle tail, drawn uniformly in this range.
        faults: None draws as described in the module docstring; otherwise one of ``none``,
            ``pool_slowdown`` (whole pool, 40 % of the run), ``short_slowdown`` (whole pool,
            10 % of the run), ``worker_slowdown`` (one worker), ``drift`` (the pool's speed
            steps up for good at 40 %), ``crash`` (one worker, 20 % of the run).
    """
    rng = np.random.default_rng(seed)
    book, archs, models = _profiles(rng)
    pools: list[dict[str, Any]] = []
    for a in archs:
        served = [m for m in models if book.get(a, m) is not None]
        if not served:
            continue
        k = int(rng.integers(1, len(served) + 1))
        pools.append(
            {
                "name": f"pool-{a}",
                "arch": a,
                "workers": int(rng.integers(1, 7)),
                "instances": int(rng.integers(1, 5)),
                "rtt_ms": book.archs[a].rtt_ms,
                "models": sorted(rng.choice(served, size=k, replace=False).tolist()),
            }
        )
    served_by = {m: [p for p in pools if m in p["models"]] for m in models}
    live = [m for m in models if served_by[m]]
    slo = {}
    for m in live:
        tails = [p["rtt_ms"] + _prof(book, p["arch"], m).p99(1) for p in served_by[m]]
        slo[m] = round(min(tails) * float(rng.uniform(*slo_range)), 3)
    fit = {
        m: [p for p in served_by[m] if p["rtt_ms"] + _prof(book, p["arch"], m).p99(1) <= slo[m]]
        for m in live
    }
    sharing = {p["name"]: sum(p in fit[m] for m in live) for p in pools}
    drawn_util = float(rng.uniform(0.3, 0.9))
    util = drawn_util if util is None else util
    workload = []
    for m in live:
        # a fair share of every pool where the model fits when idle, at utilisation `util`
        cap = sum(
            p["workers"]
            * p["instances"]
            * 1000.0
            / _prof(book, p["arch"], m).mean(1)
            / sharing[p["name"]]
            for p in fit[m]
        )
        arrival = str(rng.choice(["poisson", "poisson", "constant", "bursty", "diurnal"]))
        w: dict[str, Any] = {
            "model": m,
            "rate_rps": max(util * cap, 0.5),
            "arrival": arrival,
            "slo_ms": slo[m],
            "priority": int(rng.integers(0, 2)),
            "category": str(rng.choice(["latency", "frequency"])),
        }
        if arrival == "bursty":
            w["burst"] = {"on_s": 1.0, "off_s": 3.0, "factor": float(rng.uniform(1.5, 3.0))}
            w["rate_rps"] /= 1.0 + (w["burst"]["factor"] - 1.0) / 4.0
        if arrival == "diurnal":
            w["period_s"] = duration_s / 2.0
        workload.append(w)
    total = sum(w["rate_rps"] for w in workload)
    if total * duration_s > max_requests:
        duration_s = max(2.0, max_requests / total)
        for w in workload:
            if "period_s" in w:
                w["period_s"] = duration_s / 2.0
    fault_list: list[dict[str, Any]] = []
    victim = pools[int(rng.integers(len(pools)))]
    slow_draw = float(rng.random())  # draw order kept: seeds reproduce older tables
    needs_factor = slow_draw < 0.5 if faults is None else faults not in ("none", "crash")
    slow_factor = float(rng.uniform(1.5, 4.0)) if needs_factor else 1.0
    crash_draw = float(rng.random())
    if faults is None:
        kinds = (["pool_slowdown"] if slow_draw < 0.5 else []) + (
            ["crash"] if crash_draw < 0.33 else []
        )
    else:
        kinds = [] if faults == "none" else [faults]
    d = duration_s
    for kind in kinds:
        if kind in ("pool_slowdown", "short_slowdown", "worker_slowdown"):
            f: dict[str, Any] = {
                "at_s": d * 0.3,
                "pool": victim["name"],
                "kind": "slowdown",
                "factor": slow_factor,
                "for_s": d * (0.1 if kind == "short_slowdown" else 0.4),
            }
            if kind == "worker_slowdown":
                f["worker"] = 0
            fault_list.append(f)
        elif kind == "crash":
            fault_list.append(
                {
                    "at_s": d * 0.5,
                    "pool": victim["name"],
                    "worker": 0,
                    "kind": "crash",
                    "for_s": d * 0.2,
                }
            )
        elif kind == "drift":
            victim["speed"] = [
                {"at_s": 0.0, "factor": 1.0},
                {"at_s": d * 0.4, "factor": slow_factor},
            ]
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
    raw = {
        "name": f"random-{seed}",
        "duration_s": duration_s,
        "seed": seed,
        "pools": pools,
        "workload": workload,
        "faults": fault_list,
    }
    return Scenario.model_validate(raw).with_profiles(book)


def geomean_ratio(num: list[float], den: list[float], floor: float = 1e-3) -> float:
    """Geometric mean of ``den / num`` with both floored at ``floor`` (0.1 % violations)."""
    logs = [math.log(max(d, floor) / max(n, floor)) for n, d in zip(num, den, strict=True)]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.sim.randomgen")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for k in range(args.count):
        sc = random_scenario(args.seed * 1000 + k, args.duration)
        run = run_scenario(sc, clock_ns=time.perf_counter_ns)
        rates = {n: p["violation_rate"] for n, p in run.document["policies"].items()}
        rows.append({"scenario": sc.name, "requests": len(run.trace), "violation_rate": rates})
        best_k = min(rates[b] for b in BASELINES)
        print(
            f"{sc.name:12s} n={len(run.trace):6d} synergai {rates['synergai']:.4f} "
            f"best baseline {best_k:.4f} oracle {rates['oracle']:.4f}",
            file=sys.stderr,
        )
    syn = [r["violation_rate"]["synergai"] for r in rows]
    best = [min(r["violation_rate"][b] for b in BASELINES) for r in rows]
    orc = [r["violation_rate"]["oracle"] for r in rows]
    summary = {
        "count": len(rows),
        "geomean_x_fewer_vs_best_baseline": round(geomean_ratio(syn, best), 3),
        "geomean_x_fewer_vs_oracle": round(geomean_ratio(syn, orc), 3),
        "synergai_le_best_baseline": sum(s <= b for s, b in zip(syn, best, strict=True)),
        "synergai_within_oracle_bound": sum(
            s <= 1.3 * o + 0.005 for s, o in zip(syn, orc, strict=True)
        ),
    }
    if args.json:
        print(json.dumps({"scenarios": rows, "summary": summary}))
    else:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
