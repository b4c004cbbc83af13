"""Arrival traces, generated with numpy in one go per workload stream (DESIGN.md §4).

Arrival semantics (``rate`` is the stream's ``rate_rps``):

* ``poisson``: exponential gaps of mean ``1 / rate``.
* ``constant``: equal gaps ``1 / rate``, the first arrival at ``0.5 / rate``.
* ``bursty``: a Poisson process whose rate is ``rate x factor`` for ``on_s`` seconds, then
  ``rate`` for ``off_s`` seconds, repeating from ``t = 0``.
* ``diurnal``: a Poisson process of rate ``rate x (1 + amplitude x sin(2 pi t / period_s))``.

Time-varying rates are drawn by thinning a Poisson process at the peak rate. Each stream has
its own generator seeded by ``(seed, stream index)``, so adding a stream does not change the
others. Every request also carries ``z ~ N(0, 1)``: its true service time on any worker is
``exp(mu + sigma z) x speed`` (the profile's log-normal), which is what the oracle knows.

A scenario whose ``overhead_ms`` has a spread (``{p50, p99}``) also gives each request its own
fixed cost, drawn by a generator of its own (``(seed, 0, 1)``), so the arrivals and ``z`` are
those of the same scenario without it; a constant overhead needs no array. Its ``device``
part (time added on the slot) is drawn likewise, on ``(seed, 0, 2)``, whenever it is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.scenario import Scenario, Workload

__all__ = ["Trace", "arrival_times", "build_trace", "rate_at"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Trace:
    """Arrivals of a whole scenario, sorted by time.

    Attributes:
        t: arrival times (s).
        stream: index of each request's workload stream.
        z: standard normal quantile of each request's true service time.
        duration_s: the scenario's duration (s).
        overhead_ms: each request's live-path fixed cost (ms) when the scenario's
            ``overhead_ms`` has a spread; None: the scenario's constant.
        device_ms: each request's extra time on its slot (ms, ``overhead_ms.device``); None:
            none.
    """

    t: FloatArray
    stream: npt.NDArray[np.int32]
    z: FloatArray
    duration_s: float
    overhead_ms: FloatArray | None = None
    device_ms: FloatArray | None = None

    def keep(self, mask: npt.NDArray[np.bool_]) -> Trace:
        """The requests where ``mask`` is true."""
        oh = None if self.overhead_ms is None else self.overhead_ms[mask]
        dv = None if self.device_ms is None else self.device_ms[mask]
        return Trace(self.t[mask], self.stream[mask], self.z[mask], self.duration_s, oh, dv)

    def __len__(self) -> int:
        return int(self.t.shape[0])


def rate_at(w: Workload, t: FloatArray) -> FloatArray:
    """The stream's instantaneous rate (requests/s) at times ``t``."""
    if w.arrival == "bursty" and w.burst is not None:
        b = w.burst
        phase = np.mod(t, b.on_s + b.off_s)
        out: FloatArray = np.where(phase < b.on_s, w.rate_rps * b.factor, w.rate_rps)
        return out
    if w.arrival == "diurnal" and w.period_s is not None:
        wave: FloatArray = w.rate_rps * (1.0 + w.amplitude * np.sin(2.0 * math.pi * t / w.period_s))
        return wave
    return np.full_like(t, w.rate_rps)


def _poisson(rate: float, duration_s: float, rng: np.random.Generator) -> FloatArray:
    n = int(rate * duration_s + 6.0 * math.sqrt(rate * duration_s + 1.0) + 16)
    t: FloatArray = np.cumsum(rng.exponential(1.0 / rate, size=n))
    while t[-1] < duration_s:
        more = np.cumsum(rng.exponential(1.0 / rate, size=n)) + t[-1]
        t = np.concatenate([t, more])
    return t[t < duration_s]


def arrival_times(w: Workload, duration_s: float, rng: np.random.Generator) -> FloatArray:
    """Arrival times (s, sorted, in ``[0, duration_s)``) of one workload stream."""
    if w.arrival == "constant":
        n = math.floor(duration_s * w.rate_rps - 0.5) + 1
        return (np.arange(max(n, 0), dtype=np.float64) + 0.5) / w.rate_rps
    if w.arrival == "poisson":
        return _poisson(w.rate_rps, duration_s, rng)
    peak = w.rate_rps * (
        max(w.burst.factor, 1.0) if w.arrival == "bursty" and w.burst else 1.0 + w.amplitude
    )
    t = _poisson(peak, duration_s, rng)
    keep = rng.random(t.shape[0]) * peak < rate_at(w, t)
    return t[keep]


def build_trace(scenario: Scenario, seed: int) -> Trace:
    """The whole scenario's arrivals (apply ``Scenario.scaled()`` first)."""
    ts, ss, zs = [], [], []
    for i, w in enumerate(scenario.workload):
        rng = np.random.default_rng([seed, i])
        t = arrival_times(w, scenario.duration_s, rng)
        ts.append(t)
        ss.append(np.full(t.shape[0], i, dtype=np.int32))
        zs.append(rng.standard_normal(t.shape[0]))
    t_all = np.concatenate(ts)
    order = np.argsort(t_all, kind="stable")
    oh: FloatArray | None = None
    mu, sigma = scenario.overhead.lognormal()
    if sigma > 0:
        rng = np.random.default_rng([seed, 0, 1])
        oh = np.exp(mu + sigma * rng.standard_normal(t_all.shape[0]))
    dv: FloatArray | None = None
    dev = scenario.overhead.device
    if dev is not None and dev.p50 > 0:
        mu, sigma = dev.lognormal()
        rng = np.random.default_rng([seed, 0, 2])
        dv = np.exp(mu + sigma * rng.standard_normal(t_all.shape[0]))
    return Trace(
        t_all[order],
        np.concatenate(ss)[order],
        np.concatenate(zs)[order],
        scenario.duration_s,
        oh,
        dv,
    )
