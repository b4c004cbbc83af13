"""build_gateway: every part built once, wired at construction, nothing replaced afterwards."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.assembly import AppDeps, build_gateway
from gateway.core.clock import ManualClock
from gateway.prediction.profiles import ProfileBook
from gateway.routing.types import Request
from gateway.settings import Settings
from gateway.state.connected import ConnectedStore
from gateway.state.memory_store import MemoryStore
from gateway.state.reconcile import ReconciledStore
from gateway.state.store import Lease, StateStore
from gateway.testing import FakeUpstream
from gateway.upstream.base import DeadlineUpstream


def test_parts_are_wired_once(settings: Settings, book: ProfileBook) -> None:
    grpc = settings.model_copy(update={"grpc_port": 0, "scrape_interval_s": 1.0})
    gw = build_gateway(grpc, AppDeps(profiles=book, clock=ManualClock(1.0)))
    svc = gw.service
    assert svc.view is gw.view and svc.fleet is gw.fleet and svc.health is gw.health
    assert svc.store is gw.store and isinstance(gw.store, ReconciledStore)
    assert isinstance(gw.connection, ConnectedStore) and gw.store.inner is gw.connection
    assert set(svc.upstreams) == {"http", "grpc"}
    assert isinstance(svc.upstreams["grpc"], DeadlineUpstream)
    assert svc.drift is not None and svc.drift.book is gw.view.book
    with pytest.raises(TypeError):
        svc.upstreams["grpc"] = FakeUpstream()  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        gw.service = svc  # type: ignore[misc]
    plain = build_gateway(settings, AppDeps(profiles=book, upstreams={"http": FakeUpstream()}))
    assert set(plain.service.upstreams) == {"http"}  # no gRPC port: no gRPC client


def test_given_store_is_used_as_is(settings: Settings, book: ProfileBook) -> None:
    store = MemoryStore(ManualClock(0.0))
    gw = build_gateway(
        settings.model_copy(update={"scrape_interval_s": None}),
        AppDeps(profiles=book, store=store),
    )
    assert gw.service.store is store and gw.connection is None


async def test_connected_store_is_null_outside_its_lifespan() -> None:
    clock = ManualClock(0.0)
    opened: list[StateStore] = []
    closed: list[int] = []

    async def opener() -> StateStore:
        store = MemoryStore(clock)
        await store.start()
        opened.append(store)
        return store

    async def after_close() -> None:
        closed.append(1)

    conn = ConnectedStore(opener, after_close)
    lease = Lease("w0", "t:1", 5000)
    assert not conn.available and await conn.reserve(lease) is None and conn.open is None
    await conn.start()
    assert conn.open is opened[0] and conn.available
    load = await conn.reserve(lease)
    assert load is not None and load.outstanding == 1
    snap = await conn.snapshot(["w0"])
    assert snap is not None and snap["w0"].outstanding == 1
    assert await conn.release(lease) is not None
    await conn.close()
    assert closed == [1] and conn.open is None and await conn.snapshot(["w0"]) is None
    await conn.close()  # twice: nothing more
    assert closed == [1]
    await conn.start()  # a second lifespan opens a new one
    assert len(opened) == 2 and conn.open is opened[1]
    await conn.close()


async def test_switch_policy_with_a_fresh_view_keeps_health_and_drain(
    settings: Settings, book: ProfileBook
) -> None:
    from gateway.routing.registry import make_policy

    gw = build_gateway(settings, AppDeps(profiles=book, store=MemoryStore(ManualClock(0.0))))
    svc, view = gw.service, gw.view
    req = Request("m1", 50.0)
    view.start("f0", req, 2.0, 0.0)
    view.finish("f0", req, 2.0, 9.0, 0.01)  # learned: f0 is slower than its profile
    assert view.state("f0").corrections["m1"].samples == 1
    svc.set_drained("s0", True)
    svc.switch_policy(make_policy("least_outstanding", book), fresh_view=True)
    assert svc.policy.name == "least_outstanding" and svc.view is view
    assert view.state("f0").corrections["m1"].samples == 0  # forgotten
    assert view.state("f0").available(0.0) and not view.state("s0").available(0.0)
    svc.switch_policy(make_policy("round_robin", book))
    assert svc.policy.name == "round_robin"
