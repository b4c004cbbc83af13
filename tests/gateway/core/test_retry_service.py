"""The request path's retries, timeouts and admission (InferenceService with fakes)."""

from __future__ import annotations

import random

import pytest

from gateway.core.clock import ManualClock
from gateway.errors import (
    GatewayError,
    NoHealthyWorker,
    Shed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.fleet import Fleet
from gateway.health import HealthMonitor
from gateway.observability.metrics import GatewayMetrics
from gateway.prediction.profiles import ProfileBook
from gateway.routing.registry import make_policy
from gateway.routing.types import WorkerInfo
from gateway.routing.view import FleetView
from gateway.service import InferCall, InferenceService, ServiceConfig
from gateway.settings import ModelDefaults
from gateway.state.memory_store import MemoryStore
from gateway.testing import FakeUpstream
from gateway.upstream.base import UpstreamResponse


@pytest.fixture
def infos() -> list[WorkerInfo]:
    """Two pools: ``fast`` (f0, f1: m1) and ``slow`` (s0: m1, m2)."""
    return [
        WorkerInfo("f0", "fast", "fast", ("m1",), url="http://f0:1"),
        WorkerInfo("f1", "fast", "fast", ("m1",), url="http://f1:1"),
        WorkerInfo("s0", "slow", "slow", ("m1", "m2"), url="http://s0:1"),
    ]


def _service(
    infos: list[WorkerInfo],
    book: ProfileBook,
    up: FakeUpstream,
    idempotent: bool = False,
    **cfg: object,
) -> tuple[InferenceService, ManualClock]:
    clock = ManualClock(100.0)
    view = FleetView(infos, book, eject_s=0.0)
    fleet = Fleet(view, clock)
    metrics = GatewayMetrics()
    svc = InferenceService(
        view,
        make_policy("round_robin", book),
        MemoryStore(clock),
        {"http": up},
        metrics,
        clock,
        random.Random(1),
        ServiceConfig(
            models={
                "m1": ModelDefaults(slo_ms=50, priority=1, idempotent=idempotent),
                "m2": ModelDefaults(slo_ms=50, idempotent=True),
            },
            **cfg,  # type: ignore[arg-type]
        ),
        fleet=fleet,
        health=HealthMonitor(fleet, up, clock, metrics),
    )
    return svc, clock


def _call(model: str = "m1", **kw: object) -> InferCall:
    return InferCall(model, None, f"/v2/models/{model}/infer", b"{}", **kw)  # type: ignore[arg-type]


def _retries(svc: InferenceService, reason: str, result: str) -> float:
    v = svc.metrics.registry.get_sample_value(
        "synergai_retries_total", {"reason": reason, "result": result}
    )
    return v or 0.0


async def test_refused_connection_is_retried_on_another_worker(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    up = FakeUpstream(fail={"f0": UpstreamConnectError("worker f0 unreachable")})
    svc, _ = _service(infos, book, up)
    res = await svc.infer(_call())
    assert res.response.ok and res.worker.id != "f0"
    assert [s.worker for s in up.sent] == ["f0", res.worker.id]
    assert _retries(svc, "connect", "sent") == 1
    assert not svc.healthy("f0")  # ejected at once (f1 keeps the pool alive)
    up.sent.clear()
    for _ in range(6):  # and gets no traffic while ejected
        await svc.infer(_call())
    assert "f0" not in {s.worker for s in up.sent}
    assert svc.inflight == 0


async def test_unavailable_answer_is_retried(infos: list[WorkerInfo], book: ProfileBook) -> None:
    def respond(w: WorkerInfo, target: str, body: bytes | None) -> UpstreamResponse:
        return UpstreamResponse.from_http(503 if w.id == "f0" else 200, b"{}")

    up = FakeUpstream(respond=respond)
    svc, _ = _service(infos, book, up)
    res = await svc.infer(_call())
    assert res.response.http_status == 200 and res.worker.id != "f0"
    assert _retries(svc, "unavailable", "sent") == 1


@pytest.mark.parametrize(
    "error", [UpstreamError("reset after the request was sent"), UpstreamTimeout("slow")]
)
async def test_maybe_executed_is_not_retried_unless_idempotent(
    infos: list[WorkerInfo], book: ProfileBook, error: GatewayError
) -> None:
    up = FakeUpstream(fail={"f0": error})
    svc, _ = _service(infos, book, up)
    with pytest.raises(type(error)):
        await svc.infer(_call("m1"))  # round robin starts at f0
    assert len(up.sent) == 1
    idem = FakeUpstream(fail={"f0": error})
    svc2, _ = _service(infos, book, idem, idempotent=True)
    res = await svc2.infer(_call("m1"))
    assert res.response.ok and [s.worker for s in idem.sent] == ["f0", res.worker.id]
    assert _retries(svc2, "idempotent", "sent") == 1


async def test_a_request_is_retried_once_only(infos: list[WorkerInfo], book: ProfileBook) -> None:
    refused = UpstreamConnectError("refused")
    up = FakeUpstream(fail={"f0": refused, "f1": refused, "s0": refused})
    svc, _ = _service(infos, book, up)
    with pytest.raises(UpstreamConnectError):
        await svc.infer(_call())
    assert len(up.sent) == 2


async def test_no_retry_when_the_budget_is_spent(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    up = FakeUpstream(fail={"f0": UpstreamConnectError("refused")})
    svc, _ = _service(infos, book, up, retry_budget_ratio=0.0, retry_min_per_s=0.0)
    while svc.retry_budget.try_spend():
        pass
    with pytest.raises(UpstreamConnectError):
        await svc.infer(_call())
    assert _retries(svc, "connect", "budget") == 1 and len(up.sent) == 1


async def test_no_retry_when_the_slo_is_spent(infos: list[WorkerInfo], book: ProfileBook) -> None:
    clock_box: list[ManualClock] = []

    def respond(w: WorkerInfo, target: str, body: bytes | None) -> UpstreamResponse:
        clock_box[0].advance(0.06)  # the failed attempt took 60 ms of a 50 ms SLO
        raise UpstreamConnectError("refused")

    up = FakeUpstream(respond=respond)
    svc, clock = _service(infos, book, up)
    clock_box.append(clock)
    with pytest.raises(UpstreamConnectError):
        await svc.infer(_call())
    assert _retries(svc, "connect", "slo") == 1 and len(up.sent) == 1


async def test_timeout_comes_from_the_slo(infos: list[WorkerInfo], book: ProfileBook) -> None:
    up = FakeUpstream()
    svc, _ = _service(infos, book, up, request_timeout_s=30.0, min_timeout_s=0.5)
    await svc.infer(_call())  # SLO 50 ms: floor 0.5 s
    await svc.infer(_call(hints={"x-slo-ms": "400"}))
    await svc.infer(_call(hints={"x-slo-ms": "3600000"}))
    assert [s.timeout_s for s in up.sent] == [0.5, 4.0, 30.0]


async def test_admission_sheds_low_priority_first(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    svc, _ = _service(infos, book, FakeUpstream(), max_inflight=10, low_priority_share=0.5)
    svc.inflight = 5  # as if 5 requests were in flight
    with pytest.raises(Shed) as info:
        await svc.infer(_call(hints={"x-priority": "0"}))
    assert info.value.http_status == 429 and info.value.headers() == {"Retry-After": "1"}
    assert (await svc.infer(_call(hints={"x-priority": "1"}))).response.ok
    svc.inflight = 10
    with pytest.raises(Shed):
        await svc.infer(_call(hints={"x-priority": "9"}))


async def test_overload_with_nothing_healthy_is_503(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    svc, _ = _service(infos, book, FakeUpstream(), max_inflight=1)
    for w in ("f0", "f1", "s0"):
        svc.fleet.set_healthy(w, False)
    svc.inflight = 1
    with pytest.raises(NoHealthyWorker):
        await svc.infer(_call())
