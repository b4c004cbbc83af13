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

__all__ = ["Ended", "Lease", "NullStore", "StateStore", "WorkerLoad"]


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
    """

    outstanding: int
    work_ms: float
    free_ms: tuple[float, ...] = ()


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
    """

    worker: str
    token: str
    work_us: int
    slots: int = 1
    lead_us: int = 0


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
