"""Time routing decisions of the real policy code on fleets of a given size.

The fleet is the scenario's pools with their workers multiplied to reach ``n`` workers in the
same proportions; each worker starts with a random backlog (0 to 3 requests) and decisions
are taken for requests drawn from the scenario's workload streams, each followed by its
``start`` (so indexes move as they do in service). Only ``policy.choose`` is timed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from gateway.routing.registry import make_policy
from gateway.routing.types import Request, WorkerInfo
from gateway.routing.view import FleetView
from gateway.scenario import Scenario

__all__ = ["bench_decisions", "scaled_fleet"]


def scaled_fleet(sc: Scenario, n: int) -> list[WorkerInfo]:
    """About ``n`` workers spread over the scenario's pools in proportion to their sizes."""
    total = sum(p.workers for p in sc.pools)
    counts = [max(1, round(n * p.workers / total)) for p in sc.pools]
    big = counts.index(max(counts))
    counts[big] = max(1, counts[big] + n - sum(counts))
    out = []
    for p, k in zip(sc.pools, counts, strict=True):
        out += [
            WorkerInfo(f"{p.name}-{i}", p.name, p.arch, tuple(p.models), p.instances, p.rtt_ms or 0)
            for i in range(k)
        ]
    return out


def bench_decisions(
    sc: Scenario,
    sizes: Sequence[int],
    clock_ns: Callable[[], int],
    policy: str = "synergai",
    decisions: int = 20000,
    seed: int = 1,
) -> dict[str, dict[str, float]]:
    """``{str(size): {"workers", "p50_us", "p99_us"}}`` for ``policy`` at each fleet size."""
    sc = sc.scaled()
    out: dict[str, dict[str, float]] = {}
    for n in sizes:
        rng = random.Random(seed)
        fleet = scaled_fleet(sc, n)
        view = FleetView(fleet, sc.profile_book)
        for w in fleet:
            for _ in range(rng.randrange(4)):
                view.start(w.id, Request(w.models[0], 1e9), 1.0, 0.0)
        pol = make_policy(policy, sc.profile_book, seed)
        wl = sc.workload
        reqs = [
            Request(x.model, x.slo_ms, x.batch, x.priority, x.category)
            for x in (wl[rng.randrange(len(wl))] for _ in range(decisions))
        ]
        times = np.empty(decisions, dtype=np.int64)
        now = 1.0
        for i, r in enumerate(reqs):
            view.advance(now)
            t0 = clock_ns()
            d = pol.choose(r, view, now, rng)
            times[i] = clock_ns() - t0
            if d.worker is not None:
                view.start(d.worker, r, d.service_ms, now)
                view.finish(d.worker, r, d.service_ms, d.predicted_ms, now)
            now += 1e-4
        out[str(n)] = {
            "workers": float(len(fleet)),
            "p50_us": round(float(np.median(times)) / 1000.0, 2),
            "p99_us": round(float(np.percentile(times, 99)) / 1000.0, 2),
        }
    return out
