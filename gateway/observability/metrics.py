"""Every metric the gateway exports, in one place, on a registry owned by one app.

Names and labels are a contract (DESIGN.md §8). A :class:`GatewayMetrics` is created per
``create_app`` call with its own ``CollectorRegistry``, so two apps in one process (tests,
``bench --gateways N`` in-process) never share or clash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as _Counter
from prometheus_client import Gauge as _Gauge
from prometheus_client import Histogram as _Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

_LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
_DECISION_BUCKETS = (
    5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3,
)  # fmt: skip
_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class _CachedLabels:
    """``labels(*values)`` from a per-metric dict once a child exists.

    ``prometheus_client``'s ``labels()`` converts every value with ``str()``, validates the
    count and takes a lock on every call; the request path calls it about five times per
    request (py-spy: ~2.5% of the gateway's samples at concurrency 32, ``synergai bench
    overhead``). Here a hit is two dict lookups: the cached child is used only while the
    metric still holds it, so ``remove()``/``clear()`` keep their meaning.
    """

    def labels(self, *values: Any, **kwargs: Any) -> Any:
        """The child for these label values (positional values are cached)."""
        if not kwargs:
            cache: dict[tuple[Any, ...], tuple[tuple[str, ...], Any]] | None
            cache = self.__dict__.get("_label_cache")
            if cache is None:
                cache = self.__dict__["_label_cache"] = {}
            hit = cache.get(values)
            if hit is not None and self.__dict__["_metrics"].get(hit[0]) is hit[1]:
                return hit[1]
            child = super().labels(*values)  # type: ignore[misc]
            if len(cache) < 10_000:
                cache[values] = (tuple(str(v) for v in values), child)
            return child
        return super().labels(*values, **kwargs)  # type: ignore[misc]


class Counter(_CachedLabels, _Counter):
    """A ``prometheus_client.Counter`` with cached children."""


class Gauge(_CachedLabels, _Gauge):
    """A ``prometheus_client.Gauge`` with cached children."""


class Histogram(_CachedLabels, _Histogram):
    """A ``prometheus_client.Histogram`` with cached children."""


class GatewayMetrics:
    """The gateway's Prometheus metrics (DESIGN.md §8 names)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "synergai_requests",
            "Inference requests answered, by model, pool, worker, policy and status code.",
            ["model", "pool", "worker", "policy", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "synergai_request_duration_seconds",
            "Gateway-side response time of inference requests (arrival to answer).",
            ["model", "pool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.slo_violations = Counter(
            "synergai_slo_violations",
            "Requests not answered successfully within their SLO (late, shed, failed).",
            ["model", "priority", "reason"],
            registry=r,
        )
        self.prediction_error = Histogram(
            "synergai_prediction_error_ratio",
            "Actual over predicted response time of successful requests.",
            ["pool"],
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.outstanding = Gauge(
            "synergai_worker_outstanding",
            "Requests in flight on a worker, all gateways (shared state).",
            ["worker"],
            registry=r,
        )
        self.decision = Histogram(
            "synergai_routing_decision_seconds",
            "Time spent in policy.choose.",
            buckets=_DECISION_BUCKETS,
            registry=r,
        )
        self.shed = Counter(
            "synergai_shed",
            "Requests refused before reaching a worker, by reason.",
            ["reason"],
            registry=r,
        )
        self.staleness = Gauge(
            "synergai_state_staleness_seconds",
            "Age of the newest shared-state snapshot applied to the routing view.",
            registry=r,
        )
        self.state_errors = Counter(
            "synergai_state_errors",
            "Shared-state (Redis) calls that failed or were skipped while backing off.",
            registry=r,
        )
        self.redecided = Counter(
            "synergai_redecided",
            "Requests decided once more because a conditional reserve showed the first decision "
            "made on stale shared figures (issue 16.2).",
            registry=r,
        )
        self.inflight = Gauge(
            "synergai_inflight_requests",
            "Inference requests in flight in this gateway process (autoscaling signal).",
            registry=r,
        )
        self.upstream_errors = Counter(
            "synergai_upstream_errors",
            "Requests that failed talking to a worker (connect, reset, timeout).",
            ["worker", "kind"],
            registry=r,
        )
        self.profile_drift_ratio = Gauge(
            "synergai_profile_drift_ratio",
            "Live service time over the profile's p50 (windowed median; gateway.prediction.drift).",
            ["worker", "model"],
            registry=r,
        )
        self.profile_drift = Gauge(
            "synergai_profile_drift",
            "1 while a worker's live service time deviates from its profile (sustained), else 0.",
            ["worker", "model"],
            registry=r,
        )

        self.worker_healthy = Gauge(
            "synergai_worker_healthy",
            "1 while health lets a worker take traffic (probe ready, not ejected), else 0.",
            ["worker"],
            registry=r,
        )
        self.ejections = Counter(
            "synergai_outlier_ejections",
            "Outlier ejections of a worker, by reason (consecutive errors / connect errors).",
            ["worker", "reason"],
            registry=r,
        )
        self.panic = Gauge(
            "synergai_outlier_panic",
            "1 while a pool is at its panic threshold (an ejection was refused), else 0.",
            ["pool"],
            registry=r,
        )
        self.retries = Counter(
            "synergai_retries",
            "Retry decisions after a failed attempt: sent, or why not (budget, slo, no_worker).",
            ["reason", "result"],
            registry=r,
        )

    def watch_self_check(self, report: Callable[[], Mapping[str, Any] | None]) -> None:
        """Export the routing policy's online self-check, read at scrape time.

        ``synergai_selfcheck_deviations{model}`` is 1 while deviations from earliest completion
        are on for the class (``model="*"``: overall), else 0; ``synergai_selfcheck_trips_total``
        counts the times the check switched them off (docs/routing.md, self-check).
        """
        self.registry.register(_SelfCheckCollector(report))

    def render(self) -> bytes:
        """The Prometheus text exposition of this app's registry."""
        return generate_latest(self.registry)


class _SelfCheckCollector(Collector):
    """Reads ``report()`` (the policy's self-check rows, or None) at each scrape."""

    def __init__(self, report: Callable[[], Mapping[str, Any] | None]) -> None:
        self._report = report

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        rep = self._report()
        if not rep:
            return
        on = GaugeMetricFamily(
            "synergai_selfcheck_deviations",
            "1 while deviations from earliest completion are on for the class, else 0.",
            labels=["model"],
        )
        trips = CounterMetricFamily(
            "synergai_selfcheck_trips",
            "Times the self-check switched deviations off for the class.",
            labels=["model"],
        )
        rows = {"*": rep["all"], **rep.get("classes", {})}
        for model, row in rows.items():
            on.add_metric([model], 1.0 if row["deviations"] == "on" else 0.0)
            trips.add_metric([model], float(row["trips"]))
        yield on
        yield trips
