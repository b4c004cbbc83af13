"""The health monitor: probes and outlier ejection combined into one verdict per worker."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.clock import ManualClock
from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.health import HealthConfig, HealthMonitor, Outcome, OutlierConfig, probe_worker
from gateway.observability.metrics import GatewayMetrics
from gateway.routing.types import WorkerInfo
from gateway.testing import FakeUpstream
from gateway.upstream.base import UpstreamResponse


class FakeFleet:
    """Membership and the verdicts the monitor hands out (as :class:`gateway.fleet.Fleet`)."""

    def __init__(self, infos: Sequence[WorkerInfo]) -> None:
        self.infos = {w.id: w for w in infos}
        self.verdicts: dict[str, bool] = {}

    def workers(self) -> Sequence[WorkerInfo]:
        return list(self.infos.values())

    def worker(self, worker_id: str) -> WorkerInfo | None:
        return self.infos.get(worker_id)

    def set_healthy(self, worker_id: str, healthy: bool) -> None:
        self.verdicts[worker_id] = healthy


INFOS = [
    WorkerInfo("a0", "a", "x", ("m1", "m/2"), url="http://a0"),
    WorkerInfo("a1", "a", "x", ("m1",), url="http://a1"),
]


class Triton:
    """Answers probe GETs from per-worker state."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.refused: set[str] = set()
        self.model_down: set[tuple[str, str]] = set()

    def respond(self, w: WorkerInfo, target: str, body: bytes | None) -> UpstreamResponse:
        if w.id in self.refused:
            raise UpstreamConnectError(f"worker {w.id} unreachable")
        if target == "/v2/health/ready":
            ok = w.id not in self.down
        else:
            ok = not any(w.id == wid and target == f"/v2/models/{m}/ready"
                         for wid, m in self.model_down)  # fmt: skip
        return UpstreamResponse.from_http(200 if ok else 503, b"")


def _rig(**cfg: object) -> tuple[HealthMonitor, FakeFleet, Triton, ManualClock, GatewayMetrics]:
    triton = Triton()
    svc = FakeFleet(INFOS)
    clock = ManualClock(0.0)
    metrics = GatewayMetrics()
    up = FakeUpstream(respond=triton.respond)
    mon = HealthMonitor(svc, up, clock, metrics, HealthConfig(**cfg))  # type: ignore[arg-type]
    return mon, svc, triton, clock, metrics


async def test_probe_checks_server_then_every_model() -> None:
    triton = Triton()
    up = FakeUpstream(respond=triton.respond)
    assert (await probe_worker(up, INFOS[0], 1.0)).ok
    assert [s.target for s in up.sent] == [
        "/v2/health/ready", "/v2/models/m1/ready", "/v2/models/m%2F2/ready"
    ]  # fmt: skip
    triton.model_down.add(("a0", "m1"))
    res = await probe_worker(up, INFOS[0], 1.0)
    assert not res.ok and not res.refused and "m1/ready answered 503" in res.detail
    triton.refused.add("a0")
    res = await probe_worker(up, INFOS[0], 1.0)
    assert not res.ok and res.refused


async def test_failed_probes_mark_unhealthy_after_threshold_and_recover() -> None:
    mon, svc, triton, _, metrics = _rig(unhealthy_threshold=2)
    triton.down.add("a0")
    await mon.probe_all()
    assert mon.healthy("a0") and "a0" not in svc.verdicts  # one failure is not enough
    await mon.probe_all()
    assert not mon.healthy("a0") and svc.verdicts == {"a0": False}
    assert metrics.registry.get_sample_value("synergai_worker_healthy", {"worker": "a0"}) == 0
    assert mon.row("a0", 0.0)["probe_detail"] == "/v2/health/ready answered 503"
    triton.down.clear()
    await mon.probe_all()
    assert mon.healthy("a0") and svc.verdicts["a0"] is True


async def test_refused_probe_is_unhealthy_at_once() -> None:
    mon, svc, triton, *_ = _rig()
    triton.refused.add("a1")
    await mon.probe_all()
    assert svc.verdicts == {"a1": False} and not mon.row("a1", 0.0)["ready"]


async def test_outlier_ejection_and_return_on_time() -> None:
    mon, svc, _, clock, metrics = _rig(outlier=OutlierConfig(base_ejection_s=1.0))
    mon.observe("a0", Outcome.CONNECT)
    assert svc.verdicts == {"a0": False}
    row = mon.row("a0", 0.25)
    assert row["ejected"] and row["ejected_for_s"] == 0.75 and row["ejections"] == 1
    labels = {"worker": "a0", "reason": "consecutive_connect_errors"}
    assert metrics.registry.get_sample_value("synergai_outlier_ejections_total", labels) == 1
    clock.advance(0.5)
    await mon.expire()
    assert svc.verdicts["a0"] is False
    clock.advance(0.5)
    await mon.expire()
    assert svc.verdicts["a0"] is True


async def test_recovered_probe_ends_an_ejection() -> None:
    mon, svc, triton, clock, _ = _rig(outlier=OutlierConfig(base_ejection_s=30.0))
    triton.refused.add("a0")
    mon.observe("a0", Outcome.CONNECT)  # killed: ejected for 30 s
    await mon.probe_all()  # and its probe fails
    triton.refused.clear()  # restarted
    clock.advance(0.2)
    await mon.probe_all()
    assert mon.healthy("a0") and svc.verdicts["a0"] is True


async def test_panic_is_reported_and_cleared() -> None:
    mon, svc, _, _, metrics = _rig()
    mon.observe("a0", Outcome.CONNECT)
    mon.observe("a1", Outcome.CONNECT)  # would empty the pool
    assert svc.verdicts == {"a0": False} and mon.panic_pools() == ["a"]
    assert metrics.registry.get_sample_value("synergai_outlier_panic", {"pool": "a"}) == 1
    mon.observe("a1", Outcome.SUCCESS)
    assert mon.panic_pools() == []
    assert metrics.registry.get_sample_value("synergai_outlier_panic", {"pool": "a"}) == 0


async def test_membership_follows_the_service() -> None:
    mon, svc, *_ = _rig()
    svc.infos["b0"] = WorkerInfo("b0", "b", "x", ("m1",), url="http://b0")
    mon.observe("b0", Outcome.TIMEOUT)  # learnt on first sight
    assert mon.row("b0", 0.0)["ready"]
    del svc.infos["a1"]
    await mon.probe_all()
    assert mon.row("a1", 0.0) == {}
    mon.observe("zz", Outcome.CONNECT)  # unknown: ignored
    assert mon.row("zz", 0.0) == {}


async def test_slow_probe_counts_as_failure() -> None:
    def respond(w: WorkerInfo, target: str, body: bytes | None) -> UpstreamResponse:
        raise UpstreamTimeout("slow")

    res = await probe_worker(FakeUpstream(respond=respond), INFOS[1], 0.1)
    assert not res.ok and not res.refused and "slow" in res.detail
