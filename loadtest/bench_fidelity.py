"""Does the simulator agree with the live fleet? The test of ``bench --compare-sim``.

Per policy, the simulator's and the live violation rates *agree* when

    |live - sim| <= 0.02            (two percentage points), or
    |live - sim| <= 0.25 x sim      (25 % relative),

and the two runs *rank* the policies the same way when no pair of policies is ordered one way by
the simulator and the other way live by more than the two-point tolerance (a strict order of
policies within two points of each other is noise, not a disagreement). ``same_ranking_strict``
also reports whether the plain sorted orders are identical.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

__all__ = ["ABS_TOL", "REL_TOL", "agree", "fidelity"]

ABS_TOL = 0.02
"""Absolute tolerance on a violation rate (two points)."""
REL_TOL = 0.25
"""Relative tolerance on a violation rate."""


def agree(sim: float, live: float) -> bool:
    """Whether two violation rates agree (see the module docstring)."""
    diff = abs(live - sim)
    return diff <= ABS_TOL + 1e-12 or diff <= REL_TOL * sim + 1e-12


def _ranks(rates: Mapping[str, float]) -> dict[str, int]:
    order = sorted(rates, key=lambda n: (rates[n], n))
    return {n: i + 1 for i, n in enumerate(order)}


def fidelity(sim: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """Per-policy agreement, ranks and the ranking verdict of two ``policies`` mappings.

    Args:
        sim: ``{policy: row}`` from the simulator.
        live: ``{policy: row}`` from the live run.

    Returns:
        ``{"policies": {name: {sim_pct, live_pct, diff_pts, rel_diff, sim_rank, live_rank,
        agree}}, "agreeing", "same_ranking", "same_ranking_strict", "ranking_conflicts"}``.
    """
    names = [n for n in live if n in sim]
    s = {n: float(sim[n].get("violation_rate") or 0.0) for n in names}
    v = {n: float(live[n].get("violation_rate") or 0.0) for n in names}
    rs, rv = _ranks(s), _ranks(v)
    rows: dict[str, Any] = {}
    for n in names:
        diff = v[n] - s[n]
        rows[n] = {
            "sim_pct": round(100 * s[n], 2),
            "live_pct": round(100 * v[n], 2),
            "diff_pts": round(100 * diff, 2),
            "rel_diff": None if s[n] == 0 else round(diff / s[n], 3),
            "sim_rank": rs[n],
            "live_rank": rv[n],
            "agree": agree(s[n], v[n]),
        }
    conflicts = [
        [a, b]
        for a, b in itertools.combinations(names, 2)
        if (s[a] - s[b]) * (v[a] - v[b]) < 0
        and abs(s[a] - s[b]) > ABS_TOL
        and abs(v[a] - v[b]) > ABS_TOL
    ]
    return {
        "policies": rows,
        "agreeing": sum(1 for r in rows.values() if r["agree"]),
        "same_ranking": not conflicts,
        "same_ranking_strict": all(rs[n] == rv[n] for n in names),
        "ranking_conflicts": conflicts,
    }
