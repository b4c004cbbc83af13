"""Incident storylines: 0-3 per scenario (probabilities 0.15 / 0.4 / 0.3 / 0.15), each on a
random pool.

======== ==== ===========================================================================
story    p    what happens
======== ==== ===========================================================================
miscal   0.16 the pool runs at a constant speed factor 0.5-0.85 or 1.2-2 of its profile
drift    0.12 its speed ramps to 0.5-0.8 or 1.3-2.5 in 3-7 steps over 20-60 % of the run
thermal  0.08 sawtooth: 1.3-3x slower for half of every 2-6 s period
noisy    0.18 2-6 slowdowns (x1.5-8, 1-5 s each, 1-6 s apart), on the pool or one worker
rolling  0.10 2-11 workers restart one after another (down 1-4 s each, overlapping)
wcrash   0.12 one worker crashes, for 2-15 s or (40 %) for good
poolout  0.10 the whole pool is down for 2-10 s
zoneout  0.06 every pool of the pool's region is down for 2-8 s
brownout 0.08 one worker slows down (x1.5-8, 1-5 s), then crashes, for 3-10 s or for good
======== ==== ===========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loadtest.sim.wild.fleet import PoolDraft

__all__ = ["STORIES", "draw_stories"]

STORIES = [
    "miscal",
    "drift",
    "thermal",
    "noisy",
    "rolling",
    "wcrash",
    "poolout",
    "zoneout",
    "brownout",
]
STORY_P = [0.16, 0.12, 0.08, 0.18, 0.1, 0.12, 0.1, 0.06, 0.08]


def _speed(rng: np.random.Generator, kind: str, duration: float) -> Any:
    """The ``speed`` entry of a pool for a miscal, drift or thermal story."""
    if kind == "miscal":
        return round(float(rng.choice([rng.uniform(0.5, 0.85), rng.uniform(1.2, 2.0)])), 3)
    if kind == "drift":
        f = float(rng.choice([rng.uniform(0.5, 0.8), rng.uniform(1.3, 2.5)]))
        t0 = rng.uniform(0, duration * 0.4)
        steps = int(rng.integers(3, 8))
        span = rng.uniform(duration * 0.2, duration * 0.6)
        return [{"at_s": 0.0, "factor": 1.0}] + [
            {
                "at_s": round(t0 + span * (j + 1) / steps, 3),
                "factor": round(1 + (f - 1) * (j + 1) / steps, 3),
            }
            for j in range(steps)
        ]
    f = rng.uniform(1.3, 3.0)
    per = rng.uniform(2.0, 6.0)
    sch = []
    t, hot = 0.0, False
    while t < duration:
        sch.append({"at_s": round(t, 3), "factor": round(f if hot else 1.0, 3)})
        t += per / 2
        hot = not hot
    return sch


def _faults(
    rng: np.random.Generator,
    kind: str,
    p: PoolDraft,
    pools: list[PoolDraft],
    duration: float,
    faults: list[dict[str, Any]],
) -> None:
    """Append the faults of one fault story (``worker: None`` means the whole pool)."""
    if kind in ("noisy", "brownout"):
        one = kind == "brownout" or rng.random() < 0.4
        wk = int(rng.integers(p.workers)) if one else None
        t = rng.uniform(0, duration * 0.3)
        reps = 1 if kind == "brownout" else int(rng.integers(2, 7))
        for _ in range(reps):
            fs = rng.uniform(1.0, 5.0)
            if t + 0.1 >= duration:
                break
            factor = round(rng.uniform(1.5, 8.0), 3)
            faults.append(
                {"at_s": round(t, 3), "pool": p.name, "worker": wk, "kind": "slowdown"}
                | {"factor": factor, "for_s": round(fs, 3)}
            )
            t += fs + rng.uniform(1.0, 6.0)
        if kind == "brownout":
            end = faults[-1]["at_s"] + faults[-1]["for_s"]
            for_s = None if rng.random() < 0.5 else round(rng.uniform(3, 10), 3)
            faults.append(
                {"at_s": round(end, 3), "pool": p.name, "worker": wk, "kind": "crash"}
                | {"for_s": for_s}
            )
    elif kind == "rolling":
        t = rng.uniform(0, duration * 0.3)
        down = rng.uniform(1.0, 4.0)
        for wk in range(min(p.workers, int(rng.integers(2, 12)))):
            if t >= duration:
                break
            faults.append(
                {"at_s": round(t, 3), "pool": p.name, "worker": wk, "kind": "crash"}
                | {"for_s": round(down, 3)}
            )
            t += down * rng.uniform(0.5, 1.2)
    elif kind == "wcrash":
        at = round(rng.uniform(0, duration * 0.7), 3)
        wk = int(rng.integers(p.workers))
        for_s = None if rng.random() < 0.4 else round(rng.uniform(2, 15), 3)
        faults.append({"at_s": at, "pool": p.name, "worker": wk, "kind": "crash", "for_s": for_s})
    elif kind == "poolout":
        at = round(rng.uniform(0, duration * 0.7), 3)
        for_s = round(rng.uniform(2, 10), 3)
        faults.append({"at_s": at, "pool": p.name, "kind": "crash", "for_s": for_s})
    elif kind == "zoneout":
        at = round(rng.uniform(0, duration * 0.7), 3)
        for_s = round(rng.uniform(2, 8), 3)
        for q in pools:
            if q.region == p.region:
                faults.append({"at_s": at, "pool": q.name, "kind": "crash", "for_s": for_s})


def draw_stories(
    rng: np.random.Generator, pools: list[PoolDraft], duration: float
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """``(speed by pool name, faults as scenario entries, story labels "kind@pool")``."""
    speeds: dict[str, Any] = {}
    faults: list[dict[str, Any]] = []
    stories: list[str] = []
    for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.15, 0.4, 0.3, 0.15]))):
        kind = str(rng.choice(STORIES, p=STORY_P))
        p = pools[int(rng.integers(len(pools)))]
        if kind in ("miscal", "drift", "thermal"):
            speeds[p.name] = _speed(rng, kind, duration)
        else:
            _faults(rng, kind, p, pools, duration, faults)
        stories.append(f"{kind}@{p.name}")
    return speeds, [{k: v for k, v in f.items() if v is not None} for f in faults], stories
