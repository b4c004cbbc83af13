"""Online self-check: do the policy's deviations from earliest completion pay, right now?

``synergai`` starts from earliest completion (EC) and deviates from it (protect, yield,
explore, shed) only where its rules predict a win. A rule can be wrong on a fleet no one
tested, so two checks run while routing and switch deviations off where they lose.

**1. A class's own deviations (per model, immediate).** Every request that the policy places
elsewhere than EC would (``ref``, computed on the same view at the same instant; explicit
yields and sheds excepted, below) is scored on the real view itself: its probability of being
late where it went, ``R``, against where EC would have sent it, ``T`` (:func:`p_late` of the
two estimates). This checks the safety property directly: a deviation must cost the request
itself nothing. Both figures come from one view and one model, so no model error biases them.
A rule that sends requests where they are predicted late (the first version's yield, issue 15)
trips it within its first second.

**2. Everything, over time (overall, with twins).** A deviation's benefit is deferred and
lands on other requests (a protected worker is free when a tight request comes; a shed
shortens the queue for those after it), and so can its harm. Two *twins*, virtual fleets with
per pool one FIFO of its available slots (identical servers under join-the-shortest-queue
behave as one multi-server queue), restart every ``ANCHOR_S`` from the real view's queues and
are fed every arrival with one service draw (common random numbers: a log-normal of the
corrected mean and the profile's p99 spread, at one standard normal per request). The *EC
twin* routes each request as EC would on its own state; the *mirror* takes the policy's
choice (its pool, or nothing for a shed: counted late). Each gives the request's probability
of being late there. Within a window both start from the real queues (the EC twin plus what
it carries, below) and differ only by the decisions, so deferred effects show. The EC twin
keeps, across anchors, the work its own decisions piled up beyond the mirror's: at each
anchor, per pool, the work (s) it held past the mirror's is added back onto the real
queues, spread over the pool's slots (taken off when negative). Without that, every anchor
handed the EC twin the queues the policy's sheds had kept short: under sustained overload
the twin never built EC's backlog, each shed looked like a pure loss, and the check
switched sheds off where they won (overload-101020, four traces: 43.3 % violations against
73.5 % for EC; 16.5 % with the carry-over). A pool's slots are served at the speed of its
best worker, except the slots of a worker measured (a calibrated correction) at least
``SLOW`` times slower than the pool's fastest for one of its models: those keep their own
speed, and a request goes to whichever slot ends it first (:func:`slow_slots`). Without
that, one worker slowed 3x inside a pool counted as a whole fast slot, a model-driven EC
queued onto it for free, the policy that avoided it looked worse, and the check tripped
into a fallback that lost to EC (faults-105011: 30.2 % against 28.7 %; 28.3 % now).
Dropping such slots instead broke the shipped drift-crash scenario (13 -> 493 violations:
the mirror lost capacity the policy does use). Between anchors the twins follow the model,
not the world: when the world is slower than the model (a slowdown the correction has not
caught up with), the policy's informed choices look worse than a model-driven EC. That bias
is why this check is a coarse backstop, with a 2-point tolerance.

**The switch.** Per check, exponentially decayed sums (``TAU_S``) of ``R``, ``T`` and of
requests ``n``; after at least ``max(MIN_S, HORIZON_SLOS * longest SLO)`` (at most ``TAU_S``)
of observation, deviations *lose* when::

    R - T > Z * sqrt(R + T) + FLOOR + tolerance * n

(``Z = 3``: three sigmas of the two counts' noise; ``FLOOR = 2`` requests: a handful never
trips; ``tolerance`` = ``TOLERANCE`` (half a point, the no-harm bound) for a class's own
deviations, ``TOLERANCE_ALL`` (2 points) overall.) The wait lets a deviation's deferred
benefit show: a shed costs one violation at once and shortens the queue for the requests
after it (random-5003, 1.1x overload: with half a second the check switched off sheds worth
45 points). A loss overall switches every deviation off (the policy is EC) for ``hold``
seconds; a loss of one class's own deviations switches that class's. ``hold`` starts at
``HOLD_S`` and doubles, up to ``HOLD_MAX_S``, when the check trips again within ``2 * hold``
of switching back on. The sums go on decaying through a hold and are not wiped when it
ends: a loss is forgotten at the rate it is counted (``TAU_S``), so a rule that keeps losing
is switched off again at its first request back, instead of losing for a whole new horizon
first (wild-4-132: about 200 violations per 5 s horizon), while a small loss has decayed
within the bound by then.

Explicit yields to a higher priority and sheds are intended losses of their request: they
enter only the overall check, where the gain of the others must pay for them. (Counting every
request of a class against its switch switched off the victims of protection and the
yielding classes: overload member 101003 went from 34 % to 62 % violations. Comparing the
real view's own predictions with an un-anchored EC twin switched off deviations worth 45
points under overload; an EC twin fed EC's choices *as computed on the real view* flooded its
best pool and hid a deliberately bad rule.)

What neither sees: errors of the model itself (a profile wrong for every policy alike). Those
are the online correction's job, and the policy never sheds on an uncalibrated prediction.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from typing import Any

from gateway.routing.framework import Estimate
from gateway.routing.state import WorkerState
from gateway.routing.view import FleetView

__all__ = [
    "FLOOR",
    "HOLD_MAX_S",
    "HOLD_S",
    "HORIZON_SLOS",
    "MIN_S",
    "TAU_S",
    "TOLERANCE",
    "TOLERANCE_ALL",
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
"""A class's own deviations lose beyond this fraction of them (half a point: no harm)."""
TOLERANCE_ALL = 0.02
"""The overall (twin) check loses beyond this fraction of the requests (the twins' bias)."""
MIN_S = 1.0
"""Observation (s) before a loss may trip: a deviation's deferred effects (a shed shortens the
queue for the requests after it) play out within about this long."""
HORIZON_SLOS = 10.0
"""...or within this many of the longest SLO seen, when that is longer."""
HOLD_S = 5.0
"""First switch-off (s) after a loss."""
HOLD_MAX_S = 60.0
"""Longest switch-off (s)."""
ANCHOR_S = 0.5
"""How often (s) both twins restart from the real view's queues."""
CALIBRATED_WEIGHT = 0.5
"""A correction is data, not the profile's prior, at this prior weight or less (the
policy's ``CALIBRATED``)."""
SLOW = 2.0
"""A worker this many times slower than its pool's fastest gets its own speed in the twins;
below it, treating its slots as the pool's best errs by less than half a slot."""

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


def _calibrated(s: WorkerState, now: float) -> list[tuple[str, float]]:
    """``(model, correction factor)`` of the worker's calibrated corrections: the samples
    outweigh the profile (``prior_weight <= CALIBRATED_WEIGHT``); an uncalibrated factor is
    the profile's prior, not a measured speed.
    """
    return [
        (m, s.cfac[m])
        for m, c in s.corrections.items()
        if c.samples and c.prior_weight(now) <= CALIBRATED_WEIGHT
    ]


def real_pools(view: FleetView, now: float) -> dict[str, list[float]]:
    """Per pool, the slot free times (s) of its available workers in the real view (heaps).

    Workers measured ``SLOW`` times slower than their pool's fastest are left out here and
    kept, with their own speed, by :func:`slow_slots`.
    """
    return _split(view, now)[0]


def slow_slots(view: FleetView, now: float) -> dict[str, list[list[Any]]]:
    """Per pool, ``[free time (s), worker]`` of each slot of a worker whose calibrated
    correction for one of its models is at least ``SLOW`` times the pool's least calibrated
    one for that model: a twin's pool is one FIFO of equal slots served at its best
    worker's speed, so such a slot is placed with its own speed instead (a worker slowed 3x
    inside a pool made a model-driven EC look better than the policy that avoided it, and
    the overall check tripped: faults-105011).
    """
    return _split(view, now)[1]


def _split(
    view: FleetView, now: float
) -> tuple[dict[str, list[float]], dict[str, list[list[Any]]]]:
    out: dict[str, list[float]] = {}
    slow: dict[str, list[list[Any]]] = {}
    states: Sequence[WorkerState] = view.states()
    least: dict[tuple[str, str], float] = {}
    for s in states:
        if s.available(now):
            for m, c in _calibrated(s, now):
                k = (s.pool, m)
                v = least.get(k)
                if v is None or c < v:
                    least[k] = c
    for s in states:
        slots = out.setdefault(s.pool, [])
        if not s.available(now):
            continue
        pool = s.pool
        if least and any(c >= SLOW * least[(pool, m)] for m, c in _calibrated(s, now)):
            slow.setdefault(pool, []).extend([f if f > now else now, s] for f in s.free)
            continue
        slots.extend(f if f > now else now for f in s.free)
    for slots in out.values():
        heapq.heapify(slots)
    return out, slow


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

    __slots__ = ("pools", "slow")

    def __init__(self) -> None:
        self.pools: dict[str, list[float]] = {}
        """Per pool: the free time (s) of each of its available slots, as a heap."""
        self.slow: dict[str, list[list[Any]]] = {}
        """Per pool: ``[free time (s), worker]`` of each slot of a slow worker
        (:func:`slow_slots`), served at that worker's own speed."""

    def anchor(
        self, pools: dict[str, list[float]], slow: dict[str, list[list[Any]]] | None = None
    ) -> None:
        """Start again from these pools' slot free times (each a heap; copied)."""
        self.pools = {p: list(h) for p, h in pools.items()}
        self.slow = {p: [list(x) for x in xs] for p, xs in slow.items()} if slow else {}

    def pending(self, now: float) -> dict[str, float]:
        """Per pool, the work (s) its slots hold beyond ``now``."""
        out: dict[str, float] = {}
        for p, heap in self.pools.items():
            w = 0.0
            for f in heap:
                if f > now:
                    w += f - now
            for x in self.slow.get(p, ()):
                f = x[0]
                if f > now:
                    w += f - now
            out[p] = w
        return out

    def carry(self, extra: dict[str, float], now: float) -> None:
        """Add ``extra`` work (s, may be negative) per pool, spread evenly over its slots
        (those of the heap: a slow worker's slots keep their own free times).
        """
        for p, d in extra.items():
            heap = self.pools.get(p)
            if not heap or d == 0.0:
                continue
            k = d / len(heap)
            self.pools[p] = h = [max(now, (f if f > now else now) + k) for f in heap]
            heapq.heapify(h)

    def _slot(self, e: Estimate, model: str, a: float) -> tuple[float, float, list[Any] | None]:
        """Where a request predicted by ``e`` starts first on its pool: ``(begin, speed
        ratio, the slow slot or None for the heap's first)``; ``begin`` inf when none.
        """
        s = e.state
        heap = self.pools.get(s.pool)
        best_t = math.inf
        best_b = math.inf
        best_r = 1.0
        best_x: list[Any] | None = None
        svc = e.service_ms * 0.001
        if heap:
            f = heap[0]
            best_b = a if a > f else f
            best_t = best_b + svc
        xs = self.slow.get(s.pool)
        if xs:
            c0 = s.cfac.get(model, 1.0)
            for x in xs:
                w: WorkerState = x[1]
                r = w.cfac.get(model, c0) / c0 if c0 > 0.0 else 1.0
                f = x[0]
                b = a if a > f else f
                t = b + svc * r
                if t < best_t:
                    best_t, best_b, best_r, best_x = t, b, r, x
        return best_b, best_r, best_x

    def earliest(self, ests: Sequence[Estimate], now: float, model: str = "") -> Estimate | None:
        """The candidate whose pool completes a request first on this twin (EC)."""
        pools = self.pools
        slow = self.slow
        best_t = math.inf
        best: Estimate | None = None
        for e in ests:
            s = e.state
            a = now + s.rtt_ms * 0.0005
            if s.pool in slow:
                b, r, _ = self._slot(e, model, a)
                if b == math.inf:
                    continue
                t = b + (e.service_ms * r + s.rtt_ms * 0.5) * 0.001
            else:
                heap = pools.get(s.pool)
                if not heap:
                    continue
                f = heap[0]
                t = (a if a > f else f) + (e.service_ms + s.rtt_ms * 0.5) * 0.001
            if t < best_t:
                best_t, best = t, e
        return best

    def place(self, e: Estimate, z: float, slo_ms: float, now: float, model: str = "") -> float:
        """Queue a request predicted by ``e`` on its pool; its probability of being late.

        Its service is the log-normal of mean ``e.service_ms`` and p99 ``c * p99`` drawn at the
        standard normal ``z`` (the same ``z`` on every twin: common random numbers), times the
        slot's speed ratio on a slow worker's slot.
        """
        s = e.state
        a = now + s.rtt_ms * 0.0005
        heap = self.pools.get(s.pool)
        x: list[Any] | None = None
        r = 1.0
        if s.pool in self.slow:
            begin, r, x = self._slot(e, model, a)
            if begin == math.inf:
                return 1.0
        else:
            if not heap:
                return 1.0
            f = heap[0]
            begin = a if a > f else f
        mean = e.service_ms * r
        p99 = (e.tail_ms - (e.predicted_ms - e.service_ms)) * r
        wait_ms = (begin - a) * 1000.0
        p = p_late(slo_ms - s.rtt_ms - wait_ms, mean, p99)
        sigma = _sigma(mean, p99)
        draw = mean * _exp(sigma * z - 0.5 * sigma * sigma)
        if x is not None:
            x[0] = begin + draw * 0.001
        else:
            assert heap
            heapq.heapreplace(heap, begin + draw * 0.001)
        return p


class ClassCheck:
    """Decayed real/twin expected violations of one class (or of all), and its switch."""

    __slots__ = ("hold", "n", "off_until", "r", "since", "t", "tolerance", "trips", "ts")

    def __init__(self, tolerance: float = TOLERANCE) -> None:
        self.tolerance = tolerance
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

        ``horizon``: the observation (s) needed since the first request before a loss trips.
        A hold freezes nothing: the sums decay over it like any gap between requests.
        """
        if now < self.off_until:
            return False
        if self.ts == -math.inf:  # the first request: the horizon starts now
            self.since = now
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
            and self.r - self.t > Z * _sqrt(self.r + self.t) + FLOOR + self.tolerance * self.n
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


def estimate_p_late(e: Estimate, slo_ms: float) -> float:
    """The probability that a request predicted by ``e`` misses ``slo_ms``."""
    base = e.predicted_ms - e.service_ms  # rtt + wait
    return p_late(slo_ms - base, e.service_ms, e.tail_ms - base)


class SelfCheck:
    """Both checks and their switches, for one policy instance; see the module docstring."""

    __slots__ = ("_next_anchor", "_rng", "all", "classes", "ec", "horizon", "mirror")

    def __init__(self, seed: int = 0) -> None:
        self.ec = Twin()
        """Earliest completion replayed on the arrivals, on its own state."""
        self.mirror = Twin()
        """The policy's own pool choices and sheds replayed on the same arrivals."""
        self._rng = random.Random(seed ^ 0x5EC7)
        self.all = ClassCheck(TOLERANCE_ALL)
        self.classes: dict[str, ClassCheck] = {}
        self.horizon = MIN_S
        self._next_anchor = -math.inf

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
        ref: Estimate,
        ests: Sequence[Estimate],
        slo_ms: float,
        view: FleetView,
        now: float,
        own: bool,
    ) -> None:
        """One request: where it went (``chosen``; None: shed) and where EC would send it.

        Args:
            model: its class.
            chosen: the policy's choice, or None for a shed.
            ref: EC's choice on the same view at the same instant.
            ests: the candidates (the EC twin chooses among them on its own state).
            slo_ms: its SLO.
            view: the routing view (anchors the twins).
            now: the decision's time.
            own: a placement deviation of its own (not an explicit yield, not a shed): scored
                against its class's switch.
        """
        h = HORIZON_SLOS * slo_ms * 0.001
        if h > self.horizon:
            self.horizon = h if h < TAU_S else TAU_S
        if own and chosen is not None:
            c = self.classes.get(model)
            if c is None:
                c = self.classes[model] = ClassCheck()
            c.add(estimate_p_late(chosen, slo_ms), estimate_p_late(ref, slo_ms), now, self.horizon)
        if now >= self._next_anchor:
            self._next_anchor = now + ANCHOR_S
            pools, slow = _split(view, now)
            ec, mine = self.ec.pending(now), self.mirror.pending(now)
            extra = {p: w - mine.get(p, 0.0) for p, w in ec.items()}
            self.ec.anchor(pools, slow)
            self.mirror.anchor(pools, slow)
            self.ec.carry(extra, now)
        z = self._rng.gauss(0.0, 1.0)
        e = self.ec.earliest(ests, now, model)
        twin = 1.0 if e is None else self.ec.place(e, z, slo_ms, now, model)
        real = 1.0 if chosen is None else self.mirror.place(chosen, z, slo_ms, now, model)
        self.all.add(real, twin, now, self.horizon)

    def rows(self, now: float) -> dict[str, Any]:
        """JSON-ready report: overall (twins) and per class (its own deviations)."""
        return {
            "all": self.all.row(now),
            "classes": {m: c.row(now) for m, c in sorted(self.classes.items())},
        }
