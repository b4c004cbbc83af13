"""An in-process :class:`~gateway.state.store.StateStore` with the Redis store's semantics.

Same invariants as :mod:`gateway.state.redis_store` (a counter moves only with its lease;
releasing an unknown or expired lease changes nothing; counts never negative), without the
network: for unit tests, the simulator, and a single replica that wants no Redis. It can be
switched "down" to exercise the fail-open paths. It keeps the same shared shadow queue (per
worker, each slot's predicted free time and shift, on the store's clock) with the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gateway.core.clock import Clock
from gateway.state.store import Ended, Lease, WorkerLoad

__all__ = ["MemoryStore"]


class MemoryStore:
    """Leased outstanding counts in dictionaries; see the module docstring."""

    def __init__(self, clock: Clock, lease_ttl_s: float = 60.0) -> None:
        self._clock = clock
        self._ttl = lease_ttl_s
        self._out: dict[str, int] = {}
        self._work_us: dict[str, int] = {}
        self._leases: dict[str, dict[str, tuple[float, int]]] = {}
        self._free: dict[str, list[int]] = {}  # per worker, per slot: free at (µs)
        self._shift: dict[str, list[int]] = {}
        self._placed: dict[str, dict[str, tuple[int, int]]] = {}  # token -> (slot, end - shift)
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

    def _now_us(self) -> int:
        return round(self._clock.now() * 1e6)

    def _queue(self, worker: str, slots: int) -> tuple[list[int], list[int]]:
        free = self._free.setdefault(worker, [])
        shift = self._shift.setdefault(worker, [])
        while len(free) < slots:
            free.append(0)
            shift.append(0)
        return free, shift

    def _load(self, worker: str, slots: int | None = None) -> WorkerLoad:
        now = self._now_us()
        free = self._free.get(worker, [])
        k = len(free) if slots is None else min(slots, len(free))
        left = tuple((f - now) / 1000.0 if f > now else 0.0 for f in free[:k])
        return WorkerLoad(self._out.get(worker, 0), self._work_us.get(worker, 0) / 1000.0, left)

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
        return self.reserve_now(lease)

    def reserve_now(self, lease: Lease) -> WorkerLoad:
        """:meth:`reserve` without the availability check (the simulator's store)."""
        held = self._leases.setdefault(lease.worker, {})
        if lease.token not in held:
            if lease.max_wait_us >= 0:
                free = self._free.get(lease.worker, [])
                if len(free) >= lease.slots:  # else a slot was never booked: free
                    first = min(free[: lease.slots])
                    if first - (self._now_us() + lease.lead_us) > lease.max_wait_us:
                        return replace(self._load(lease.worker, lease.slots), booked=False)
            held[lease.token] = (self._clock.now() + self._ttl, lease.work_us)
            self._out[lease.worker] = self._out.get(lease.worker, 0) + 1
            self._work_us[lease.worker] = self._work_us.get(lease.worker, 0) + lease.work_us
            free, shift = self._queue(lease.worker, lease.slots)
            i = 0 if lease.slots == 1 else min(range(lease.slots), key=free.__getitem__)
            arrive = self._now_us() + lease.lead_us
            free[i] = max(arrive, free[i]) + lease.work_us
            self._placed.setdefault(lease.worker, {})[lease.token] = (i, free[i] - shift[i])
        return self._load(lease.worker, lease.slots)

    async def release(self, lease: Lease, ended: Ended | None = None) -> WorkerLoad | None:
        """Drop the lease and its work if still held; re-anchor its slot (Redis rules)."""
        if self.down:
            return None
        self.calls += 1
        return self.release_now(lease, ended)

    def release_now(self, lease: Lease, ended: Ended | None = None) -> WorkerLoad:
        """:meth:`release` without the availability check (the simulator's store)."""
        held = self._leases.get(lease.worker, {})
        if held.pop(lease.token, None) is not None:
            self._drop(lease.worker, lease.work_us)
            placed = self._placed.get(lease.worker, {}).pop(lease.token, None)
            if placed is not None and ended is not None:
                self._reanchor(lease, placed, ended)
        return self._load(lease.worker, lease.slots)

    def _reanchor(self, lease: Lease, placed: tuple[int, int], ended: Ended) -> None:
        free, shift = self._queue(lease.worker, lease.slots)
        i, rel = placed
        if i >= len(free):
            return
        now = self._now_us()
        pend = rel + shift[i]
        if ended.abandoned:
            if free[i] == pend:
                free[i] = max(pend - lease.work_us, now)
        elif ended.ago_us is not None and free[i] >= pend:
            te = now - ended.ago_us
            g = max(free[i] + te - pend, te)
            shift[i] += g - free[i]
            free[i] = g

    async def snapshot(self, workers: Sequence[str]) -> dict[str, WorkerLoad] | None:
        """Every listed worker's load."""
        if self.down:
            return None
        self.calls += 1
        return self.snapshot_now(workers)

    def snapshot_now(self, workers: Sequence[str]) -> dict[str, WorkerLoad]:
        """:meth:`snapshot` without the availability check (the simulator's store)."""
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
                    self._placed.get(w, {}).pop(token, None)
                    dropped += 1
        return dropped
