"""One discovery interface, several sources, one loop that applies the differences.

A :class:`WorkerSource` answers the workers it knows right now, or ``None`` when it cannot tell
(API server unreachable, Redis down): the loop then keeps that source's last good answer, so a
blip in discovery never empties the fleet. :class:`DiscoverySync` unions the sources (the first
source naming an id wins) and calls ``add_worker`` for new or changed workers and
``remove_worker`` for the ones gone (their in-flight requests finish normally).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway.routing.types import WorkerInfo

__all__ = ["DiscoverySync", "Membership", "StaticSource", "WorkerSource", "worker_from_dict"]

log = logging.getLogger(__name__)


class WorkerSource(Protocol):
    """A place workers are listed (config file, Redis registry, Kubernetes)."""

    name: str

    async def workers(self) -> Sequence[WorkerInfo] | None:
        """The workers this source lists now, or ``None`` when it cannot tell."""

    async def close(self) -> None:
        """Release connections."""


class Membership(Protocol):
    """What discovery changes (:class:`gateway.service.InferenceService`)."""

    def workers(self) -> Sequence[WorkerInfo]:
        """Every worker routed to now."""

    def add_worker(self, info: WorkerInfo) -> None:
        """Start routing to ``info`` (replacing a worker of the same id)."""

    def remove_worker(self, worker_id: str) -> None:
        """Stop routing to a worker."""


def worker_from_dict(d: Mapping[str, Any]) -> WorkerInfo:
    """A :class:`WorkerInfo` from a config-style mapping (``workers.fleet.WorkerSpec.as_config``).

    Raises:
        KeyError, TypeError, ValueError: a required field is missing or malformed.
    """
    models = d["models"]
    if isinstance(models, str) or not models:
        raise ValueError("models must be a non-empty list")
    instances = int(d.get("instances", 1))
    if instances < 1:
        raise ValueError("instances must be >= 1")
    return WorkerInfo(
        id=str(d["id"]),
        pool=str(d["pool"]),
        arch=str(d["arch"]),
        models=tuple(str(m) for m in models),
        instances=instances,
        rtt_ms=float(d.get("rtt_ms", 0.0)),
        url=str(d["url"]).rstrip("/"),
        grpc_url=str(d.get("grpc_url", "")),
        metrics_url=str(d.get("metrics_url", "")),
    )


class StaticSource:
    """The ``workers:`` list of the config file."""

    name = "static"

    def __init__(self, workers: Sequence[WorkerInfo]) -> None:
        self._workers = list(workers)

    async def workers(self) -> Sequence[WorkerInfo]:
        """Always the configured list."""
        return self._workers

    async def close(self) -> None:
        """Nothing to close."""


class DiscoverySync:
    """Reconciles the service's fleet with the union of ``sources`` on every :meth:`tick`."""

    def __init__(self, sources: Sequence[WorkerSource], target: Membership) -> None:
        self._sources = list(sources)
        self._target = target
        self._last: dict[str, Sequence[WorkerInfo]] = {}
        self.changes = 0
        """Workers added, replaced or removed since start."""

    async def tick(self) -> None:
        """Ask every source (concurrently), then add, replace and remove workers."""
        answers = await asyncio.gather(
            *(s.workers() for s in self._sources), return_exceptions=True
        )
        for src, ans in zip(self._sources, answers, strict=True):
            if isinstance(ans, BaseException):
                log.warning("discovery source %s failed: %r", src.name, ans)
            elif ans is not None:
                self._last[src.name] = ans
        if not self._last:
            return  # no source has ever answered: keep the configured fleet
        desired: dict[str, WorkerInfo] = {}
        for src in self._sources:
            for w in self._last.get(src.name, ()):
                desired.setdefault(w.id, w)
        current = {w.id: w for w in self._target.workers()}
        for wid, info in desired.items():
            if current.get(wid) != info:
                log.info("discovery: %s worker %s (%s)", "updated" if wid in current else
                         "new", wid, info.url)  # fmt: skip
                self._target.add_worker(info)
                self.changes += 1
        for wid in current.keys() - desired.keys():
            log.info("discovery: worker %s gone", wid)
            self._target.remove_worker(wid)
            self.changes += 1

    async def close(self) -> None:
        """Close every source."""
        for s in self._sources:
            await s.close()
