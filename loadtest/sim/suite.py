"""The random benchmark: a dev set to iterate on and a held-out test set, both generated.

``python -m loadtest.sim.suite --split dev --json`` simulates every scenario of a split under
the five standard baselines, ``synergai`` and ``oracle`` and prints per-scenario violation
rates and a summary (``--split test`` for the held-out set; evaluate it only at the end).

Each scenario is :func:`loadtest.sim.randomgen.random_scenario` with a *regime* drawn from its
seed, so the sets cover what the shipped scenarios do not:

* load level ``util`` in {0.3, 0.4, ..., 1.1} of the fair-share capacity (1.0 and above is
  overload, more so with a fault: some violations are unavoidable);
* SLO tightness: the SLO is 1.1-1.8x (tight), 1.3-4x (mixed) or 2-6x (loose) the best idle
  tail latency of the model;
* faults: none, a whole-pool slowdown (40 % or 10 % of the run), one slow worker, a permanent
  drift of one pool, or a crash;
* architectures, models, profiles, pool sizes, arrivals (poisson, constant, bursty, diurnal),
  priorities and categories as the generator draws them.

Splits: ``dev`` uses seeds ``5000 + i``, ``test`` ``7000 + i`` (``i < count``). Rates are
floored at 0.1 % in ratios (:func:`loadtest.sim.randomgen.geomean_ratio`). A scenario counts
as *much worse* when ``synergai > 1.5 x best + 0.5 point``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from gateway.scenario import Scenario
from loadtest.sim.randomgen import BASELINES, geomean_ratio, random_scenario
from loadtest.sim.runner import run_scenario

__all__ = ["SPLITS", "regime", "suite_scenarios", "summarize_rows"]

SPLITS = {"dev": 5000, "test": 7000}
UTILS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)
SLOS = {"tight": (1.1, 1.8), "mixed": (1.3, 4.0), "loose": (2.0, 6.0)}
FAULTS = ("none", "pool_slowdown", "short_slowdown", "worker_slowdown", "drift", "crash")
POLICIES = (*BASELINES, "synergai", "oracle")


def regime(seed: int) -> dict[str, Any]:
    """The load level, SLO tightness and fault kind of the scenario of ``seed``."""
    r = np.random.default_rng([seed, 77])
    return {
        "util": float(r.choice(UTILS)),
        "slo": str(r.choice(list(SLOS))),
        "faults": str(r.choice(FAULTS)),
    }


def suite_scenarios(
    split: str, count: int = 20, duration_s: float = 8.0, max_requests: int = 8000
) -> list[tuple[Scenario, dict[str, Any]]]:
    """The scenarios of a split, each with its regime."""
    out = []
    for i in range(count):
        seed = SPLITS[split] + i
        g = regime(seed)
        sc = random_scenario(
            seed,
            duration_s,
            max_requests,
            util=g["util"],
            slo_range=SLOS[g["slo"]],
            faults=g["faults"],
        )
        out.append((sc, g))
    return out


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary figures of ``synergai`` against the best baseline and the oracle."""
    syn = [r["violation_rate"]["synergai"] for r in rows]
    best = [min(r["violation_rate"][b] for b in BASELINES) for r in rows]
    orc = [r["violation_rate"]["oracle"] for r in rows]
    mean = {
        p: round(sum(r["violation_rate"][p] for r in rows) / len(rows), 5)
        for p in rows[0]["violation_rate"]
    }
    return {
        "count": len(rows),
        "geomean_x_fewer_vs_best_baseline": round(geomean_ratio(syn, best), 3),
        "geomean_x_fewer_vs_oracle": round(geomean_ratio(syn, orc), 3),
        "synergai_le_best_baseline": sum(s <= b for s, b in zip(syn, best, strict=True)),
        "synergai_much_worse": sum(s > 1.5 * b + 0.005 for s, b in zip(syn, best, strict=True)),
        "synergai_within_oracle_bound": sum(
            s <= 1.3 * o + 0.005 for s, o in zip(syn, orc, strict=True)
        ),
        "mean_violation_rate": mean,
        "mean_best_baseline": round(sum(best) / len(best), 5),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.sim.suite")
    ap.add_argument("--split", choices=sorted(SPLITS), default="dev")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--max-requests", type=int, default=8000)
    ap.add_argument(
        "--policy", action="append", help="policies (default: baselines, synergai, oracle)"
    )
    ap.add_argument("--only", type=int, action="append", help="run only these seeds")
    ap.add_argument("--reuse", help="a previous --json output: take other policies' rates from it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    policies = args.policy or list(POLICIES)
    old: dict[str, dict[str, float]] = {}
    if args.reuse:
        with open(args.reuse) as f:
            old = {r["scenario"]: r["violation_rate"] for r in json.load(f)["scenarios"]}
    rows: list[dict[str, Any]] = []
    for sc, g in suite_scenarios(args.split, args.count, args.duration, args.max_requests):
        if args.only and sc.seed not in args.only:
            continue
        run = run_scenario(sc, policies)
        rates = {n: p["violation_rate"] for n, p in run.document["policies"].items()}
        rates = {**old.get(sc.name, {}), **rates}
        rows.append(
            {"scenario": sc.name, "regime": g, "requests": len(run.trace), "violation_rate": rates}
        )
        line = " ".join(f"{n[:8]}={v:.4f}" for n, v in rates.items())
        print(
            f"{sc.name:11s} {g['util']:.2f} {g['slo']:5s} {g['faults']:15s} {line}", file=sys.stderr
        )
    out: dict[str, Any] = {"split": args.split, "scenarios": rows}
    if rows and all(p in rows[0]["violation_rate"] for p in POLICIES):
        out["summary"] = summarize_rows(rows)
    if args.json:
        print(json.dumps(out))
    elif "summary" in out:
        print(json.dumps(out["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
