"""Wires the shared-state collectors of one app: refresh + lease repair, Triton scrape, discovery.

Called by the gateway's start (:meth:`gateway.assembly.Gateway.start`) after the store is
connected::

    loops = state_loops(service, store, reconciler, metrics, clock, settings)  # not started

When scraping is on (``scrape_interval_s``), :func:`gateway.assembly.build_gateway` built the
service's store as a :class:`~gateway.state.reconcile.ReconciledStore` over ``reconciler``, so
every figure the request path and the refresher apply already includes the load Triton sees
beyond Redis; the scrape loop here feeds that reconciler. Every loop runs apart from the
request path; none blocks a request.

Intervals: refresh every ``refresh_interval_s`` (100 ms); lease repair every
``min(5 s, lease_ttl_s / 4)``, so a killed gateway's leases are gone within 1.25 TTL; scrape
every ``scrape_interval_s`` (1 s); discovery every ``discovery.interval_s`` (2 s, only when a
dynamic source is configured).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gateway.core.clock import Clock
from gateway.discovery.base import DiscoverySync, Membership
from gateway.discovery.build import make_sources
from gateway.observability.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.state.collectors import Periodic, SharedStateRefresher
from gateway.state.reconcile import Reconciler, TritonScraper
from gateway.state.store import StateStore

__all__ = ["repair_interval_s", "state_loops"]


def repair_interval_s(lease_ttl_s: float) -> float:
    """How often leases are repaired: ``min(5, ttl / 4)`` seconds."""
    return min(5.0, lease_ttl_s / 4.0)


def state_loops(
    service: Membership,
    store: StateStore,
    reconciler: Reconciler | None,
    metrics: GatewayMetrics,
    clock: Clock,
    settings: Settings,
    env: Mapping[str, str] | None = None,
) -> list[Periodic]:
    """The shared-state loops of one app (see the module docstring); not started.

    Args:
        service: the app's :class:`gateway.service.InferenceService` (membership,
            ``apply_shared``).
        store: the store the service uses (read by the refresher).
        reconciler: what the scrape feeds (``None``: scraping off).
        metrics: the app's metrics.
        clock: the app's clock.
        settings: validated settings.
        env: environment for Kubernetes discovery (default: ``os.environ``).
    """
    loops: list[Periodic] = []
    if settings.scrape_interval_s is not None and reconciler is not None:
        interval = settings.scrape_interval_s
        scraper = TritonScraper(
            service.workers, reconciler, clock, timeout_s=min(1.0, max(interval, 0.2))
        )
        loops.append(Periodic("scrape", scraper.tick, interval, on_stop=scraper.close))
    refresher = SharedStateRefresher(
        service,  # type: ignore[arg-type]
        store,
        metrics,
        clock,
        repair_every_s=repair_interval_s(settings.lease_ttl_s),
    )
    loops.insert(0, Periodic("refresh", refresher.tick, settings.refresh_interval_s))
    disc = settings.discovery
    if disc.dynamic:
        sources = make_sources(
            disc,
            settings.worker_infos(),
            settings.redis_url,
            settings.redis_prefix,
            os.environ if env is None else env,
        )
        sync = DiscoverySync(sources, service)
        loops.append(Periodic("discovery", sync.tick, disc.interval_s, on_stop=sync.close))
    return loops
