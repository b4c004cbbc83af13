"""The generated benchmarks: scenario families (``dev``/``test``) and the older random splits.

``python -m loadtest.sim.suite --split dev|test [--family F]... [--count N] [--jobs 2] [--json]``
runs the families' split (:mod:`loadtest.sim.families`: scale, overload, bursts, flapping,
sparse, faults, miscalibrated, mixed; ``--count`` seeds per family, default 30) under the
five baselines, ``synergai`` and ``oracle``, every policy on the same trace, ``--jobs``
scenarios at a time (processes). Progress goes to stderr; the per-family table and the worst
cases (:mod:`loadtest.sim.families.report`) to stdout, or with ``--json`` one JSON document
``{"split", "scenarios": [rows], "summary": {"families", "all"}}`` to stdout and the tables to
stderr. ``--only NAME`` runs named members; ``--dump NAME DIR`` writes one member (and its
profiles) as YAML under ``DIR`` for a closer look (``synergai simulate --scenario``).
``--traces K`` runs every member on ``K`` traces (its own and ``K - 1`` more: other arrivals and
service times on the same fleet) and reports rates pooled over them: judge a change on
``--traces 4`` or more, since on members near a tipping point one trace can move by several
points on a change that only reorders rounding
(:func:`loadtest.sim.families.splits.evaluate`). Develop on ``dev``; run ``test`` once, at the
end.

``--split random-dev|random-test`` runs the older random splits described below (one process,
``--count`` scenarios, default 20).

The random splits: each scenario is :func:`loadtest.sim.randomgen.random_scenario` with a
*regime* drawn from its seed, so the sets cover what the shipped scenarios do not:

* load level ``util`` in {0.3, 0.4, ..., 1.1} of the fair-share capacity (1.0 and above is
  overload, more so with a fault: some violations are unavoidable);
* SLO tightness: the SLO is 1.1-1.8x (tight), 1.3-4x (mixed) or 2-6x (loose) the best idle
  tail latency of the model;
* faults: none, a whole-pool slowdown (40 % or 10 % of the run), one slow worker, a permanent
  drift of one pool, or a crash;
* architectures, models, profiles, pool sizes, arrivals (poisson, constant, bursty, diurnal),
  priorities and categories as the generator draws them.

Random splits: ``random-dev`` uses seeds ``5000 + i``, ``random-test`` ``7000 + i``. Rates are
floored at 0.1 % in ratios (:func:`loadtest.sim.randomgen.geomean_ratio`). A scenario counts
as *much worse* when ``synergai > 1.5 x best + 0.5 point``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.scenario import Scenario
from loadtest.sim.families.build import build_scenario
from loadtest.sim.families.export import write_scenario
from loadtest.sim.families.knobs import FAMILIES
from loadtest.sim.families.report import format_tables, summarize_split
from loadtest.sim.families.splits import PER_FAMILY, evaluate, member, split_members
from loadtest.sim.families.splits import POLICIES as FAMILY_POLICIES
from loadtest.sim.families.splits import SPLITS as FAMILY_SPLITS
from loadtest.sim.randomgen import BASELINES, geomean_ratio, random_scenario
from loadtest.sim.runner import run_scenario

__all__ = ["SPLITS", "main", "regime", "run_members", "suite_scenarios", "summarize_rows"]

SPLITS = {"random-dev": 5000, "random-test": 7000}
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


def _family_task(task: tuple[str, int, tuple[str, ...], int]) -> dict[str, Any]:
    return evaluate(task[0], task[1], task[2], task[3])


def _estimate(task: tuple[str, int]) -> float:
    """Simulated requests of a member, times pools (a cost estimate for scheduling)."""
    d = build_scenario(*task)
    return float(d.info["rate_rps"] * d.scenario.duration_s * (1.0 + 0.01 * d.info["workers"]))


def run_members(
    members: list[tuple[str, int]], policies: tuple[str, ...], jobs: int, traces: int = 1
) -> list[dict[str, Any]]:
    """Evaluate ``members`` on ``traces`` traces each; rows in member order.

    Largest members first, ``jobs`` processes at a time.
    """
    tasks = [(f, s, policies, traces) for f, s in members]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    t0 = time.perf_counter()

    def note(r: dict[str, Any]) -> None:
        rows[(r["family"], r["seed"])] = r
        v = r["violation_rate"]
        pick = " ".join(
            f"{p[:6]} {100 * v[p]:6.2f}%"
            for p in ("profile_static", "synergai", "oracle")
            if p in v
        )
        print(
            f"[{len(rows):4d}/{len(tasks)}] {r['scenario']:22s} {r['requests']:7d} req  {pick}"
            f"  ({r['wall_s']:.1f} s, {time.perf_counter() - t0:.0f} s in all)",
            file=sys.stderr,
            flush=True,
        )

    if jobs <= 1:
        for t in tasks:
            note(_family_task(t))
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            cost = pool.map(_estimate, members, chunksize=4)
            order = sorted(range(len(tasks)), key=lambda i: -cost[i])
            for r in pool.imap_unordered(_family_task, [tasks[i] for i in order]):
                note(r)
    return [rows[m] for m in members]


def _families_main(args: argparse.Namespace) -> int:
    if args.dump:
        name, out = args.dump
        path = write_scenario(member(name).scenario, Path(out))
        print(path)
        return 0
    members = split_members(args.split, args.family or None, args.count or PER_FAMILY)
    if args.only:
        members = [m for m in members if f"{m[0]}-{m[1]}" in args.only]
    policies = tuple(args.policy or FAMILY_POLICIES)
    rows = run_members(members, policies, args.jobs, args.traces)
    doc: dict[str, Any] = {"split": args.split, "traces": args.traces, "scenarios": rows}
    if rows and all(p in policies for p in FAMILY_POLICIES):
        doc["summary"] = summarize_split(rows)
        table = format_tables(rows, doc["summary"], args.top)
        print(table, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(doc))
    return 0


def _random_main(args: argparse.Namespace) -> int:
    policies = args.policy or list(POLICIES)
    old: dict[str, dict[str, float]] = {}
    if args.reuse:
        with open(args.reuse) as f:
            old = {r["scenario"]: r["violation_rate"] for r in json.load(f)["scenarios"]}
    rows: list[dict[str, Any]] = []
    for sc, g in suite_scenarios(args.split, args.count or 20, args.duration, args.max_requests):
        if args.only and sc.name not in args.only and str(sc.seed) not in args.only:
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


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.sim.suite")
    ap.add_argument("--split", choices=[*FAMILY_SPLITS, *SPLITS], default="dev")
    ap.add_argument("--family", action="append", choices=list(FAMILIES))
    ap.add_argument("--count", type=int, help="seeds per family (30), or random scenarios (20)")
    ap.add_argument("--jobs", type=int, default=2, help="scenarios at a time (processes)")
    ap.add_argument("--top", type=int, default=20, help="rows of the worst-cases table")
    ap.add_argument("--dump", nargs=2, metavar=("NAME", "DIR"), help="write one member as YAML")
    ap.add_argument("--duration", type=float, default=8.0, help="random splits only")
    ap.add_argument("--max-requests", type=int, default=8000, help="random splits only")
    ap.add_argument(
        "--policy", action="append", help="policies (default: baselines, synergai, oracle)"
    )
    ap.add_argument("--only", action="append", help="run only these members (names or seeds)")
    ap.add_argument("--reuse", help="random splits: take other policies' rates from this JSON")
    ap.add_argument(
        "--traces",
        type=int,
        default=1,
        help="family splits: traces per member (1: its own; more: pooled rates, see evaluate)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.traces < 1:
        ap.error("--traces must be >= 1")
    if args.split in FAMILY_SPLITS:
        return _families_main(args)
    return _random_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
