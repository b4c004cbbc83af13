"""An in-process :class:`~gateway.state.store.StateStore` with the Redis store's semantics.

Same invariants as :mod:`gateway.state.redis_store` (a counter moves only with its lease;
releasing an unknown or expired lease changes nothing; counts never negative), without the
network: for unit tests, the simulator, and a single replica that wants no Redis. It can be
switched "down" to exercise the fail-open paths.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.clock import Clock
from gateway.state.store import Lease, WorkerLoad

__all__ = ["MemoryStore"]


class MemoryStore:
    """Leased outstanding counts in dictionaries; see the module docstring."""

    def __init__(self, clock: Clock, lease_ttl_s: float = 60.0) -> None:
        self._clock = clock
        self._ttl = lease_ttl_s
        self._out: dict[str, int] = {}
        self._work_us: dict[str, int] = {}
        self._leases: dict[str, dict[str, tuple[float, int]]] = {}
        self.down = False
        """While true every call answers ``None`` (a dead Redis)."""
        self.calls = 0
        """Calls that reached the store (round trips, for tests)."""

    @property
    def available(self) -> bool:
        """False while :attr:`down`."""
        return not self.down

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to close."""

    def _load(self, worker: str) -> WorkerLoad:
        return WorkerLoad(self._out.get(worker, 0), self._work_us.get(worker, 0) / 1000.0)

    def _drop(self, worker: str, work_us: int) -> None:
        out = self._out.get(worker, 0) - 1
        work = self._work_us.get(worker, 0) - work_us
        self._out[worker] = max(out, 0)
        self._work_us[worker] = 0 if out <= 0 else max(work, 0)

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        """Add the lease (once) and its work."""
        if self.down:
            return None
        self.calls += 1
        held = self._leases.setdefault(lease.worker, {})
        if lease.token not in held:
            held[lease.token] = (self._clock.now() + self._ttl, lease.work_us)
            self._out[lease.worker] = self._out.get(lease.worker, 0) + 1
            self._work_us[lease.worker] = self._work_us.get(lease.worker, 0) + lease.work_us
        return self._load(lease.worker)

    async def release(self, lease: Lease) -> WorkerLoad | None:
        """Drop the lease and its work if still held."""
        if self.down:
            return None
        self.calls += 1
        held = self._leases.get(lease.worker, {})
        if held.pop(lease.token, None) is not None:
            self._drop(lease.worker, lease.work_us)
        return self._load(lease.worker)

    async def snapshot(self, workers: Sequence[str]) -> dict[str, WorkerLoad] | None:
        """Every listed worker's load."""
        if self.down:
            return None
        self.calls += 1
        return {w: self._load(w) for w in workers}

    async def expire_leases(self, workers: Sequence[str]) -> int | None:
        """Drop leases past their TTL."""
        if self.down:
            return None
        self.calls += 1
        now = self._clock.now()
        dropped = 0
        for w in workers:
            held = self._leases.get(w, {})
            for token, (expiry, work_us) in list(held.items()):
                if expiry <= now:
                    del held[token]
                    self._drop(w, work_us)
                    dropped += 1
        return dropped
