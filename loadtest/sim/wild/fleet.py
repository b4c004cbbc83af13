"""Fleet shapes, pools, model placement by affinity, and the tenants' streams.

Shapes (probabilities 0.2 / 0.2 / 0.2 / 0.25 / 0.15): ``hub`` (one pool of 60-90 % of the
workers, in a far region, and small spokes), ``swarm`` (4-12 similar pools), ``two-giants``
(two pools of 30-50 % each, the rest 5 % each), ``zipf`` (pool sizes ~ 1 / rank^0.8-2) and
``tiny`` (1-3 pools, 2-6 workers). Total workers log-uniform in 2-500, at most 100 per pool.
Regions: near (rtt 0.5-2 ms), metro (2-10 ms), far (10-50 ms).

Placement: each model goes on 1-3 of the pools where it fits, the best by
``-log(p50(1) + rtt) + Gumbel noise``; a pool left empty gets the least-placed model it fits.
Tenants: model popularity ~ 1 / rank^0.3-1.5 (shuffled), split among 1-3 streams per model by
a Dirichlet(1.5); each stream draws its batch (1 with probability 0.55, else a power of two
its hosts accept), SLO class, arrival, priority (1-3 levels per scenario) and category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from loadtest.sim.wild.hardware import Arch, Model, RawProfile, logu

__all__ = [
    "REGIONS",
    "SHAPES",
    "SLO_CLASSES",
    "PoolDraft",
    "StreamDraft",
    "draw_pools",
    "draw_streams",
    "place_models",
    "split_workers",
]

REGIONS = {"near": (0.5, 2.0), "metro": (2.0, 10.0), "far": (10.0, 50.0)}
SHAPES = ["hub", "swarm", "two-giants", "zipf", "tiny"]
SHAPE_P = [0.2, 0.2, 0.2, 0.25, 0.15]
SLO_CLASSES = {"tight": (1.05, 1.3), "medium": (1.4, 3.0), "loose": (4.0, 15.0)}
ARRIVALS = ["poisson", "constant", "bursty", "diurnal"]

Book = dict[tuple[str, str], RawProfile]


@dataclass(slots=True)
class PoolDraft:
    """A pool being built (``models`` filled by placement)."""

    name: str
    arch: str
    workers: int
    instances: int
    rtt_ms: float
    region: str
    models: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StreamDraft:
    """A tenant's stream before rates and SLOs are set (``share`` of the total rate)."""

    model: str
    share: float
    batch: int
    hosts: tuple[str, ...]
    slo_class: str
    slo_x: float
    priority: int
    category: str
    arrival: str


def split_workers(rng: np.random.Generator, total: int, shape: str) -> list[int]:
    """Pool sizes for ``total`` workers in ``shape`` (each 1-100; the sum is about ``total``)."""
    if shape == "tiny":
        n = int(rng.integers(1, min(total, 3) + 1))
    elif shape == "swarm":
        n = max(math.ceil(total / 100), min(total, int(rng.integers(4, 13))))
    elif shape == "two-giants":
        n = max(math.ceil(total / 100), min(total, int(rng.integers(2, 5))))
    else:
        n = max(math.ceil(total / 100), min(total, int(rng.integers(2, 9))))
    n = max(1, min(n, total))
    if shape == "hub" and n > 1:
        hub = min(100, max(1, int(total * rng.uniform(0.6, 0.9))))
        rest = total - hub
        n = max(n, 1 + math.ceil(rest / 100))
        w = rng.dirichlet(np.ones(n - 1))
        sizes = [hub, *np.maximum(1, np.round(w * rest)).astype(int)]
    elif shape == "zipf":
        w = 1.0 / np.arange(1, n + 1) ** rng.uniform(0.8, 2.0)
        sizes = list(np.maximum(1, np.round(w / w.sum() * total)).astype(int))
    elif shape == "two-giants":
        w = np.array([rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.5)] + [0.05] * (n - 2))[:n]
        sizes = list(np.maximum(1, np.round(w / w.sum() * total)).astype(int))
    else:
        w = rng.dirichlet(np.full(n, 2.0))
        sizes = list(np.maximum(1, np.round(w * total)).astype(int))
    return [int(min(100, s)) for s in sizes]


def draw_pools(
    rng: np.random.Generator, sizes: list[int], archs: list[Arch], shape: str
) -> list[PoolDraft]:
    """One pool per size: pool ``i`` on arch ``i`` (or a random one, 30 %), 1-8 instances."""
    pools = []
    for i, w in enumerate(sizes):
        if i >= len(archs) or rng.random() < 0.3:
            a = archs[int(rng.integers(len(archs)))]
        else:
            a = archs[i % len(archs)]
        region = (
            "far"
            if shape == "hub" and i == 0
            else str(rng.choice(list(REGIONS), p=[0.4, 0.35, 0.25]))
        )
        inst = int(np.clip(round(logu(rng, 1, 8.99) - 0.49), 1, 8))
        rtt = round(logu(rng, *REGIONS[region]), 3)
        pools.append(PoolDraft(f"{region}-{a.name}-{i}", a.name, int(w), inst, rtt, region))
    return pools


def place_models(
    rng: np.random.Generator, pools: list[PoolDraft], models: list[Model], raw: Book
) -> tuple[list[PoolDraft], list[Model]]:
    """Place models by affinity (module docstring); the pools that serve something, and the
    models served.
    """
    for m in models:
        cand = [i for i, p in enumerate(pools) if (p.arch, m.name) in raw]
        if not cand:
            continue
        k = min(len(cand), int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])))
        score = [
            -math.log(raw[(pools[i].arch, m.name)].points[0][1] + pools[i].rtt_ms) + rng.gumbel()
            for i in cand
        ]
        for j in np.argsort(score)[::-1][:k]:
            pools[cand[j]].models.append(m.name)
    count = {m.name: sum(m.name in p.models for p in pools) for m in models}
    for p in pools:
        if not p.models:
            fits = [m.name for m in models if (p.arch, m.name) in raw]
            if fits:
                pick = min(fits, key=lambda x: (count[x], rng.random()))
                p.models.append(pick)
                count[pick] += 1
    pools = [p for p in pools if p.models]
    served = [m for m in models if count[m.name] > 0 and any(m.name in p.models for p in pools)]
    return pools, served


def draw_streams(
    rng: np.random.Generator, pools: list[PoolDraft], served: list[Model], raw: Book
) -> tuple[list[StreamDraft], int]:
    """The tenants' streams (module docstring) and the number of priority levels."""
    pop = 1.0 / np.arange(1, len(served) + 1) ** rng.uniform(0.3, 1.5)
    rng.shuffle(pop)
    pop /= pop.sum()
    n_prio = int(rng.integers(1, 4))
    streams: list[StreamDraft] = []
    for mi, m in enumerate(served):
        hosts = [p for p in pools if m.name in p.models]
        maxb = max(raw[(p.arch, m.name)].max_batch for p in hosts)
        nt = int(rng.integers(1, 4))
        split = rng.dirichlet(np.ones(nt) * 1.5)
        for t in range(nt):
            if rng.random() < 0.55 or maxb == 1:
                b = 1
            else:
                b = int(rng.choice([x for x in (2, 4, 8, 16, 32) if x <= maxb] or [1]))
            ok = tuple(p.name for p in hosts if raw[(p.arch, m.name)].max_batch >= b)
            cls = str(rng.choice(list(SLO_CLASSES), p=[0.4, 0.35, 0.25]))
            arr = str(rng.choice(ARRIVALS, p=[0.4, 0.15, 0.25, 0.2]))
            slo_x = float(rng.uniform(*SLO_CLASSES[cls]))
            prio = int(rng.integers(0, n_prio))
            cat = "frequency" if rng.random() < 0.35 else "latency"
            share = float(pop[mi] * split[t])
            streams.append(StreamDraft(m.name, share, b, ok, cls, slo_x, prio, cat, arr))
    return streams, n_prio
