"""Online self-check: do the policy's deviations from earliest completion pay, right now?

``synergai`` starts from earliest completion (EC) and deviates from it (protect, yield,
explore, shed) only where its rules predict a win. A rule can be wrong on a fleet no one
tested. This module measures, while routing, whether the deviations pay, and switches them
off where they do not, so a bad rule costs little anywhere.

**Two twins.** A :class:`Twin` is a virtual fleet: per pool one FIFO of its
``sum(instances)`` available slots (identical servers under join-the-shortest-queue behave as
one multi-server queue), the pool's rtt, and the real view's health (re-read every 0.25 s).
Both twins are fed every arrival, with the same service draw (common random numbers: a
log-normal of the corrected mean ``c * mean`` and the profile's p99 spread, at one standard
normal ``z`` per request):

* the *EC twin* routes each request as earliest completion would, on its own state;
* the *mirror* takes the policy's actual choice (the chosen pool, or nothing for a shed).

For each request each twin gives the probability that it is late there (:func:`p_late` on
the twin's wait and the service distribution); a shed counts 1. The two are the same model
with the same noise, so the model's own bias and the pooled-queue approximation cancel: only
the decisions differ. (Comparing the real view's own prediction against the EC twin did not:
the real per-worker queues and the real failures made the policy look worse than a pooled,
fault-free twin under overload, and the check switched off deviations that were saving 50
points of violations.)

**The comparison.** Per model (class) and overall, exponentially decayed sums (``TAU_S``) of
the mirror's (``R``) and the EC twin's (``T``) expected violations and of requests (``n``)
are kept; deviations *lose* when, after at least ``max(MIN_S, HORIZON_SLOS * longest SLO)``
of observation (1 s, or ten of the longest SLO)::

    R - T > Z * sqrt(R + T) + FLOOR + TOLERANCE * n

(``Z = 3``: three sigmas of the two counts' noise; ``FLOOR = 2`` requests: a handful never
trips; ``TOLERANCE = 0.005``: the no-harm bound of half a point.) The wait lets a deviation's
deferred benefit show: a shed costs one violation at once and shortens the queue for the
requests after it (random-5003, 1.1x overload: with half a second the check switched off
sheds that were worth 45 points).

On a loss overall, every deviation is switched off (the policy is EC) for ``hold`` seconds;
on a loss of one class's own requests, that class's deviations are. ``hold`` starts at
``HOLD_S`` and doubles, up to ``HOLD_MAX_S``, when the check trips again within ``2 * hold``
of switching back on. The sums restart when the deviations come back on (while they are off
the policy *is* EC and the comparison carries no information); the twins keep running.

What it does not see: errors of the model itself (a profile that is wrong for every
policy alike). Those are the online correction's job, and shedding on an uncalibrated
prediction is refused by the policy itself (``synergai``: never shed on a correction that
has not been sampled recently).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from typing import Any

from gateway.routing.framework import Estimate
from gateway.routing.state import WorkerState

__all__ = [
    "FLOOR",
    "HOLD_MAX_S",
    "HOLD_S",
    "HORIZON_SLOS",
    "MIN_S",
    "TAU_S",
    "TOLERANCE",
    "ClassCheck",
    "SelfCheck",
    "Twin",
    "Z",
    "p_late",
]

TAU_S = 5.0
"""Time constant (s) of the decayed violation sums."""
Z = 3.0
"""Standard deviations of noise a loss must exceed."""
FLOOR = 2.0
"""Expected violations (requests) a loss must exceed besides the noise."""
TOLERANCE = 0.005
"""A loss must also exceed this fraction of the requests (half a point: the no-harm bound)."""
MIN_S = 1.0
"""Observation (s) before a loss may trip: a deviation's deferred effects (a shed shortens the
queue for the requests after it) play out within about this long."""
HORIZON_SLOS = 10.0
"""...or within this many of the longest SLO seen, when that is longer."""
HOLD_S = 5.0
"""First switch-off (s) after a loss."""
HOLD_MAX_S = 60.0
"""Longest switch-off (s)."""
CAPACITY_EVERY_S = 0.25
"""How often (s) the twin re-reads each pool's available slots from the view."""

_Z99 = 2.3263478740408408
_SQRT2 = math.sqrt(2.0)
_erfc = math.erfc
_log = math.log
_exp = math.exp
_sqrt = math.sqrt


def _sigma(mean: float, p99: float) -> float:
    """Log-normal sigma from its mean and p99: ``sigma^2/2 - Z99*sigma + ln(p99/mean) = 0``."""
    r = _log(p99 / mean) if mean > 0.0 and p99 > mean else 0.0
    d = _Z99 * _Z99 - 2.0 * r
    return _Z99 - _sqrt(d) if d > 0.0 else _Z99


def p_late(slack_ms: float, mean_ms: float, p99_ms: float) -> float:
    """``P(S > slack)`` for a log-normal service ``S`` of mean ``mean_ms`` and p99 ``p99_ms``.

    ``slack`` is what is left of the SLO after rtt and wait; ``<= 0`` is certainly late.
    """
    if slack_ms <= 0.0:
        return 1.0
    if mean_ms <= 0.0:
        return 0.0
    sigma = _sigma(mean_ms, p99_ms)
    if sigma <= 1e-9:
        return 1.0 if mean_ms > slack_ms else 0.0
    p50 = mean_ms * _exp(-0.5 * sigma * sigma)
    return 0.5 * _erfc(_log(slack_ms / p50) / (sigma * _SQRT2))


class Twin:
    """A virtual fleet: per pool one FIFO of its available slots; see the module docstring."""

    __slots__ = ("_next_cap", "pools")

    def __init__(self) -> None:
        self.pools: dict[str, list[float]] = {}
        """Per pool: the free time (s) of each of its available slots, as a heap."""
        self._next_cap = -math.inf

    def capacity(self, view: Any, now: float) -> None:
        """Resize each pool's slots to its available servers' instances (every 0.25 s)."""
        if now < self._next_cap:
            return
        self._next_cap = now + CAPACITY_EVERY_S
        want: dict[str, int] = {}
        states: Sequence[WorkerState] = view.states()
        for s in states:
            if s.available(now):
                want[s.pool] = want.get(s.pool, 0) + s.instances
            else:
                want.setdefault(s.pool, 0)
        for pool, n in want.items():
            heap = self.pools.get(pool)
            if heap is None:
                self.pools[pool] = [now] * n
                continue
            if len(heap) > n:  # servers went down: their queued work is lost
                heap.sort()
                del heap[n:]
            elif len(heap) < n:
                heap.extend([now] * (n - len(heap)))
                heapq.heapify(heap)

    def earliest(self, ests: Sequence[Estimate], now: float) -> Estimate | None:
        """The candidate whose pool completes a request first on this twin (EC)."""
        pools = self.pools
        best_t = math.inf
        best: Estimate | None = None
        for e in ests:
            s = e.state
            heap = pools.get(s.pool)
            if not heap:
                continue
            a = now + s.rtt_ms * 0.0005
            f = heap[0]
            t = (a if a > f else f) + (e.service_ms + s.rtt_ms * 0.5) * 0.001
            if t < best_t:
                best_t, best = t, e
        return best

    def place(self, e: Estimate, z: float, slo_ms: float, now: float) -> float:
        """Queue a request predicted by ``e`` on its pool; its probability of being late.

        Its service is the log-normal of mean ``e.service_ms`` and p99 ``c * p99`` drawn at the
        standard normal ``z`` (the same ``z`` on every twin: common random numbers).
        """
        s = e.state
        heap = self.pools.get(s.pool)
        if not heap:
            return 1.0
        a = now + s.rtt_ms * 0.0005
        f = heap[0]
        begin = a if a > f else f
        mean = e.service_ms
        p99 = e.tail_ms - (e.predicted_ms - mean)
        wait_ms = (begin - a) * 1000.0
        p = p_late(slo_ms - s.rtt_ms - wait_ms, mean, p99)
        sigma = _sigma(mean, p99)
        draw = mean * _exp(sigma * z - 0.5 * sigma * sigma)
        heapq.heapreplace(heap, begin + draw * 0.001)
        return p


class ClassCheck:
    """Decayed real/twin expected violations of one class (or of all), and its switch."""

    __slots__ = ("hold", "n", "off_until", "r", "since", "t", "trips", "ts")

    def __init__(self) -> None:
        self.since = -math.inf
        self.r = 0.0
        self.t = 0.0
        self.n = 0.0
        self.ts = -math.inf
        self.off_until = -math.inf
        self.hold = HOLD_S
        self.trips = 0

    def on(self, now: float) -> bool:
        """Whether deviations are allowed at ``now``."""
        return now >= self.off_until

    def add(self, real: float, twin: float, now: float, horizon: float = MIN_S) -> bool:
        """Fold one request in; True if this trips the switch (deviations off from now).

        ``horizon``: the observation (s) needed since the sums (re)started before a loss trips.
        """
        if now < self.off_until:
            return False
        if self.ts == -math.inf or self.ts < self.off_until:  # (re)start after being off
            self.since = now
            self.r = self.t = self.n = 0.0
            self.ts = now
        dt = now - self.ts
        if dt > 0.0:
            k = _exp(-dt / TAU_S)
            self.r *= k
            self.t *= k
            self.n *= k
            self.ts = now
        self.r += real
        self.t += twin
        self.n += 1.0
        if (
            now - self.since >= horizon
            and self.r - self.t > Z * _sqrt(self.r + self.t) + FLOOR + TOLERANCE * self.n
        ):
            again = now - self.off_until < 2.0 * self.hold
            self.hold = min(self.hold * 2.0, HOLD_MAX_S) if again and self.trips else HOLD_S
            self.off_until = now + self.hold
            self.trips += 1
            return True
        return False

    def row(self, now: float) -> dict[str, Any]:
        """JSON-ready state."""
        return {
            "deviations": "on" if self.on(now) else "off",
            "off_for_s": round(max(0.0, self.off_until - now), 3),
            "expected_violations": round(self.r, 3),
            "earliest_completion_expected_violations": round(self.t, 3),
            "requests": round(self.n, 1),
            "trips": self.trips,
        }


class SelfCheck:
    """The two twins and the per-class and overall switches of one policy instance."""

    __slots__ = ("_rng", "all", "classes", "ec", "horizon", "mirror")

    def __init__(self, seed: int = 0) -> None:
        self.ec = Twin()
        """Earliest completion replayed on the arrivals."""
        self.mirror = Twin()
        """The policy's own pool choices and sheds replayed on the same arrivals."""
        self._rng = random.Random(seed ^ 0x5EC7)
        self.all = ClassCheck()
        self.classes: dict[str, ClassCheck] = {}
        self.horizon = MIN_S

    def allows(self, model: str, now: float) -> bool:
        """Whether a request of ``model`` may deviate from earliest completion at ``now``."""
        if now < self.all.off_until:
            return False
        c = self.classes.get(model)
        return c is None or now >= c.off_until

    def record(
        self,
        model: str,
        chosen: Estimate | None,
        ests: Sequence[Estimate],
        slo_ms: float,
        view: Any,
        now: float,
    ) -> None:
        """One request: the policy's choice (None: shed) on the mirror against EC's on its twin."""
        self.ec.capacity(view, now)
        self.mirror.capacity(view, now)
        z = self._rng.gauss(0.0, 1.0)
        e = self.ec.earliest(ests, now)
        twin = 1.0 if e is None else self.ec.place(e, z, slo_ms, now)
        real = 1.0 if chosen is None else self.mirror.place(chosen, z, slo_ms, now)
        h = HORIZON_SLOS * slo_ms * 0.001
        if h > self.horizon:
            self.horizon = h
        c = self.classes.get(model)
        if c is None:
            c = self.classes[model] = ClassCheck()
        c.add(real, twin, now, self.horizon)
        self.all.add(real, twin, now, self.horizon)

    def rows(self, now: float) -> dict[str, Any]:
        """JSON-ready report: overall and per class."""
        return {
            "all": self.all.row(now),
            "classes": {m: c.row(now) for m, c in sorted(self.classes.items())},
        }
