"""A scenario's workload as load-generator input: the seeded trace and the request mix.

* :func:`scenario_for_run` applies a ``--duration`` override to a scenario, so the simulator and
  the live replay run *the same* shortened scenario (and so the same trace).
* :func:`live_trace` turns the simulator's seeded arrival trace (``loadtest.sim``, one
  generator for both) into client :class:`~loadtest.client.Arrival` objects in real seconds.
* :class:`RequestMix` is the closed-loop view for locust: which model to ask for next, with
  what hints, in proportion to each workload stream's base rate.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.scenario import Scenario, Workload, load_scenario
from loadtest.client import Arrival

__all__ = ["RequestMix", "keep_private", "live_trace", "scenario_for_run"]


def keep_private(src: Scenario, out: Scenario) -> Scenario:
    """``out`` (a ``model_copy`` of ``src``) with ``src``'s profiles and path."""
    out._book = src._book
    out._path = src._path
    return out


def scenario_for_run(
    scenario: Scenario | Path | str, duration_s: float | None, time_scale: float | None = None
) -> Scenario:
    """The scenario with its duration set to ``duration_s`` *real* seconds, not yet scaled.

    ``duration_s`` is wall-clock time per policy, so in scenario units it is
    ``duration_s / time_scale``. Faults and speed steps past the new end simply never fire.
    ``time_scale`` overrides the file's (a simulator-sized scenario made slow enough to run
    live); it is applied before the duration.
    """
    sc = load_scenario(Path(scenario)) if isinstance(scenario, str | Path) else scenario
    if time_scale is not None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, not {time_scale}")
        sc = keep_private(sc, sc.model_copy(update={"time_scale": time_scale}))
    if duration_s is None:
        return sc
    if duration_s <= 0:
        raise ValueError(f"duration must be > 0 s, not {duration_s}")
    return keep_private(sc, sc.model_copy(update={"duration_s": duration_s / sc.time_scale}))


def live_trace(scenario: Scenario, seed: int | None = None) -> list[Arrival]:
    """The scenario's seeded arrival trace in real seconds (``time_scale`` applied).

    Uses the simulator's own generator (:func:`loadtest.sim.trace.build_trace`) on the scaled
    scenario, so the live replay and ``synergai simulate`` see the very same requests.

    Args:
        scenario: the unscaled scenario (as loaded, possibly with a duration override).
        seed: overrides the scenario's seed.
    """
    from loadtest.sim.trace import build_trace

    scaled = scenario.scaled()
    trace = build_trace(scaled, scenario.seed if seed is None else seed)
    streams = scaled.workload
    return [
        Arrival(
            t_s=float(t),
            model=streams[i].model,
            slo_ms=float(streams[i].slo_ms),
            priority=int(streams[i].priority),
            category=str(streams[i].category),
            batch=int(streams[i].batch),
        )
        for t, i in zip(trace.t.tolist(), trace.stream.tolist(), strict=True)
    ]


@dataclass(frozen=True)
class RequestMix:
    """Draws workload streams in proportion to their base rates (closed-loop load).

    Attributes:
        streams: the (time-scaled) workload streams.
        cumulative: cumulative rate weights, for :func:`bisect.bisect`.
    """

    streams: Sequence[Workload]
    cumulative: Sequence[float]

    @classmethod
    def from_scenario(cls, scenario: Scenario | Path | str) -> RequestMix:
        """The mix of a scenario file or object (``time_scale`` applied to SLOs)."""
        sc = load_scenario(Path(scenario)) if isinstance(scenario, str | Path) else scenario
        streams = list(sc.scaled().workload)
        return cls(streams, list(itertools.accumulate(w.rate_rps for w in streams)))

    @property
    def total_rps(self) -> float:
        """Sum of the streams' base rates (scaled), requests per second."""
        return float(self.cumulative[-1])

    def pick(self, rng: random.Random) -> Workload:
        """One stream, with probability proportional to its rate."""
        x = rng.random() * self.cumulative[-1]
        return self.streams[min(bisect.bisect_right(self.cumulative, x), len(self.streams) - 1)]

    def hints(self, w: Workload) -> dict[str, str]:
        """The hint headers (gRPC metadata) of a request of stream ``w``."""
        return {
            "x-slo-ms": f"{w.slo_ms:g}",
            "x-priority": str(w.priority),
            "x-category": w.category,
        }
