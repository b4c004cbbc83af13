"""Fluid capacity of a fleet for a traffic mix: how the families set a load level.

A stream ``s`` with a share ``w_s`` of the traffic may be served by pool ``p`` at a cost of
``a_sp = mean service (s) / slots_p`` of the pool's capacity per request (``inf`` where it
may not go: unsupported batch, or its idle tail ``rtt + p99`` exceeds its SLO). With
``x_sp`` the fraction of stream ``s`` sent to pool ``p``, one unit of total rate loads pool
``p`` to ``U_p = sum_s w_s a_sp x_sp``. The best any router could do in the fluid limit is

    u* = min_x max_p U_p     (sum_p x_sp = 1, x >= 0),

and the largest total rate the fleet sustains with this mix is ``1 / u*``. A scenario at
*load* ``rho`` gets a total rate ``rho / u*``: ``rho = 1`` is the fluid limit, ``1.5`` is
sustained 50 % overload no router can absorb. (Queueing makes violations appear well below
1; the point is a scale that means the same on every fleet.)

The min-max problem is solved by mirror descent on a soft maximum: ``pi = softmax(beta U)``,
``x_sp <- x_sp exp(-eta w_s a_sp pi_p / g_s)`` renormalised per stream. Every iterate is
feasible, so its ``max_p U_p`` is an upper bound on ``u*``; ``sum_s w_s min_p a_sp pi_p`` is
a lower bound (weak duality, for any ``pi`` in the simplex). Iteration stops when the two are
within ``tol`` (default 1 %) or after ``iters`` (800: a gap of ~1 % on typical fleets, a
few % at worst). Callers use the upper bound: the true load is then at most the stated one,
and below it by at most the gap.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["min_max_utilisation"]

FloatArray = npt.NDArray[np.float64]


def min_max_utilisation(
    weights: FloatArray, cost: FloatArray, tol: float = 0.01, iters: int = 800
) -> tuple[float, float]:
    """Bounds ``(upper, lower)`` on ``u*`` (see the module docstring).

    Args:
        weights: ``w_s``, shares of the total rate (>= 0, any scale).
        cost: ``a_sp`` (streams x pools), ``inf`` where a stream may not go; every stream with
            a positive weight needs one finite entry.
        tol: stop when ``upper <= (1 + tol) x lower``.
        iters: iteration cap.

    Raises:
        ValueError: a stream with weight and nowhere to go.
    """
    w = np.asarray(weights, dtype=np.float64)
    a = np.asarray(cost, dtype=np.float64)
    ok = np.isfinite(a)
    live = w > 0
    if np.any(live & ~ok.any(axis=1)):
        raise ValueError("a stream with traffic has no pool it may use")
    w, a, ok = w[live], a[live], ok[live]
    if w.size == 0:
        return 0.0, 0.0
    a0 = np.where(ok, a, 0.0)
    inv = np.where(ok, 1.0 / np.where(ok, a, 1.0), 0.0)
    x = inv / inv.sum(axis=1, keepdims=True)  # start: in proportion to each pool's speed
    upper, lower = math.inf, 0.0
    pi_sum = np.zeros(a.shape[1])
    for t in range(iters):
        u = (w[:, None] * a0 * x).sum(axis=0)
        umax = float(u.max())
        upper = min(upper, umax)
        beta = 40.0 / max(umax, 1e-300)
        pi = np.exp(beta * (u - umax))
        pi /= pi.sum()
        pi_sum += pi
        for y in (pi, pi_sum / (t + 1.0)):
            lower = max(lower, float((w * np.where(ok, a0 * y[None, :], np.inf).min(axis=1)).sum()))
        if upper <= (1.0 + tol) * lower:
            break
        g = w[:, None] * a0 * pi[None, :]
        scale = np.where(ok, g, 0.0).max(axis=1, keepdims=True)
        eta = 1.0 / math.sqrt(t + 1.0)
        x = x * np.exp(-eta * g / np.maximum(scale, 1e-300))
        x = np.where(ok, x, 0.0)
        x /= x.sum(axis=1, keepdims=True)
    return upper, lower
