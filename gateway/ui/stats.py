"""Recent request and SLO-violation rates for the operator page (``/synergai/v1/stats``).

Collection is apart from presentation (STYLE.md principle 3): a :class:`StatsSource` returns
*cumulative* counters (a :class:`CounterSample`, like Prometheus counters), and
:class:`StatsHistory` keeps the last few minutes of samples and turns consecutive pairs into
rates. Between two samples taken at ``t0 < t1``::

    rate = (c(t1) - c(t0)) / (t1 - t0)            # per second; c(t1) if the counter reset
    mean actual latency of pool = Δ actual_ms_sum / Δ count
    mean ratio of pool = Δ ratio_sum / Δ ratio_count      # ratio = actual / predicted
    predicted latency of pool ≈ mean actual / mean ratio

The history is filled when the page polls (at most one sample per ``min_interval_s``), so it
covers the time since someone first looked; nothing runs in the background.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ANY_PRIORITY", "CounterSample", "PoolLatency", "StatsHistory", "StatsSource"]

ANY_PRIORITY = "*"
"""Priority key for counts whose source does not know the priority (``requests_total``)."""


@dataclass(frozen=True, slots=True)
class PoolLatency:
    """Cumulative latency sums of one pool.

    Attributes:
        count: answered requests measured.
        actual_ms_sum: sum of their latencies, in ms.
        ratio_count: requests with a prediction.
        ratio_sum: sum of ``actual / predicted`` over them (dimensionless).
    """

    count: float = 0.0
    actual_ms_sum: float = 0.0
    ratio_count: float = 0.0
    ratio_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class CounterSample:
    """Cumulative counters at one instant.

    Attributes:
        requests: ``(model, priority) -> requests``; priority is :data:`ANY_PRIORITY` when the
            source only counts per model.
        violations: ``(model, priority) -> SLO violations`` (late, shed, failed: DESIGN.md §3).
        pools: ``pool -> PoolLatency``.
    """

    requests: Mapping[tuple[str, str], float] = field(default_factory=dict)
    violations: Mapping[tuple[str, str], float] = field(default_factory=dict)
    pools: Mapping[str, PoolLatency] = field(default_factory=dict)


class StatsSource(Protocol):
    """Anything that can read the gateway's cumulative counters now."""

    async def sample(self) -> CounterSample:
        """Return the counters as they are now."""
        ...


def _label(key: tuple[str, str]) -> str:
    model, priority = key
    return model if priority == ANY_PRIORITY else f"{model} p{priority}"


def _delta(new: float, old: float | None) -> float:
    """Counter increase, treating a decrease as a restart from zero."""
    if old is None:
        return new
    return new - old if new >= old else new


def _rates(
    new: Mapping[tuple[str, str], float], old: Mapping[tuple[str, str], float], dt: float
) -> dict[tuple[str, str], float]:
    return {k: _delta(v, old.get(k, 0.0)) / dt for k, v in new.items()}


def _pool_means(new: PoolLatency, old: PoolLatency | None) -> dict[str, float | None]:
    o = old or PoolLatency()
    n = _delta(new.count, o.count)
    s = _delta(new.actual_ms_sum, o.actual_ms_sum)
    rn = _delta(new.ratio_count, o.ratio_count)
    rs = _delta(new.ratio_sum, o.ratio_sum)
    actual = s / n if n > 0 else None
    ratio = rs / rn if rn > 0 else None
    predicted = actual / ratio if actual is not None and ratio else None
    return {"actual_ms": actual, "predicted_ms": predicted, "ratio": ratio, "count": n}


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 4)


class StatsHistory:
    """The last ``window_s`` seconds of :class:`CounterSample`, turned into rates on demand."""

    def __init__(self, window_s: float = 600.0, min_interval_s: float = 1.0) -> None:
        """Keep samples for ``window_s`` seconds, at most one per ``min_interval_s``."""
        self.window_s = window_s
        self.min_interval_s = min_interval_s
        self._samples: deque[tuple[float, CounterSample]] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, now: float, sample: CounterSample) -> bool:
        """Record ``sample`` taken at ``now`` (seconds); return whether it was kept."""
        if self._samples and now - self._samples[-1][0] < self.min_interval_s:
            return False
        self._samples.append((now, sample))
        while self._samples and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        return True

    def to_json(self, now: float, recent_s: float = 60.0) -> dict[str, Any]:
        """Rates per interval and over the last ``recent_s`` seconds, JSON-ready.

        Returns:
            ``{"available", "now", "window_s", "t": [end of each interval, s relative to now],
            "requests_rps": {label: [...]}, "violations_rps": {label: [...]},
            "pool_series": {pool: {"actual_ms": [...], "predicted_ms": [...]}},
            "recent": {"seconds", "rows": [{model, priority, rps, violations_rps,
            violation_rate}]}, "pools": {pool: {actual_ms, predicted_ms, ratio, count}}}``.
            Label is ``model`` or ``"model pN"``; missing values are ``null``.
        """
        samples = list(self._samples)
        out: dict[str, Any] = {
            "available": True,
            "now": now,
            "window_s": self.window_s,
            "t": [],
            "requests_rps": {},
            "violations_rps": {},
            "pool_series": {},
            "recent": {"seconds": 0.0, "rows": []},
            "pools": {},
        }
        if len(samples) < 2:
            return out
        req_series: dict[str, list[float | None]] = {}
        vio_series: dict[str, list[float | None]] = {}
        pool_series: dict[str, dict[str, list[float | None]]] = {}
        for i in range(1, len(samples)):
            (t0, s0), (t1, s1) = samples[i - 1], samples[i]
            dt = max(t1 - t0, 1e-9)
            out["t"].append(round(t1 - now, 3))
            for series, new, old in (
                (req_series, s1.requests, s0.requests),
                (vio_series, s1.violations, s0.violations),
            ):
                for key, rate in _rates(new, old, dt).items():
                    series.setdefault(_label(key), [None] * (i - 1)).append(_num(rate))
            for pool, lat in s1.pools.items():
                means = _pool_means(lat, s0.pools.get(pool))
                ps = pool_series.setdefault(
                    pool, {"actual_ms": [None] * (i - 1), "predicted_ms": [None] * (i - 1)}
                )
                ps["actual_ms"].append(_num(means["actual_ms"]))
                ps["predicted_ms"].append(_num(means["predicted_ms"]))
            n = i
            for series in (req_series, vio_series):
                for values in series.values():
                    values.extend([None] * (n - len(values)))
            for ps in pool_series.values():
                for values in ps.values():
                    values.extend([None] * (n - len(values)))
        out["requests_rps"] = req_series
        out["violations_rps"] = vio_series
        out["pool_series"] = pool_series
        out["recent"], out["pools"] = self._recent(samples, recent_s)
        return out

    @staticmethod
    def _recent(
        samples: list[tuple[float, CounterSample]], recent_s: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        t1, s1 = samples[-1]
        # The oldest sample no older than recent_s, or else the one just before the last.
        t0, s0 = next(((t, s) for t, s in samples[:-1] if t1 - t <= recent_s), samples[-2])
        dt = max(t1 - t0, 1e-9)
        req = _rates(s1.requests, s0.requests, dt)
        vio = _rates(s1.violations, s0.violations, dt)
        per_model: dict[str, float] = {}
        for (model, _), model_rps in req.items():
            per_model[model] = per_model.get(model, 0.0) + model_rps
        rows: list[dict[str, Any]] = []
        for key in sorted(set(req) | set(vio)):
            model, priority = key
            rps = req.get(key)
            if priority == ANY_PRIORITY and key not in vio:  # the model's row: all priorities
                v = sum(r for (m, _), r in vio.items() if m == model)
            else:
                v = vio.get(key, 0.0)
            # Without per-priority request counts, divide by the model's total rate.
            denom = rps if rps is not None else per_model.get(model)
            share = v / denom if denom else None
            rows.append(
                {
                    "model": model,
                    "priority": priority,
                    "rps": _num(rps),
                    "violations_rps": _num(v),
                    "violation_rate": _num(share),
                }
            )
        pools = {
            pool: {k: _num(v) for k, v in _pool_means(lat, s0.pools.get(pool)).items()}
            for pool, lat in sorted(s1.pools.items())
        }
        return {"seconds": round(dt, 3), "rows": rows}, pools
