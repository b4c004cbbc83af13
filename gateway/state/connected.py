"""A :class:`StateStore` built with the gateway and connected in its lifespan.

The gateway is assembled once (:func:`gateway.assembly.build_gateway`), before any event loop
runs, but the Redis connection (and an embedded Valkey when no ``redis_url`` is set) can only
be opened inside the app's lifespan. :class:`ConnectedStore` is that seam: the request path
holds it from construction, ``start()`` opens the real store, ``close()`` closes it. Before
``start``, after ``close`` (and between two lifespans of one app) it answers like
:class:`~gateway.state.store.NullStore`: unavailable, so routing runs on the local view, as it
does whenever Redis is down.

The calls of the request path (``reserve``, ``release``) return the open store's coroutine
itself: no extra frame per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from gateway.state.store import Ended, Lease, NullStore, StateStore, WorkerLoad

__all__ = ["ConnectedStore"]

Opener = Callable[[], Awaitable[StateStore]]
"""Opens (starts) the real store inside the event loop."""
Closer = Callable[[], Awaitable[None]]
"""Runs after the store closed (stops an embedded Valkey)."""


class ConnectedStore:
    """The real store while connected, a :class:`NullStore` otherwise; see the module doc.

    Args:
        opener: builds and starts the real store (``await store.start()`` included).
        after_close: run after the real store closed, or ``None``.
    """

    def __init__(self, opener: Opener, after_close: Closer | None = None) -> None:
        self._opener = opener
        self._after_close = after_close
        self._null = NullStore()
        self._store: StateStore = self._null
        self.open: StateStore | None = None
        """The connected store (ops and tests), ``None`` outside the lifespan."""

    @property
    def available(self) -> bool:
        """The connected store's availability (False when not connected)."""
        return self._store.available

    async def start(self) -> None:
        """Open the real store (idempotent)."""
        if self.open is None:
            self.open = await self._opener()
            self._store = self.open

    async def close(self) -> None:
        """Close the real store; from now on, answer as a :class:`NullStore`."""
        store, self.open = self.open, None
        self._store = self._null
        if store is not None:
            try:
                await store.close()
            finally:
                if self._after_close is not None:
                    await self._after_close()

    def reserve(self, lease: Lease) -> Coroutine[Any, Any, WorkerLoad | None]:
        """The connected store's ``reserve``."""
        return self._store.reserve(lease)

    def release(
        self, lease: Lease, ended: Ended | None = None
    ) -> Coroutine[Any, Any, WorkerLoad | None]:
        """The connected store's ``release``."""
        return self._store.release(lease, ended)

    def snapshot(self, workers: Sequence[str]) -> Coroutine[Any, Any, dict[str, WorkerLoad] | None]:
        """The connected store's ``snapshot``."""
        return self._store.snapshot(workers)

    def expire_leases(self, workers: Sequence[str]) -> Coroutine[Any, Any, int | None]:
        """The connected store's lease repair."""
        return self._store.expire_leases(workers)
