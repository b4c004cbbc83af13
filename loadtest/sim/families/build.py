"""One scenario from a family and a seed: fleet, library, traffic, SLOs, load and faults.

Steps, all drawn from ``numpy.random.default_rng(seed)`` within the family's
:class:`~.knobs.Knobs`:

1. *fleet*: ``n`` servers (log-uniform), split over the pools (one each, the rest by
   Dirichlet(0.7) shares, at most ``pool_max`` per pool);
2. *library* (:mod:`.catalog`): architectures (one per pool first, then reused at other
   sites) and models. Each pool sits *near* (RTT 0.5-3 ms, log-uniform), *regional* (4-15 ms)
   or *far* (15-50 ms); NPUs, CPUs and FPGAs are near 70 % of the time, GPUs 20 %;
3. *placement*: dense (each pool serves every model its arch supports, each dropped with
   probability 0.15, one kept) or sparse (each model on 1-2 of the pools that can serve it;
   a pool left with nothing to serve hands its servers to another pool);
4. *truth*: with probability ``miscal`` a pool's true speed is off its profile by a constant
   factor (``speed:``);
5. *streams*: 1-k per served model, each with a batch size, a tight or loose SLO, a priority
   (tight streams the higher levels), a category (tight: ``latency`` 80 %, loose:
   ``frequency`` 70 %), an arrival kind and a share of the traffic (Dirichlet(1));
6. *rate*: the library's latencies are scaled by ``c`` (0.2-10) so the wanted total rate
   sits at the wanted load (first without SLOs); SLOs are then set from the best true idle
   tail, and the load is solved again on the pools where each stream fits
   (:mod:`.capacity`): ``total = load / u*``;
7. *duration*: ``max_requests / total`` within the family's range (the cap wins);
8. *faults* (:mod:`.faults`).

Bursty streams get ``factor`` 2-6, ``on_s`` 0.5-3, ``off_s`` 2-10 and a base rate such that
their mean is their share; diurnal ones a period of 0.5-1x the duration and an amplitude
0.2-0.8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.scenario import Scenario
from loadtest.sim.families.capacity import min_max_utilisation
from loadtest.sim.families.catalog import Catalog, draw_catalog
from loadtest.sim.families.faults import draw_faults
from loadtest.sim.families.knobs import FAMILIES, Knobs

__all__ = ["Drawn", "build_scenario"]

Raw = dict[str, Any]
FloatArray = npt.NDArray[np.float64]
SITES = {"near": (0.5, 3.0), "regional": (4.0, 15.0), "far": (15.0, 50.0)}


@dataclass(frozen=True)
class Drawn:
    """A generated scenario and what was drawn for it (for tables and reports)."""

    scenario: Scenario
    family: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)


def _int(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def _log_u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))))


def _split(rng: np.random.Generator, n: int, k: int, cap: int) -> list[int]:
    sizes = [1 + int(x) for x in rng.multinomial(n - k, rng.dirichlet([0.7] * k))]
    over = sum(max(0, x - cap) for x in sizes)
    sizes = [min(x, cap) for x in sizes]
    for i in range(k):  # k >= n / cap, so the overflow fits
        take = min(over, cap - sizes[i])
        sizes[i] += take
        over -= take
    return sizes


def _fleet(rng: np.random.Generator, kn: Knobs) -> tuple[list[int], Catalog, list[Raw]]:
    n = max(2 if kn.fleet[0] >= 2 else 1, round(_log_u(rng, (kn.fleet[0], kn.fleet[1] + 0.999))))
    n = min(max(n, kn.fleet[0]), kn.fleet[1])
    k = min(n, max(_int(rng, kn.pools), math.ceil(n / kn.pool_max)))
    sizes = _split(rng, n, k, kn.pool_max)
    cat = draw_catalog(rng, min(k, _int(rng, kn.archs)), _int(rng, kn.models))
    archs = cat.archs
    pools: list[Raw] = []
    for i, size in enumerate(sizes):
        arch = archs[i] if i < len(archs) else str(rng.choice(archs))
        near = 0.2 if cat.arch_class[arch] == "gpu" else 0.7
        site = "near" if rng.random() < near else str(rng.choice(["regional", "far"]))
        lo, hi = SITES[site]
        rtt = _log_u(rng, (lo, hi)) if site == "near" else float(rng.uniform(lo, hi))
        pools.append(
            {
                "name": f"{site}-{arch}-{i}",
                "arch": arch,
                "workers": size,
                "instances": int(rng.choice(kn.instances)),
                "rtt_ms": round(rtt, 3),
                "models": [],
                "speed": 1.0,
            }
        )
    return sizes, cat, pools


def _place(rng: np.random.Generator, kn: Knobs, cat: Catalog, pools: list[Raw]) -> None:
    if not kn.sparse:
        for p in pools:
            can = cat.serves(p["arch"])
            keep = [m for m in can if rng.random() >= 0.15]
            p["models"] = keep or [str(rng.choice(can))]
        return
    for m in cat.models:
        homes = [p for p in pools if m in cat.serves(p["arch"])]
        if not homes:
            continue
        k = min(len(homes), int(rng.integers(1, 3)))
        for j in rng.choice(len(homes), size=k, replace=False):
            homes[int(j)]["models"].append(m)
    homes_of = {m: sum(m in p["models"] for p in pools) for m in cat.models}
    for p in pools:
        free = [m for m in cat.serves(p["arch"]) if homes_of[m] < 2]
        if not p["models"] and free:
            m = str(rng.choice(free))
            p["models"] = [m]
            homes_of[m] += 1
        p["models"] = [m for m in cat.models if m in p["models"]]
    empty = [p for p in pools if not p["models"]]
    for p in empty:  # nothing left to serve: its servers join a pool that serves something
        pools.remove(p)
        pools[int(rng.integers(len(pools)))]["workers"] += p["workers"]


def _true(cat: Catalog, pool: Raw, model: str, batch: int) -> tuple[float, float] | None:
    """(mean, p99) in ms of ``model`` at ``batch`` on ``pool`` at t = 0, or None."""
    prof = cat.book.get(pool["arch"], model)
    if prof is None or model not in pool["models"] or batch > prof.max_batch:
        return None
    s = pool["speed"] if not isinstance(pool["speed"], list) else pool["speed"][0]["factor"]
    return prof.mean(batch) * s, prof.p99(batch) * s


def _cost(cat: Catalog, pools: list[Raw], streams: list[Raw], fit: bool) -> FloatArray:
    a = np.full((len(streams), len(pools)), np.inf)
    for i, st in enumerate(streams):
        for j, p in enumerate(pools):
            t = _true(cat, p, st["model"], st["batch"])
            if t is None or (fit and p["rtt_ms"] + t[1] > st["slo_ms"]):
                continue
            a[i, j] = t[0] / 1000.0 / (p["workers"] * p["instances"])
    return a


def _streams(rng: np.random.Generator, kn: Knobs, cat: Catalog, pools: list[Raw]) -> list[Raw]:
    levels = _int(rng, kn.priorities)
    out: list[Raw] = []
    for m in cat.models:
        homes = [p for p in pools if m in p["models"]]
        if not homes:
            continue
        top = max(cat.book.get(p["arch"], m).max_batch for p in homes)  # type: ignore[union-attr]
        for _ in range(_int(rng, kn.streams_per_model)):
            tight = bool(rng.random() < kn.tight)
            if levels == 1:
                prio = 0
            elif tight:
                prio = int(rng.integers(1, levels))
            else:
                prio = int(rng.integers(0, levels - 1))
            cat_p = 0.8 if tight else 0.3
            out.append(
                {
                    "model": m,
                    "batch": min(int(rng.choice(kn.batches)), top),
                    "tight": tight,
                    "priority": prio,
                    "category": "latency" if rng.random() < cat_p else "frequency",
                    "arrival": str(rng.choice(kn.arrivals)),
                }
            )
    while len(out) < levels:  # one stream per level at least: a second SLO for some model
        extra = dict(out[int(rng.integers(len(out)))])
        extra["tight"] = not extra["tight"]
        out.append(extra)
    if len({s["priority"] for s in out}) < levels:  # every level used: tightest ones on top
        order = sorted(range(len(out)), key=lambda i: (not out[i]["tight"], rng.random()))
        for rank, i in enumerate(order[:levels]):
            out[i]["priority"] = levels - 1 - rank
    return out


def _slos(
    rng: np.random.Generator, kn: Knobs, cat: Catalog, pools: list[Raw], st: list[Raw]
) -> None:
    for s in st:
        tails = [
            p["rtt_ms"] + t[1]
            for p in pools
            if (t := _true(cat, p, s["model"], s["batch"])) is not None
        ]
        lo_hi = kn.tight_slo if s["tight"] else kn.loose_slo
        s["slo_ms"] = round(min(tails) * float(rng.uniform(*lo_hi)), 3)


def _workload(
    rng: np.random.Generator, st: list[Raw], shares: FloatArray, total: float, d: float
) -> list[Raw]:
    out = []
    for s, share in zip(st, shares, strict=True):
        w: Raw = {k: s[k] for k in ("model", "batch", "slo_ms", "priority", "category", "arrival")}
        rate = max(float(share) * total, 0.1)
        if s["arrival"] == "bursty":
            b = {
                "on_s": round(float(rng.uniform(0.5, 3.0)), 3),
                "off_s": round(float(rng.uniform(2.0, 10.0)), 3),
                "factor": round(float(rng.uniform(2.0, 6.0)), 3),
            }
            rate /= (b["on_s"] * b["factor"] + b["off_s"]) / (b["on_s"] + b["off_s"])
            w["burst"] = b
        elif s["arrival"] == "diurnal":
            w["period_s"] = round(d * float(rng.uniform(0.5, 1.0)), 3)
            w["amplitude"] = round(float(rng.uniform(0.2, 0.8)), 3)
        w["rate_rps"] = round(max(rate, 0.1), 4)
        out.append(w)
    return out


def build_scenario(family: str, seed: int, knobs: Knobs | None = None) -> Drawn:
    """The scenario of ``family`` for ``seed`` (``knobs`` overrides the family's ranges).

    Raises:
        KeyError: an unknown family.
    """
    kn = knobs or FAMILIES[family]
    rng = np.random.default_rng(seed)
    _, cat, pools = _fleet(rng, kn)
    _place(rng, kn, cat, pools)
    for p in pools:
        if rng.random() < kn.miscal:
            p["speed"] = round(_log_u(rng, kn.speed), 4)
    st = _streams(rng, kn, cat, pools)
    weights = rng.dirichlet([1.0] * len(st))
    load = float(rng.uniform(*kn.load))
    want = _log_u(rng, kn.rate)
    for s in st:
        s["slo_ms"] = math.inf
    u0, _ = min_max_utilisation(weights, _cost(cat, pools, st, fit=False))
    c = min(max(load / u0 / want, 0.2), 10.0)
    cat = cat.scaled(c)
    _slos(rng, kn, cat, pools, st)
    u, lower = min_max_utilisation(weights, _cost(cat, pools, st, fit=True))
    total = load / u
    d = min(max(kn.max_requests / total, kn.duration[0]), kn.duration[1])
    if total * d > kn.max_requests:
        d = max(kn.max_requests / total, 1.0)
    d = round(d, 3)
    workload = _workload(rng, st, weights, total, d)
    hot = min(
        (p for p in pools if any(s["tight"] and s["model"] in p["models"] for s in st)),
        key=lambda p: p["rtt_ms"],
        default=None,
    )
    faults, kinds = draw_faults(
        rng, kn.faults, _int(rng, kn.n_faults), pools, hot["name"] if hot else None, d
    )
    raw = {
        "name": f"{family}-{seed}",
        "description": f"generated: loadtest.sim.families {family} seed {seed}",
        "duration_s": d,
        "seed": seed,
        "pools": pools,
        "workload": workload,
        "faults": faults,
    }
    sc = Scenario.model_validate(raw).with_profiles(cat.book)
    info = {
        "workers": sum(p["workers"] for p in pools),
        "pools": len(pools),
        "rate_rps": round(total, 1),
        "load": round(load, 3),
        "load_gap": round(u / lower - 1.0, 4) if lower > 0 else None,
        "latency_scale": round(c, 3),
        "streams": len(st),
        "tight_streams": sum(s["tight"] for s in st),
        "priorities": len({s["priority"] for s in st}),
        "miscalibrated_pools": sum(p["speed"] != 1.0 for p in pools),
        "faults": kinds,
    }
    return Drawn(sc, family, seed, info)
