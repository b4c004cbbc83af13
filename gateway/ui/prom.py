"""Stats sources that read the gateway's own Prometheus metrics (DESIGN.md §8).

The operator page needs no extra hook on the hot path: every figure it charts is already a
counter or histogram of §8. This module turns metric families into a :class:`CounterSample`:

=========================================================  =====================================
metric                                                      becomes
=========================================================  =====================================
``synergai_requests_total{model,...}``                      ``requests[(model, "*")]`` (summed)
``synergai_slo_violations_total{model,priority,reason}``    ``violations[(model, priority)]``
``synergai_request_duration_seconds{model,pool}`` sum/count ``pools[pool].actual_ms_sum/count``
``synergai_prediction_error_ratio{pool}`` sum/count         ``pools[pool].ratio_sum/ratio_count``
=========================================================  =====================================

Two sources: :class:`RegistrySource` reads a ``CollectorRegistry`` in process;
:class:`AsgiMetricsSource` asks the app's own ``GET /metrics`` through an in-process ASGI
transport (no socket), so it works with nothing but ``app.include_router(ui_router())``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.ui.stats import ANY_PRIORITY, CounterSample, PoolLatency

__all__ = ["AsgiMetricsSource", "RegistrySource", "sample_from_families", "sample_from_text"]

REQUESTS = "synergai_requests_total"
VIOLATIONS = "synergai_slo_violations_total"
DURATION = "synergai_request_duration_seconds"
RATIO = "synergai_prediction_error_ratio"


@dataclass(slots=True)
class _PoolSums:
    count: float = 0.0
    seconds_sum: float = 0.0
    ratio_count: float = 0.0
    ratio_sum: float = 0.0


def sample_from_families(families: Iterable[Metric]) -> CounterSample:
    """Build a :class:`CounterSample` from Prometheus metric families (see the module table)."""
    requests: dict[tuple[str, str], float] = {}
    violations: dict[tuple[str, str], float] = {}
    pools: dict[str, _PoolSums] = {}
    for family in families:
        for s in family.samples:
            name, labels, value = s.name, s.labels, float(s.value)
            if name == REQUESTS:
                key = (labels.get("model", "?"), ANY_PRIORITY)
                requests[key] = requests.get(key, 0.0) + value
            elif name == VIOLATIONS:
                key = (labels.get("model", "?"), labels.get("priority", ANY_PRIORITY))
                violations[key] = violations.get(key, 0.0) + value
            elif name in (DURATION + "_count", DURATION + "_sum"):
                p = pools.setdefault(labels.get("pool", "?"), _PoolSums())
                if name.endswith("_count"):
                    p.count += value
                else:
                    p.seconds_sum += value
            elif name in (RATIO + "_count", RATIO + "_sum"):
                p = pools.setdefault(labels.get("pool", "?"), _PoolSums())
                if name.endswith("_count"):
                    p.ratio_count += value
                else:
                    p.ratio_sum += value
    return CounterSample(
        requests=requests,
        violations=violations,
        pools={
            pool: PoolLatency(p.count, p.seconds_sum * 1000.0, p.ratio_count, p.ratio_sum)
            for pool, p in pools.items()
        },
    )


def sample_from_text(text: str) -> CounterSample:
    """Build a :class:`CounterSample` from the Prometheus text exposition format."""
    return sample_from_families(text_string_to_metric_families(text))


class RegistrySource:
    """Reads a ``prometheus_client`` registry in process (the app's own registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Read ``registry`` on each :meth:`sample`."""
        self._registry = registry

    async def sample(self) -> CounterSample:
        """Collect the registry now."""
        return sample_from_families(self._registry.collect())


class AsgiMetricsSource:
    """Scrapes an ASGI app's own metrics endpoint in process, without a socket."""

    def __init__(self, app: object, path: str = "/metrics", timeout_s: float = 2.0) -> None:
        """Scrape ``path`` of ``app`` (an ASGI application) on each :meth:`sample`."""
        self._transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self._path = path
        self._timeout_s = timeout_s

    async def sample(self) -> CounterSample:
        """GET the metrics page and parse it.

        Raises:
            httpx.HTTPStatusError: the app answered with an error status (e.g. no /metrics).
        """
        async with httpx.AsyncClient(
            transport=self._transport, base_url="http://gateway", timeout=self._timeout_s
        ) as client:
            resp = await client.get(self._path)
            resp.raise_for_status()
            return sample_from_text(resp.text)
