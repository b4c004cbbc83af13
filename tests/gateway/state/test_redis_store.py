"""The Lua scripts against a real (embedded) Valkey: atomicity, leases, fail-open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.clock import ManualClock, MonotonicClock
from gateway.core.net import free_port
from gateway.embedded import EmbeddedValkey
from gateway.state.redis_store import RedisStore
from gateway.state.store import Lease

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def valkey() -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey() as v:
        yield v


@pytest.fixture
async def store(
    valkey: EmbeddedValkey, request: pytest.FixtureRequest
) -> AsyncIterator[RedisStore]:
    s = RedisStore(
        valkey.url, MonotonicClock(), prefix=f"t{abs(hash(request.node.name))}", timeout_s=1.0
    )
    await s.start()
    yield s
    await s.close()


async def test_reserve_release_round_trip(store: RedisStore) -> None:
    a, b = Lease("w", "g:1", 12_500), Lease("w", "g:2", 1_000)
    got = await store.reserve(a)
    snap = await store.snapshot(["w"])
    assert got is not None and snap is not None
    assert (snap["w"].outstanding, snap["w"].work_ms) == (got.outstanding, got.work_ms)
    assert 0.0 < snap["w"].free_ms[0] <= got.free_ms[0] <= 12.5  # the queue, read later
    got = await store.reserve(b)
    assert got is not None and got.outstanding == 2 and got.work_ms == 13.5
    got = await store.release(a)
    assert got is not None and got.outstanding == 1 and got.work_ms == 1.0
    got = await store.release(b)
    assert got is not None and (got.outstanding, got.work_ms) == (0, 0.0)


async def test_release_is_idempotent_and_never_negative(store: RedisStore) -> None:
    a = Lease("w", "g:1", 5_000)
    await store.reserve(a)
    await store.reserve(a)  # the same lease twice counts once
    assert (await store.snapshot(["w"]))["w"].outstanding == 1  # type: ignore[index]
    await store.release(a)
    got = await store.release(a)
    assert got is not None and (got.outstanding, got.work_ms) == (0, 0.0)
    got = await store.release(Lease("w", "never:1", 9_000))
    assert got is not None and (got.outstanding, got.work_ms) == (0, 0.0)


async def test_snapshot_is_one_round_trip(store: RedisStore) -> None:
    await store.reserve(Lease("a", "g:1", 1000))
    before = store.round_trips
    snap = await store.snapshot(["a", "b", "c"])
    assert store.round_trips == before + 1
    assert snap is not None and snap["a"].outstanding == 1 and snap["b"].outstanding == 0


async def test_expired_leases_are_undone(valkey: EmbeddedValkey) -> None:
    s = RedisStore(valkey.url, MonotonicClock(), prefix="ttl", lease_ttl_s=0.05, timeout_s=1.0)
    try:
        await s.reserve(Lease("w", "dead:1", 7_000))
        await s.reserve(Lease("w", "dead:2", 3_000))
        await asyncio.sleep(0.1)
        live = Lease("w", "live:1", 2_000)
        s2 = RedisStore(valkey.url, MonotonicClock(), prefix="ttl", lease_ttl_s=60, timeout_s=1.0)
        await s2.reserve(live)
        assert await s.expire_leases(["w"]) == 2
        snap = await s.snapshot(["w"])
        assert snap is not None and (snap["w"].outstanding, snap["w"].work_ms) == (1, 2.0)
        assert (await s.release(Lease("w", "dead:1", 7_000))).outstanding == 1  # type: ignore[union-attr]
        assert (await s2.release(live)).outstanding == 0  # type: ignore[union-attr]
        await s2.close()
    finally:
        await s.close()


async def test_concurrent_burst_returns_to_zero(store: RedisStore) -> None:
    leases = [Lease(f"w{i % 3}", f"g:{i}", 1_000 + i) for i in range(300)]
    await asyncio.gather(*(store.reserve(x) for x in leases))
    snap = await store.snapshot(["w0", "w1", "w2"])
    assert snap is not None and sum(v.outstanding for v in snap.values()) == 300
    await asyncio.gather(*(store.release(x) for x in leases))
    snap = await store.snapshot(["w0", "w1", "w2"])
    assert snap is not None and all((v.outstanding, v.work_ms) == (0, 0.0) for v in snap.values())


async def test_fails_open_backs_off_and_recovers() -> None:
    port = free_port()
    clock = ManualClock()
    s = RedisStore(f"redis://127.0.0.1:{port}/0", clock, timeout_s=0.05, backoff_max_s=1.0)
    await s.start()  # nothing listening: no exception
    assert not s.available and s.errors == 1
    assert await s.reserve(Lease("w", "g:1", 1)) is None
    assert s.errors == 1  # backing off: Redis not even tried
    clock.advance(0.06)
    assert s.available
    assert await s.snapshot(["w"]) is None and s.errors == 2
    with EmbeddedValkey() as v:
        s2 = RedisStore(v.url, clock, timeout_s=0.5)
        clock.advance(5)
        assert s2.available
        assert (await s2.reserve(Lease("w", "g:1", 1000))) is not None
        await s2.close()
    await s.close()


async def test_redis_py_backend_for_other_urls(valkey: EmbeddedValkey) -> None:
    from gateway.state.redis_store import _RedisPyBackend

    s = RedisStore(valkey.url, MonotonicClock(), prefix="rp", timeout_s=1.0)
    s._backend = _RedisPyBackend(s.client)
    a = Lease("w", "g:1", 2_000)
    await s.client.script_flush()  # EVALSHA misses: falls back to EVAL
    got = await s.reserve(a)
    assert got is not None and got.outstanding == 1
    assert (await s.snapshot(["w"]))["w"].outstanding == 1  # type: ignore[index]
    got = await s.release(a)
    assert got is not None and got.outstanding == 0
    await s.close()


async def test_script_cache_lost_falls_back_to_eval(store: RedisStore) -> None:
    await store.client.script_flush()
    got = await store.reserve(Lease("w", "g:1", 1_000))
    assert got is not None and got.outstanding == 1


async def test_restart_with_data_lost_stays_consistent(valkey: EmbeddedValkey) -> None:
    s = RedisStore(valkey.url, MonotonicClock(), prefix="lost", timeout_s=1.0)
    a = Lease("w", "g:1", 4_000)
    await s.reserve(a)
    await s.client.flushall()  # what a restart without persistence does
    got = await s.release(a)
    assert got is not None and (got.outstanding, got.work_ms) == (0, 0.0)
    await s.close()


ops = st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=40)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_interleavings_match_the_lease_model(
    valkey: EmbeddedValkey, ops: list[tuple[bool, int]]
) -> None:
    async def run() -> None:
        s = RedisStore(valkey.url, MonotonicClock(), prefix="prop", timeout_s=1.0)
        await s.client.delete(*s.keys("w"))
        held: dict[str, int] = {}
        for reserve, n in ops:
            us = 1_000 * n + 7  # a lease's work is fixed when it is made
            lease = Lease("w", f"g:{n}", us)
            if reserve:
                got = await s.reserve(lease)
                held.setdefault(lease.token, us)
            else:
                got = await s.release(lease)
                held.pop(lease.token, None)
            assert got is not None
            assert got.outstanding == len(held) >= 0
            assert got.work_ms == pytest.approx(sum(held.values()) / 1000.0)
        await s.close()

    asyncio.run(run())


async def test_failed_release_is_retried_before_the_next_snapshot(valkey: EmbeddedValkey) -> None:
    from redis.exceptions import TimeoutError as RedisTimeout

    clock = ManualClock()
    s = RedisStore(valkey.url, clock, prefix="pend", timeout_s=1.0)
    a = Lease("w", "g:1", 3_000)
    await s.reserve(a)
    real = s._backend.eval

    async def broken(*_: object) -> None:
        raise RedisTimeout("slow")

    s._backend.eval = broken  # type: ignore[method-assign,assignment]
    assert await s.release(a) is None and s.pending_releases == 1
    s._backend.eval = real  # type: ignore[method-assign]
    assert await s.snapshot(["w"]) is None  # still backing off
    clock.advance(1.0)
    snap = await s.snapshot(["w"])
    assert snap is not None and snap["w"].outstanding == 0 and s.pending_releases == 0
    await s.close()


# Concurrent interleavings: two gateways' reserve / release / lease repair race on one worker,
# and Redis may lose everything (a restart without persistence) between rounds.
_round = st.lists(
    st.tuples(st.sampled_from(["reserve", "release", "expire"]), st.integers(0, 1),
              st.integers(0, 7)),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rounds=st.lists(st.tuples(_round, st.booleans()), min_size=1, max_size=6))
def test_concurrent_interleavings_keep_the_invariants(
    valkey: EmbeddedValkey, rounds: list[tuple[list[tuple[str, int, int]], bool]]
) -> None:
    async def run() -> None:
        gws = [
            RedisStore(valkey.url, MonotonicClock(), prefix="cprop", timeout_s=1.0)
            for _ in range(2)
        ]
        w_key, l_key, _ = gws[0].keys("w")
        await gws[0].client.delete(w_key, l_key)
        issued: set[tuple[int, int]] = set()
        for ops_, lose_data in rounds:

            async def op(kind: str, g: int, n: int) -> None:
                lease = Lease("w", f"g{g}:{n}", 1_000 * n + 3)
                if kind == "reserve":
                    issued.add((g, n))
                    got = await gws[g].reserve(lease)
                elif kind == "release":
                    got = await gws[g].release(lease)
                else:
                    assert await gws[g].expire_leases(["w"]) == 0  # nothing past its TTL
                    return
                assert got is not None and got.outstanding >= 0 and got.work_ms >= 0

            await asyncio.gather(*(op(*o) for o in ops_))
            # the invariant: the counters are exactly the live leases
            members = [m for m in await gws[0].client.zrange(l_key, 0, -1) if isinstance(m, bytes)]
            out, work = await gws[0].client.hmget(w_key, ["out", "work_us"])
            assert int(out or 0) == len(members)
            assert int(work or 0) == sum(int(m.rsplit(b":", 1)[1]) for m in members)
            if lose_data:
                await gws[0].client.delete(w_key, l_key)  # Redis restarted, data lost
        # every gateway releases what it reserved: back to exactly zero
        await asyncio.gather(*(gws[g].release(Lease("w", f"g{g}:{n}", 1_000 * n + 3))
                               for g, n in issued))  # fmt: skip
        snap = await gws[0].snapshot(["w"])
        assert snap is not None and (snap["w"].outstanding, snap["w"].work_ms) == (0, 0.0)
        for g in gws:
            await g.close()

    asyncio.run(run())
