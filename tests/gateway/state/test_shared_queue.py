"""The shared shadow queue (issue 16): the reserve/release rules, in memory and in real Valkey.

The in-memory store runs on a manual clock, so its figures are exact; the Lua scripts run the
same sequence on a real (embedded) Valkey, whose clock moves meanwhile, so their figures are
checked against the exact ones within the wall time the sequence took.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from redis.crc import key_slot

from gateway.core.clock import ManualClock, MonotonicClock
from gateway.embedded import EmbeddedValkey
from gateway.state.memory_store import MemoryStore
from gateway.state.redis_store import RedisStore
from gateway.state.store import Ended, Lease, StateStore, WorkerLoad

Step = Callable[[StateStore, ManualClock | None], Awaitable[WorkerLoad | None]]


def _lease(n: int, ms: float, slots: int = 2, lead_ms: float = 5.0) -> Lease:
    return Lease("w", f"g:{n}", int(ms * 1000), slots, int(lead_ms * 1000))


async def _sequence(store: StateStore, clock: ManualClock | None) -> list[WorkerLoad | None]:
    """Two slots, lead 5 ms: three 10 ms requests, then ends of every kind."""

    def advance(ms: float) -> None:
        if clock is not None:
            clock.advance(ms / 1000.0)
        else:
            time.sleep(ms / 1000.0)

    a, b, c, d = _lease(1, 10.0), _lease(2, 10.0), _lease(3, 10.0), _lease(4, 4.0)
    out = [await store.reserve(a)]  # slot 0: 5 -> 15
    out.append(await store.reserve(b))  # slot 1: 5 -> 15
    out.append(await store.reserve(c))  # slot 0 (first of the two): 15 -> 25
    advance(8.0)
    # a truly ended 1 ms ago (at 7, predicted 15): slot 0's chain moves 8 ms earlier -> 17
    out.append(await store.release(a, Ended(ago_us=1000)))
    out.append(await store.release(b, Ended()))  # failed: slot 1 stays at 15
    out.append(await store.reserve(d))  # slot 1 (15 < 17): 15 -> 19
    out.append(await store.release(d, Ended(abandoned=True)))  # last on slot 1: back to 15
    # c (predicted 25, after the shift 17) truly ends at 20 (ago 0 at t = 20): 17 -> 20
    advance(12.0)
    out.append(await store.release(c, Ended(ago_us=0)))
    return out


# expected per step: (outstanding, work_ms, free_ms as of that step)
EXPECTED = [
    (1, 10.0, (15.0, 0.0)),
    (2, 20.0, (15.0, 15.0)),
    (3, 30.0, (25.0, 15.0)),
    (2, 20.0, (17.0 - 8.0, 15.0 - 8.0)),
    (1, 10.0, (9.0, 7.0)),
    (2, 14.0, (9.0, 11.0)),
    (1, 10.0, (9.0, 7.0)),
    (0, 0.0, (0.0, 0.0)),
]


async def test_rules_in_memory() -> None:
    clock = ManualClock(100.0)
    got = await _sequence(MemoryStore(clock), clock)
    for g, (out, work, free) in zip(got, EXPECTED, strict=True):
        assert g is not None and (g.outstanding, g.work_ms) == (out, work)
        assert g.free_ms == pytest.approx(free, abs=1e-6)


@pytest.fixture(scope="module")
def valkey() -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey() as v:
        yield v


@pytest.mark.integration
async def test_rules_in_valkey_match_memory(valkey: EmbeddedValkey) -> None:
    """The Lua scripts give the in-memory figures, up to the time the calls themselves took."""
    for attempt in range(3):  # a busy machine may stretch a step; the rules do not change
        s = RedisStore(valkey.url, MonotonicClock(), prefix=f"sq{attempt}", timeout_s=1.0)
        await s.start()
        t0 = time.perf_counter()
        got = await _sequence(s, None)
        slack_ms = (time.perf_counter() - t0) * 1000.0 - 20.0  # beyond the two sleeps
        ok = True
        for g, (out, work, free) in zip(got, EXPECTED, strict=True):
            assert g is not None and (g.outstanding, g.work_ms) == (out, work)
            ok = ok and all(
                abs(x - y) <= slack_ms + 0.5 for x, y in zip(g.free_ms, free, strict=True)
            )
        snap = await s.snapshot(["w"])
        placed = await s.client.hlen(s.keys("w")[2])
        await s.close()
        assert snap is not None and snap["w"].outstanding == 0 and placed == 0
        if ok:
            return
    pytest.fail(f"queue figures off by more than the calls' own time: {got}")


@pytest.mark.integration
async def test_snapshot_reads_the_queue(valkey: EmbeddedValkey) -> None:
    s = RedisStore(valkey.url, MonotonicClock(), prefix="sqsnap", timeout_s=1.0)
    await s.start()
    got = await s.reserve(Lease("w", "g:1", 200_000, 3, 0))
    snap = await s.snapshot(["w", "idle"])
    await s.close()
    assert got is not None and got.free_ms[1:] == (0.0, 0.0) and 150.0 < got.free_ms[0] <= 200.0
    assert snap is not None and len(snap["w"].free_ms) >= 1  # the slots ever booked
    assert 0.0 < snap["w"].free_ms[0] <= got.free_ms[0] and snap["idle"].free_ms == ()


@pytest.mark.integration
async def test_expired_lease_leaves_no_placement(valkey: EmbeddedValkey) -> None:
    clock = MonotonicClock()
    s = RedisStore(valkey.url, clock, prefix="sqexp", timeout_s=1.0, lease_ttl_s=0.05)
    await s.start()
    await s.reserve(Lease("w", "dead:1", 5_000, 1, 0))
    time.sleep(0.1)
    assert await s.expire_leases(["w"]) == 1
    assert await s.client.hlen(s.keys("w")[2]) == 0
    await s.close()


def test_every_key_of_a_worker_is_in_one_cluster_slot() -> None:
    """Each script touches one worker's keys only; the hash tag puts them in one slot."""
    s = RedisStore("redis://127.0.0.1:1", MonotonicClock(), prefix="synergai")
    for worker in ("w", "triton-a100-0", "pool:edge/3", "x{y}z"):
        keys = s.keys(worker)
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    assert key_slot(s.keys("a")[0].encode()) != key_slot(s.keys("b")[0].encode())


async def _conditional(store: StateStore) -> None:
    """A conditional reserve books only within its limit; refused, it changes nothing."""
    first = await store.reserve(Lease("c", "g:1", 10_000_000, 1, 0))  # 10 s on one slot
    assert first is not None and first.booked
    refused = await store.reserve(Lease("c", "g:2", 1_000, 1, 0, max_wait_us=5_000_000))
    assert refused is not None and not refused.booked
    assert refused.outstanding == 1 and 5_000 < refused.free_ms[0] <= 10_000
    # a release of the refused lease is a no-op: it was never booked
    after = await store.release(Lease("c", "g:2", 1_000, 1, 0), Ended(ago_us=0))
    assert after is not None and after.outstanding == 1 and after.free_ms[0] > 5_000
    ok = await store.reserve(Lease("c", "g:3", 1_000, 1, 0, max_wait_us=20_000_000))
    assert ok is not None and ok.booked and ok.outstanding == 2
    idle = await store.reserve(Lease("idle", "g:4", 1_000, 2, 0, max_wait_us=0))
    assert idle is not None and idle.booked  # a slot never booked is free


async def test_conditional_reserve_in_memory() -> None:
    await _conditional(MemoryStore(ManualClock(100.0)))


@pytest.mark.integration
async def test_conditional_reserve_in_valkey(valkey: EmbeddedValkey) -> None:
    s = RedisStore(valkey.url, MonotonicClock(), prefix="sqcond", timeout_s=1.0)
    await s.start()
    await _conditional(s)
    assert await s.client.hlen(s.keys("c")[2]) == 2  # g:1 and g:3 placed, g:2 never
    await s.close()
