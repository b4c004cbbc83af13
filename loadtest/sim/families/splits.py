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

__all__ = ["PER_FAMILY", "POLICIES", "SPLITS", "evaluate", "member", "split_members"]

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


def evaluate(family: str, seed: int, policies: Sequence[str] = POLICIES) -> dict[str, Any]:
    """Simulate one member under ``policies`` on one trace; its row of the suite's JSON.

    The row: ``scenario``, ``family``, ``seed``, ``info`` (what was drawn), ``requests``,
    ``violation_rate`` and ``per_priority`` (violation rate per priority) by policy,
    ``wall_s``.
    """
    t0 = time.perf_counter()
    d = build_scenario(family, seed)
    run = run_scenario(d.scenario, list(policies))
    pols = run.document["policies"]
    return {
        "scenario": d.scenario.name,
        "family": family,
        "seed": seed,
        "info": d.info,
        "requests": len(run.trace),
        "violation_rate": {n: p["violation_rate"] for n, p in pols.items()},
        "per_priority": {
            n: {k: v["violation_rate"] for k, v in p["per_priority"].items()}
            for n, p in pols.items()
        },
        "wall_s": round(time.perf_counter() - t0, 2),
    }
