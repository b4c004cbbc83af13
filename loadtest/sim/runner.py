"""Run a scenario under several policies on one arrival trace; build the §3 JSON document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.routing.registry import make_policy, policy_names
from gateway.scenario import Scenario
from loadtest.sim.engine import SimConfig, SimResult, simulate
from loadtest.sim.metrics import summarize
from loadtest.sim.replicas import SharedConfig, simulate_replicas
from loadtest.sim.trace import Trace, build_trace

__all__ = ["ScenarioRun", "run_scenario"]


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """Everything one ``simulate`` produced.

    Attributes:
        scenario: the scenario with ``time_scale`` applied.
        trace: the arrivals every policy saw.
        results: per-request outcomes by policy.
        document: the JSON document of DESIGN.md §3.
    """

    scenario: Scenario
    trace: Trace
    results: dict[str, SimResult]
    document: dict[str, Any]


def run_scenario(
    scenario: Scenario,
    policies: Sequence[str] | None = None,
    seed: int | None = None,
    *,
    clock_ns: Callable[[], int] | None = None,
    progress: Callable[[str], None] | None = None,
    config: SimConfig | None = None,
    routers: int = 1,
    shared: SharedConfig | None = None,
) -> ScenarioRun:
    """Simulate ``scenario`` under each policy (default: all, oracle included).

    ``routers`` > 1 (or a ``shared`` model with one) runs that many gateway replicas sharing
    per-worker load (:mod:`loadtest.sim.replicas`); the document then says ``"routers": N``.

    Raises:
        ValueError: an unknown policy name.
    """
    names = list(policies) if policies else policy_names(include_sim_only=True)
    sc = scenario.scaled()
    seed = sc.seed if seed is None else seed
    trace = build_trace(sc, seed)
    results: dict[str, SimResult] = {}
    doc: dict[str, Any] = {
        "scenario": sc.name,
        "mode": "sim",
        "seed": seed,
        "duration_s": sc.duration_s,
        "policies": {},
    }
    if routers < 1:
        raise ValueError(f"routers must be >= 1, got {routers}")
    if routers > 1 or shared is not None:
        doc["routers"] = routers
    for name in names:
        if routers > 1 or shared is not None:
            pols = [make_policy(name, sc.profile_book, seed) for _ in range(routers)]
            res = simulate_replicas(
                sc, trace, pols, seed, shared=shared, config=config, clock_ns=clock_ns
            )
        else:
            pol = make_policy(name, sc.profile_book, seed)
            res = simulate(sc, trace, pol, seed, config=config, clock_ns=clock_ns)
        results[name] = res
        doc["policies"][name] = summarize(sc, trace, res)
        if progress is not None:
            rate = len(trace) / res.wall_s if res.wall_s == res.wall_s and res.wall_s > 0 else 0
            v = doc["policies"][name]["violation_rate"]
            progress(f"{sc.name}: {name:18s} violations {v:7.2%}  ({rate:,.0f} req/s simulated)")
    return ScenarioRun(sc, trace, results, doc)
