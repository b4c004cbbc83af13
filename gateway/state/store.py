"""The shared-state seam: per-worker outstanding requests and work, one view for all replicas.

A gateway *reserves* a worker before (or while) forwarding a request and *releases* it when
the answer is in. Both are atomic and one round trip each, and both return the worker's
post-operation fleet-wide figures, so the routing view is refreshed for free on every request.
A reservation is a *lease*: it expires after a TTL, so a gateway that dies mid-request leaks
nothing for longer than that (DESIGN.md §7).

Failure contract: a store never raises on the hot path. When the backend is slow or down it
answers ``None`` (fail open: the caller routes on its local view and marks it stale) and
recovers by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "OTHERS_WINDOW_S",
    "REDECIDE_MARGIN_MS",
    "Ended",
    "Lease",
    "NullStore",
    "StateStore",
    "WorkerLoad",
    "stale_limit_us",
]

OTHERS_WINDOW_S = 10.0
"""A gateway whose store showed another replica's lease within this many seconds routes as a
replica: its reserves are conditional and awaited (issue 16.2); a lone gateway never waits."""

REDECIDE_MARGIN_MS = 1.0
"""How far (ms) the shared queue may show a decision's wait above the one it predicted before
the decision counts as made on stale figures (issue 16.2; measured: docs/benchmarks.md,
Replicas)."""


def stale_limit_us(
    predicted_ms: float, service_ms: float, slo_ms: float, rtt_ms: float, margin_ms: float
) -> int:
    """A conditional reserve's ``max_wait_us``: the wait on the shared queue beyond which a
    decision was made on stale figures.

    Stale means both: more than ``margin_ms`` above the wait the decision predicted
    (``predicted - rtt - service``), and late for the SLO (a wait above ``slo - rtt -
    service``). A decision that still meets its SLO on the fresh figures stands.
    """
    wait = predicted_ms - rtt_ms - service_ms
    return max(0, round(max(wait + margin_ms, slo_ms - rtt_ms - service_ms) * 1000.0))


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """Fleet-wide load of one worker: requests in flight, predicted work, shared shadow queue.

    Attributes:
        outstanding: requests in flight, every gateway's.
        work_ms: their predicted service time (ms).
        free_ms: the shared shadow queue: per instance slot, how long (ms) until the slot is
            predicted free, as of the read (0: free now). A *relative* duration measured on
            the store's clock, so replicas' clocks never meet; empty when the store keeps no
            queue (or has not seen the worker).
        booked: false when a conditional reserve (``Lease.max_wait_us``) booked nothing: the
            request would have waited longer on the shared queue; the figures are as found.
        external: of ``outstanding``, the requests only Triton's metrics show (not a gateway's
            lease: :class:`gateway.state.reconcile.Reconciler`).
    """

    outstanding: int
    work_ms: float
    free_ms: tuple[float, ...] = ()
    booked: bool = True
    external: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """One reservation: who holds it and what it added.

    Attributes:
        worker: the worker id.
        token: unique per reservation (``<gateway id>:<sequence>``).
        work_us: predicted service time added to the worker, integer microseconds (integer so
            reserve/release add and subtract exactly and counts return to exactly zero).
        slots: the worker's instance slots (length of its shared shadow queue).
        lead_us: from the reserve to the request's arrival at the worker (half the rtt, µs):
            the request is queued on the slot that frees first, from ``now + lead_us``.
        max_wait_us: a conditional reserve (issue 16.2): book only if the request's wait on the
            shared queue (from its arrival until its slot frees) is at most this; otherwise
            change nothing and answer the figures with ``booked`` false. ``-1``: always book.
    """

    worker: str
    token: str
    work_us: int
    slots: int = 1
    lead_us: int = 0
    max_wait_us: int = -1


@dataclass(frozen=True, slots=True)
class Ended:
    """How a reserved request ended, for the release's re-anchoring of the shared queue.

    Attributes:
        ago_us: the request's true end on the worker was this long (µs) before the release
            call (success); ``None``: failed (the queue is left as predicted).
        abandoned: ended without news of the worker (its 4xx, a client cancel): a request still
            last on its slot hands the slot back from when it would have begun.
    """

    ago_us: int | None = None
    abandoned: bool = False


class StateStore(Protocol):
    """Where the fleet-wide outstanding work lives (Redis in production)."""

    @property
    def available(self) -> bool:
        """False while the backend is considered down (calls answer ``None`` at once)."""

    async def start(self) -> None:
        """Connect (lazily is fine); must not raise if the backend is down."""

    async def close(self) -> None:
        """Release connections."""

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        """Add one request and ``lease.work_us`` to the worker; ``None`` when unavailable."""

    async def release(self, lease: Lease, ended: Ended | None = None) -> WorkerLoad | None:
        """Undo a reservation (a no-op if its lease already expired); ``None`` if unavailable.

        ``ended`` re-anchors the worker's shared shadow queue on the true end (as the local
        view does on a finish); ``None``: left as predicted.
        """

    async def snapshot(self, workers: Sequence[str]) -> dict[str, WorkerLoad] | None:
        """Every listed worker's load in one round trip; ``None`` when unavailable."""

    async def expire_leases(self, workers: Sequence[str]) -> int | None:
        """Drop leases past their TTL and undo their work; the count dropped, or ``None``."""


class NullStore:
    """No shared state: every call answers ``None`` (routing uses the local view only).

    Used before the real store is connected, and by single-replica set-ups that opt out.
    """

    @property
    def available(self) -> bool:
        """Never available."""
        return False

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        """Always ``None``."""
        return None

    async def release(self, lease: Lease, ended: Ended | None = None) -> WorkerLoad | None:
        """Always ``None``."""
        return None

    async def snapshot(self, workers: Sequence[str]) -> dict[str, WorkerLoad] | None:
        """Always ``None``."""
        return None

    async def expire_leases(self, workers: Sequence[str]) -> int | None:
        """Always ``None``."""
        return None
