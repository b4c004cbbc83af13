"""Run wild scenarios under several policies on the same traces; rows, summary and table.

Trace ``i`` of a scenario uses seed ``scenario seed + 1000 i`` (``i = 0``: the scenario's
own), every policy on the same trace; a scenario's violation % pools all its traces
(violations / requests). The summary compares ``synergai`` (``s``) with ``profile_static``
(``p``, earliest completion on the profiles) per scenario:

* ``worse_0_5pt``: ``s > p + 0.5`` points;
* ``worse_1_1x``: ``s > 1.1 p`` and ``s > p + 0.05`` points;
* ``better_0_5pt``: ``s < p - 0.5`` points;
* ``mean_violation_pct``: the mean over scenarios of each policy's violation %.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from loadtest.sim.runner import run_scenario
from loadtest.sim.wild.build import wild_name, wild_scenario

__all__ = ["POLICIES", "format_table", "run_wild", "summarize"]

POLICIES = ("synergai", "profile_static", "oracle")


class _Overrun(Exception):
    """A scenario ran past its time limit."""


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Overrun


def run_wild(
    seed: int, index: int, policies: Sequence[str] = POLICIES, traces: int = 2, max_s: int = 0
) -> dict[str, Any]:
    """One row: scenario ``wild-<seed>-<index>`` under ``policies`` on ``traces`` traces.

    ``max_s`` > 0 bounds the scenario's wall time (SIGALRM, so call it from a main thread);
    past it the row has ``skipped`` instead of rates. A timer already set (pytest-timeout's)
    is restored afterwards with what is left of it.
    """
    t0 = time.perf_counter()
    row: dict[str, Any] = {"scenario": wild_name(seed, index)}
    old_handler = signal.signal(signal.SIGALRM, _alarm) if max_s > 0 else None
    old_timer = signal.setitimer(signal.ITIMER_REAL, max_s)[0] if max_s > 0 else 0.0
    try:
        sc, info = wild_scenario(seed, index)
        row |= {k: info[k] for k in ("shape", "workers", "pools", "util", "stories")}
        viol = dict.fromkeys(policies, 0)
        per_trace: dict[str, list[float]] = {p: [] for p in policies}
        requests = 0
        for i in range(traces):
            run = run_scenario(sc, list(policies), sc.seed + 1000 * i if i else None)
            n = len(run.trace)
            requests += n
            for p, doc in run.document["policies"].items():
                viol[p] += doc["slo_violations"]
                per_trace[p].append(round(100 * doc["slo_violations"] / n, 3) if n else 0.0)
        row["requests"] = requests
        row["violation_pct"] = {p: round(100 * viol[p] / max(requests, 1), 3) for p in policies}
        row["per_trace"] = per_trace
    except _Overrun:
        row["skipped"] = f"ran past --max-s {max_s} s"
    finally:
        if max_s > 0:
            left = old_timer - (time.perf_counter() - t0) if old_timer > 0 else 0.0
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_timer > 0:
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the module docstring over the rows that ran (``skipped`` counted)."""
    done = [r["violation_pct"] for r in rows if "violation_pct" in r]
    out: dict[str, Any] = {"count": len(done), "skipped": len(rows) - len(done)}
    if done and "synergai" in done[0] and "profile_static" in done[0]:
        sp = [(v["synergai"], v["profile_static"]) for v in done]
        out["worse_0_5pt"] = sum(s > p + 0.5 for s, p in sp)
        out["worse_1_1x"] = sum(s > 1.1 * p and s > p + 0.05 for s, p in sp)
        out["better_0_5pt"] = sum(s < p - 0.5 for s, p in sp)
    if done:
        out["mean_violation_pct"] = {
            p: round(sum(v[p] for v in done) / len(done), 3) for p in done[0]
        }
    return out


def summary_lines(summary: dict[str, Any]) -> str:
    """The summary as two lines of text."""
    head = f"{summary['count']} scenarios ({summary['skipped']} skipped)"
    if "worse_0_5pt" in summary:
        head += (
            f"; synergai > profile_static + 0.5 pt: {summary['worse_0_5pt']}; "
            f"> 1.1x (and > +0.05 pt): {summary['worse_1_1x']}; "
            f"< profile_static - 0.5 pt: {summary['better_0_5pt']}"
        )
    mean = summary.get("mean_violation_pct", {})
    return head + "\nmean violation %: " + ", ".join(f"{p} {v:.2f}" for p, v in mean.items())


def format_table(rows: list[dict[str, Any]], summary: dict[str, Any], top: int = 20) -> str:
    """The ``top`` worst rows by synergai - profile_static (all rows by the first policy's
    rate when those two are not both run), the skipped ones, then the summary.
    """
    done = [r for r in rows if "violation_pct" in r]
    pols = list(done[0]["violation_pct"]) if done else []
    diff = "synergai" in pols and "profile_static" in pols

    def key(r: dict[str, Any]) -> float:
        v = r["violation_pct"]
        return float(v["synergai"] - v["profile_static"] if diff else v[pols[0]])

    done.sort(key=key, reverse=True)
    cols = "".join(f" {p[:14]:>14s}" for p in pols)
    lines = [
        f"{'scenario':12s} {'shape':10s} {'W':>3s}{cols}{' diff':>7s} {'requests':>8s} {'s':>5s}"
    ]
    for r in done[:top]:
        v = r["violation_pct"]
        d = f"{v['synergai'] - v['profile_static']:+7.2f}" if diff else f"{'':7s}"
        lines.append(
            f"{r['scenario']:12s} {r['shape']:10s} {r['workers']:3d}"
            + "".join(f" {v[p]:14.2f}" for p in pols)
            + f"{d} {r['requests']:8d} {r['wall_s']:5.1f}"
        )
    lines += [f"{r['scenario']}: skipped, {r['skipped']}" for r in rows if "skipped" in r]
    return "\n".join([*lines, "", summary_lines(summary)])
