import asyncio
import math
import random

import pytest

from gateway.core.clock import ManualClock
from gateway.errors import (
    ClientDeadlineExceeded,
    GatewayError,
    ModelNotFound,
    NoHealthyWorker,
    Shed,
    StatusCode,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
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
from gateway.upstream.base import UpstreamResponse


def _service(
    infos: list[WorkerInfo],
    book: ProfileBook,
    policy: object | None = None,
    upstream: FakeUpstream | None = None,
    health: OutcomeSink | None = None,
    **cfg: object,
) -> tuple[InferenceService, FakeUpstream, MemoryStore, ManualClock]:
    clock = ManualClock(100.0)
    store = MemoryStore(clock)
    up = upstream or FakeUpstream()
    svc = InferenceService(
        FleetView(infos, book),
        policy or make_policy("round_robin", book),  # type: ignore[arg-type]
        store,
        {"http": up, "grpc": up},
        GatewayMetrics(),
        clock,
        random.Random(1),
        ServiceConfig(models={"m1": ModelDefaults(slo_ms=50, priority=1)}, **cfg),  # type: ignore[arg-type]
        health=health,
    )
    return svc, up, store, clock


def _call(model: str = "m1", **kw: object) -> InferCall:
    return InferCall(
        model=model, version=None, target=f"/v2/models/{model}/infer", body=b"{}", **kw
    )  # type: ignore[arg-type]


def _sample(svc: InferenceService, name: str, labels: dict[str, str]) -> float:
    v = svc.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_forwards_bytes_and_reports_routing(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    svc, up, store, _ = _service(infos, book)
    res = await svc.infer(
        _call(headers={"content-type": "application/json"}, hints={"x-slo-ms": "40"})
    )
    assert up.sent[0].body == b"{}" and up.sent[0].target == "/v2/models/m1/infer"
    assert up.sent[0].headers == {"content-type": "application/json"}
    assert res.response.ok and res.response.body == b"{}"
    h = res.routing_headers()
    assert h["x-synergai-worker"] in {"f0", "s0"}
    assert h["x-synergai-policy"] == "round_robin"
    assert h["x-synergai-pool"] == res.worker.pool
    await svc.drain()
    snap = await store.snapshot(["f0", "s0"])
    assert snap is not None and all(v.outstanding == 0 for v in snap.values())
    labels = {"model": "m1", "pool": res.worker.pool, "worker": res.worker.id,
              "policy": "round_robin", "code": "200"}  # fmt: skip
    assert _sample(svc, "synergai_requests_total", labels) == 1


async def test_round_robin_spreads_over_serving_workers(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    svc, up, _, _ = _service(infos, book)
    for _ in range(10):
        await svc.infer(_call())
    ids = [s.worker for s in up.sent]
    assert ids.count("f0") == 5 and ids.count("s0") == 5
    for _ in range(3):
        await svc.infer(_call("m2"))
    assert [s.worker for s in up.sent[-3:]] == ["s0"] * 3


async def test_hints_and_defaults_reach_the_policy(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    policy = FixedPolicy(Decision("f0", 3.0, 2.0, "fit"))
    svc, *_ = _service(infos, book, policy)
    await svc.infer(_call(batch=4))
    await svc.infer(
        _call(hints={"x-slo-ms": "7", "x-category": "frequency"}, parameters={"x-priority": 3})
    )
    a, b = policy.seen
    assert (a.slo_ms, a.priority, a.category, a.batch, a.arrival) == (50, 1, "latency", 4, 100.0)
    assert (b.slo_ms, b.priority, b.category) == (7.0, 3, "frequency")


async def test_reservation_is_held_while_in_flight(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    gate = asyncio.Event()

    class Slow(FakeUpstream):
        async def call(self, *a: object, **k: object) -> UpstreamResponse:
            await gate.wait()
            return await super().call(*a, **k)  # type: ignore[arg-type]

    svc, _, store, _ = _service(infos, book, FixedPolicy(Decision("s0", 30.0, 12.5, "fit")), Slow())
    tasks = [asyncio.ensure_future(svc.infer(_call())) for _ in range(3)]
    await asyncio.sleep(0.01)
    snap = await store.snapshot(["s0"])
    assert snap is not None and snap["s0"].outstanding == 3 and snap["s0"].work_ms == 37.5
    assert svc.inflight == 3
    gate.set()
    await asyncio.gather(*tasks)
    await svc.drain()
    snap = await store.snapshot(["s0"])
    assert snap is not None and snap["s0"].outstanding == 0 and snap["s0"].work_ms == 0
    assert svc.view.state("s0").local_out == 0


async def test_unknown_model(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, up, _, _ = _service(infos, book)
    with pytest.raises(ModelNotFound):
        await svc.infer(_call("nope"))
    assert not up.sent


async def test_shed_decision_is_429(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, up, _, _ = _service(infos, book, FixedPolicy(Decision(None, 2500.0, math.nan, "shed_slo")))
    with pytest.raises(Shed) as info:
        await svc.infer(_call())
    assert info.value.retry_after_s == 3 and not up.sent
    assert _sample(svc, "synergai_shed_total", {"reason": "shed_slo"}) == 1
    assert (
        _sample(
            svc, "synergai_slo_violations_total", {"model": "m1", "priority": "1", "reason": "shed"}
        )
        == 1
    )


async def test_no_healthy_worker_is_503(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, *_ = _service(infos, book)
    svc.fleet.set_healthy("f0", False)
    svc.fleet.set_healthy("s0", False)
    assert not svc.ready()
    with pytest.raises(NoHealthyWorker):
        await svc.infer(_call())


async def test_drained_worker_gets_no_traffic(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, up, _, _ = _service(infos, book)
    svc.set_drained("f0", True)
    for _ in range(4):
        await svc.infer(_call())
    assert {s.worker for s in up.sent} == {"s0"}
    svc.set_drained("f0", False)
    for _ in range(4):
        await svc.infer(_call())
    assert "f0" in {s.worker for s in up.sent[4:]}


async def test_overload_sheds(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, *_ = _service(infos, book, max_inflight=0)
    with pytest.raises(Shed, match="overloaded"):
        await svc.infer(_call())


@pytest.mark.parametrize("err", [UpstreamTimeout("t"), UpstreamError("c")])
async def test_upstream_failure_releases_and_ejects(
    infos: list[WorkerInfo], book: ProfileBook, err: Exception
) -> None:
    up = FakeUpstream(fail={"f0": err})  # type: ignore[dict-item]
    svc, _, store, _ = _service(infos, book, FixedPolicy(Decision("f0", 3.0, 2.0, "fit")), up)
    with pytest.raises(type(err)):
        await svc.infer(_call())
    await svc.drain()
    snap = await store.snapshot(["f0"])
    assert snap is not None and snap["f0"].outstanding == 0
    assert svc.inflight == 0
    assert not svc.view.state("f0").available(100.0)  # passive ejection by the view


async def test_worker_error_answer_passes_through(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    up = FakeUpstream(
        respond=lambda w, t, b: UpstreamResponse.from_http(400, b'{"error":"bad shape"}', {})
    )
    svc, *_ = _service(infos, book, upstream=up)
    res = await svc.infer(_call())
    assert res.response.http_status == 400 and res.response.body == b'{"error":"bad shape"}'


async def test_store_down_fails_open(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, up, store, _ = _service(infos, book)
    store.down = True
    for _ in range(4):
        res = await svc.infer(_call())
        assert res.response.ok
    await svc.drain()
    assert len(up.sent) == 4
    assert (
        svc.metrics.registry.get_sample_value("synergai_state_errors_total") == 8
    )  # 4 x (reserve, release)


async def test_shared_figures_reach_the_view(infos: list[WorkerInfo], book: ProfileBook) -> None:
    svc, _, store, _ = _service(infos, book, FixedPolicy(Decision("s0", 30.0, 10.0, "fit")))
    from gateway.state.store import Lease

    await store.reserve(Lease("s0", "other-gateway:1", 40_000))  # another replica's request
    await svc.infer(_call())
    await svc.drain()
    st = svc.view.state("s0")
    assert st.out == 1 and st.work_ms == pytest.approx(40.0)
    assert _sample(svc, "synergai_worker_outstanding", {"worker": "s0"}) == 1


async def test_batch_over_every_max_batch_is_bad_request(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    svc, up, _, _ = _service(infos, book)
    from gateway.errors import BadRequest

    with pytest.raises(BadRequest, match="batch size 9"):
        await svc.infer(_call(batch=9))  # every m1 profile has max_batch 8
    assert not up.sent


def _answer(protocol: str, status: int | StatusCode) -> UpstreamResponse:
    """What the real upstream of ``protocol`` returns for Triton's ``status`` (HTTP) or code."""
    if protocol == "grpc":
        assert isinstance(status, StatusCode)
        return UpstreamResponse.from_grpc(status, b"no")
    assert not isinstance(status, StatusCode)
    return UpstreamResponse.from_http(status, b'{"error":"no"}', {})


class _Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Outcome]] = []

    def observe(self, worker: str, outcome: Outcome) -> None:
        self.seen.append((worker, outcome))


@pytest.mark.parametrize(
    ("protocol", "status", "outcome"),
    [("http", 400, Outcome.NEUTRAL), ("http", 404, Outcome.NEUTRAL),
     ("http", 500, Outcome.ERROR), ("http", 503, Outcome.ERROR),
     ("grpc", StatusCode.INVALID_ARGUMENT, Outcome.NEUTRAL),
     ("grpc", StatusCode.NOT_FOUND, Outcome.NEUTRAL),
     ("grpc", StatusCode.INTERNAL, Outcome.ERROR), ("grpc", StatusCode.UNKNOWN, Outcome.ERROR)],
)  # fmt: skip
async def test_only_worker_faults_count_against_the_worker(
    infos: list[WorkerInfo],
    book: ProfileBook,
    protocol: str,
    status: int | StatusCode,
    outcome: Outcome,
) -> None:
    up = FakeUpstream(respond=lambda w, t, b: _answer(protocol, status))
    sink = _Outcomes()
    svc, *_ = _service(infos, book, FixedPolicy(Decision("f0", 3.0, 2.0, "fit")), up, sink)
    st = svc.view.state("f0")
    before = (st.ewma_ms, {m: (c.samples, c.g) for m, c in st.corrections.items()})
    res = await svc.infer(_call(protocol=protocol))
    assert res.response.code is _answer(protocol, status).code
    assert sink.seen == [("f0", outcome)]
    fault = outcome is Outcome.ERROR
    assert st.available(100.0) is not fault  # the view's own ejection
    assert st.fails == int(fault)
    assert (st.ewma_ms, {m: (c.samples, c.g) for m, c in st.corrections.items()}) == before
    assert st.local_out == 0 and svc.inflight == 0


async def test_success_teaches_the_view_and_drift(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    sink = _Outcomes()
    svc, *_ = _service(infos, book, FixedPolicy(Decision("f0", 3.0, 2.0, "fit")), health=sink)
    await svc.infer(_call())
    st = svc.view.state("f0")
    assert sink.seen == [("f0", Outcome.SUCCESS)]
    assert st.corrections["m1"].samples == 1
    detector = svc.drift.detector("f0", "m1")
    assert detector is not None and detector.total == 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(UpstreamTimeout("slow"), Outcome.TIMEOUT), (UpstreamConnectError("refused"), Outcome.CONNECT),
     (UpstreamError("reset"), Outcome.ERROR),
     (ClientDeadlineExceeded("the client's deadline"), Outcome.NEUTRAL)],
)  # fmt: skip
async def test_raised_outcomes(
    infos: list[WorkerInfo], book: ProfileBook, error: GatewayError, outcome: Outcome
) -> None:
    up = FakeUpstream(fail={"f0": error})
    sink = _Outcomes()
    svc, *_ = _service(infos, book, FixedPolicy(Decision("f0", 3.0, 2.0, "fit")), up, sink)
    with pytest.raises(type(error)):
        await svc.infer(_call())
    assert sink.seen == [("f0", outcome)]
    assert svc.view.state("f0").fails == int(outcome is not Outcome.NEUTRAL)
    code = str(error.http_status)
    labels = {"model": "m1", "pool": "fast", "worker": "f0", "policy": "fixed", "code": code}
    assert _sample(svc, "synergai_requests_total", labels) == 1


async def test_cancelled_request_is_neutral(infos: list[WorkerInfo], book: ProfileBook) -> None:
    up = FakeUpstream(delay_s=10.0)
    sink = _Outcomes()
    svc, *_ = _service(infos, book, FixedPolicy(Decision("f0", 3.0, 2.0, "fit")), up, sink)
    task = asyncio.ensure_future(svc.infer(_call()))
    while not up.sent:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.seen == [("f0", Outcome.NEUTRAL)]
    st = svc.view.state("f0")
    assert st.fails == 0 and st.available(100.0) and st.local_out == 0


async def test_path_overhead_is_network_time_for_the_shared_queue_too(
    infos: list[WorkerInfo], book: ProfileBook
) -> None:
    # with overhead_ms 4 the view reads rtt 0 as 4 ms: the lease's lead is 2 ms and the
    # release anchors the request's end 2 ms before its answer, as the local chain does
    from gateway.prediction.model import PredictorConfig
    from gateway.state.store import Ended, Lease

    class Recording(MemoryStore):
        leases: list[Lease] = []
        ends: list[Ended | None] = []

        async def reserve(self, lease: Lease):  # type: ignore[no-untyped-def]
            self.leases.append(lease)
            return await super().reserve(lease)

        async def release(self, lease: Lease, ended: Ended | None = None):  # type: ignore[no-untyped-def]
            self.ends.append(ended)
            return await super().release(lease, ended)

    clock = ManualClock(100.0)
    store = Recording(clock)
    view = FleetView(infos, book, predictor=PredictorConfig(overhead_ms=4.0))
    up = FakeUpstream()
    svc = InferenceService(view, make_policy("round_robin", book), store, {"http": up},
                           GatewayMetrics(), clock, random.Random(1),
                           ServiceConfig(models={"m1": ModelDefaults(slo_ms=50)}))  # fmt: skip
    await svc.infer(_call())
    await svc.drain()
    assert [x.lead_us for x in store.leases] == [2000]
    ago = [e.ago_us for e in store.ends if e is not None and e.ago_us is not None]  # latency 0
    assert len(ago) == 1 and abs(ago[0] - 2000) <= 1  # µs, truncated
