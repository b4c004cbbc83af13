"""Latency prediction: offline profile + live queue + online correction.

Predicted response time of a request (model ``m``, batch ``b``) on worker ``w`` of pool ``p``
(architecture ``a``), measured at the client, in milliseconds::

    T(w) = rtt_p + W_w + c_wm * S_am(b)

* ``rtt_p`` (ms): the pool's client<->pool round trip (scenario ``rtt_ms`` / worker config).
* ``W_w`` (ms): expected wait for a free instance slot (:func:`expected_wait_ms`). With ``n``
  requests outstanding on the worker (fleet-wide, all models; the ones in service included),
  ``U`` ms of predicted work among them and ``k`` instances (slots), and ``s = U / n``::

      W = 0                                if n < k      (a slot is free)
      W = (n - k) * s / k + s / (k + 1)    if n >= k

  the ``n - k`` queued requests ahead drain at ``k`` per ``s``; then the first of ``k`` busy
  slots frees after ``E[min of k uniform residuals] = s / (k + 1)`` (M/D/k-like estimate; for
  ``k = 1`` it is the classic residual ``s / 2``).
* ``S_am(b)`` (ms): the profile's service time: the fitted log-normal's median (``p50``) for
  the point prediction and for the correction's reference, its ``p99`` for the tail bound
  ``T99 = rtt_p + W_w + c_wm * p99_am(b)`` that the SLO-aware policy tests against the SLO.
* ``c_wm`` (dimensionless): the online correction of worker ``w`` for model ``m``
  (:class:`Correction`), 1.0 when nothing has been observed.

Online correction, per (worker, model), kept as ``g = ln c``. A success observed with
client latency ``L`` (ms) for a request predicted at dispatch as ``P = W0 + c0 * p50`` (ms,
excluding rtt; ``W0`` and ``c0`` as they were at dispatch)::

    x  = clip(ln((L - rtt) / P), -CLIP, +CLIP)         CLIP = ln 4   (one sample moves g by
                                                                       at most ALPHA * ln 4)
    a  = ALPHA * (1/4 + 3/4 * c0 * p50 / P)             ALPHA = 0.2   (samples that waited long
                                                                       carry queue-estimate
                                                                       noise: they count less)
    g <- (1 - a) * g + a * (ln c0 + x)                  then clamp to [ln 1/8, ln 8]

and between samples ``g`` decays toward 0 (c toward 1.0, "trust the profile again") with time
constant ``TAU_S = 20 s``: ``g(t) = g(t0) * exp(-(t - t0) / TAU_S)``. A worker that recovered
is thus tried again after about ``TAU_S * ln(ln c / ln c_fit)`` seconds and re-measured. Using
the median as reference makes ``E[x] = 0`` for a worker that behaves as profiled (the log of
a log-normal sample over its median is centred).

Failures do not enter the correction; they eject the worker for a while (see ``FleetView``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ALPHA",
    "CLIP",
    "G_MAX",
    "TAU_S",
    "Correction",
    "PredictorConfig",
    "expected_wait_ms",
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
    """The constants above, overridable for tests and experiments."""

    alpha: float = ALPHA
    clip: float = CLIP
    tau_s: float = TAU_S
    g_max: float = G_MAX


def expected_wait_ms(outstanding: float, work_ms: float, instances: int) -> float:
    """Expected wait (ms) before a new request gets one of ``instances`` slots.

    Args:
        outstanding: requests on the worker, in service or queued (``n``).
        work_ms: their total predicted service time (``U``, ms).
        instances: parallel slots of the worker (``k``).

    Returns:
        ``0`` if ``n < k``, else ``(n - k) * s / k + s / (k + 1)`` with ``s = U / n``.
    """
    if outstanding < instances or outstanding <= 0:
        return 0.0
    s = work_ms / outstanding
    return (outstanding - instances) * s / instances + s / (instances + 1)


class Correction:
    """Online correction of one (worker, model): ``c = exp(g)``, see the module docstring."""

    __slots__ = ("cfg", "g", "samples", "t")

    def __init__(self, cfg: PredictorConfig) -> None:
        self.cfg = cfg
        self.g = 0.0
        self.t = 0.0
        self.samples = 0

    def log_factor(self, now: float) -> float:
        """``g`` decayed to ``now``."""
        g = self.g
        if g == 0.0:
            return 0.0
        dt = now - self.t
        return g * math.exp(-dt / self.cfg.tau_s) if dt > 0 else g

    def factor(self, now: float) -> float:
        """The multiplicative correction ``c`` at ``now``."""
        return math.exp(self.log_factor(now))

    def observe(
        self, now: float, actual_ms: float, predicted_ms: float, service_ms: float, g0: float
    ) -> None:
        """Fold one successful request in.

        Args:
            now: when it was observed (s).
            actual_ms: measured latency minus rtt (ms).
            predicted_ms: ``P = W0 + c0 * p50`` at dispatch (ms, no rtt).
            service_ms: ``c0 * p50``, the service share of ``P`` (ms).
            g0: ``ln c0`` used at dispatch.
        """
        cfg = self.cfg
        if predicted_ms <= 0.0:
            return
        x = math.log(max(actual_ms, 1e-6) / predicted_ms)
        x = min(max(x, -cfg.clip), cfg.clip)
        a = cfg.alpha * (0.25 + 0.75 * min(service_ms / predicted_ms, 1.0))
        g = (1.0 - a) * self.log_factor(now) + a * (g0 + x)
        self.g = min(max(g, -cfg.g_max), cfg.g_max)
        self.t = now
        self.samples += 1
