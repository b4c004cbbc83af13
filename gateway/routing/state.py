"""Per-worker live state kept by :class:`gateway.routing.view.FleetView`.

A :class:`WorkerState` is mutable on purpose: it is updated in place on every start, finish
and shared-state observation, so that a routing decision reads a few attributes instead of
rebuilding a snapshot. Policies only read it; the view alone writes it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from gateway.prediction.model import Correction, PredictorConfig, shadow_wait_ms
from gateway.prediction.profiles import Profile
from gateway.routing.types import WorkerInfo

if TYPE_CHECKING:  # index.py imports this module
    from gateway.routing.index import PoolIndex

__all__ = ["DEFAULT_RTT_MS", "PEAK_EWMA_TAU_S", "WorkerState"]

PEAK_EWMA_TAU_S: Final = 10.0
"""Decay time constant (s) of the peak-EWMA latency estimate (tower's and linkerd's default)."""
DEFAULT_RTT_MS: Final = 30.0
"""Peak-EWMA estimate (ms) of a worker never observed yet (tower's ``default_rtt`` role)."""

_NEG_INF: Final = -math.inf


class WorkerState:
    """What the view knows of one worker right now.

    Attributes:
        info: static facts (id, pool, arch, models, instances, rtt_ms).
        profiles: this worker's profile per model it serves (models without one are absent).
        p50_1: each profile's batch-1 median (ms), read on every start.
        out: outstanding requests used for routing (shared + local delta, or local when stale).
        work_ms: predicted service ms of those requests.
        local_out: requests this router started and has not seen finish.
        local_work_ms: their predicted service ms.
        shared_at: ``observed_at`` of the latest shared figures (``-inf``: none yet).
        probe_healthy: last health-probe verdict.
        ejected_until: no traffic before this time (s) after a failed request.
        fails: consecutive failed requests.
        rtt_ms: the pool rtt plus the predictor's ``overhead_ms`` (network time to the view).
        ewma_ms: peak-EWMA of observed client latency (ms), for ``peak_ewma``.
        corrections: online correction per model.
        wait: expected wait (ms) for a slot as of the last change (index keys).
        free: predicted time (s) each instance slot frees, from this router's own requests
            (the shadow queue of :mod:`gateway.prediction.model`).
        shift: per slot, the total re-anchoring (s) applied to its chain so far.
        others_ms: extra wait (ms) the fresh shared shadow queue shows beyond ``free``, else 0.
        sfree: the shared shadow queue (s, this router's clock): per slot, its predicted free
            time from the store's last figures plus this router's starts since (empty: none).
        tail: per slot, how far (s) its latest request's 99th-percentile end lies past its
            predicted end while that request is unanswered (0 once answered): the index
            counts the slot busy until then (:mod:`gateway.routing.index`).
        hold: per slot, the predicted service (s) of its latest request: how far an overdue
            slot is pushed (:meth:`gateway.routing.view.FleetView.overdue`).
        due: when (s) the slot that keys this worker in its indexes becomes overdue (its
            unanswered request past its 99th-percentile end); ``inf`` when none.
        spread: ``p99 / mean - 1`` per model and batch, cached.
        cfac: correction factor per model as of its last sample (undecayed; index keys).
        slots: ``(PoolIndex, position, model)`` of each index the worker is in.
    """

    __slots__ = (
        "cfac",
        "corrections",
        "d_out",
        "d_work",
        "due",
        "ejected_until",
        "ewma_ms",
        "ewma_t",
        "fails",
        "free",
        "hold",
        "id",
        "idx",
        "info",
        "instances",
        "local_out",
        "local_work_ms",
        "others_ms",
        "out",
        "p50_1",
        "pool",
        "probe_healthy",
        "profiles",
        "rtt_ms",
        "sfree",
        "shared_at",
        "shared_out",
        "shared_work",
        "shift",
        "slots",
        "spread",
        "tail",
        "wait",
        "work_ms",
    )

    def __init__(
        self, idx: int, info: WorkerInfo, profiles: dict[str, Profile], cfg: PredictorConfig
    ) -> None:
        self.idx = idx
        self.info = info
        self.id = info.id
        self.pool = info.pool
        # the live path's fixed cost counts as network time (PredictorConfig.overhead_ms)
        self.rtt_ms = info.rtt_ms + cfg.overhead_ms
        self.instances = max(1, info.instances)
        self.profiles = profiles
        self.p50_1 = {m: p.p50(1) for m, p in profiles.items()}
        self.corrections = {m: Correction(cfg, p.lognormal(1)[1]) for m, p in profiles.items()}
        self.out = 0.0
        self.work_ms = 0.0
        self.local_out = 0
        self.local_work_ms = 0.0
        self.shared_at = -math.inf
        self.shared_out = 0.0
        self.shared_work = 0.0
        self.d_out = 0.0
        self.d_work = 0.0
        self.probe_healthy = True
        self.ejected_until = -math.inf
        self.fails = 0
        self.ewma_ms = DEFAULT_RTT_MS
        self.ewma_t = -math.inf
        self.wait = 0.0
        self.free = [-math.inf] * self.instances
        self.shift = [0.0] * self.instances
        self.tail = [0.0] * self.instances
        self.hold = [0.0] * self.instances
        self.due = math.inf
        self.spread: dict[str, dict[int, float]] = {}
        self.others_ms = 0.0
        self.sfree: list[float] = []
        self.cfac = dict.fromkeys(profiles, 1.0)
        self.slots: list[tuple[PoolIndex, int, str]] = []

    def available(self, now: float) -> bool:
        """Healthy by probe and not ejected after a failure."""
        return self.probe_healthy and self.ejected_until <= now

    def wait_ms(self) -> float:
        """Expected wait (ms) for a slot as of the last change."""
        return self.wait

    def wait_at(self, now: float) -> float:
        """Expected wait (ms) of a request sent at ``now``; see :func:`shadow_wait_ms`."""
        return shadow_wait_ms(self.free, now, self.rtt_ms) + self.others_ms

    def correction(self, model: str, now: float) -> float:
        """Online correction factor for ``model`` at ``now`` (1.0 if unknown)."""
        c = self.corrections.get(model)
        return 1.0 if c is None else c.factor(now)

    def peak_ewma_ms(self) -> float:
        """Current peak-EWMA latency estimate (ms)."""
        return self.ewma_ms

    def observe_latency(self, latency_ms: float, now: float) -> None:
        """Peak-EWMA update (tower): a peak is taken at once, a drop decays in with ``tau``."""
        if latency_ms >= self.ewma_ms or self.ewma_t == _NEG_INF:
            self.ewma_ms = latency_ms
        else:
            dt = now - self.ewma_t
            w = math.exp(-(dt if dt > 0.0 else 0.0) / PEAK_EWMA_TAU_S)
            self.ewma_ms = self.ewma_ms * w + latency_ms * (1.0 - w)
        self.ewma_t = now
