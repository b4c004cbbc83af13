"""Redis round trips per request on the hot path (target: <= 2), counted twice.

Client side: ``RedisStore.round_trips`` (calls that reached Redis). Server side: Valkey's own
``INFO commandstats`` (scripts executed), so a hidden extra command would show. The request path
is the real :class:`InferenceService` with the real store; only the upstream is a fake.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from gateway.core.clock import MonotonicClock
from gateway.embedded import EmbeddedValkey
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.registry import make_policy
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferCall, InferenceService, ServiceConfig
from gateway.state.reconcile import ReconciledStore, Reconciler
from gateway.state.redis_store import RedisStore
from gateway.testing import FakeUpstream

pytestmark = pytest.mark.integration

N = 200


@pytest.fixture(scope="module")
def valkey() -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey() as v:
        yield v


async def _script_calls(store: RedisStore) -> int:
    stats = await store.client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


@pytest.mark.parametrize("concurrency", [1, 16])
async def test_at_most_two_round_trips_per_request(
    valkey: EmbeddedValkey, infos: list[WorkerInfo], book: ProfileBook, concurrency: int
) -> None:
    clock = MonotonicClock()
    redis = RedisStore(valkey.url, clock, prefix=f"rt{concurrency}", timeout_s=1.0)
    await redis.start()
    svc = InferenceService(
        FleetView(infos, book), make_policy("least_outstanding", book),
        ReconciledStore(redis, Reconciler(clock)),  # what the app runs (scrape on)
        {"http": FakeUpstream(delay_s=0.001)}, GatewayMetrics(), clock, random.Random(1),
        ServiceConfig(),
    )  # fmt: skip
    await svc.infer(InferCall("m1", None, "/v2/models/m1/infer", b"{}"))  # warm: scripts cached
    await svc.drain()
    trips0, scripts0 = redis.round_trips, await _script_calls(redis)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await svc.infer(InferCall("m1", None, "/v2/models/m1/infer", b"{}"))

    await asyncio.gather(*(one() for _ in range(N)))
    await svc.drain()
    trips = redis.round_trips - trips0
    scripts = await _script_calls(redis) - scripts0
    assert trips / N <= 2.0 and scripts / N <= 2.0, (trips, scripts)
    assert trips == scripts == 2 * N  # exactly one reserve and one release each
    snap = await redis.snapshot([w.id for w in infos])
    assert snap is not None and all(v.outstanding == 0 for v in snap.values())
    await redis.close()


async def test_two_replicas_two_round_trips_unless_decided_again(
    valkey: EmbeddedValkey, infos: list[WorkerInfo], book: ProfileBook
) -> None:
    """Two replicas (synergai) on one Valkey: beside each other their reserves are conditional
    and awaited (issue 16.2); a request costs exactly 2 round trips, 3 if decided again."""
    clock = MonotonicClock()
    stores, svcs = [], []
    for i in range(2):
        redis = RedisStore(valkey.url, clock, prefix="rtrep", timeout_s=1.0)
        await redis.start()
        stores.append(redis)
        svcs.append(InferenceService(
            FleetView(infos, book), make_policy("synergai", book, i), redis,
            {"http": FakeUpstream(delay_s=0.002)}, GatewayMetrics(), clock, random.Random(i),
            ServiceConfig(), gateway_id=f"g{i}",
        ))  # fmt: skip
    call = InferCall("m1", None, "/v2/models/m1/infer", b"{}")
    for svc in svcs:  # warm; each then sees the other's leases through the figures
        await svc.infer(call)
    for svc in svcs:
        await svc.drain()
    t0 = [s.round_trips for s in stores]
    sem = asyncio.Semaphore(16)
    done = [0, 0]

    async def one(i: int) -> None:
        async with sem:
            await svcs[i % 2].infer(call)
            done[i % 2] += 1

    await asyncio.gather(*(one(i) for i in range(N)))
    for svc in svcs:
        await svc.drain()
    again = [s.metrics.registry.get_sample_value("synergai_redecided_total") or 0 for s in svcs]
    trips = [s.round_trips - t for s, t in zip(stores, t0, strict=True)]
    assert trips == [2 * d + a for d, a in zip(done, again, strict=True)], (trips, done, again)
    assert sum(again) <= N  # at most once each
    conditional = sum(1 for s in svcs if s.clock.now() - s._others_at < 10.0)
    assert conditional == 2  # both knew they were replicas
    snap = await stores[0].snapshot([w.id for w in infos])
    assert snap is not None and all(v.outstanding == 0 for v in snap.values())
    for s in stores:
        await s.close()
