"""Reconciler blend, ReconciledStore over a MemoryStore, TritonScraper against a loopback page."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.core.clock import ManualClock
from gateway.core.net import free_port
from gateway.routing.types import WorkerInfo
from gateway.state.memory_store import MemoryStore
from gateway.state.reconcile import ReconciledStore, Reconciler, TritonScraper
from gateway.state.store import Lease, WorkerLoad
from gateway.state.triton_metrics import TritonLoad


def _t(at: float, queued: float, running: float, compute_ms: float = 10.0) -> TritonLoad:
    return TritonLoad(at, queued, running, compute_ms, math.nan)


@pytest.mark.parametrize(
    ("redis_out", "peak", "queued", "running", "want_out", "want_work"),
    [
        (2, 2, 1.0, 1.0, 2, 20.0),  # Triton holds what the gateways leased: nothing added
        (2, 2, 4.0, 1.0, 5, 50.0),  # 3 requests nobody leased
        (0, 6, 3.0, 2.0, 0, 0.0),  # a burst just drained: the interval peak covers it
        (1, 1, 0.0, 0.0, 1, 10.0),  # Triton lags (issue 5927): never below Redis
    ],
)
def test_blend_adds_only_what_triton_holds_beyond_redis(
    redis_out: int, peak: int, queued: float, running: float, want_out: int, want_work: float
) -> None:
    clock = ManualClock(10.0)
    rec = Reconciler(clock, max_age_s=5.0)
    rec.note_shared("w", WorkerLoad(peak, peak * 10.0))
    rec.note_shared("w", WorkerLoad(redis_out, redis_out * 10.0))
    rec.observe("w", _t(10.0, queued, running))
    got = rec.blend("w", WorkerLoad(redis_out, redis_out * 10.0))
    assert got.outstanding == want_out and got.work_ms == pytest.approx(want_work)


def test_external_load_goes_stale_and_needs_a_redis_figure() -> None:
    clock = ManualClock(0.0)
    rec = Reconciler(clock, max_age_s=2.0)
    assert rec.observe("w", _t(0.0, 5, 0)) is None  # no Redis figure yet: cannot tell
    rec.note_shared("w", WorkerLoad(0, 0.0))
    ext = rec.observe("w", _t(0.0, 5, 0))
    assert ext is not None and ext.outstanding == 5
    got = rec.blend("w", WorkerLoad(1, 1.0))
    assert got.outstanding == 6 and got.external == 5  # leases: 1, Triton's extra: 5
    clock.advance(2.5)
    assert rec.blend("w", WorkerLoad(1, 1.0)) == WorkerLoad(1, 1.0)
    rec.forget("w")
    assert rec.external("w") is None


async def test_reconciled_store_blends_every_answer() -> None:
    clock = ManualClock(1.0)
    inner = MemoryStore(clock)
    rec = Reconciler(clock)
    store = ReconciledStore(inner, rec)
    await store.start()
    lease = Lease("w", "g:1", 5_000)
    assert await store.reserve(lease) == WorkerLoad(1, 5.0, (5.0,))
    rec.observe("w", _t(1.0, 3.0, 1.0, 2.0))  # 4 in Triton, 1 leased: 3 external
    # the external work is queued too: the one slot frees 6 ms later
    assert await store.snapshot(["w"]) == {"w": WorkerLoad(4, 11.0, (11.0,), external=3)}
    assert await store.release(lease) == WorkerLoad(3, 6.0, (11.0,), external=3)  # as predicted
    assert await store.expire_leases(["w"]) == 0
    inner.down = True
    assert not store.available
    assert await store.reserve(lease) is None and await store.snapshot(["w"]) is None
    await store.close()


@pytest.fixture
async def metrics_page() -> AsyncIterator[dict[str, str]]:
    page = {"text": ""}

    async def handler(_: web.Request) -> web.Response:
        if page["text"] == "500":
            return web.Response(status=500)
        return web.Response(text=page["text"])

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    page["url"] = f"http://127.0.0.1:{port}/metrics"
    yield page
    await runner.cleanup()


def _page(pending: int, execs: int, compute_us: int) -> str:
    lab = '{model="m",version="1"}'
    return (
        f"nv_inference_pending_request_count{lab} {pending}\n"
        f"nv_inference_exec_count{lab} {execs}\nnv_inference_count{lab} {execs}\n"
        f"nv_inference_compute_infer_duration_us{lab} {compute_us}\n"
    )


async def test_scraper_feeds_the_reconciler(metrics_page: dict[str, str]) -> None:
    clock = ManualClock(0.0)
    rec = Reconciler(clock, max_age_s=5.0)
    info = WorkerInfo("w", "p", "a", ("m",), instances=4, metrics_url=metrics_page["url"])
    fleet = [info, WorkerInfo("nometrics", "p", "a", ("m",))]
    scraper = TritonScraper(lambda: fleet, rec, clock, timeout_s=2.0)
    rec.note_shared("w", WorkerLoad(1, 10.0))
    metrics_page["text"] = _page(0, 0, 0)
    await scraper.tick()
    assert scraper.loads["w"].in_server == 0
    clock.advance(1.0)
    metrics_page["text"] = _page(2, 200, 2_000_000)  # 200 x 10 ms in 1 s: 2 running, 2 queued
    await scraper.tick()
    assert scraper.loads["w"].in_server == pytest.approx(4.0)
    assert rec.blend("w", WorkerLoad(1, 10.0)) == WorkerLoad(4, pytest.approx(40.0), external=3)  # type: ignore[arg-type]
    metrics_page["text"] = "500"
    await scraper.tick()
    assert scraper.failures == 1
    fleet.pop(0)  # discovery removed it: forgotten
    await scraper.tick()
    assert "w" not in scraper.loads and rec.external("w") is None
    await scraper.close()
