"""What each scenario family draws: one :class:`Knobs` per family, ranges not values.

A family is a region of the space users run, not a list of scenarios: every seed draws a new
fleet, library, traffic and fault plan inside the family's ranges (:mod:`.build`).

=============  =======  =========  ==============  ===========  ==========================
family         workers  pools      total req/s     load         what it stresses
=============  =======  =========  ==============  ===========  ==========================
scale          20-500   3-6        1,000-20,000    0.40-0.85    big pools, fleet-wide rates
overload       3-15     2-4        50-3,000        1.00-1.50    sustained overload, 2-3
                                                                priorities
bursts         3-20     2-4        50-3,000        0.40-0.80    bursts x2-6, 2 priorities
flapping       3-30     2-5        30-2,500        0.40-0.80    2-6 slowdowns of 1-5 s
sparse         3-40     3-6        20-4,000        0.30-0.80    each model on 1-2 pools,
                                                                batch 1-64, 8-slot servers
faults         3-60     2-5        30-4,000        0.30-0.75    crashes: worker, pool,
                                                                loops, permanent; slow worker
miscalibrated  3-40     2-5        30-4,000        0.30-0.80    true speed 0.4-2.5x the
                                                                profile, drifts
mixed          2-200    1-6        10-10,000       0.20-1.30    everything at once
=============  =======  =========  ==============  ===========  ==========================

*Load* is the fluid load of :mod:`.capacity` (1.0 = the most any router could sustain).
Instances per server 1-8 and RTT 0.5-50 ms in every family; SLOs are tight (1.05-1.5x the
best idle tail any pool offers the stream, ``rtt + p99``) or loose (2-8x).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "FAULT_KINDS", "Knobs"]

FAULT_KINDS = (
    "flap",
    "crash",
    "permanent_crash",
    "pool_crash",
    "crash_loop",
    "worker_slow",
    "drift",
)


@dataclass(frozen=True)
class Knobs:
    """The ranges one family draws from (ints and floats inclusive, tuples to choose from).

    Attributes:
        fleet: total servers, log-uniform.
        pools: number of pools (raised so no pool exceeds ``pool_max`` servers).
        pool_max: most servers in one pool.
        archs: architectures in the scenario's library (at most the number of pools).
        models: models in the library.
        instances: slots per server, one drawn per pool.
        rate: wanted total rate (req/s), log-uniform; reached by scaling the library's
            latencies by 0.2-10x, so it is approximate at the extremes.
        load: fluid load.
        tight: share of streams with a tight SLO.
        tight_slo: tight SLO as a multiple of the best idle tail.
        loose_slo: loose SLO, same.
        priorities: number of priority levels (tight streams get the higher ones).
        arrivals: arrival kinds, one drawn per stream.
        batches: batch sizes, one drawn per stream (capped by the serving pools' max batch).
        streams_per_model: streams (SLO, batch, priority) per served model.
        sparse: each model on 1-2 pools only (else on every pool whose arch supports it).
        miscal: probability that a pool's true speed differs from its profile.
        speed: that true speed factor (log-uniform; 2.0 = twice as slow as profiled).
        faults: fault kinds (:data:`FAULT_KINDS`) to draw from.
        n_faults: how many fault plans to draw.
        max_requests: cap on the expected number of requests (the duration gives way).
        duration: shortest and longest duration (s).
    """

    fleet: tuple[int, int]
    pools: tuple[int, int]
    rate: tuple[float, float]
    load: tuple[float, float]
    pool_max: int = 100
    archs: tuple[int, int] = (2, 5)
    models: tuple[int, int] = (1, 4)
    instances: tuple[int, ...] = (1, 1, 2, 4)
    tight: float = 0.5
    tight_slo: tuple[float, float] = (1.05, 1.5)
    loose_slo: tuple[float, float] = (2.0, 8.0)
    priorities: tuple[int, int] = (1, 2)
    arrivals: tuple[str, ...] = ("poisson",)
    batches: tuple[int, ...] = (1,)
    streams_per_model: tuple[int, int] = (1, 2)
    sparse: bool = False
    miscal: float = 0.0
    speed: tuple[float, float] = (0.4, 2.5)
    faults: tuple[str, ...] = ()
    n_faults: tuple[int, int] = (0, 0)
    max_requests: int = 40_000
    duration: tuple[float, float] = (5.0, 30.0)


FAMILIES: dict[str, Knobs] = {
    "scale": Knobs(
        fleet=(20, 500), pools=(3, 6), rate=(1000.0, 20000.0), load=(0.4, 0.85),
        archs=(3, 5), models=(2, 4), instances=(1, 1, 2, 4, 8), tight=0.6,
        arrivals=("poisson", "diurnal", "diurnal"), batches=(1, 1, 1, 4, 8),
        max_requests=40_000, duration=(2.0, 8.0),
    ),
    "overload": Knobs(
        fleet=(3, 15), pools=(2, 4), rate=(50.0, 3000.0), load=(1.0, 1.5),
        priorities=(2, 3), arrivals=("poisson", "poisson", "constant"),
        batches=(1, 1, 2, 8), duration=(8.0, 25.0),
    ),
    "bursts": Knobs(
        fleet=(3, 20), pools=(2, 4), rate=(50.0, 3000.0), load=(0.4, 0.8),
        priorities=(2, 2), arrivals=("bursty",), duration=(15.0, 40.0),
    ),
    "flapping": Knobs(
        fleet=(3, 30), pools=(2, 5), rate=(30.0, 2500.0), load=(0.4, 0.8),
        faults=("flap",), n_faults=(1, 2), duration=(15.0, 30.0),
    ),
    "sparse": Knobs(
        fleet=(3, 40), pools=(3, 6), rate=(20.0, 4000.0), load=(0.3, 0.8),
        models=(2, 5), instances=(1, 2, 4, 8, 8), sparse=True,
        batches=(1, 1, 2, 4, 8, 16, 32, 64), streams_per_model=(1, 3),
    ),
    "faults": Knobs(
        fleet=(3, 60), pools=(2, 5), rate=(30.0, 4000.0), load=(0.3, 0.75),
        faults=("crash", "permanent_crash", "pool_crash", "crash_loop", "worker_slow"),
        n_faults=(1, 3), duration=(10.0, 30.0),
    ),
    "miscalibrated": Knobs(
        fleet=(3, 40), pools=(2, 5), rate=(30.0, 4000.0), load=(0.3, 0.8),
        miscal=0.6, faults=("drift",), n_faults=(0, 1), duration=(8.0, 30.0),
    ),
    "mixed": Knobs(
        fleet=(2, 200), pools=(1, 6), rate=(10.0, 10000.0), load=(0.2, 1.3),
        instances=(1, 1, 2, 4, 8), priorities=(1, 3),
        arrivals=("poisson", "poisson", "constant", "bursty", "diurnal"),
        batches=(1, 1, 2, 8, 32), miscal=0.3, faults=FAULT_KINDS, n_faults=(0, 2),
        max_requests=40_000,
    ),
}  # fmt: skip
