"""The two-phase request path: ``begin`` books a routed request, ``end`` settles it.

The endpoint picker (Envoy sends the bytes) uses exactly these two calls; ``infer`` is
begin -> send -> end.
"""

import random

import pytest

from gateway.core.clock import ManualClock
from gateway.errors import BadRequest, ModelNotFound, NoHealthyWorker, Shed
from gateway.health.outcome import Outcome, OutcomeSink
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.registry import make_policy
from gateway.routing.types import Decision, WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferCall, InferenceService, ServiceConfig
from gateway.settings import ModelDefaults
from gateway.state.memory_store import MemoryStore
from gateway.testing import FakeUpstream, FixedPolicy


class _Health:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Outcome]] = []

    def observe(self, worker: str, outcome: Outcome) -> None:
        self.seen.append((worker, outcome))


def _service(
    infos: list[WorkerInfo],
    book: ProfileBook,
    policy: object | None = None,
    health: OutcomeSink | None = None,
) -> tuple[InferenceService, MemoryStore, ManualClock, FakeUpstream]:
    clock = ManualClock(100.0)
    store = MemoryStore(clock)
    up = FakeUpstream()
    svc = InferenceService(
        FleetView(infos, book),
        policy or make_policy("synergai", book),  # type: ignore[arg-type]
        store,
        {"http": up},
        GatewayMetrics(),
        clock,
        random.Random(1),
        ServiceConfig(models={"m1": ModelDefaults(slo_ms=50, priority=1)}),
        health=health,
    )
    return svc, store, clock, up


def _call(model: str = "m1", **kw: object) -> InferCall:
    return InferCall(model=model, version=None, target="", body=b"", **kw)  # type: ignore[arg-type]


async def test_begin_books_and_end_settles_without_sending(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    health = _Health()
    svc, store, clock, up = _service(infos, book, health=health)
    ticket = svc.begin(_call())
    wid = ticket.worker.id
    assert ticket.decision.worker == wid and ticket.policy == "synergai"
    assert svc.inflight == 1 and svc.view.state(wid).local_out == 1
    await ticket.reserve
    snap = await store.snapshot([wid])
    assert snap is not None and snap[wid].outstanding == 1
    clock.advance(0.004)
    svc.end(ticket, Outcome.SUCCESS, 4.0, "200")
    svc.end(ticket, Outcome.SUCCESS, 4.0, "200")  # a second end is a no-op
    await svc.drain()
    assert svc.inflight == 0 and svc.view.state(wid).local_out == 0
    snap = await store.snapshot([wid])
    assert snap is not None and snap[wid].outstanding == 0
    assert health.seen == [(wid, Outcome.SUCCESS)]
    assert up.sent == []  # begin/end never send: the caller does
    labels = {"model": "m1", "pool": ticket.worker.pool, "worker": wid,
              "policy": "synergai", "code": "200"}  # fmt: skip
    assert svc.metrics.registry.get_sample_value("synergai_requests_total", labels) == 1


@pytest.mark.parametrize(
    ("outcome", "latency", "ejected"),
    [
        (Outcome.ERROR, 3.0, True),  # a worker fault: the view counts a failure
        (Outcome.TIMEOUT, None, True),
        (Outcome.NEUTRAL, 3.0, False),  # the request's own fault: nothing learned
    ],
)
async def test_end_tells_the_view_what_the_outcome_says(
    infos: list[WorkerInfo],
    book: ProfileBook,
    outcome: Outcome,
    latency: float | None,
    ejected: bool,
) -> None:
    svc, _, _, _ = _service(infos, book)
    ticket = svc.begin(_call())
    svc.end(ticket, outcome, latency, "500")
    await svc.drain()
    assert (svc.view.state(ticket.worker.id).fails == 1) is ejected


async def test_begin_raises_before_booking(infos: list[WorkerInfo], book: ProfileBook) -> None:
    shed = FixedPolicy(Decision(None, 80.0, 0.0, "shed_slo"))
    svc, _, _, _ = _service(infos, book, shed)
    with pytest.raises(ModelNotFound):
        svc.begin(_call("nope"))
    with pytest.raises(BadRequest):
        svc.begin(_call(batch=64))
    with pytest.raises(BadRequest):
        svc.begin(_call(hints={"x-slo-ms": "soon"}))
    with pytest.raises(Shed):
        svc.begin(_call())
    for w in infos:
        svc.fleet.set_healthy(w.id, False)
    with pytest.raises(NoHealthyWorker):
        svc.begin(_call())
    assert svc.inflight == 0
    assert all(s.local_out == 0 for s in svc.view.states())
