"""Deciding on fresh figures without an extra round trip (issue 16.2): ``InferenceService.confirm``.

Two replicas share one store (the in-memory store keeps the Redis scripts' rules, on one
manual clock). Replica A piles work on ``f0``; replica B's view still holds an older, short
queue for it. B's reserve is conditional, finds the decision stale and late for the SLO, books
nothing, and B decides once more on the fresh figures.
"""

import asyncio
import random

import pytest

from gateway.core.clock import ManualClock
from gateway.health.outcome import Outcome
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.state import WorkerState
from gateway.routing.types import Decision, Request, WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferCall, InferenceService, ServiceConfig
from gateway.settings import ModelDefaults
from gateway.state.memory_store import MemoryStore
from gateway.state.store import Lease, WorkerLoad
from gateway.testing import FakeUpstream, FixedPolicy


def _least_wait(req: Request, view: FleetView) -> Decision:
    """The earliest predicted completion on the view (what synergai's EC does, minus the rest)."""

    def done(s: WorkerState) -> float:
        return s.rtt_ms + s.wait + view.service_ms(s, req.model, 1, 0.0)

    s = min((view.state(w) for w in ("f0", "s0")), key=done)
    return Decision(s.id, done(s), view.service_ms(s, req.model, 1, 0.0), "least_wait")


def _service(
    infos: list[WorkerInfo], book: ProfileBook, store: MemoryStore, clock: ManualClock, pick: object
) -> InferenceService:
    return InferenceService(
        FleetView(infos, book),
        FixedPolicy(Decision(None, 0.0, 0.0, "unused"), pick=pick),  # type: ignore[arg-type]
        store,
        {"http": FakeUpstream()},
        GatewayMetrics(),
        clock,
        random.Random(1),
        ServiceConfig(models={"m1": ModelDefaults(slo_ms=50, priority=1)}),
    )


def _call() -> InferCall:
    return InferCall(model="m1", version=None, target="", body=b"")


def _redecided(svc: InferenceService) -> float:
    return svc.metrics.registry.get_sample_value("synergai_redecided_total") or 0.0


async def _pile_on_f0(a: InferenceService, n: int) -> list[object]:
    tickets = [a.begin(_call()) for _ in range(n)]
    for t in tickets:
        await t.reserve
    return tickets


async def test_stale_decision_is_decided_again(infos: list[WorkerInfo], book: ProfileBook) -> None:
    clock = ManualClock(100.0)
    store = MemoryStore(clock)
    a = _service(infos, book, store, clock, None)
    a.policy = FixedPolicy(Decision("f0", 4.0, 2.0, "fixed"))
    b = _service(infos, book, store, clock, _least_wait)
    first = await _pile_on_f0(a, 1)
    # B's last figures for f0: A's one request, 2 ms of queue (fresh then)
    snap = await store.snapshot(["f0", "s0"])
    assert snap is not None
    for w, load in snap.items():
        b.apply_shared(w, load, clock.now())
    await _pile_on_f0(a, 40)  # since: 80 ms more on f0's one slot, unseen by B
    trips = store.calls
    ticket = await b.confirm(b.begin(_call(), confirm=True))
    assert ticket.worker.id == "s0" and _redecided(b) == 1.0
    await ticket.reserve
    assert store.calls - trips == 2  # the refused conditional reserve, the second reserve
    snap = await store.snapshot(["f0", "s0"])
    assert snap is not None and snap["f0"].outstanding == 41 and snap["s0"].outstanding == 1
    assert b.inflight == 1 and b.view.state("f0").local_out == 0
    assert b.view.state("f0").wait > 50.0  # B now sees the queue A built
    clock.advance(0.025)
    b.end(ticket, Outcome.SUCCESS, 24.0, "200")
    await b.drain()
    snap = await store.snapshot(["s0"])
    assert snap is not None and snap["s0"].outstanding == 0 and b.inflight == 0
    del first


async def test_fresh_decision_stands_and_a_lone_replica_never_waits(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    clock = ManualClock(100.0)
    store = MemoryStore(clock)
    a = _service(infos, book, store, clock, None)
    a.policy = FixedPolicy(Decision("f0", 4.0, 2.0, "fixed"))
    b = _service(infos, book, store, clock, _least_wait)
    # alone: nobody else's requests in B's figures, the reserve is not conditional
    t0 = b.begin(_call(), confirm=True)
    assert t0.lease.max_wait_us == -1 and await b.confirm(t0) is t0
    await t0.reserve
    b.end(t0, Outcome.SUCCESS, 3.0, "200")
    await b.drain()
    # A has one request on f0 and B knows it: conditional, but the figures still hold
    await _pile_on_f0(a, 1)
    snap = await store.snapshot(["f0", "s0"])
    assert snap is not None
    for w, load in snap.items():
        b.apply_shared(w, load, clock.now())
    t1 = b.begin(_call(), confirm=True)
    assert t1.worker.id == "f0" and t1.lease.max_wait_us >= 0
    assert await b.confirm(t1) is t1 and _redecided(b) == 0.0
    snap = await store.snapshot(["f0"])
    assert snap is not None and snap["f0"].outstanding == 2


async def test_begin_without_confirm_is_never_conditional(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    """The endpoint picker sends without awaiting: its reserve must always book."""
    clock = ManualClock(100.0)
    store = MemoryStore(clock)
    a = _service(infos, book, store, clock, None)
    a.policy = FixedPolicy(Decision("f0", 4.0, 2.0, "fixed"))
    b = _service(infos, book, store, clock, _least_wait)
    await _pile_on_f0(a, 1)
    snap = await store.snapshot(["f0", "s0"])
    assert snap is not None
    for w, load in snap.items():
        b.apply_shared(w, load, clock.now())
    await _pile_on_f0(a, 40)
    t = b.begin(_call())
    assert t.lease.max_wait_us == -1
    assert (await t.reserve) is not None and (await t.reserve).booked  # type: ignore[union-attr]


class _SlowStore(MemoryStore):
    """A store whose reserve answers after 50 ms of real time (a slow Redis)."""

    async def reserve(self, lease: Lease) -> WorkerLoad | None:
        await asyncio.sleep(0.05)
        return await super().reserve(lease)


async def test_a_client_gone_while_confirming_leaves_nothing(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    clock = ManualClock(100.0)
    store = _SlowStore(clock)
    a = _service(infos, book, store, clock, None)
    a.policy = FixedPolicy(Decision("f0", 4.0, 2.0, "fixed"))
    b = _service(infos, book, store, clock, _least_wait)
    await _pile_on_f0(a, 1)
    snap = await store.snapshot(["f0", "s0"])
    assert snap is not None
    for w, load in snap.items():
        b.apply_shared(w, load, clock.now())
    ticket = b.begin(_call(), confirm=True)
    assert ticket.lease.max_wait_us >= 0
    task = asyncio.ensure_future(b.confirm(ticket))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await b.drain()
    snap = await store.snapshot(["f0"])
    assert b.inflight == 0 and b.view.state("f0").local_out == 0
    assert snap is not None and snap["f0"].outstanding == 1  # A's only


async def test_triton_s_extra_load_is_not_another_replica(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    """Work only Triton's metrics show (reconciliation) must not make a lone gateway wait."""
    clock = ManualClock(100.0)
    b = _service(infos, book, MemoryStore(clock), clock, _least_wait)
    b.apply_shared("f0", WorkerLoad(3, 6.0, (2.0,), external=3), clock.now())
    t = b.begin(_call(), confirm=True)
    assert t.lease.max_wait_us == -1
    b.apply_shared("f0", WorkerLoad(4, 8.0, (2.0,), external=3), clock.now())  # one lease: ours?
    t2 = b.begin(_call(), confirm=True)
    assert t2.lease.max_wait_us == -1  # B holds one unreleased lease: its own
