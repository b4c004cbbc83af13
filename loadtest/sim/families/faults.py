"""Fault plans of the families, as scenario ``faults:`` entries (DESIGN.md §4).

Kinds (``d`` is the scenario's duration, ``U`` uniform):

* ``flap``: 2-6 slowdowns by ``U(1.5, 4)``, each for ``U(1, 5)`` s, ``U(1, 6)`` s apart, the
  first at ``U(0.5, 3)`` s, all on the *hot* pool (the closest pool serving a tight stream;
  any pool 40 % of the time), on one of its servers 30 % of the time;
* ``crash``: one server down at ``U(0.2, 0.6) d`` for ``U(1, 10)`` s;
* ``permanent_crash``: one server down at ``U(0.2, 0.6) d`` for good (a pool of two or more);
* ``pool_crash``: a whole pool down for ``U(1, 5)`` s, only if every model it serves has
  another pool (else it becomes a ``crash``);
* ``crash_loop``: one server down 2-4 times for ``U(0.5, 2)`` s, ``U(1, 4)`` s apart;
* ``worker_slow``: one server ``U(2, 6)`` times slower for ``U(0.3, 0.6) d``;
* ``drift``: a pool's true speed steps up by ``U(1.3, 2.5)`` at ``U(0.2, 0.5) d`` and stays
  there (a ``speed:`` list on the pool, not a fault entry).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["draw_faults"]

Raw = dict[str, Any]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 3)


def _pick(rng: np.random.Generator, pools: list[Raw]) -> Raw:
    return pools[int(rng.integers(len(pools)))]


def _flap(rng: np.random.Generator, pools: list[Raw], hot: str | None, d: float) -> list[Raw]:
    pool = next((p for p in pools if p["name"] == hot), None)
    if pool is None or rng.random() < 0.4:
        pool = _pick(rng, pools)
    worker = (
        int(rng.integers(pool["workers"])) if pool["workers"] > 1 and rng.random() < 0.3 else None
    )
    out: list[Raw] = []
    t = _u(rng, 0.5, 3.0)
    for _ in range(int(rng.integers(2, 7))):
        length = _u(rng, 1.0, 5.0)
        if t + length > 0.95 * d:
            break
        f: Raw = {"at_s": t, "pool": pool["name"], "kind": "slowdown", "factor": _u(rng, 1.5, 4.0)}
        f["for_s"] = length
        if worker is not None:
            f["worker"] = worker
        out.append(f)
        t = round(t + length + _u(rng, 1.0, 6.0), 3)
    return out


def _others_serve(pool: Raw, pools: list[Raw]) -> bool:
    rest = {m for p in pools if p is not pool for m in p["models"]}
    return all(m in rest for m in pool["models"])


def _one(
    kind: str, rng: np.random.Generator, pools: list[Raw], hot: str | None, d: float
) -> list[Raw]:
    if kind == "flap":
        return _flap(rng, pools, hot, d)
    if kind == "drift":
        pool = _pick(rng, pools)
        s0 = float(pool["speed"]) if not isinstance(pool["speed"], list) else 1.0
        pool["speed"] = [
            {"at_s": 0.0, "factor": s0},
            {"at_s": _u(rng, 0.2 * d, 0.5 * d), "factor": round(s0 * _u(rng, 1.3, 2.5), 4)},
        ]
        return []
    if kind == "pool_crash":
        ok = [p for p in pools if _others_serve(p, pools)]
        if ok:
            p = _pick(rng, ok)
            return [{"at_s": _u(rng, 0.2 * d, 0.6 * d), "pool": p["name"], "kind": "crash",
                     "for_s": _u(rng, 1.0, 5.0)}]  # fmt: skip
        kind = "crash"
    if kind == "permanent_crash":
        big = [p for p in pools if p["workers"] > 1]
        if not big:
            return []
        p = _pick(rng, big)
        return [{"at_s": _u(rng, 0.2 * d, 0.6 * d), "pool": p["name"],
                 "worker": int(rng.integers(p["workers"])), "kind": "crash"}]  # fmt: skip
    p = _pick(rng, pools)
    w = int(rng.integers(p["workers"]))
    if kind == "crash":
        return [{"at_s": _u(rng, 0.2 * d, 0.6 * d), "pool": p["name"], "worker": w,
                 "kind": "crash", "for_s": min(_u(rng, 1.0, 10.0), round(0.3 * d, 3))}]  # fmt: skip
    if kind == "crash_loop":
        out: list[Raw] = []
        t = _u(rng, 0.1 * d, 0.4 * d)
        for _ in range(int(rng.integers(2, 5))):
            length = _u(rng, 0.5, 2.0)
            if t + length > d:
                break
            out.append(
                {"at_s": t, "pool": p["name"], "worker": w, "kind": "crash", "for_s": length}
            )
            t = round(t + length + _u(rng, 1.0, 4.0), 3)
        return out
    if kind == "worker_slow":
        return [{"at_s": _u(rng, 0.1 * d, 0.4 * d), "pool": p["name"], "worker": w,
                 "kind": "slowdown", "factor": _u(rng, 2.0, 6.0),
                 "for_s": _u(rng, 0.3 * d, 0.6 * d)}]  # fmt: skip
    raise ValueError(f"unknown fault kind {kind!r}")


def draw_faults(
    rng: np.random.Generator,
    kinds: tuple[str, ...],
    count: int,
    pools: list[Raw],
    hot: str | None,
    duration_s: float,
) -> tuple[list[Raw], list[str]]:
    """``count`` fault plans of kinds drawn from ``kinds``; the entries and the kinds drawn.

    ``pools`` are the scenario's raw pool entries (a ``drift`` edits one's ``speed``); ``hot``
    names the closest pool serving a tight stream.
    """
    entries: list[Raw] = []
    drawn: list[str] = []
    for _ in range(count if kinds else 0):
        kind = str(rng.choice(kinds))
        entries.extend(_one(kind, rng, pools, hot, duration_s))
        drawn.append(kind)
    return entries, drawn
