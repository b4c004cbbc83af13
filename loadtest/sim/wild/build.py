"""Assemble one wild scenario: hardware, fleet, tenants, load, storylines, workload.

Rates and SLOs per stream: ``rate = total x share`` (a bursty stream's mean rate stays
``rate``: its base is ``rate x (on + off) / (factor x on + off)``); ``slo_ms = slo_x x`` the
best idle ``rtt + p99`` among its hosts at its batch. Duration ``20,000 / total rate`` s,
clipped to 10-30 s.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np

from gateway.prediction.profiles import ArchInfo, LatencyPoint, Profile, ProfileBook
from gateway.scenario import Scenario
from loadtest.sim.wild.fleet import (
    SHAPE_P,
    SHAPES,
    PoolDraft,
    StreamDraft,
    draw_pools,
    draw_streams,
    place_models,
    split_workers,
)
from loadtest.sim.wild.hardware import (
    Arch,
    Model,
    RawProfile,
    build_book,
    draw_archs,
    draw_models,
    logu,
)
from loadtest.sim.wild.load import prof_at, scale_load
from loadtest.sim.wild.stories import draw_stories

__all__ = ["parse_name", "wild_name", "wild_scenario", "wild_seed"]

SOURCE = "loadtest.sim.wild"
_NAME = re.compile(r"wild-(\d+)-(\d+)")


def wild_seed(seed: int, index: int) -> int:
    """The scenario's own seed (its RNG's and its trace's): ``seed x 100,000 + index``."""
    return seed * 100_000 + index


def wild_name(seed: int, index: int) -> str:
    """``wild-<seed>-<index, 3 digits>``."""
    return f"wild-{seed}-{index:03d}"


def parse_name(name: str) -> tuple[int, int]:
    """``(seed, index)`` of a name such as ``wild-3-045``.

    Raises:
        ValueError: not a wild scenario name.
    """
    m = _NAME.fullmatch(name)
    if m is None:
        raise ValueError(f"not a wild scenario name (wild-SEED-INDEX): {name!r}")
    return int(m.group(1)), int(m.group(2))


def _hardware(
    rng: np.random.Generator,
) -> tuple[list[Arch], dict[tuple[str, str], RawProfile], list[Model]]:
    """Archs, profiles and models; a model that fits nowhere shrinks to 50 MB + 5 MB/item; an
    engine over 40x slower than the model's best is left out (nobody would deploy it).
    """
    n_models = int(rng.integers(2, 11))
    n_archs = int(rng.integers(2, 7))
    archs = draw_archs(rng, n_archs)
    models = draw_models(rng, n_models)
    raw = build_book(rng, archs, models)
    models = [
        m
        if any((a.name, m.name) in raw for a in archs)
        else replace(m, weights_mb=50.0, act_mb=5.0)
        for m in models
    ]
    raw = build_book(rng, archs, models)
    for m in models:
        best = min((v.points[0][1] for (_, mm), v in raw.items() if mm == m.name), default=0)
        for key in [key for key in raw if key[1] == m.name]:
            if raw[key].points[0][1] > 40 * best:
                del raw[key]
    return archs, raw, models


def _workload(
    rng: np.random.Generator,
    raw: dict[tuple[str, str], RawProfile],
    pools: list[PoolDraft],
    streams: list[StreamDraft],
    total_rate: float,
    k: float,
) -> list[dict[str, Any]]:
    pidx = {p.name: p for p in pools}
    out = []
    for s in streams:
        rate = total_rate * s.share
        w: dict[str, Any] = {"model": s.model, "arrival": s.arrival}
        if s.arrival == "bursty":
            f = rng.uniform(2.0, 8.0)
            on, off = rng.uniform(0.2, 3.0), rng.uniform(0.5, 6.0)
            rate = rate * (on + off) / (f * on + off)
            w["burst"] = {"on_s": round(on, 3), "off_s": round(off, 3), "factor": round(f, 3)}
        elif s.arrival == "diurnal":
            w["period_s"] = round(rng.uniform(2.0, 15.0), 3)
            w["amplitude"] = round(rng.uniform(0.3, 1.0), 3)
        best = min(
            pidx[h].rtt_ms + prof_at(raw, pidx[h].arch, s.model, s.batch, k)[1] for h in s.hosts
        )
        w["rate_rps"] = round(max(rate, 0.05), 4)
        w["slo_ms"] = round(best * s.slo_x, 4)
        w["priority"] = s.priority
        w["category"] = s.category
        w["batch"] = s.batch
        out.append(w)
    return out


def _book(raw: dict[tuple[str, str], RawProfile], archs: list[Arch], k: float) -> ProfileBook:
    profs = {
        (a, m): Profile(
            a,
            m,
            v.max_batch,
            tuple(
                LatencyPoint(b, round(p50 * k, 5), round(p99 * k, 5)) for b, p50, p99 in v.points
            ),
            engine="roofline",
            source=SOURCE,
        )
        for (a, m), v in raw.items()
    }
    return ProfileBook(profs, {a.name: ArchInfo(a.kind, 0.0, a.jitter) for a in archs})


def wild_scenario(seed: int, index: int) -> tuple[Scenario, dict[str, Any]]:
    """Scenario ``wild-<seed>-<index>`` with its own profiles, and what was drawn for it.

    Pure: the same ``(seed, index)`` gives the same scenario. The info mapping holds
    ``name, shape, workers, pools, models, streams, priorities, util, total_rps, duration_s,
    expected_requests, lat_scale, tight_streams, jitter (by arch), stories, arrivals,
    batched_streams``.
    """
    name = wild_name(seed, index)
    own_seed = wild_seed(seed, index)
    rng = np.random.default_rng(own_seed)
    archs, raw, models = _hardware(rng)
    shape = str(rng.choice(SHAPES, p=SHAPE_P))
    if shape == "tiny" and rng.random() < 0.3:
        total = 2
    else:
        total = round(logu(rng, 2, 500 if shape != "tiny" else 6))
    sizes = split_workers(rng, total, shape)
    sizes = sizes[: max(1, min(len(sizes), 3 * len(models)))]
    pools = draw_pools(rng, sizes, archs, shape)
    pools, served = place_models(rng, pools, models, raw)
    streams, n_prio = draw_streams(rng, pools, served, raw)
    util, k, total_rate = scale_load(rng, raw, pools, streams)
    duration = round(float(np.clip(20000.0 / total_rate, 10.0, 30.0)), 1)
    speeds, faults, stories = draw_stories(rng, pools, duration)
    workload = _workload(rng, raw, pools, streams, total_rate, k)
    doc = {
        "name": name,
        "description": f"wild gen seed {own_seed}: {shape}, util {util:.2f}, "
        f"{len(stories)} storylines",
        "duration_s": duration,
        "seed": own_seed,
        "pools": [
            {
                "name": p.name,
                "arch": p.arch,
                "workers": p.workers,
                "instances": p.instances,
                "rtt_ms": p.rtt_ms,
                "models": p.models,
            }
            | ({"speed": speeds[p.name]} if p.name in speeds else {})
            for p in pools
        ],
        "workload": workload,
        "faults": faults,
    }
    sc = Scenario.model_validate(doc).with_profiles(_book(raw, archs, k))
    info = {
        "name": name,
        "shape": shape,
        "workers": sum(p.workers for p in pools),
        "pools": len(pools),
        "models": len(served),
        "streams": len(streams),
        "priorities": n_prio,
        "util": round(util, 3),
        "total_rps": round(total_rate, 2),
        "duration_s": duration,
        "expected_requests": int(total_rate * duration),
        "lat_scale": k,
        "tight_streams": sum(s.slo_class == "tight" for s in streams),
        "jitter": {a.name: a.jitter for a in archs},
        "stories": stories,
        "arrivals": sorted({s.arrival for s in streams}),
        "batched_streams": sum(s.batch > 1 for s in streams),
    }
    return sc, info
