"""Latency prediction: offline profile + live queue + online correction.

Predicted response time of a request (model ``m``, batch ``b``) on worker ``w`` of pool ``p``
(architecture ``a``), measured at the client, in milliseconds::

    T(w) = rtt_p + W_w + c_wm * S_am(b)

* ``rtt_p`` (ms): the pool's client<->pool round trip (scenario ``rtt_ms`` / worker config).
* ``W_w`` (ms): expected wait for a free instance slot, from a *shadow queue* of the worker's
  ``k`` slots (:func:`shadow_wait_ms`): each request this router sends at ``t`` is placed,
  as the FIFO server will, at ``begin = max(t + rtt/2, earliest slot free time F)`` and holds
  that slot until ``begin + its predicted service`` (corrected mean). A request sent at
  ``now`` would wait ``max(0, F - (now + rtt/2))``. When a request ends, its true server-side
  end (``send + latency - rtt/2``) replaces the predicted one in its slot's chain, so errors
  do not accumulate. Counting outstanding requests instead would also count the ones still
  on the wire (for a pool 40 ms away at 1,000 req/s that is 40 requests that are not queued).
  Work other routers (gateway replicas) put on the worker, from fresh shared figures
  (``U_shared + local delta`` minus this router's own ``U_local``), adds only the share of
  their leases that lies ahead of a new request, spread over the worker's slots
  (``FleetView._others_wait``; docs/routing.md, Replicas).
* ``S_am(b)`` (ms): the profile's service time: the fitted log-normal's median (``p50``) for
  the point prediction and for the correction's reference, its ``p99`` for the tail bound
  ``T99 = rtt_p + W_w + c_wm * p99_am(b)`` that the SLO-aware policy tests against the SLO.
* ``c_wm`` (dimensionless): the online correction of worker ``w`` for model ``m``
  (:class:`Correction`), 1.0 when nothing has been observed.

Online correction, per (worker, model), kept as ``g = ln c``. When a request succeeds, the
view estimates the service time it actually got on the server, ``A`` (ms): its shadow slot's
chain was re-anchored on the true end of the request before it (FIFO: that one finished
first), so the error of its own predicted end, ``e``, is the error of its own service:
``A = S_pred + e`` with ``S_pred = c0 * mean`` the service it was dispatched with (when the
chain was since reset, ``A = L - rtt - W0`` from the client latency ``L`` and the predicted
wait ``W0``).

Two guards keep that estimate honest on multi-instance servers, where the real FIFO may run
a request on another slot than its shadow chain: ``A <= L - rtt`` (a service never exceeds
the time spent on the server), and a chain estimate below ``c0 * p50 / 4`` (what the clip
below would read as "4x faster") is taken as such a misattribution, not as speed: the sample
is then ``A = L - rtt - W0`` with EWMA weight ``ALPHA * S / (S + W0)`` (``S = c0 * p50``: the
share of the residence that is service, i.e. the sample's information about speed). Without
them, misattributed chain errors were clipped asymmetrically (a negative estimate reads as
``-ln 4``, an equal positive error as at most ``+ln 2``), so busy multi-slot workers'
corrections collapsed toward 1/8 and drew ever more traffic (random-1003: 24 % violations
with the correction, 0 % without, before any fault). Then, with ``c0`` the correction used
at dispatch::

    x  = clip(ln(A / (c0 * p50)), -CLIP, +CLIP)     CLIP = ln 4 (one sample moves g by at
                                                                most ALPHA * ln 4)
    g <- (1 - ALPHA) * g + ALPHA * (ln c0 + x)      ALPHA = 0.2, then clamp to [ln 1/8, ln 8]

and between samples ``g`` decays toward 0 (c toward 1.0, "trust the profile again") with time
constant ``TAU_S = 20 s``: ``g(t) = g(t0) * exp(-(t - t0) / TAU_S)``. A worker that recovered
is thus tried again after about ``TAU_S * ln(ln c / ln c_fit)`` seconds and re-measured. Using
the median ``p50`` as reference makes ``E[x] = ln(true speed / c0)`` for a log-normal service
(the log of a sample over its median is centred). Separating service from queueing matters:
a ratio of whole latencies would blame the queue model's errors on the worker's speed.

Shrinkage toward the profile. The EWMA above (call it ``r``) is not used as is: with exact
profiles its samples are pure noise (one log sample of a log-normal service has standard
deviation ``sigma``, the profile's own spread), and the EWMA keeps ``ALPHA / (2 - ALPHA)`` of
that variance, so ``c`` wandered by +-10-30 % on a profile with ``sigma`` 0.3-0.45; under
overload that noise tipped the scale sweep's overload member into a cascade at k = 4-50
(9.4 / 6.5 / 6.7 % against 3.8 % at k = 1). The view tracks the variance that the samples'
noise leaves in ``r``, from the profile's ``sigma`` alone (an a-priori figure, nothing
measured or tuned)::

    V <- ((1 - a) * d)^2 * V + a^2 * sigma^2      a = ALPHA * weight, d = the decay since the
                                                  last sample (V decays as d^2, r as d)

and uses the positive-part James-Stein estimate of the true ``ln c`` (its empirical-Bayes
posterior mean under a normal prior centred on the profile, the prior's variance estimated
from ``r`` itself as ``max(0, r^2 - V)``)::

    g = 0             if r^2 <= V     (within its own noise of the profile: trust the profile)
    g = r - V / r     otherwise

Why it cannot slow the reaction to a real change by more than the noise already does:
``|g - r| <= sqrt(V)`` always (``V / |r| <= sqrt(V)`` when ``|r| > sqrt(V)``), so the shrunk
estimate is never more than one standard error of the EWMA's noise away from it; the difference
is ``V / r``, which vanishes as a real deviation grows (a 3x slowdown: ``c`` reaches 2.7 at most
one sample after the unshrunk EWMA does for ``sigma <= 0.47``, i.e. ``p99 / p50 <= 3``, every
profile shipped or generated; five samples at ``sigma = 0.8``;
``test_shrunk_correction_follows_a_slowdown``). Its cost is a bias toward the profile of at most
``sqrt(V)`` (at most ``sigma / 3``) on a persistent deviation of that order. With ``sigma = 0``
nothing changes. Shrinking commutes with the decay (``shrink(d r, d^2 V) = d shrink(r, V)``), so
``g`` decays as before. Everything that reads the correction (predictions, index keys, the
self-check's twins, the reference ``c0`` of the next sample) reads ``g``; ``r`` is a statistic
of the samples alone (``ln c0 + x = ln(A / p50)``, clip aside), so shrinking ``g`` does not feed
back into ``r``. Measured (simulated, deterministic): scale sweep overload-1 2.5 / 2.6 / 3.9 %
at k = 4 / 16 / 50; dev split, four fresh trace seeds per member, synergai 17.41 % -> 17.27 %
(better on each seed); docs/routing.md has the figures and what a single seed shows.

How much of ``r`` is data: ``r`` is a weighted sum of the samples and of the profile's ``0``;
the profile's weight ``P`` starts at 1, each sample multiplies it by ``1 - ALPHA * weight``,
and the decay hands weight back to the profile (:meth:`Correction.prior_weight`). A prediction
is *calibrated* while ``P <= 1/2``: the data outweigh the profile (four full samples in a row
from a fresh start). A policy that acts on a prediction alone (a shed) must wait for that:
one sample moves ``r`` only a fifth of the way, so a profile 2.4x too pessimistic still
looked hopeless after its first probe and shed a whole class for the run
(miscalibrated-106013: 28 % violations against 16 % for ``profile_static``; 6.7 % once
sheds waited for calibration).

Pooling: a worker reads its pool's estimate until its own departs from it. The workers of a
pool (one architecture, one profile) are exchangeable a priori, and each learning alone went
wrong in two ways on large pools. Noise: each worker's estimate wanders by its own standard
error, and with a hundred workers several sit two or three standard errors out at any time.
Selection: earliest completion sends a model's requests to the workers whose estimate reads
fastest, so a worker whose estimate wandered up gets no sample to bring it back, while the ones
that read fast are re-measured at once; the estimates ratchet up (a busy 98-worker pool with an
exact profile: a median correction of 1.22 and a 95th percentile of 1.6-1.7 for ``m0-gen``
while the samples themselves averaged 1.0; the slots booked for those workers' requests
were a quarter too long, queues went unbalanced, and the bursts that filled the pool cost
5 points of violations against the profile alone: wild-5-111). So the view keeps one more
:class:`Correction` per (pool, architecture, model), fed every sample of every worker of the
pool at ``1 / W`` of the weight (``W`` its workers: it moves as fast in time as one worker's
estimate would if the pool's traffic were spread evenly, with ``W`` times less variance), and
a worker's estimate is its pool's (:meth:`Correction.log_factor`, :meth:`prior_weight`)
unless its own EWMA ``r_w`` departs from the pool's ``r_p`` by more than ``z_W`` standard
errors of the difference, ``d^2 > z_W^2 (V_w + V_p)`` with ``d = r_w - r_p``. Then it is its
own, shrunk toward the pool as ``g = r_w - z_W^2 (V_w + V_p) / d`` (continuous at the
threshold; ``|g - r_w| <= z_W sqrt(V_w + V_p)``, vanishing as the departure grows).
``z_W`` (:func:`departure_z`) is the one-worker threshold corrected for the pool's size: a
worker alone leaves the profile beyond one standard error (the shrinkage above), which noise
alone passes with probability ``q = P(|Z| > 1) = 0.317``; in a pool of ``W`` the threshold is
the one that noise passes with probability ``q / W`` (Bonferroni), so the pool as a whole has
no more workers out by noise than one worker alone has: ``z_1 = 1``, ``z_3 = 1.62``,
``z_100 = 2.95``. What it costs: one worker's own change is read later by at most that many
standard errors, and a lasting departure ``d`` is under-read by ``z_W^2 (V_w + V_p) / d`` (a
3x slowdown at ``sigma = 0.3`` in a pool of 20: 2.8x;
``test_one_slowed_worker_departs_from_its_pool``). What it gains besides: a change of the whole
pool (a miscalibrated profile, a drift, a brownout) is read from every worker's samples at
once, so a worker that has not served the model yet already has its pool's figure. A pool of
one worker is that worker, as before.

Failures do not enter the correction; they eject the worker for a while (see ``FleetView``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "ALPHA",
    "CLIP",
    "G_MAX",
    "TAU_S",
    "Correction",
    "PredictorConfig",
    "departure_z",
    "shadow_wait_ms",
    "shrink",
]

ALPHA = 0.2
"""EWMA weight of one fully informative sample."""
CLIP = math.log(4.0)
"""Largest ``|ln(actual / predicted)|`` one sample may report."""
TAU_S = 20.0
"""Time constant (s) of the decay of ``ln c`` toward 0 between samples."""
G_MAX = math.log(8.0)
"""Bound on ``|ln c|``: the correction stays within [1/8, 8]."""


@dataclass(frozen=True, slots=True)
class PredictorConfig:
    """The constants above, overridable for tests and experiments.

    ``overhead_ms``: the fixed cost per request of the path between the client and the device
    that neither the profile nor ``rtt_p`` contain (gateway, Triton's front end and backend
    IPC; scenario key and gateway setting ``overhead_ms``). The view treats it as network
    time: every worker's ``rtt_p`` is read as ``rtt_p + overhead_ms`` (half before the slot,
    half after), so predictions include it and the correction learns the service alone.
    """

    alpha: float = ALPHA
    clip: float = CLIP
    tau_s: float = TAU_S
    g_max: float = G_MAX
    overhead_ms: float = 0.0


def shadow_wait_ms(free: list[float], now: float, rtt_ms: float) -> float:
    """Wait (ms) of a request sent at ``now`` (s) to a worker ``rtt_ms`` away whose slots free
    at ``free`` (s, one per instance slot): ``max(0, min(free) - (now + rtt/2))``.

    The one predicted-wait formula: the view keys its indexes with it, policies read it
    through :meth:`gateway.routing.state.WorkerState.wait_at` (which adds other routers'
    share) and :func:`gateway.routing.predict.pool_estimates`.
    """
    f = free[0] if len(free) == 1 else min(free)
    w = (f - now) * 1000.0 - rtt_ms * 0.5
    return w if w > 0.0 else 0.0


class Correction:
    """Online correction of one (worker, model): ``c = exp(g)``, see the module docstring.

    Args:
        cfg: the predictor's constants.
        noise: the standard deviation of one sample's ``ln(actual / p50)`` when the profile
            is exact: the profile's log-normal ``sigma`` (:meth:`Profile.lognormal`). 0
            turns the shrinkage off (``g`` is then the EWMA itself).
    """

    __slots__ = (
        "cfg",
        "g",
        "last",
        "members",
        "noise2",
        "own",
        "parent",
        "prior",
        "raw",
        "samples",
        "t",
        "var",
        "z2",
    )

    def __init__(self, cfg: PredictorConfig, noise: float = 0.0) -> None:
        self.cfg = cfg
        self.parent: Correction | None = None
        """The pool's correction of the same model (:meth:`join`; None: alone, or a pool's)."""
        self.members = 0
        """A pool's correction: how many workers feed it."""
        self.z2 = 1.0
        """A pool's correction: ``departure_z(members) ** 2``."""
        self.own = True
        """The estimate is this one's own: alone, or departing from its pool's beyond
        :func:`departure_z` standard errors at its latest sample; else it reads its pool's."""
        self.g = 0.0
        """The estimate in use: ``raw`` shrunk toward 0 by ``var`` (:func:`shrink`)."""
        self.raw = 0.0
        """The EWMA of the samples (``r`` in the module docstring)."""
        self.var = 0.0
        """The variance the samples' noise leaves in ``raw`` (``V``)."""
        self.noise2 = noise * noise
        self.t = 0.0
        self.samples = 0
        self.prior = 1.0
        self.last = 0.0
        """The latest sample's ``ln(A / p50)`` (clipped as the EWMA reads it); 0 before any."""

    def join(self, pool: Correction) -> None:
        """Feed ``pool`` every sample from now on, and read its estimate until this one's
        departs from it (module docstring, Pooling).
        """
        self.parent = pool
        self.own = False
        pool.members += 1
        pool.z2 = departure_z(pool.members) ** 2

    def leave(self) -> None:
        """Stop feeding the pool's correction (the worker is gone)."""
        pool = self.parent
        if pool is not None:
            pool.members -= 1
            pool.z2 = departure_z(pool.members) ** 2
            self.parent = None
            self.own = True

    def reads(self) -> Correction:
        """The correction whose estimate this one uses now: its pool's, or itself."""
        pool = self.parent
        return pool if pool is not None and not self.own else self

    def prior_weight(self, now: float) -> float:
        """The profile's share in ``raw`` at ``now``, in [0, 1] (see the module docstring).

        1 before any sample; a sample of EWMA weight ``a`` multiplies it by ``1 - a``; the
        decay toward the profile gives the profile back its share:
        ``P(t) = 1 - (1 - P(t0)) * exp(-(t - t0) / TAU_S)``.
        """
        return self.reads()._own_prior(now)

    def _own_prior(self, now: float) -> float:
        """:meth:`prior_weight` of this correction's own samples (a worker's, not its pool's)."""
        dt = now - self.t
        p = self.prior
        return 1.0 - (1.0 - p) * math.exp(-dt / self.cfg.tau_s) if dt > 0 else p

    def log_factor(self, now: float) -> float:
        """``g`` decayed to ``now``."""
        src = self.reads()
        if src is not self:
            return src.log_factor(now)
        g = self.g
        if g == 0.0:
            return 0.0
        dt = now - self.t
        return g * math.exp(-dt / self.cfg.tau_s) if dt > 0 else g

    def factor(self, now: float) -> float:
        """The multiplicative correction ``c`` at ``now``."""
        return math.exp(self.log_factor(now))

    def observe(
        self, now: float, actual_ms: float, reference_ms: float, g0: float, weight: float = 1.0
    ) -> None:
        """Fold one successful request in.

        Args:
            now: when it was observed (s).
            actual_ms: the service time it got (ms), estimated as in the module docstring.
            reference_ms: ``c0 * p50`` at dispatch (ms).
            g0: ``ln c0`` used at dispatch.
            weight: the sample's information in [0, 1]; the EWMA weight is ``ALPHA * weight``.
        """
        cfg = self.cfg
        if reference_ms <= 0.0:
            return
        x = math.log(max(actual_ms, 1e-6) / reference_ms)
        x = min(max(x, -cfg.clip), cfg.clip)
        pool = self.parent
        if pool is not None:
            pool.fold(now, g0 + x, weight / (pool.members if pool.members > 1 else 1))
        self.fold(now, g0 + x, weight)
        if pool is not None:
            self._depart(pool)

    def _depart(self, pool: Correction) -> None:
        """Own estimate or the pool's, right after both folded a sample at the same instant."""
        dev = self.raw - pool.raw
        lim = pool.z2 * (self.var + pool.var)
        if dev * dev <= lim:
            self.own = False
            self.g = pool.g
        else:
            self.own = True
            self.g = self.raw - lim / dev

    def fold(self, now: float, x: float, weight: float) -> None:
        """Fold one sample ``x = ln(A / p50)`` (clipped) in with EWMA weight ``ALPHA * weight``:
        the EWMA, its noise variance, the shrunk estimate and the profile's weight.
        """
        cfg = self.cfg
        a = cfg.alpha * weight
        dt = now - self.t
        d = math.exp(-dt / cfg.tau_s) if dt > 0 else 1.0
        r = self.raw
        r = r * d if r != 0.0 else r
        self.last = x
        r = (1.0 - a) * r + a * x
        self.raw = r = min(max(r, -cfg.g_max), cfg.g_max)
        b = (1.0 - a) * d
        self.var = v = b * b * self.var + a * a * self.noise2
        self.g = shrink(r, v)
        self.prior = (1.0 - a) * self._own_prior(now)
        self.t = now
        self.samples += 1


_Q1 = math.erfc(1.0 / math.sqrt(2.0))
"""``P(|Z| > 1)`` for a standard normal ``Z``: how often noise alone moves one worker's
estimate off the profile (the shrinkage's one standard error)."""


def departure_z(workers: int) -> float:
    """Standard errors a worker's estimate must depart from its pool's of ``workers`` by before
    it is its own: the ``z`` with ``P(|Z| > z) = P(|Z| > 1) / workers`` (1 for a worker alone;
    module docstring, Pooling).
    """
    if workers <= 1:
        return 1.0
    return NormalDist().inv_cdf(1.0 - 0.5 * _Q1 / workers)


def shrink(r: float, var: float) -> float:
    """Positive-part James-Stein shrinkage of ``r`` toward 0, ``var`` its noise variance.

    ``0`` when ``r^2 <= var`` (within its own noise of 0), else ``r - var / r``: the
    posterior mean of a normal prior centred on 0 whose variance ``r^2 - var`` is estimated
    from ``r`` itself. ``|shrink(r, var) - r| <= sqrt(var)``.
    """
    r2 = r * r
    if r2 <= var:
        return 0.0
    return r - var / r
