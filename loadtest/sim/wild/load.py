"""Nominal capacity by greedy fluid allocation, and the latency scale that sets the load.

Stream ``s`` on pool ``p`` costs ``mean(s, p) / (workers x instances)`` of the pool per req/s,
with ``mean`` the log-normal mean of the (p50, p99) profile at the stream's batch (linear
between profiled batches). The unit total rate is split into 600 chunks per stream, each
given to the pool whose utilisation is least after it; capacity is ``1 / max utilisation``.

The load: ``util`` is 0.2-0.6 (30 %), 0.6-1.0 (45 %) or 1.0-1.5 (25 %) of that capacity;
the total rate is aimed log-uniform at 10-2,000 req/s (88 %) or 2,000-20,000 req/s, which
sets a latency scale ``k`` (all profiles times ``k``), clipped so the fastest batch-1 p50 is
>= 0.05 ms and the slowest <= 3 s, and lowered again if the rate would end below 10 req/s.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from loadtest.sim.wild.fleet import Book, PoolDraft, StreamDraft
from loadtest.sim.wild.hardware import logu

__all__ = ["fluid_capacity", "mean_ms", "prof_at", "scale_load"]

Z99 = 2.3263478740408408


def prof_at(raw: Book, arch: str, model: str, b: int, k: float) -> tuple[float, float]:
    """(p50, p99) in ms at batch ``b``, scaled by ``k`` (linear between profiled batches)."""
    pts = raw[(arch, model)].points
    if b <= pts[0][0]:
        return pts[0][1] * k, pts[0][2] * k
    for (b0, a50, a99), (b1, c50, c99) in pairwise(pts):
        if b <= b1:
            f = (b - b0) / (b1 - b0)
            return (a50 + f * (c50 - a50)) * k, (a99 + f * (c99 - a99)) * k
    return pts[-1][1] * k, pts[-1][2] * k


def mean_ms(p50: float, p99: float) -> float:
    """The mean of the log-normal with this median and 99th percentile."""
    sig = math.log(max(p99, p50) / p50) / Z99
    return p50 * math.exp(sig * sig / 2)


def fluid_capacity(
    cost: npt.NDArray[np.float64], share: npt.NDArray[np.float64], chunks: int = 600
) -> float:
    """The total rate (req/s) at which the busiest pool reaches 100 % (module docstring).

    ``cost[s, p]``: pool ``p``'s fraction used per req/s of stream ``s`` (inf: not allowed).
    """
    u = np.zeros(cost.shape[1])
    for _ in range(chunks):
        for s in range(len(share)):
            dq = share[s] / chunks * cost[s]
            p = int(np.argmin(u + dq))
            u[p] += dq[p]
    return 1.0 / float(u.max())


def _capacity(raw: Book, pools: list[PoolDraft], streams: list[StreamDraft], k: float) -> float:
    pidx = {p.name: i for i, p in enumerate(pools)}
    share = np.array([s.share for s in streams])
    share /= share.sum()
    cost = np.full((len(streams), len(pools)), np.inf)
    for si, s in enumerate(streams):
        for h in s.hosts:
            p = pools[pidx[h]]
            p50, p99 = prof_at(raw, p.arch, s.model, s.batch, k)
            cost[si, pidx[h]] = mean_ms(p50, p99) / 1000.0 / (p.workers * p.instances)
    return fluid_capacity(cost, share)


def scale_load(
    rng: np.random.Generator, raw: Book, pools: list[PoolDraft], streams: list[StreamDraft]
) -> tuple[float, float, float]:
    """``(util, k, total_rate)`` as the module docstring draws them."""
    lows = (rng.uniform(0.2, 0.6), rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.5))
    util = float(rng.choice(lows, p=[0.3, 0.45, 0.25]))
    cap1 = _capacity(raw, pools, streams, 1.0)
    target = logu(rng, 10, 2000) if rng.random() < 0.88 else logu(rng, 2000, 20000)
    k = util * cap1 / target
    lo = min(v.points[0][1] for v in raw.values())
    hi = max(v.points[0][1] for v in raw.values())
    k = float(np.clip(k, min(0.05 / lo, 3000.0 / hi), 3000.0 / hi))
    cap = _capacity(raw, pools, streams, k)
    if util * cap < 10.0:
        k *= util * cap / 10.0
        cap = _capacity(raw, pools, streams, k)
    return util, k, util * cap
