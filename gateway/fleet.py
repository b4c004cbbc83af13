"""The fleet registry: which workers exist, which are healthy, which are drained. One place.

Three writers, each through one method: discovery changes membership (:meth:`Fleet.add_worker`,
:meth:`Fleet.remove_worker`), the health monitor hands out its verdict
(:meth:`Fleet.set_healthy`: probe and outlier detection, :mod:`gateway.health.monitor`), an
operator drains (:meth:`Fleet.set_drained`). A worker is **routable** when it is healthy and
not drained; the routing view is told exactly that on every change, so the policy (which reads
the view) and every other path that picks a worker (metadata calls on both front doors, the
picker's) see the same fleet: :meth:`Fleet.routable` and :meth:`Fleet.meta_worker` read the
same two facts.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from gateway.core.clock import Clock
from gateway.errors import ModelNotFound, NoHealthyWorker
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView

__all__ = ["Fleet"]


class Fleet:
    """Membership, health verdicts and drain of every worker; the view follows it.

    Args:
        view: the routing view; told ``set_healthy(worker, routable)`` on every change and
            ``add_worker`` / ``remove_worker`` on membership changes.
        clock: the routing clock (the view's ``now``).
        workers: the initial members (default: the view's workers).
    """

    def __init__(
        self, view: FleetView, clock: Clock, workers: Sequence[WorkerInfo] | None = None
    ) -> None:
        self._view = view
        self._clock = clock
        self._workers: dict[str, WorkerInfo] = {}
        self._healthy: dict[str, bool] = {}
        self._drained: set[str] = set()
        self._meta_rr = itertools.count()
        known = {w.id for w in view.workers()}
        for info in view.workers() if workers is None else workers:
            self._workers[info.id] = info
            self._healthy[info.id] = True
            if info.id not in known:
                view.add_worker(info)

    # membership (discovery) -----------------------------------------------------------------
    def workers(self) -> Sequence[WorkerInfo]:
        """Every member."""
        return list(self._workers.values())

    def worker(self, worker_id: str) -> WorkerInfo | None:
        """A member by id."""
        return self._workers.get(worker_id)

    def add_worker(self, info: WorkerInfo) -> None:
        """Start routing to ``info`` (replacing a member of the same id); healthy until told."""
        self._workers[info.id] = info
        self._healthy.setdefault(info.id, True)
        self._view.add_worker(info)
        if not self.routable(info.id):
            self._view.set_healthy(info.id, False, self._clock.now())

    def remove_worker(self, worker_id: str) -> None:
        """Stop routing to a worker; requests in flight finish normally."""
        self._workers.pop(worker_id, None)
        self._healthy.pop(worker_id, None)
        self._view.remove_worker(worker_id)  # a drain stays: the worker may come back

    # health (the health monitor) and drain (operators) --------------------------------------
    def set_healthy(self, worker_id: str, healthy: bool) -> None:
        """Record the health monitor's verdict for a member."""
        if worker_id in self._workers:
            self._healthy[worker_id] = healthy
            self._tell_view(worker_id)

    def healthy(self, worker_id: str) -> bool:
        """The last health verdict (a drained worker may still be healthy)."""
        return self._healthy.get(worker_id, False)

    def set_drained(self, worker_id: str, drained: bool) -> None:
        """Drain (no new requests; those in flight finish) or undrain a member."""
        if worker_id not in self._workers:
            return
        if drained:
            self._drained.add(worker_id)
        else:
            self._drained.discard(worker_id)
        self._tell_view(worker_id)

    def drained(self, worker_id: str) -> bool:
        """Whether an operator drained the worker."""
        return worker_id in self._drained

    def routable(self, worker_id: str) -> bool:
        """Healthy and not drained: the worker may get new requests."""
        return self._healthy.get(worker_id, False) and worker_id not in self._drained

    def _tell_view(self, worker_id: str) -> None:
        self._view.set_healthy(worker_id, self.routable(worker_id), self._clock.now())

    def sync_view(self) -> None:
        """Tell the view every member's routable state again (after :meth:`FleetView.reset`)."""
        for wid in self._workers:
            self._tell_view(wid)

    # queries ------------------------------------------------------------------------------
    def ready(self) -> bool:
        """At least one member is routable."""
        return any(self.routable(w) for w in self._workers)

    def any_routable(self, model: str) -> bool:
        """Some routable member serves ``model``."""
        return any(model in w.models and self.routable(w.id) for w in self._workers.values())

    def meta_worker(self, model: str) -> WorkerInfo:
        """A routable member serving ``model`` for a metadata / ready call (round robin).

        Raises:
            ModelNotFound: no member serves the model.
            NoHealthyWorker: none of them is routable.
        """
        serving = [w for w in self._workers.values() if model in w.models]
        if not serving:
            raise ModelNotFound(f"unknown model '{model}'")
        ok = [w for w in serving if self.routable(w.id)]
        if not ok:
            raise NoHealthyWorker(f"no healthy worker serves model '{model}'")
        return ok[next(self._meta_rr) % len(ok)]
