"""The *no worse at scale* sweep: every policy on a fleet replicated k = 1, 4, 16, 50 times.

``python -m loadtest.sim.scale_sweep [--k 1 4 16 50] [--scenario F]... [--duration S]
[--policy P]... [--k-ref 16] [--jobs 2] [--json]``

Each scenario's fleet and rates are multiplied by ``k``
(:func:`loadtest.sim.families.replicate`): same per-server load, ``k`` times bigger pools.
A policy fails the sweep on a scenario when its violation rate at some ``k`` exceeds
``1.2 x`` (rate at ``k = 1``) ``+ 0.5`` point; rates at small ``k`` are pooled over several
trace seeds (:func:`loadtest.sim.families.invariants.scale_rates`: ``ceil(k_ref / k)``).

Default scenarios: :data:`SWEEP`, five small generated fleets (3-10 servers, 50-250 req/s,
6 s), one per family it borrows ranges from, so ``k = 50`` is 150-500 servers and up to
12,500 req/s. ``--scenario`` sweeps scenario files instead (``--duration`` shortens them).
Prints a table (scenario, policy, rate per ``k``, verdict); ``--json`` one JSON document
``{"mode": "scale_sweep", "ks": [...], "scenarios": [{"scenario", "workers", "rate_rps",
"rates": {policy: {k: rate}}, "worse": [policies]}]}`` on stdout (tables on stderr).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import replace
from typing import Any

from gateway.scenario import Scenario, load_scenario
from loadtest.sim.families import FAMILIES, POLICIES, build_scenario
from loadtest.sim.families.invariants import scale_rates, worse_at_scale

__all__ = ["SWEEP", "main", "sweep_scenarios"]

SWEEP = (("scale", 3), ("overload", 1), ("flapping", 2), ("sparse", 4), ("faults", 5))
"""(family, seed) of the default sweep; ranges shrunk by :func:`sweep_scenarios`."""


def sweep_scenarios() -> list[Scenario]:
    """The default sweep: :data:`SWEEP` members drawn with 3-10 servers, 50-250 req/s, 6 s."""
    out = []
    for fam, seed in SWEEP:
        kn = replace(
            FAMILIES[fam],
            fleet=(3, 10),
            pools=(2, 4),
            rate=(50.0, 250.0),
            max_requests=1500,
            duration=(6.0, 6.0),
        )
        out.append(build_scenario(fam, seed, kn).scenario)
    return out


def _one(task: tuple[Scenario, tuple[int, ...], tuple[str, ...], int]) -> dict[str, Any]:
    sc, ks, policies, k_ref = task
    t0 = time.perf_counter()
    rates = scale_rates(sc, ks, policies, k_ref=k_ref)
    worse = [
        p for p in policies if any(worse_at_scale(rates[p][ks[0]], r) for r in rates[p].values())
    ]
    return {
        "scenario": sc.name,
        "workers": sum(p.workers for p in sc.pools),
        "rate_rps": round(sum(w.rate_rps for w in sc.workload), 1),
        "rates": {p: {str(k): round(v, 5) for k, v in r.items()} for p, r in rates.items()},
        "worse": worse,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _table(doc: dict[str, Any]) -> str:
    ks = doc["ks"]
    head = f"{'scenario':16s} {'policy':18s} " + " ".join(f"{'k=' + str(k):>8s}" for k in ks)
    lines = [head + "  verdict"]
    for s in doc["scenarios"]:
        for p, r in s["rates"].items():
            cells = " ".join(f"{100 * r[str(k)]:7.2f}%" for k in ks)
            verdict = "WORSE AT SCALE" if p in s["worse"] else "ok"
            lines.append(f"{s['scenario']:16s} {p:18s} {cells}  {verdict}")
    n = sum(len(s["worse"]) for s in doc["scenarios"])
    lines.append(f"{n} (scenario, policy) pairs worse at scale than 1.2x + 0.5 point of k = 1")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m loadtest.sim.scale_sweep")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 50])
    ap.add_argument("--scenario", action="append", help="scenario files (default: SWEEP)")
    ap.add_argument("--duration", type=float, help="shorten the scenarios to this (s)")
    ap.add_argument("--policy", action="append", help="policies (default: all seven)")
    ap.add_argument("--k-ref", type=int, default=16, help="pool ceil(k_ref / k) seeds per k")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    scs = [load_scenario(f) for f in args.scenario] if args.scenario else sweep_scenarios()
    if args.duration:
        scs = [
            s.model_copy(update={"duration_s": min(s.duration_s, args.duration)}).with_profiles(
                s.profile_book
            )
            for s in scs
        ]
    ks = tuple(sorted(set(args.k)))
    tasks = [(s, ks, tuple(args.policy or POLICIES), args.k_ref) for s in scs]
    rows: list[dict[str, Any]] = []
    if args.jobs <= 1:
        rows = [_one(t) for t in tasks]
    else:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            for r in pool.imap(_one, tasks):
                print(f"{r['scenario']}: {r['wall_s']} s, worse: {r['worse']}", file=sys.stderr)
                rows.append(r)
    doc = {"mode": "scale_sweep", "ks": list(ks), "scenarios": rows}
    print(_table(doc), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
