"""Synthetic hardware and models: a profile library per scenario, drawn from a seed.

Every scenario of the families gets its own architectures and models, so no rule can lean on
the shipped profiles. An architecture is drawn from one of four *device classes*, each with
its own ranges (speed relative to a reference device, batch scaling, tail, largest batch):

============  =============  ==================  ============  ===========
class         speed (x ref)  fixed share ``f``   p99 / p50     max batch
============  =============  ==================  ============  ===========
``npu``       0.7-6          0.15-0.5            1.15-1.8      2-16
``cpu``       2-15           0.03-0.25           1.5-3.0       4-64
``fpga``      0.5-4          0.05-0.3            1.02-1.15     1-4
``gpu``       0.15-1.5       0.55-0.95           1.2-2.6       16-256
============  =============  ==================  ============  ===========

A model has a *kind* (``conv``, ``attn``, ``mlp``, ``rnn``) and a reference cost ``base``
(ms at batch 1), log-uniform in 0.3-25 ms. Each class has an affinity per kind (an NPU is
good at ``conv``, a CPU at ``mlp`` ...), times a log-normal noise of sd 0.5 per (arch, model):

* ``p50(1) = base x speed x affinity x noise``;
* ``p50(b) = p50(1) x (f + (1 - f) x b^g)`` with ``g`` in 0.9-1.15 per arch: a large fixed
  share ``f`` is a device that batches well (a GPU), a small one scales linearly (a CPU);
* ``p99(b) / p50(b) = tail x b^t`` with ``t`` in -0.12-0.03 (floored at 1.01): tails
  narrow with batch on most devices;
* listed at batch sizes 1, 2, 4, ... up to ``max_batch`` (the profile format interpolates).

An (arch, model) pair is unsupported with probability 0.2 (every model keeps one arch), and
when one architecture is fastest at batch 1 for every model of a library of two or more, it
is made 1.2-2x slower than the runner-up on one model: no architecture is fastest for all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gateway.prediction.profiles import ArchInfo, LatencyPoint, Profile, ProfileBook

__all__ = ["CLASSES", "KINDS", "Catalog", "draw_catalog"]

KINDS = ("conv", "attn", "mlp", "rnn")


@dataclass(frozen=True, slots=True)
class _Class:
    speed: tuple[float, float]
    fixed: tuple[float, float]
    tail: tuple[float, float]
    max_batch: tuple[int, int]
    affinity: dict[str, float]
    kind: str  # archs.yaml kind


CLASSES: dict[str, _Class] = {
    "npu": _Class((0.7, 6.0), (0.15, 0.5), (1.15, 1.8), (2, 16),
                  {"conv": 0.6, "attn": 2.5, "mlp": 1.0, "rnn": 2.0}, "edge"),
    "cpu": _Class((2.0, 15.0), (0.03, 0.25), (1.5, 3.0), (4, 64),
                  {"conv": 1.4, "attn": 1.2, "mlp": 0.5, "rnn": 0.9}, "edge"),
    "fpga": _Class((0.5, 4.0), (0.05, 0.3), (1.02, 1.15), (1, 4),
                   {"conv": 1.0, "attn": 3.0, "mlp": 0.4, "rnn": 0.8}, "edge"),
    "gpu": _Class((0.15, 1.5), (0.55, 0.95), (1.2, 2.6), (16, 256),
                  {"conv": 1.0, "attn": 0.7, "mlp": 1.6, "rnn": 1.3}, "cloud"),
}  # fmt: skip


@dataclass(frozen=True)
class Catalog:
    """A drawn profile library.

    Attributes:
        book: the profiles and the architectures' info.
        arch_class: each architecture's device class.
        models: the model names, in draw order.
    """

    book: ProfileBook
    arch_class: dict[str, str]
    models: tuple[str, ...]

    @property
    def archs(self) -> list[str]:
        """Architecture names, in draw order."""
        return list(self.arch_class)

    def serves(self, arch: str) -> list[str]:
        """The models ``arch`` has a profile for."""
        return [m for m in self.models if self.book.get(arch, m) is not None]

    def scaled(self, factor: float) -> Catalog:
        """Every latency multiplied by ``factor`` (slower models, same shapes)."""
        return Catalog(self.book.scaled(factor), self.arch_class, self.models)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))))


def _points(
    p50_1: float, fixed: float, gamma: float, tail: float, tilt: float, mb: int
) -> tuple[LatencyPoint, ...]:
    out = []
    b = 1
    while b <= mb:
        p50 = p50_1 * (fixed + (1.0 - fixed) * b**gamma)
        ratio = max(1.01, tail * b**tilt)
        out.append(LatencyPoint(b, round(p50, 4), round(p50 * ratio, 4)))
        b *= 2
    if out[-1].batch != mb:
        p50 = p50_1 * (fixed + (1.0 - fixed) * mb**gamma)
        out.append(LatencyPoint(mb, round(p50, 4), round(p50 * max(1.01, tail * mb**tilt), 4)))
    return tuple(out)


def _pow2_between(rng: np.random.Generator, lo: int, hi: int) -> int:
    choices = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if lo <= b <= hi]
    return int(rng.choice(choices))


def draw_catalog(
    rng: np.random.Generator, n_arch: int, n_model: int, classes: tuple[str, ...] | None = None
) -> Catalog:
    """A library of ``n_arch`` architectures and ``n_model`` models (see the module docstring).

    Args:
        rng: the scenario's generator.
        n_arch: architectures (>= 1).
        n_model: models (>= 1).
        classes: device classes to draw from (default: all four; the first architectures
            take distinct classes while they last).
    """
    pool = list(classes or CLASSES)
    order = [pool[i] for i in rng.permutation(len(pool))]
    cls = [order[i] if i < len(order) else str(rng.choice(pool)) for i in range(n_arch)]
    archs = {f"{c}{i}": c for i, c in enumerate(cls)}
    kinds = [str(rng.choice(KINDS)) for _ in range(n_model)]
    models = tuple(f"{k}-{j}" for j, k in enumerate(kinds))
    base = {m: _log_uniform(rng, (0.3, 25.0)) for m in models}
    shape = {
        a: (
            _log_uniform(rng, CLASSES[c].speed),
            _uniform(rng, CLASSES[c].fixed),
            float(rng.uniform(0.9, 1.15)),
            _uniform(rng, CLASSES[c].tail),
            float(rng.uniform(-0.12, 0.03)),
        )
        for a, c in archs.items()
    }
    kind = dict(zip(models, kinds, strict=True))

    def cost(a: str, m: str) -> float:
        return base[m] * shape[a][0] * CLASSES[archs[a]].affinity[kind[m]]

    p50: dict[tuple[str, str], float] = {}
    for a in archs:
        for m in models:
            if n_arch > 1 and rng.random() < 0.2:
                continue
            p50[(a, m)] = cost(a, m) * math.exp(float(rng.normal(0.0, 0.5)))
    for m in models:  # every model keeps at least one home
        if not any((a, m) in p50 for a in archs):
            a = str(rng.choice(list(archs)))
            p50[(a, m)] = cost(a, m)
    for a in archs:  # and every arch serves something
        if not any((a, m) in p50 for m in models):
            m = str(rng.choice(list(models)))
            p50[(a, m)] = cost(a, m)
    _break_dominance(rng, p50, list(archs), list(models))
    profiles: dict[tuple[str, str], Profile] = {}
    for (a, m), v in p50.items():
        c = CLASSES[archs[a]]
        mb = _pow2_between(rng, *c.max_batch)
        _, fixed, gamma, tail, tilt = shape[a]
        pts = _points(v, fixed, gamma, tail, tilt, mb)
        profiles[(a, m)] = Profile(a, m, mb, pts, "synthetic", "loadtest.sim.families")
    info = {a: ArchInfo("edge" if CLASSES[c].kind == "edge" else "cloud") for a, c in archs.items()}
    return Catalog(ProfileBook(profiles, info), archs, models)


def _break_dominance(
    rng: np.random.Generator, p50: dict[tuple[str, str], float], archs: list[str], models: list[str]
) -> None:
    """Make sure no architecture is fastest (at batch 1) for every model."""
    if len(archs) < 2 or len(models) < 2:
        return
    best = {}
    for m in models:
        have = sorted((p50[(a, m)], a) for a in archs if (a, m) in p50)
        best[m] = have
    winners = {have[0][1] for have in best.values()}
    if len(winners) > 1:
        return
    contested = [m for m in models if len(best[m]) > 1]
    if not contested:
        return
    m = str(rng.choice(contested))
    (_, a), (runner, _) = best[m][0], best[m][1]
    p50[(a, m)] = runner * float(rng.uniform(1.2, 2.0))
