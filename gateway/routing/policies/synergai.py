"""``synergai``: earliest completion, plus deviations that are safe by construction and checked.

The base decision is **earliest completion** (EC): with exact profiles and a light load
nothing beats it (that is ``profile_static``). Every other step is a *deviation*, and each
obeys one safety property (docs/routing.md, "Safety"):

    a request that fits somewhere (tail <= SLO) is only ever sent where it also fits,
    or, to make way for a tighter class of its own or a higher priority, where it is
    still on time on average (an explicit yield: at most even odds of one violation, for
    at least one spared); it is sent where it is predicted late, or shed, only to make way
    for a *higher* priority, or for a tighter class of its own priority on a saturated pool,
    or when it fits nowhere (best effort / shed);
    and every deviation stops, per class and overall, when the online self-check
    (:mod:`gateway.routing.selfcheck`) sees it lose against EC replayed on the same arrivals.

Pipeline, O(pools) per decision (filter -> score -> pick):

1. *candidates*: the best available worker of each pool for the model
   (:func:`pool_estimates`); ``predicted = rtt + W + c * mean``, ``tail = rtt + W + c * p99``
   (ms; :mod:`gateway.prediction.model`).
2. *self-check*: if deviations are off for this class (or overall), take EC
   (``ec_fallback``): the least ``predicted`` over the fits, or over all candidates if none
   fits.
3. *no fit* (no ``tail <= slo``): EC is the best effort. A request predicted late there even on
   average (``predicted > slo``), on a *calibrated* prediction (the correction's samples
   outweigh the profile: ``prior_weight <= CALIBRATED``), is shed when it is priority 0
   (``shed_slo``), or when a higher priority of its model exists and EC's worker is busy (not
   :func:`_spare`: this request would delay the queue behind it; ``shed_yield``), or, at any
   priority, when EC's worker is busy and its pool saturated (the work offered to it at least
   its slots, :meth:`SynergAI._offered`; ``shed_slo``: the queue does not drain between
   arrivals, so the service is taken from every later request there, its own class's
   first; overload-101000: 64.2 % violations for EC, 64.1 % before, 16.1 % with it). Such
   a shed costs only the request's chance of being on time (small: it is late on average)
   and frees a whole service on a busy worker. On a spare worker nobody is behind it, so the
   shed also needs fresh evidence (:meth:`SynergAI._may_shed`): the worker's latest answer,
   within the probe gap, would itself have been late in this request's place
   (:func:`_last_late`), or serving would break a tighter class's budget; else the request
   is served as EC would (a
   prediction lagging a recovery shed idle workers' traffic for seconds: flapping-103015,
   24.1 % against 22.0 % for EC, 18.3 % with the evidence). On a *free slot* (no wait at all)
   late evidence is not enough either: unless a tighter class's budget is at stake, only a
   *hopeless* request (``p_late >= HOPELESS``: even its 1 % quantile late) is shed there, for
   the shed frees nothing anyone waits for and a coin flip is on time half the time (an
   externally built fleet whose overflow pool's median was the SLO: 44.9 % against 35.0 %
   for EC, 35.8 % now; ``tests/loadtest/sim/test_wild.py``). On an *idle* worker (two or
   more slots, every one free when the request arrives: :func:`_idle`) nothing is shed on
   its own lateness unless a tighter class's budget is at stake or the request is out of
   reach there even at its profile's speed (a deadline no evidence could meet is answered
   at once, as a client expects): the shed would spare nobody (a slot stays free for the
   next request), serving costs the request nothing it has not lost already, and its answer
   is the evidence a lagging prediction needs (after each slowdown of a 4-slot worker, its
   model was shed until the last slow sample aged past the probe gap: wild-6-060, 58.1 %
   against 54.6 % for EC, 54.9 % now). A shed gives no
   sample, so on an uncalibrated prediction a request is served, as EC would, whenever EC's
   worker has room (a free probe: its wait is at most one service) and it is neither
   hopeless there nor a threat to a tighter class's budget (the first request of every
   worker and model was shed there before, often a coin flip on a free slot: mixed-207009);
   otherwise the first such shed per worker and model starts a probe clock, and after it
   the request is served whenever EC's worker has room, else once per
   ``max(PROBE_MIN_S, service / PROBE_SHARE)``; the samples calibrate it. Shedding on one
   probe's sample shed a whole class of a 2.4x pessimistic profile for the run
   (miscalibrated-106013: 28 % against 16 % for EC, 6.7 % now);
   a hopeless client SLO costs a few served requests per worker while it is idle. Without the
   busy-worker shed, an overload whose top priority stops fitting never recovers: every
   lower-priority request joins the queue as best effort (overload-101025: 17 points fewer
   violations with it). A request of any priority that fits nowhere but is on time on
   average is shed too (``shed_saturated``) when a request of its model was shed as late on
   average (``shed_slo``) within ``SATURATED_S``, EC's worker is busy and its pool's offered
   work (what was sent to it and shed from it, :meth:`SynergAI._offered`) is at least its
   slots: the capacity binds, so serving the request takes the time of a later one that
   would fit (docs/routing.md, "A saturated class sheds what does not fit"). A request
   served as best effort whose EC worker is *out of reach* for it (late even idle: ``rtt +
   p01 > slo`` at the profile's speed and at the corrected one, :func:`_out_of_reach`) goes
   instead to the earliest candidate in reach idle at its profile's speed (``rtt + p99 <=
   slo``, :func:`_in_reach`) that is :func:`_spare`: at EC's worker it is late for sure,
   there it has a chance, and a spare worker (its wait at most one service, as step 5 asks
   of an alternative) has room for it (after a pool's slowdown, its correction and its queue
   read it slower than a pool the class never reaches: flapping-203005).
4. *fit*: ``e0`` = the fit of earliest predicted completion. A fit slower than EC's worker is
   the request's own gain (its 99 % quantile on time instead of its mean), so it must not be
   paid for by a higher priority (safety rule 2): when EC's worker is on time on average
   (``predicted <= slo``) and the earliest fit would break the wait budget of a tighter class
   of *higher* priority on its worker (:func:`protects_tighter` over those classes), ``e0`` is
   EC's worker instead (an externally built fleet whose loose priority-0 batches took the only
   worker of a tight priority-1 model for their fit: 50.4 % violations against 44.1 % for EC,
   44.1 % now).
5. *protect*: an alternative to ``e0`` must fit with margin (``tail <= (1 - MARGIN) * slo``),
   have spare capacity (its wait is at most one service: :func:`_spare`) and keep every
   tighter class's wait budget on its worker (:func:`protects_tighter`); among ``e0`` and
   those, the protected one of earliest predicted completion is taken (``fit``). Loose work
   thus leaves fast, close capacity to tight traffic only where it has a safe alternative
   with room to spare: it is never moved to the edge of its own SLO, and never builds a queue
   elsewhere (a long queue only fits a loose SLO until the pool behind it fails: with a
   15 s SLO, protection filled a whole pool with 9 s of backlog, and a crash of that pool
   took 630 requests with it; mixed-107001, 18.1 % against 15.3 % for EC, now 9.1 %).
6. *yield*: when nothing protects, a candidate's harm is the expected number of tighter
   requests its queueing makes late (:func:`harms_tighter`: the per-worker rate of each
   tighter class times how long the worker's wait stays above that class's slack, counted
   only when no other worker of the pool is within it; rates are what *that worker* sees,
   its pool's rate over its workers, sheds from the pool included:
   :class:`gateway.routing.rates.PoolRates`; a request sent or shed where it is out of reach
   counts where it could be on time, :meth:`SynergAI._home`). A fit doing less than one
   request of harm is taken, earliest first (``fit_tight``). Otherwise, if the harm falls on
   tighter classes of the *same or a higher priority* than the request's (``>= 1``
   request; per class: the tightest SLO among a model's classes of those priorities,
   :meth:`SynergAI.above`, never a model's tightest SLO paired with its highest priority,
   which weighed classes that need not exist: wild-2-036; at its own priority, other
   models' classes only, the model's pool rate mixing its own class in), the request
   yields explicitly to the earliest candidate harmless to them when that is still
   predicted on time on average (``yield``: it costs the request at most even odds of a
   violation and spares at least one). Else a priority-0 request is shed (``shed_yield``)
   when the harm to *higher* priorities alone is ``>= 1``, or when EC's worker is busy and
   its pool saturated (:meth:`SynergAI._saturated_at`: the queue does not drain, so the
   wait it adds is borne by the requests after it; overload-101003: 43.4 % violations,
   22.0 % with both, 95.5 % for EC). Below saturation a tighter class of the same priority
   is never paid for with a shed: the harm is an estimate, and a shed costs a whole
   request (each such shed rule measured made losers at light load). That shed rests on
   the harm to others, not on its own prediction: it is taken on a prediction with a
   sample within ``stale_s``, else all but one request per worker and model every
   ``max(PROBE_MIN_S, service / PROBE_SHARE)`` (a probe, served: at most ``PROBE_SHARE`` of
   one instance's time). Otherwise ``e0`` (``fit_unprotected``). A *single candidate* (the
   model on one pool) has nothing to yield to: a priority-0 request is shed there
   (``shed_yield``, the same probe rule) when its *marginal* harm to higher-priority classes
   of other models (same-priority ones too on a saturated pool) is at least one request
   (``harms_tighter(..., marginal=True)``: only the
   requests late because of this one, a shed being a certain loss of one; overload-101028:
   84.4 % violations, 12.3 % with it), else ``e0`` (``fit``).
7. *explore*: with probability ``explore`` (2 %), among the protected alternatives whose
   correction has had no sample for ``stale_s``, the stalest is taken (``explore``).

Constants are a priori, not tuned (docs/routing.md lists them with their reasons).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from mypy_extensions import mypyc_attr

from gateway.prediction.model import TAU_S, Correction
from gateway.routing.filters import fits_slo, harms_tighter, protects_tighter
from gateway.routing.framework import Estimate, pick_min
from gateway.routing.index import PoolIndex
from gateway.routing.predict import pool_estimates
from gateway.routing.rates import RATE_TAU_S, PoolRates
from gateway.routing.scorers import predicted_latency
from gateway.routing.selfcheck import SelfCheck, estimate_p_late
from gateway.routing.state import WorkerState
from gateway.routing.types import Decision, Request
from gateway.routing.view import FleetView

__all__ = [
    "CALIBRATED",
    "EXPLORE",
    "HOPELESS",
    "MARGIN",
    "PROBE_MIN_S",
    "PROBE_SHARE",
    "RELAX",
    "SATURATED_S",
    "SynergAI",
]

EXPLORE = 0.02
"""Probability of refreshing a stale correction on a safe alternative."""
MARGIN = 0.25
"""An alternative to the earliest fit must keep this fraction of the SLO as headroom."""
RELAX = 0.002
"""Per request of a model, the tight SLO moves this fraction of the way to a looser SLO."""
SATURATED_S = RATE_TAU_S
"""A model counts as saturated this long (s) after one of its requests was shed
as late on average (step 3), while its pool's offered work exceeds its slots: the time
constant of the router's rates."""
PROBE_SHARE = EXPLORE
"""On an uncalibrated prediction, probes take at most this share of one instance's time."""
PROBE_MIN_S = 1.0
"""...and go at most once a second per worker and model."""
CALIBRATED = 0.5
"""A prediction is calibrated while the profile's weight in its correction is at most this:
the samples outweigh the profile (four full samples in a row from a fresh start)."""
HOPELESS = 0.99
"""A request is hopeless where even its 1 % quantile is late: the fit test (``tail``, the
99 % quantile, on time) mirrored."""
YIELD_HARM = 1.0
"""A request yields only if it would make at least this many higher-priority requests late."""

_NAN = math.nan
_PROBES_MAX = 65536  # probe clocks kept (worker x model); cleared when full: bounded memory
_ABOVE_MAX = 64  # priorities whose classes-above map is cached; cleared when full
_YIELDS = frozenset(("yield", "shed_yield"))
_AWAY = frozenset(("best_effort", "ec_fallback"))
"""Decisions that may send a request where it is out of reach (:meth:`SynergAI._home`); a
fit is on time where it goes, and an explicit yield counts where it went."""


def _spare(e: Estimate) -> bool:
    """The worker has spare capacity: its wait is at most one of this request's services."""
    return e.predicted_ms - e.state.rtt_ms - e.service_ms <= e.service_ms


def _idle(s: WorkerState, now: float) -> bool:
    """Every slot of ``s``, two or more, free when a request sent now arrives, in this
    router's shadow queue and in the shared one (other replicas' requests) when there is one:
    serving one request there leaves a slot free for the next.
    """
    free = s.free
    if len(free) < 2:
        return False
    arrive = now + s.rtt_ms / 2000.0
    return all(f <= arrive for f in free) and all(f <= arrive for f in s.sfree)


def _last_sample(e: Estimate, model: str) -> float:
    c = e.state.corrections.get(model)
    return -math.inf if c is None or not c.samples else c.t


def _last_late(e: Estimate, c: Correction, slo_ms: float, now: float) -> bool:
    """Would the latest sample's service have made this request late on ``e``'s worker?

    The sample is ``A = exp(last) * p50`` at this request's batch; ``e.service_ms`` is
    ``exp(g) * mean`` and a log-normal's ``mean = p50 * exp(sigma^2 / 2)``, so
    ``A = service_ms * exp(last - g - sigma^2 / 2)``.
    """
    service = e.service_ms * math.exp(c.last - c.log_factor(now) - 0.5 * c.noise2)
    return e.predicted_ms - e.service_ms + service > slo_ms


def _out_of_reach(e: Estimate, model: str, batch: int, slo_ms: float) -> bool:
    """Late on ``e``'s worker even idle, at its profile's speed and at its corrected one
    (the faster of the two): ``rtt + p01 > slo``, the log-normal's 1 % quantile being
    ``p50^2 / p99``. The class does not reach there, whatever the queue.
    """
    p = e.state.profiles[model]
    p50 = p.p50(batch)
    c = e.service_ms / p.mean(batch)
    return e.state.rtt_ms + (c if c < 1.0 else 1.0) * p50 * p50 / p.p99(batch) > slo_ms


def _in_reach(e: Estimate, model: str, batch: int, slo_ms: float) -> bool:
    """On time on ``e``'s worker idle at its profile's speed: ``rtt + p99 <= slo``."""
    return e.state.rtt_ms + e.state.profiles[model].p99(batch) <= slo_ms


def _decide(e: Estimate, reason: str) -> Decision:
    return Decision(e.state.id, e.predicted_ms, e.service_ms, reason)


@mypyc_attr(allow_interpreted_subclasses=True)  # tests subclass it (gateway.native)
class SynergAI:
    """The product's default policy; see the module docstring.

    Args:
        explore: probability of an exploring decision (step 7).
        stale_s: a correction older than this is stale (explore) or uncalibrated (probe).
        seed: seeds the self-check's twin (its own random stream).
        self_check: run the online self-check (step 2); off only for experiments.
    """

    name = "synergai"

    def __init__(
        self,
        explore: float = EXPLORE,
        stale_s: float = TAU_S,
        seed: int = 0,
        self_check: bool = True,
    ) -> None:
        self.explore = explore
        self.stale_s = stale_s
        self.tight: dict[str, float] = {}
        self.priority: dict[str, int] = {}
        self._classes: dict[str, dict[int, float]] = {}
        """Per model, per priority: that class's tightest SLO (``RELAX`` as :attr:`tight`)."""
        self._above_cache: dict[int, dict[str, float]] = {}
        self.rates = PoolRates()
        """Per (pool, model), the requests sent there or shed from there (the demand a harm
        weighs)."""
        self._probes: dict[tuple[str, str], float] = {}
        self._saturated: dict[str, float] = {}
        self._work = PoolRates()
        """Per pool, the work offered to it (ms of service per second): what was sent there
        and what was shed from it (EC's pool, or the fit's)."""
        self.check: SelfCheck | None = SelfCheck(seed) if self_check else None

    def _learn(self, req: Request, ests: list[Estimate]) -> None:
        """Learn the model's tightest SLO and highest priority, from attainable requests only.

        A request whose SLO no candidate meets even idle (``tail - wait > slo`` everywhere:
        a client's mistake, or a hopeless SLO) is not a class to protect: learnt, one such
        request would make every worker look harmful to it for hundreds of requests, and
        loose traffic would yield or be shed for a class that can never be on time.
        """
        m, slo = req.model, req.slo_ms
        if not any(
            e.tail_ms - (e.predicted_ms - e.state.rtt_ms - e.service_ms) <= slo for e in ests
        ):
            return
        t = self.tight.get(m)
        self.tight[m] = slo if t is None or slo < t else t + (slo - t) * RELAX
        if req.priority > self.priority.get(m, 0):
            self.priority[m] = req.priority
        by = self._classes.get(m)
        if by is None:
            by = self._classes[m] = {}
        t = by.get(req.priority)
        c = slo if t is None or slo < t else t + (slo - t) * RELAX
        if c != t:
            by[req.priority] = c
            if self._above_cache:
                self._above_cache.clear()

    def above(self, priority: int) -> dict[str, float]:
        """Per model, the tightest SLO of its classes of priority above ``priority``: the
        classes a request of that priority makes way for (step 4, and step 6's sheds below
        saturation); ``above(p - 1)`` adds priority ``p``'s own (step 6's yields).

        Per class, not the model's tightest SLO paired with its highest priority: a model
        with a loose top-priority class and a tight low-priority one has no tight class
        above, and weighing one would shed for a class that does not exist (wild-2-036:
        ``m2-gen`` at priority 1 with 1,886 ms and priority 0 with 366 ms read as a 366 ms
        priority-1 class, and batch-16 ``m8-asr`` of priority 0 was shed for it).
        """
        out = self._above_cache.get(priority)
        if out is None:
            out = {}
            for m, by in self._classes.items():
                ts = [t for q, t in by.items() if q > priority]
                if ts:
                    out[m] = min(ts)
            if len(self._above_cache) >= _ABOVE_MAX:
                self._above_cache.clear()
            self._above_cache[priority] = out
        return out

    def _offered(self, e: Estimate, now: float) -> float:
        """The offered load of ``e``'s pool per slot (1: every slot busy on average): the
        work sent to it and shed from it over its available slots.
        """
        s = e.state
        n = 1
        for idx, _pos, _m in s.slots:
            assert isinstance(idx, PoolIndex)
            k = idx.available()
            n = k if k > n else n
        return self._work.rate(s.pool, "", now) / 1000.0 / (n * len(s.free))

    def _saturated_at(self, e: Estimate, now: float) -> bool:
        """``e``'s worker is busy and its pool saturated (steps 3 and 6)."""
        return not _spare(e) and self._offered(e, now) >= 1.0

    def _may_shed(
        self, e: Estimate, model: str, batch: int, now: float, slo_ms: float, own: bool = True
    ) -> bool:
        """May a request be shed on ``e``'s prediction (steps 3 and 6)?

        ``own``: the shed rests on the request's own predicted lateness (``shed_slo``, or a
        hopeless request making way for a higher priority). On a busy worker (not
        :func:`_spare`: requests would wait behind it) it is taken on a *calibrated*
        prediction, where the correction's samples outweigh the profile
        (:meth:`~gateway.prediction.model.Correction.prior_weight` ``<= CALIBRATED``). On a
        spare worker nobody waits behind the request, so the shed also needs fresh evidence:
        the worker's latest sample of the model, within ``max(PROBE_MIN_S, service /
        PROBE_SHARE)``, would itself have been late in this request's place
        (:func:`_last_late`), or serving would break a tighter class's wait budget there
        (:meth:`_protects`); else the request is served, as EC would. On a free slot (no
        wait) the late evidence also needs the request to be hopeless (``HOPELESS``); on an
        idle worker (:func:`_idle`) serving it spares nobody a wait, so it is served unless a
        tighter class's budget is at stake or it is out of reach there even at the profile's
        speed (:func:`_out_of_reach`: a deadline no evidence could meet is answered at once).
        On an uncalibrated prediction, or a spare worker's stale one, the request is served
        whenever the worker has room (a free probe) unless it is hopeless there
        (``HOPELESS``) or a tighter class's budget is at stake, and then after the first shed;
        its sample calibrates it.
        Otherwise (an explicit yield of a fit, which rests on the harm to others): on a
        prediction with a sample within ``stale_s``. Else the probe clock: the first shed
        starts it, one request is served every ``max(PROBE_MIN_S, service / PROBE_SHARE)``.
        """
        key = (e.state.id, model)
        last = self._probes.get(key)
        gap = max(PROBE_MIN_S, e.service_ms / 1000.0 / PROBE_SHARE)
        if (
            own
            and _idle(e.state, now)
            and not _out_of_reach(e, model, batch, slo_ms)
            and self._protects(e, slo_ms, now)
        ):
            return False  # served on an idle worker: the shed would spare nobody
        if own:
            c = e.state.corrections.get(model)
            spare = _spare(e)
            if c is not None and c.prior_weight(now) <= CALIBRATED:
                if not spare:
                    return True
                if now - _last_sample(e, model) <= gap:
                    if not self._protects(e, slo_ms, now):
                        return True
                    if e.predicted_ms - e.state.rtt_ms - e.service_ms <= 0.0 and (
                        estimate_p_late(e, slo_ms) < HOPELESS
                    ):
                        return False  # a free slot: the shed would free nothing anyone waits for
                    return _last_late(e, c, slo_ms, now)
            if spare and (
                last is not None
                or (self._protects(e, slo_ms, now) and estimate_p_late(e, slo_ms) < HOPELESS)
            ):
                return False  # no fresh evidence, nobody waits behind it: served, a free probe
        elif now - _last_sample(e, model) <= self.stale_s:
            return True
        if last is not None and now - last < gap:
            return True
        if len(self._probes) >= _PROBES_MAX:
            self._probes.clear()
        self._probes[key] = now
        return last is None  # the first shed starts the clock; a probe goes after a gap

    def _protects(self, e: Estimate, slo_ms: float, now: float) -> bool:
        """Serving on ``e`` keeps every tighter class's wait budget on its worker (step 5)."""
        return bool(protects_tighter([e], slo_ms, self.tight, now, rate_of=self._rate_of(now)))

    def _rate_of(self, now: float) -> Callable[[str, str], float]:
        """The per-pool rate of a model at ``now`` (req/s), as the filters read it."""
        rates = self.rates

        def rate_of(pool: str, model: str) -> float:
            return rates.rate(pool, model, now)

        return rate_of

    def choose(self, req: Request, view: FleetView, now: float, rng: random.Random) -> Decision:
        """EC, safe deviations, explicit yields, best effort or shed; see the module docstring."""
        ests = pool_estimates(view, req.model, req.batch, now)
        if not ests:
            return Decision(None, _NAN, 0.0, "no_worker")
        self._learn(req, ests)
        check = self.check
        e: Estimate | None
        if check is not None and not check.allows(req.model, now):
            e = ref = pick_min(fits_slo(ests, req.slo_ms) or ests, predicted_latency, rng)
            d = _decide(e, "ec_fallback")
        else:
            d, e, ref = self._deviate(req, ests, now, rng)
        if check is not None:
            own = e is not ref and e is not None and d.reason not in _YIELDS
            check.record(req.model, e, ref, ests, req.slo_ms, view, now, own)
        if e is not None:
            home = self._home(req, ests, e, rng) if d.reason in _AWAY else e
            self.rates.add(home.state.pool, req.model, now)
            self._work.add(e.state.pool, "", now, e.service_ms)
        elif d.reason != "no_worker":
            self._work.add(ref.state.pool, "", now, ref.service_ms)
            self.rates.add(self._home(req, ests, ref, rng).state.pool, req.model, now)
        return d

    def _home(
        self, req: Request, ests: list[Estimate], e: Estimate, rng: random.Random
    ) -> Estimate:
        """Where the request's demand belongs: ``e``, unless ``e`` is out of reach for it
        (:func:`_in_reach` false: late there even idle); then the earliest candidate in
        reach, if any. A class pushed off the pool it can be on time on (a looser class
        filled it) is still that pool's demand: counted where it was sent, the pool read no
        tight traffic, nothing yielded to it, and it never came back (overload-101028).
        Only best effort is passed here (``_AWAY``) and sheds: a fit is on time where it
        goes, and explicit yields count where they went (docs/routing.md).
        """
        m, b, slo = req.model, req.batch, req.slo_ms
        if len(ests) == 1 or _in_reach(e, m, b, slo):
            return e
        able = [x for x in ests if _in_reach(x, m, b, slo)]
        return pick_min(able, predicted_latency, rng) if able else e

    def _deviate(
        self, req: Request, ests: list[Estimate], now: float, rng: random.Random
    ) -> tuple[Decision, Estimate | None, Estimate]:
        m, slo = req.model, req.slo_ms
        fits = fits_slo(ests, slo)
        if not fits:
            e = pick_min(ests, predicted_latency, rng)
            if e.predicted_ms > slo:
                if self._may_shed(e, m, req.batch, now, slo):
                    if req.priority == 0:
                        self._saturated[m] = now
                        return Decision(None, e.predicted_ms, 0.0, "shed_slo"), None, e
                    if req.priority < self.priority.get(m, 0) and not _spare(e):
                        return Decision(None, e.predicted_ms, 0.0, "shed_yield"), None, e
                    if self._saturated_at(e, now):  # any priority
                        self._saturated[m] = now
                        return Decision(None, e.predicted_ms, 0.0, "shed_slo"), None, e
            elif (
                now - self._saturated.get(m, -math.inf) <= SATURATED_S
                and self._saturated_at(e, now)
                and self._may_shed(e, m, req.batch, now, slo)
            ):
                return Decision(None, e.predicted_ms, 0.0, "shed_saturated"), None, e
            if len(ests) > 1 and _out_of_reach(e, m, req.batch, slo):
                able = [x for x in ests if _in_reach(x, m, req.batch, slo) and _spare(x)]
                if able:  # late for sure at EC's worker: a chance where there is room
                    x = pick_min(able, predicted_latency, rng)
                    return _decide(x, "best_effort"), x, e
            return _decide(e, "best_effort"), e, e
        e0 = pick_min(fits, predicted_latency, rng)
        if min(e.predicted_ms for e in ests) < e0.predicted_ms:  # EC's worker does not fit
            ec = self._ec_over_fit(req, ests, e0, now, rng)
            if ec is not None:
                e0, fits = ec, [ec, *fits]
        if len(ests) == 1:  # no alternative to deviate or yield to: only a shed
            if req.priority == 0:
                level = self.above(-1 if self._saturated_at(e0, now) else 0)
                if (
                    level
                    and harms_tighter(
                        e0, slo, level, self._rate_of(now), now, marginal=True, other_than=m
                    )
                    >= YIELD_HARM
                    and self._may_shed(e0, m, req.batch, now, slo, own=False)
                ):
                    return Decision(None, e0.predicted_ms, 0.0, "shed_yield"), None, e0
            return _decide(e0, "fit"), e0, e0
        tight = self.tight
        lim = (1.0 - MARGIN) * slo
        roomy = [e for e in fits if e is e0 or (e.tail_ms <= lim and _spare(e))]
        safe = protects_tighter(roomy, slo, tight, now, rate_of=self._rate_of(now))
        if not safe:
            return self._yield(req, ests, fits, e0, now, rng)
        if len(safe) > 1 and self.explore and rng.random() < self.explore:
            cut = now - self.stale_s
            old = [e for e in safe if e is not e0 and _last_sample(e, m) < cut]
            if old:
                e = min(old, key=lambda e: _last_sample(e, m))
                return _decide(e, "explore"), e, e0
        e = pick_min(safe, predicted_latency, rng)
        return _decide(e, "fit"), e, e0

    def _ec_over_fit(
        self, req: Request, ests: list[Estimate], e0: Estimate, now: float, rng: random.Random
    ) -> Estimate | None:
        """Step 4: EC's worker when it is on time and the fit ``e0`` crowds a higher priority."""
        slo, above = req.slo_ms, self.above(req.priority)
        if not above:
            return None
        ec = pick_min(ests, predicted_latency, rng)
        if ec.predicted_ms > slo or protects_tighter(
            [e0], slo, above, now, rate_of=self._rate_of(now)
        ):
            return None
        return ec

    def _yield(
        self,
        req: Request,
        ests: list[Estimate],
        fits: list[Estimate],
        e0: Estimate,
        now: float,
        rng: random.Random,
    ) -> tuple[Decision, Estimate | None, Estimate]:
        """Step 6: harmless fits first; then an explicit yield for a tighter class of the same
        or a higher priority, where the request is on time on average; a shed only for a
        higher priority, or for the same priority on a saturated pool.
        """
        slo, tight, rate_of = req.slo_ms, self.tight, self._rate_of(now)
        keep = [e for e in fits if harms_tighter(e, slo, tight, rate_of, now) < 1.0]
        if keep:
            e = pick_min(keep, predicted_latency, rng)
            return _decide(e, "fit_tight"), e, e0
        p, m = req.priority, req.model
        above, level = self.above(p), self.above(p - 1)

        def harm(e: Estimate) -> float:
            # higher priorities, the request's own model included; its own priority, other
            # models only (the model's pool rate mixes the request's own class in)
            h = harms_tighter(e, slo, above, rate_of, now)
            return max(h, harms_tighter(e, slo, level, rate_of, now, other_than=m))

        over = harms_tighter(e0, slo, above, rate_of, now)  # higher priorities alone
        if max(over, harms_tighter(e0, slo, level, rate_of, now, other_than=m)) >= YIELD_HARM:
            other = [e for e in ests if e is not e0 and harm(e) < 1.0]
            if other:
                e = pick_min(other, predicted_latency, rng)
                if e.predicted_ms <= slo:
                    return _decide(e, "yield"), e, e0
            if (
                p == 0
                and (over >= YIELD_HARM or self._saturated_at(e0, now))
                and self._may_shed(e0, req.model, req.batch, now, slo, own=False)
            ):
                return Decision(None, e0.predicted_ms, 0.0, "shed_yield"), None, e0
        return _decide(e0, "fit_unprotected"), e0, e0

    def report(self, now: float) -> dict[str, Any] | None:
        """The self-check's state (``/synergai/v1/workers``, metrics), or None when off."""
        return None if self.check is None else self.check.rows(now)
