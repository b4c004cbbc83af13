import asyncio
import random

import pytest

from gateway.core.clock import ManualClock
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.registry import make_policy
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferenceService, ServiceConfig
from gateway.state.collectors import Periodic, SharedStateRefresher
from gateway.state.memory_store import MemoryStore
from gateway.state.store import Lease
from gateway.testing import FakeUpstream


def _svc(
    infos: list[WorkerInfo], book: ProfileBook, up: FakeUpstream, clock: ManualClock
) -> InferenceService:
    return InferenceService(
        FleetView(infos, book), make_policy("round_robin", book), MemoryStore(clock),
        {"http": up}, GatewayMetrics(), clock, random.Random(1), ServiceConfig(),
    )  # fmt: skip


async def test_refresher_applies_shared_load_and_staleness(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    clock = ManualClock(10.0)
    store = MemoryStore(clock, lease_ttl_s=5.0)
    svc = _svc(infos, book, FakeUpstream(), clock)
    await store.reserve(Lease("s0", "other:1", 30_000))
    ref = SharedStateRefresher(svc, store, svc.metrics, clock, repair_every_s=1.0)
    await ref.tick()
    assert svc.view.state("s0").out == 1 and svc.view.state("s0").work_ms == 30.0
    assert svc.metrics.registry.get_sample_value("synergai_state_staleness_seconds") == 0.0
    store.down = True
    clock.advance(3.0)
    await ref.tick()
    assert svc.metrics.registry.get_sample_value("synergai_state_staleness_seconds") == 3.0
    assert svc.view.stale(clock.now())
    svc.view.refresh(clock.now())
    assert svc.view.state("s0").out == 0  # stale: back to the local view
    store.down = False
    clock.advance(3.0)  # the lease (ttl 5 s) has expired: repair undoes it
    await ref.tick()
    assert svc.view.state("s0").out == 0 and not svc.view.stale(clock.now())
    assert (await store.snapshot(["s0"]))["s0"].outstanding == 0  # type: ignore[index]


async def test_periodic_survives_failing_ticks_and_stops() -> None:
    calls = 0

    async def tick() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    loop = Periodic("t", tick, 0.001)
    loop.start()
    for _ in range(100):
        if calls >= 3:
            break
        await asyncio.sleep(0.005)
    await loop.stop()
    assert calls >= 3
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "synergai-t"]


@pytest.mark.integration
def test_embedded_valkey_starts_and_stops() -> None:
    import redis

    from gateway.embedded import EmbeddedValkey

    with EmbeddedValkey() as v:
        assert redis.Redis.from_url(v.url).ping()
        url = v.url
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
