"""Passive outlier detection: eject a worker that keeps failing, for a growing interval.

Modelled on Envoy's outlier detection (``consecutive_5xx``, ``consecutive_local_origin_failure``,
``base_ejection_time``, ``max_ejection_percent``), on request outcomes the gateway sees anyway:

* a worker is ejected after ``consecutive_errors`` failures in a row (5xx, reset after sending,
  timeout), or after ``consecutive_connect_errors`` connection failures in a row (refused,
  connect timeout: a closed port is strong evidence, so 1 by default); any success clears both
  streaks; a 4xx the request caused counts for nothing;
* the *k*-th ejection of a worker lasts ``min(max_ejection_s, base_ejection_s * k)``; ``k``
  goes down by one for every ``decay_s`` spent without an ejection, so a worker that fails
  again right after returning stays out longer, and one that behaved for a while is forgiven;
* when the ejection ends the worker gets traffic again (its streaks start from zero);
* **panic threshold**: within a pool, ejection never leaves fewer than
  ``ceil(n * (1 - max_ejection_percent / 100))`` of its ``n`` workers routable (counting
  workers already down by other verdicts, e.g. a failed readiness probe). A failure that would
  cross that line is not acted on; the pool is reported *in panic* (metrics, ops view, one log
  line) until that worker succeeds again or is ejected after all (another one returned). So
  one blip across a whole pool never empties it: with 50% a 2-worker pool can lose one worker
  to ejection, a 1-worker pool none (there the readiness probe decides).

The detector is plain state driven by the caller's clock (no task, no I/O): ``record`` on each
outcome, ``expire`` now and then to end ejections.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.health.outcome import Outcome

__all__ = ["OutlierConfig", "OutlierDetector", "Verdict"]


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Outlier detection settings (see the module docstring for the rules)."""

    consecutive_errors: int = 3
    consecutive_connect_errors: int = 1
    base_ejection_s: float = 1.0
    max_ejection_s: float = 30.0
    max_ejection_percent: float = 50.0
    decay_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """A change an outcome caused (``None`` from :meth:`OutlierDetector.record` if none).

    Attributes:
        ejected: the worker was ejected (``False``: ejection was warranted but the pool is in
            panic, so it stays).
        until: end of the ejection (seconds, the caller's clock); ``nan`` if not ejected.
        reason: ``"consecutive_errors"`` or ``"consecutive_connect_errors"``.
    """

    ejected: bool
    until: float
    reason: str


class _Host:
    __slots__ = ("connect_errors", "ejected_until", "ejections", "errors", "pool", "quiet_since")

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.errors = 0
        self.connect_errors = 0
        self.ejected_until = -math.inf
        self.ejections = 0
        self.quiet_since = -math.inf


class OutlierDetector:
    """Per-worker failure streaks and ejections (see the module docstring).

    Args:
        config: thresholds and intervals.
        down: whether a worker is unroutable for another reason (failed probe); used by the
            panic threshold.
    """

    def __init__(
        self, config: OutlierConfig | None = None, down: Callable[[str], bool] | None = None
    ) -> None:
        self.config = config or OutlierConfig()
        self._down = down or (lambda _: False)
        self._hosts: dict[str, _Host] = {}
        self._pools: dict[str, list[str]] = {}
        self._panic: dict[str, set[str]] = {}
        """Pool -> workers whose ejection the panic threshold refused (until they succeed)."""

    # membership -----------------------------------------------------------------------
    def add_worker(self, worker: str, pool: str) -> None:
        """Track ``worker`` of ``pool`` (re-adding keeps nothing of the old state)."""
        self.remove_worker(worker)
        self._hosts[worker] = _Host(pool)
        self._pools.setdefault(pool, []).append(worker)

    def remove_worker(self, worker: str) -> None:
        """Forget ``worker``."""
        h = self._hosts.pop(worker, None)
        if h is not None:
            members = self._pools[h.pool]
            members.remove(worker)
            if not members:
                del self._pools[h.pool]
            self._calm(h.pool, worker)

    # queries --------------------------------------------------------------------------
    def ejected(self, worker: str, now: float) -> bool:
        """Whether ``worker`` is ejected at ``now``."""
        h = self._hosts.get(worker)
        return h is not None and h.ejected_until > now

    def ejected_until(self, worker: str) -> float:
        """End of the worker's current or last ejection (``-inf`` if never ejected)."""
        h = self._hosts.get(worker)
        return -math.inf if h is None else h.ejected_until

    def ejections(self, worker: str) -> int:
        """The worker's ejection multiplier (ejections not yet forgiven)."""
        h = self._hosts.get(worker)
        return 0 if h is None else h.ejections

    def in_panic(self, pool: str) -> bool:
        """Whether ``pool`` is in panic: an ejection was refused and that worker still fails."""
        return pool in self._panic

    def _calm(self, pool: str, worker: str) -> None:
        held = self._panic.get(pool)
        if held is not None:
            held.discard(worker)
            if not held:
                del self._panic[pool]

    def pools(self) -> Iterable[str]:
        """Every pool with a tracked worker."""
        return self._pools.keys()

    def _routable_after_ejecting(self, h: _Host, worker: str, now: float) -> bool:
        members = self._pools[h.pool]
        n = len(members)
        keep = math.ceil(n * (1.0 - self.config.max_ejection_percent / 100.0) - 1e-9)
        up = sum(
            1
            for w in members
            if w != worker and not self._down(w) and self._hosts[w].ejected_until <= now
        )
        return up >= keep

    # events ---------------------------------------------------------------------------
    def record(self, worker: str, outcome: Outcome, now: float) -> Verdict | None:
        """Count one outcome of ``worker`` at ``now``; the verdict if it warrants ejection."""
        h = self._hosts.get(worker)
        if h is None or outcome is Outcome.NEUTRAL:
            return None
        if outcome is Outcome.SUCCESS:
            h.errors = h.connect_errors = 0
            if self._panic:
                self._calm(h.pool, worker)
            return None
        if h.ejected_until > now:
            return None  # late answers of requests sent before the ejection
        cfg = self.config
        h.errors += 1
        if outcome is Outcome.CONNECT:
            h.connect_errors += 1
        else:
            h.connect_errors = 0
        if h.connect_errors >= cfg.consecutive_connect_errors:
            reason = "consecutive_connect_errors"
        elif h.errors >= cfg.consecutive_errors:
            reason = "consecutive_errors"
        else:
            return None
        if not self._routable_after_ejecting(h, worker, now):
            self._panic.setdefault(h.pool, set()).add(worker)
            return Verdict(False, math.nan, reason)
        self._decay(h, now)
        h.ejections += 1
        h.ejected_until = now + min(cfg.max_ejection_s, cfg.base_ejection_s * h.ejections)
        h.errors = h.connect_errors = 0
        self._calm(h.pool, worker)
        return Verdict(True, h.ejected_until, reason)

    def _decay(self, h: _Host, now: float) -> None:
        if h.ejections and h.quiet_since > -math.inf and h.ejected_until <= now:
            steps = int((now - h.quiet_since) // self.config.decay_s)
            if steps > 0:
                h.ejections = max(0, h.ejections - steps)
                h.quiet_since += steps * self.config.decay_s

    def expire(self, now: float) -> list[str]:
        """End the ejections due by ``now``; the workers that return (in tracking order)."""
        back = []
        for w, h in self._hosts.items():
            if -math.inf < h.ejected_until <= now and h.quiet_since < h.ejected_until:
                h.quiet_since = h.ejected_until
                h.errors = h.connect_errors = 0
                back.append(w)
            self._decay(h, now)
        return back

    def readmit(self, worker: str, now: float) -> bool:
        """End ``worker``'s ejection now (its readiness probe recovered); whether it was out."""
        h = self._hosts.get(worker)
        if h is None or h.ejected_until <= now:
            return False
        h.ejected_until = now
        h.quiet_since = now
        h.errors = h.connect_errors = 0
        return True
