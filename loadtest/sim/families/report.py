"""Judging ``synergai`` on a split: per-family figures and the worst cases first.

Per scenario (rates ``s`` = synergai, ``p`` = profile_static, ``o`` = oracle, ``b`` = the
best of round_robin, least_outstanding, p2c, peak_ewma and profile_static *on that
scenario*):

* **no harm**: ``s <= p + 0.005`` and ``max(s, 0.001) <= 1.1 x max(p, 0.001)`` (both
  floored at 0.1 %, as every ratio here: a 0.00 % baseline does not demand exactly 0);
* **x fewer than best**: ``max(b, 0.001) / max(s, 0.001)``; the family's figure is its
  geometric mean over the scenarios where ``b > 1 %`` (elsewhere nothing is left to win);
* **near oracle**: ``s <= 1.3 x o + 0.005``;
* **harm**: ``s - p``, the sort key of the worst-cases table (largest first).

Issue 15's targets: no harm on every scenario; geomean >= 3x; near oracle on each.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["BASELINES", "family_summary", "format_tables", "no_harm", "summarize_split"]

BASELINES = ("round_robin", "least_outstanding", "p2c", "peak_ewma", "profile_static")
FLOOR = 0.001


def no_harm(syn: float, static: float) -> bool:
    """The no-harm test of the module docstring."""
    return syn <= static + 0.005 and max(syn, FLOOR) <= 1.1 * max(static, FLOOR)


def _best(rates: dict[str, float]) -> tuple[str, float]:
    name = min(BASELINES, key=lambda b: rates[b])
    return name, rates[name]


def family_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the module docstring over ``rows`` (suite rows with every policy)."""
    n = len(rows)
    if n == 0:
        return {"count": 0}
    vr = [r["violation_rate"] for r in rows]
    syn = [v["synergai"] for v in vr]
    best = [_best(v)[1] for v in vr]
    won = [(b, s) for b, s in zip(best, syn, strict=True) if b > 0.01]
    logs = [math.log(max(b, FLOOR) / max(s, FLOOR)) for b, s in won]
    return {
        "count": n,
        "no_harm": sum(no_harm(v["synergai"], v["profile_static"]) for v in vr),
        "geomean_x_fewer_vs_best": round(math.exp(sum(logs) / len(logs)), 3) if logs else None,
        "geomean_over": len(won),
        "near_oracle": sum(v["synergai"] <= 1.3 * v["oracle"] + 0.005 for v in vr),
        "le_best": sum(s <= b for s, b in zip(syn, best, strict=True)),
        "mean_violation_rate": {p: round(sum(v[p] for v in vr) / n, 5) for p in vr[0]},
        "worst_harm": round(max(v["synergai"] - v["profile_static"] for v in vr), 5),
    }


def summarize_split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"families": {family: summary}, "all": summary}``."""
    fams: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r)
    return {
        "families": {f: family_summary(rs) for f, rs in fams.items()},
        "all": family_summary(rows),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def format_tables(rows: list[dict[str, Any]], summary: dict[str, Any], top: int = 20) -> str:
    """Human tables: per family, then the ``top`` worst cases (``synergai - profile_static``)."""
    lines = [
        f"{'family':14s} {'n':>4s} {'no-harm':>8s} {'x fewer vs best (n>1%)':>23s} "
        f"{'near oracle':>11s} {'mean static':>11s} {'mean synergai':>13s} {'mean oracle':>11s}"
    ]
    items = [*summary["families"].items(), ("all", summary["all"])]
    for fam, s in items:
        if not s["count"]:
            continue
        g = s["geomean_x_fewer_vs_best"]
        gm = f"{g:.2f}x ({s['geomean_over']})" if g is not None else "- (0)"
        m = s["mean_violation_rate"]
        lines.append(
            f"{fam:14s} {s['count']:4d} {s['no_harm']:>4d}/{s['count']:<3d} {gm:>23s} "
            f"{s['near_oracle']:>7d}/{s['count']:<3d} {_pct(m['profile_static']):>11s} "
            f"{_pct(m['synergai']):>13s} {_pct(m['oracle']):>11s}"
        )
    lines.append("")
    lines.append(f"worst {top} (synergai - profile_static):")
    lines.append(
        f"{'scenario':22s} {'workers':>7s} {'req/s':>8s} {'load':>5s} {'static':>7s} "
        f"{'synergai':>8s} {'oracle':>7s} {'best baseline':>22s}  faults"
    )
    worst = sorted(
        rows, key=lambda r: r["violation_rate"]["profile_static"] - r["violation_rate"]["synergai"]
    )
    for r in worst[:top]:
        v, i = r["violation_rate"], r["info"]
        bname, bval = _best(v)
        lines.append(
            f"{r['scenario']:22s} {i['workers']:7d} {i['rate_rps']:8.0f} {i['load']:5.2f} "
            f"{_pct(v['profile_static']):>7s} {_pct(v['synergai']):>8s} {_pct(v['oracle']):>7s} "
            f"{bname + ' ' + _pct(bval):>22s}  {','.join(i['faults']) or '-'}"
        )
    return "\n".join(lines)
