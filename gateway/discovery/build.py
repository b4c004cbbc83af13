"""Build the configured discovery sources from settings (the only place that reads them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.discovery.base import StaticSource, WorkerSource
from gateway.discovery.config import DiscoverySettings, PoolTemplate
from gateway.routing.types import WorkerInfo

__all__ = ["make_sources", "pool_templates"]


def pool_templates(cfg: DiscoverySettings, static: Sequence[WorkerInfo]) -> dict[str, PoolTemplate]:
    """Per pool, what a discovered pod serves.

    ``kubernetes.pools`` wins; else the models and ``rtt_ms`` of the static worker of that pool,
    with one instance per pod.
    """
    out: dict[str, PoolTemplate] = {}
    for w in static:
        out.setdefault(w.pool, PoolTemplate(models=list(w.models), instances=1, rtt_ms=w.rtt_ms))
    out.update(cfg.kubernetes.pools)
    return out


def make_sources(
    cfg: DiscoverySettings,
    static: Sequence[WorkerInfo],
    redis_url: str | None,
    redis_prefix: str,
    env: Mapping[str, str],
) -> list[WorkerSource]:
    """The sources named in ``cfg.sources``, in order.

    Raises:
        ValueError: ``redis`` is listed but no registry URL is known.
    """
    sources: list[WorkerSource] = []
    for name in cfg.sources:
        if name == "static":
            sources.append(StaticSource(static))
        elif name == "redis":
            from gateway.discovery.registry import RegistrySource

            url = cfg.registry_url or redis_url
            if url is None:
                raise ValueError("discovery source 'redis' needs registry_url or REDIS_URL")
            sources.append(RegistrySource(url, redis_prefix))
        else:
            from gateway.discovery.kubernetes import EndpointSliceSource

            templates = pool_templates(cfg, static)
            sources.append(EndpointSliceSource(cfg.kubernetes, templates, env))
    return sources
