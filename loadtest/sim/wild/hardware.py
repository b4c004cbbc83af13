"""The roofline hardware model: architectures, models and the (arch, model) profiles.

An architecture has a compute rate ``compute`` (GFLOP/ms), a memory bandwidth ``bw`` (MB/ms),
a launch ``overhead`` (ms), a parallel ``width`` (the batch it absorbs almost for free), a
memory capacity ``mem_mb`` and a jitter class (p99 / p50 ``ratio``: steady 1.05-1.15, normal
1.3-2.2, heavy 3-6). A model has ``gflop`` per item, ``weights_mb`` and ``act_mb`` per item.
The median latency of a batch ``b`` is::

    t_c = gflop / compute x (1 + (b - 1) / width)        # compute
    t_m = (weights_mb + act_mb x b) / bw                  # memory traffic
    p50(b) = (overhead + max(t_c, t_m) + 0.15 min(t_c, t_m)) x maturity

with ``maturity`` log-uniform in 1-2.5 per (arch, model) (how well the engine is tuned), and
``p99(b) = p50(b) x (1 + (ratio - 1) b^-0.15)`` (batching evens the tail out a little).
``max_batch`` is the largest power of two <= 64 whose activations fit beside the weights,
capped by a drawn engine limit. Latencies here are unscaled; :mod:`.load` scales them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Arch", "Model", "RawProfile", "build_book", "draw_archs", "draw_models", "logu"]

JITTER = {"steady": (1.05, 1.15), "normal": (1.3, 2.2), "heavy": (3.0, 6.0)}
ARCH_STEMS = ["hbm", "lp", "x86", "arm", "tpx", "dsp", "igpu", "fpx", "risc", "wafer"]
MODEL_KINDS = ["vis", "txt", "asr", "rec", "det", "gen"]
ENGINE_LIMITS = [1, 2, 4, 8, 16, 32, 64]
ENGINE_LIMIT_P = [0.05, 0.1, 0.15, 0.2, 0.2, 0.15, 0.15]


def logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform in ``[lo, hi]``."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True, slots=True)
class Arch:
    """One architecture of the roofline model (units in the module docstring)."""

    name: str
    compute: float
    bw: float
    overhead: float
    width: int
    mem_mb: float
    jitter: str
    ratio: float
    kind: Literal["edge", "cloud"]


@dataclass(frozen=True, slots=True)
class Model:
    """One model: work per item and memory footprint."""

    name: str
    gflop: float
    weights_mb: float
    act_mb: float


@dataclass(frozen=True, slots=True)
class RawProfile:
    """An (arch, model) profile before scaling: ``points`` are ``(batch, p50, p99)`` in ms."""

    max_batch: int
    points: tuple[tuple[int, float, float], ...]


def draw_archs(rng: np.random.Generator, n: int) -> list[Arch]:
    """``n`` architectures with distinct name stems."""
    stems = rng.choice(ARCH_STEMS, size=n, replace=False)
    out = []
    for i, stem in enumerate(stems):
        jit = str(rng.choice(list(JITTER), p=[0.3, 0.45, 0.25]))
        compute = logu(rng, 0.05, 50.0)
        bw = logu(rng, 2.0, 200.0)
        overhead = logu(rng, 0.03, 2.0)
        width = int(rng.choice([1, 2, 4, 8, 16, 32]))
        mem_mb = logu(rng, 2_000, 80_000)
        ratio = float(rng.uniform(*JITTER[jit]))
        kind: Literal["edge", "cloud"] = "edge" if rng.random() < 0.5 else "cloud"
        out.append(Arch(f"{stem}{i}", compute, bw, overhead, width, mem_mb, jit, ratio, kind))
    return out


def draw_models(rng: np.random.Generator, n: int) -> list[Model]:
    """``n`` models, named ``m<i>-<kind>``."""
    out = []
    for i in range(n):
        name = f"m{i}-{rng.choice(MODEL_KINDS)}"
        gflop = logu(rng, 0.005, 30.0)
        weights = logu(rng, 5, 3_000)
        act = logu(rng, 0.5, 400)
        out.append(Model(name, gflop, weights, act))
    return out


def p50_at(a: Arch, m: Model, b: int, maturity: float) -> float:
    """The roofline median of the module docstring (ms, unscaled)."""
    tc = m.gflop / a.compute * (1.0 + (b - 1) / a.width)
    tm = (m.weights_mb + m.act_mb * b) / a.bw
    return (a.overhead + max(tc, tm) + 0.15 * min(tc, tm)) * maturity


def build_book(
    rng: np.random.Generator, archs: list[Arch], models: list[Model]
) -> dict[tuple[str, str], RawProfile]:
    """Every (arch, model) whose weights and one item's activations fit in memory.

    Profiled batches: 1, ``max_batch`` and each power of two between them with
    probability 1/2.
    """
    book: dict[tuple[str, str], RawProfile] = {}
    for a in archs:
        for m in models:
            free = a.mem_mb - m.weights_mb
            if free < m.act_mb:
                continue
            fit = int(free // m.act_mb)
            mb = 1
            while mb * 2 <= min(fit, 64):
                mb *= 2
            if mb > 1:
                mb = int(min(mb, rng.choice(ENGINE_LIMITS, p=ENGINE_LIMIT_P)))
            mat = logu(rng, 1.0, 2.5)
            sizes = sorted(
                {1, mb} | {s for s in (2, 4, 8, 16, 32) if s < mb and rng.random() < 0.5}
            )
            pts = []
            for b in sizes:
                p50 = p50_at(a, m, b, mat)
                r = 1.0 + (a.ratio - 1.0) * b**-0.15
                pts.append((b, p50, p50 * r))
            book[(a.name, m.name)] = RawProfile(mb, tuple(pts))
    return book
