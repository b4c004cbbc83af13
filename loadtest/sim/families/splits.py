"""The families' dev and test splits and the evaluation of one member.

A split is ``count`` seeds per family: ``dev`` uses ``100000 + 1000 f + i``, ``test``
``200000 + 1000 f + i`` (``f`` the family's index in :data:`~.knobs.FAMILIES`, ``i <
count <= 1000``), so the two never share a seed and adding a family changes no other
family's members. A member's id is its scenario name, ``<family>-<seed>``.

Develop on ``dev``; run ``test`` once, at the end, and do not tune on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from loadtest.sim.families.build import Drawn, build_scenario
from loadtest.sim.families.knobs import FAMILIES
from loadtest.sim.runner import run_scenario

__all__ = [
    "PER_FAMILY",
    "POLICIES",
    "SPLITS",
    "TRACE_STRIDE",
    "evaluate",
    "member",
    "split_members",
]

SPLITS = {"dev": 100_000, "test": 200_000}
PER_FAMILY = 30
POLICIES = (
    "round_robin",
    "least_outstanding",
    "p2c",
    "peak_ewma",
    "profile_static",
    "synergai",
    "oracle",
)


def split_members(
    split: str, families: Sequence[str] | None = None, count: int = PER_FAMILY
) -> list[tuple[str, int]]:
    """``(family, seed)`` of every member of ``split`` (of ``families``, default all).

    Raises:
        KeyError: an unknown split or family.
        ValueError: ``count`` outside 1-1000.
    """
    if not 1 <= count <= 1000:
        raise ValueError(f"count must be in 1-1000, got {count}")
    base = SPLITS[split]
    names = list(FAMILIES)
    out: list[tuple[str, int]] = []
    for fam in families or names:
        if fam not in FAMILIES:
            raise KeyError(f"unknown family {fam!r}; known: {', '.join(names)}")
        out.extend((fam, base + 1000 * names.index(fam) + i) for i in range(count))
    return out


def member(name: str) -> Drawn:
    """The generated scenario called ``name`` (``<family>-<seed>``).

    Raises:
        ValueError: not a family member's name.
    """
    fam, _, seed = name.rpartition("-")
    if fam not in FAMILIES or not seed.isdigit():
        raise ValueError(f"{name!r} is not <family>-<seed> with a family of {', '.join(FAMILIES)}")
    return build_scenario(fam, int(seed))


TRACE_STRIDE = 1000
"""Trace ``i`` of a member is drawn from seed ``member seed + TRACE_STRIDE * i`` (``i = 0``: the
member's own trace): the same fleet, profiles, SLOs, load and faults, other arrivals and
service times."""


def evaluate(
    family: str, seed: int, policies: Sequence[str] = POLICIES, traces: int = 1
) -> dict[str, Any]:
    """Simulate one member under ``policies`` on ``traces`` traces; its row of the suite's JSON.

    The row: ``scenario``, ``family``, ``seed``, ``info`` (what was drawn), ``requests`` (all
    traces), ``violation_rate`` (violations over requests, all traces pooled) and
    ``per_priority`` (violation rate per priority, mean over traces) by policy, ``wall_s``;
    with ``traces`` > 1 also ``traces`` and ``violation_rate_per_trace`` (policy -> one rate
    per trace).

    Why several traces: one trace is one draw of arrivals and service times, and on members
    near a tipping point (an overload's cascade, a self-check trip at a slowdown's onset) a
    change that only reorders floating-point rounding moves a member by several points; the
    pooled rate over traces is what a change should be judged on.
    """
    t0 = time.perf_counter()
    d = build_scenario(family, seed)
    base = d.scenario.seed or 0
    requests = 0
    late: dict[str, float] = {}
    per_trace: dict[str, list[float]] = {}
    prio: dict[str, dict[str, list[float]]] = {}
    for i in range(max(1, traces)):
        run = run_scenario(d.scenario, list(policies), base + TRACE_STRIDE * i if i else None)
        n = len(run.trace)
        requests += n
        for name, p in run.document["policies"].items():
            late[name] = late.get(name, 0.0) + p["violation_rate"] * n
            per_trace.setdefault(name, []).append(p["violation_rate"])
            for k, v in p["per_priority"].items():
                prio.setdefault(name, {}).setdefault(k, []).append(v["violation_rate"])
    row: dict[str, Any] = {
        "scenario": d.scenario.name,
        "family": family,
        "seed": seed,
        "info": d.info,
        "requests": requests,
        "violation_rate": {n: v / max(requests, 1) for n, v in late.items()},
        "per_priority": {n: {k: sum(v) / len(v) for k, v in ks.items()} for n, ks in prio.items()},
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if traces > 1:
        row["traces"] = traces
        row["violation_rate_per_trace"] = per_trace
    return row
