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
